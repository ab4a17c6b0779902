//! Helpers the cdn test binaries share.

use std::path::Path;
use std::process::Command;

/// `cdn publish FILE --publisher URL --key KEY ARGS... --json`, which must succeed: its JSON.
pub fn publish(publisher: &str, key: &Path, file: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_cdn"))
        .args(["publish"])
        .arg(file)
        .args(["--publisher", publisher, "--key"])
        .arg(key)
        .args(args)
        .arg("--json")
        .output()
        .expect("run cdn publish");
    assert!(
        out.status.success(),
        "cdn publish failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("publish --json")
}

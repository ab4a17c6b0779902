//! What the bank's tests share: an issuer with its mint in a temporary directory, wallets on
//! it, and the `bank` binary (customers added from its command line, `bank serve` stopped
//! when its guard drops).
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use clients::issuer::IssuerClient;
use node::client::{ClientOptions, CounterStore};
use node::process::ChildGuard;

/// Longest wait for the bank to print its address.
pub const SPAWN_WAIT_MS_MAX: u64 = 30_000;

pub fn bank_bin() -> &'static str {
    env!("CARGO_BIN_EXE_bank")
}

/// A real issuer (SQLite) in a temporary directory, its mint, and one HTTP client.
pub struct Net {
    pub tmp: tempfile::TempDir,
    pub issuer: lcp::server::RunningIssuer,
    pub http: reqwest::Client,
    pub mint: IssuerClient,
}

impl Net {
    pub fn start() -> Net {
        let tmp = tempfile::tempdir().expect("tempdir");
        let issuer_dir = tmp.path().join("issuer");
        let issuer = lcp::testing::start_issuer(&issuer_dir);
        let http = node::client::http_client(&ClientOptions::default()).expect("http");
        let mint = lcp::testing::mint(&issuer, &issuer_dir, &http);
        Net {
            tmp,
            issuer,
            http,
            mint,
        }
    }

    /// A wallet on the issuer, its key `<name>.key` in the test's directory.
    pub fn wallet(&self, name: &str) -> IssuerClient {
        let path = self.tmp.path().join(format!("{name}.key"));
        IssuerClient::new(
            self.http.clone(),
            &self.issuer.url,
            Arc::new(node::keyfile::load_or_create(&path).expect("key")),
            Some(CounterStore::beside_key(&path)),
        )
    }
}

/// `bank serve` on a loopback port with `extra` arguments; its URL.
pub fn serve(
    data: &Path,
    issuer_url: &str,
    database: Option<&str>,
    extra: &[&str],
) -> (ChildGuard, String) {
    let mut cmd = Command::new(bank_bin());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--issuer", issuer_url])
        .args(extra)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit());
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    node::process::spawn_server(cmd, SPAWN_WAIT_MS_MAX).expect("the bank printed its address")
}

/// `bank customer add` with `password` on stdin; must succeed.
pub fn add_customer(data: &Path, name: &str, password: &str, database: Option<&str>) {
    let mut cmd = Command::new(bank_bin());
    cmd.args([
        "customer",
        "add",
        "--name",
        name,
        "--password-stdin",
        "--data",
    ])
    .arg(data);
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .expect("bank customer add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    assert!(child.wait().expect("wait").success(), "customer add {name}");
}

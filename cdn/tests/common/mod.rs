//! Helpers the cdn test binaries share.
// Each test binary uses some of these.
#![allow(dead_code)]

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

/// A clip of `seconds` made at `video` and published on `publisher` the way the tests sell
/// views (32 KiB pieces, 2 replicas, 250 a view): the publish answer and the clip's bytes.
pub fn publish_clip(
    publisher: &str,
    key: &Path,
    video: &Path,
    seconds: u32,
) -> (serde_json::Value, Vec<u8>) {
    make_mp4(video, seconds);
    let original = std::fs::read(video).expect("read clip");
    let args = [
        "--piece-kib",
        "32",
        "--replicas",
        "2",
        "--price-per-view",
        "250",
    ];
    (publish(publisher, key, video, &args), original)
}

/// ffmpeg, or `None` (skip) when it is not installed; under `CI=true` a missing ffmpeg fails,
/// since `.ci/run` installs it.
pub fn ffmpeg() -> Option<()> {
    let found = Path::new("/usr/bin/ffmpeg").exists() && Path::new("/usr/bin/ffprobe").exists();
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but ffmpeg is not installed (.ci/run installs it)"
        );
        eprintln!("skipping: ffmpeg not installed (apt-get install -y ffmpeg)");
        return None;
    }
    Some(())
}

/// An H.264 MP4 of `seconds` with the index up front (plays before it is all there).
pub fn make_mp4(path: &Path, seconds: u32) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=duration={seconds}:size=640x360:rate=25"))
        .args([
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            // About 3 MB for 6 s: enough pieces that a stream is still running when an agent
            // is killed.
            "-b:v",
            "4M",
            "-movflags",
            "+faststart",
        ])
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Watch `content` through a gateway made with `o`: it must answer 200 and stream `original`
/// byte for byte within `wait_ms`.
pub async fn watch(
    o: cdn::gateway::GatewayOptions,
    content: &str,
    original: &[u8],
    what: &str,
    wait_ms: u64,
) {
    let gw = cdn::gateway::start(o).expect("gateway");
    let got = reqwest::Client::new()
        .get(format!("{}/v/{content}", gw.url))
        .timeout(std::time::Duration::from_millis(wait_ms))
        .send()
        .await
        .expect("view");
    assert_eq!(got.status().as_u16(), 200);
    assert!(got.bytes().await.expect("body") == original, "{what}");
}

//! The S3 backend against a real S3-compatible server on loopback: moto's server mode (PyPI
//! `moto[server]`, installed by `.ci/run`). Skipped when moto is missing, except under CI=true.

mod util;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clients::agent::verify_audit;
use protocol::merkle::MerkleTree;
use util::World;

const BUCKET: &str = "agent-objects";
/// Longest moto may take to start answering.
const MOTO_START_MS_MAX: u64 = 30_000;

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn moto_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Start moto on a free loopback port and wait until it answers.
fn start_moto() -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let guard = Moto(child);
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_millis(MOTO_START_MS_MAX);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "moto did not start within {MOTO_START_MS_MAX} ms"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, url)
}

async fn bucket_keys(http: &reqwest::Client, moto: &str) -> String {
    http.get(format!("{moto}/{BUCKET}?list-type=2"))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("xml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_live_in_s3() {
    if !moto_installed() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but moto is not installed (.ci/run installs it)"
        );
        eprintln!("skipping: pip install 'moto[server]' to run the S3 test");
        return;
    }
    let (_moto, moto_url) = start_moto();
    let http = reqwest::Client::new();
    let created = http
        .put(format!("{moto_url}/{BUCKET}"))
        .send()
        .await
        .expect("create bucket");
    assert!(
        created.status().is_success(),
        "bucket created: {}",
        created.status()
    );
    // object_store's S3 client reads its settings from the environment. This test binary holds
    // only this test, so the variables reach nothing else.
    for (k, v) in [
        ("AWS_ENDPOINT", moto_url.as_str()),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ] {
        std::env::set_var(k, v);
    }

    let world = World::start_with_store(1 << 20, 60, None, &format!("s3://{BUCKET}/agent-1"));
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let terms = world
        .active_contract(&client, &wallet, &buyer, 256 * 1024, 3600, 10_000)
        .await;

    let data: Vec<u8> = (0..50_000u32).map(|i| (i % 241) as u8).collect();
    let info = client
        .put(&terms.id, "s3.bin", data.clone())
        .await
        .expect("put to s3");
    assert_eq!(info.merkle_root, MerkleTree::from_bytes(&data).root_hex());
    let listing = bucket_keys(&http, &moto_url).await;
    assert!(
        listing.contains(&format!("agent-1/c/{}/s3.bin.", terms.id)),
        "the bytes are in the bucket under the prefix: {listing}"
    );
    assert_eq!(
        client
            .get(&terms.id, "s3.bin", None)
            .await
            .expect("get")
            .as_ref(),
        &data[..]
    );
    assert_eq!(
        client
            .get(&terms.id, "s3.bin", Some((49_990, 49_999)))
            .await
            .expect("range")
            .as_ref(),
        &data[49_990..]
    );
    let audit = client.audit(&terms.id, "s3.bin", 2).await.expect("audit");
    assert!(verify_audit(&audit, &info.merkle_root, 2));
    // A rewrite replaces the bytes and removes the old version from the bucket.
    let info2 = client
        .put(&terms.id, "s3.bin", vec![1; 10])
        .await
        .expect("rewrite");
    assert_eq!(info2.size, 10);
    let listing = bucket_keys(&http, &moto_url).await;
    assert_eq!(
        listing.matches("s3.bin.").count(),
        1,
        "one version stored: {listing}"
    );
    client.delete(&terms.id, "s3.bin").await.expect("delete");
    let listing = bucket_keys(&http, &moto_url).await;
    assert!(
        !listing.contains("s3.bin"),
        "deleted from the bucket: {listing}"
    );
    assert_eq!(
        client.contract(&terms.id).await.expect("view").used_bytes,
        0
    );
}

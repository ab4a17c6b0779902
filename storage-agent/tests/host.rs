//! The agent on a real host (issue 12): a capacity larger than the disk is not sold (a small
//! tmpfs stands for the disk), and the dashboard answers only its owner (a request from another
//! address, made in a network namespace of the test's own).
//!
//! Both need root (mount, ip netns). Without it they are skipped with a message; under
//! `CI=true` they fail instead.

mod util;

use std::process::Command;

use clients::agent::AgentClient;
use util::World;

fn root_or_skip(what: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {what} needs root"
        );
        eprintln!("skipped: {what} needs root");
    }
    root
}

/// A tmpfs mounted for the test's lifetime.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, bytes: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_beyond_the_disk_is_not_sold() {
    if !root_or_skip("mounting a small disk") {
        return;
    }
    let disk_bytes: u64 = 64 << 20;
    let capacity: u64 = 999_999_999_999_999;
    // The agent's objects live on a 64 MiB disk; its owner claimed 909 TiB.
    let dir = tempfile::tempdir().expect("tempdir");
    let _disk = Tmpfs::mount(&dir.path().join("agent/objects"), disk_bytes);
    let world = World::start_in(dir, capacity, 60, None);
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let (_, offer) = client.offer().await.expect("offer");
    assert!(
        offer.free_bytes <= disk_bytes,
        "the offer lists {} free on a {disk_bytes}-byte disk",
        offer.free_bytes
    );
    assert!(offer.block_bytes_max <= disk_bytes);

    // A block larger than the disk is refused (507), however large the capacity.
    let big = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        100 << 20,
        3600,
        vec![],
    )
    .expect("terms");
    let e = client
        .propose(&big)
        .await
        .expect_err("does not fit on the disk");
    assert_eq!(e.code(), Some("insufficient_space"), "{e}");

    // One that fits is sold; then the space it reserves is no longer offered.
    world
        .active_contract(&client, &wallet, &buyer, 40 << 20, 3600, 0)
        .await;
    let (_, after) = client.offer().await.expect("offer");
    assert!(
        after.free_bytes <= disk_bytes - (40 << 20),
        "blocks sold but not yet written still need the disk: {} free",
        after.free_bytes
    );
    let second = AgentClient::terms_from_offer(
        &after,
        buyer.entity(),
        &world.issuer.entity,
        40 << 20,
        3600,
        vec![],
    )
    .expect("terms");
    let e = client
        .propose(&second)
        .await
        .expect_err("the first block's room is taken");
    assert_eq!(e.code(), Some("insufficient_space"), "{e}");

    // `init` warns about such a capacity.
    let data = world.dir.path().join("second");
    let _disk2 = Tmpfs::mount(&data.join("objects"), disk_bytes);
    let out = Command::new(env!("CARGO_BIN_EXE_storage-agent"))
        .args(["init", "--issuer", &world.issuer.url, "--capacity"])
        .arg(capacity.to_string())
        .arg("--data")
        .arg(&data)
        .output()
        .expect("init");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("free space"),
        "init warns: {stderr}"
    );
    // Unmount before the temporary directory is removed.
    drop(_disk2);
    drop(_disk);
}

/// A network namespace with one address of the test's own on its loopback device; deleted
/// when dropped.
struct Netns(String);

impl Netns {
    fn new(address: &str) -> Netns {
        let name = format!("lcp-agent-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let run = |args: &[&str]| {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .expect("ip")
                .success();
            assert!(ok, "ip {}", args.join(" "));
        };
        run(&["netns", "add", &name]);
        let ns = Netns(name);
        run(&["-n", &ns.0, "link", "set", "lo", "up"]);
        run(&[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "lo",
        ]);
        ns
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// GET `url` from inside the namespace; answers the HTTP status.
fn status_in(ns: &Netns, url: &str, bearer: Option<&str>) -> u16 {
    let script = r#"
import sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
"#;
    let mut c = ns.command("python3");
    c.args(["-c", script, url]);
    if let Some(b) = bearer {
        c.arg(b);
    }
    let out = c.output().expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("GET {url}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_dashboard_answers_only_its_owner() {
    if !root_or_skip("a network namespace") {
        return;
    }
    let address = "10.251.77.1";
    let ns = Netns::new(address);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("agent");
    util::write_agent_config(&data, "http://127.0.0.1:9", 1 << 30);
    let mut serve = ns.command(env!("CARGO_BIN_EXE_storage-agent"));
    serve
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(&data)
        .env("RUST_LOG", "warn");
    let (_agent, url) = node::process::spawn_server(serve, 30_000).expect("agent in the namespace");
    let port = url.rsplit(':').next().expect("port").to_owned();
    let token = std::fs::read_to_string(storage_agent::owner::token_path(&data))
        .expect("serve writes the owner's token")
        .trim()
        .to_owned();
    let far = format!("http://{address}:{port}");
    let near = format!("http://127.0.0.1:{port}");
    // From the machine itself: the owner.
    assert_eq!(status_in(&ns, &format!("{near}/"), None), 200);
    assert_eq!(status_in(&ns, &format!("{near}/v1/status"), None), 200);
    // From another address: only with the token.
    for path in ["/", "/v1/status", "/metrics"] {
        assert_eq!(status_in(&ns, &format!("{far}{path}"), None), 403, "{path}");
        assert_eq!(
            status_in(&ns, &format!("{far}{path}"), Some("not-the-token")),
            403,
            "{path}"
        );
        assert_eq!(
            status_in(&ns, &format!("{far}{path}"), Some(&token)),
            200,
            "{path}"
        );
    }
    assert_eq!(status_in(&ns, &format!("{far}/?token={token}"), None), 200);
    // What buyers and the market need stays public.
    assert_eq!(status_in(&ns, &format!("{far}/v1/offer"), None), 200);
    assert_eq!(status_in(&ns, &format!("{far}/.well-known/lcp"), None), 200);
}

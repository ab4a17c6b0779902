//! Helpers the backup end-to-end tests share: the CLI on a devnet, trees to back up and
//! compare, the agents' used bytes.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use devnet::{Devnet, Options};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Cli {
    pub wallet: PathBuf,
    pub market: String,
}

impl Cli {
    /// Run `backup` with `config_dir`; answers (exit code, stdout, stderr).
    pub fn run(&self, config_dir: &Path, password: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_backup"))
            .arg("--config-dir")
            .arg(config_dir)
            .args(args)
            .env("BACKUP_PASSWORD", password)
            .env_remove("BACKUP_CONFIG_DIR")
            .output()
            .expect("run backup");
        let code = out.status.code().unwrap_or(-1);
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        (code, o, e)
    }

    /// `restore latest` into `target` on a fresh machine: `repository` found through the
    /// market with the devnet's wallet.
    pub fn recover_args(&self, target: &Path, repository: &str) -> Vec<String> {
        let wallet = self.wallet.to_string_lossy().into_owned();
        let target = target.to_string_lossy().into_owned();
        [
            "restore",
            "latest",
            "--target",
            &target,
            "--repo",
            repository,
            "--market",
            &self.market,
            "--wallet",
            &wallet,
            "--json",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `backup init` on the devnet's market with its wallet, and `extra` flags.
    pub fn init(&self, config_dir: &Path, extra: &[&str]) -> serde_json::Value {
        let wallet = self.wallet.to_string_lossy().into_owned();
        let mut args = vec![
            "init",
            "--market",
            &self.market,
            "--wallet",
            &wallet,
            "--json",
        ];
        args.extend_from_slice(extra);
        self.ok(config_dir, &args)
    }

    /// `restore latest` into `target`; the restored `name` must equal `src`.
    pub fn restore_exact(&self, config_dir: &Path, target: &Path, name: &str, src: &Path) {
        let target_arg = target.to_string_lossy();
        self.ok(
            config_dir,
            &["restore", "latest", "--target", &target_arg, "--json"],
        );
        same_tree(&target.join(name), src);
    }

    pub fn ok(&self, config_dir: &Path, args: &[&str]) -> serde_json::Value {
        let (code, out, err) = self.run(config_dir, PASSWORD, args);
        assert_eq!(code, 0, "backup {args:?} failed: {err}\n{out}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

/// Deterministic bytes that do not compress.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Every entry under `root`: (relative path, kind, mode, mtime, content or link target).
pub fn listing(root: &Path) -> Vec<(String, String, u32, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("meta");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let mode = m.mode() & 0o7777;
            if m.file_type().is_symlink() {
                let target = std::fs::read_link(&p).expect("link");
                // The link's own mtime (lstat); its mode is always 0777 on Linux.
                out.push((
                    rel,
                    "link".into(),
                    0,
                    m.mtime(),
                    target.to_string_lossy().as_bytes().to_vec(),
                ));
            } else if m.is_dir() {
                out.push((rel, "dir".into(), mode, m.mtime(), vec![]));
                stack.push(p);
            } else {
                out.push((
                    rel,
                    "file".into(),
                    mode,
                    m.mtime(),
                    std::fs::read(&p).expect("read"),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The market keeps auditing the repository's agents after a repair rewrote the config on
/// them, and every agent passes: wait for two more audits of each, then no failure anywhere.
pub fn market_audits_pass(cli: &Cli, config_dir: &Path) {
    let repo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_dir.join("repo.json")).expect("repo.json"))
            .expect("json");
    let agents: Vec<String> = repo["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["agent"].as_str().expect("agent").to_string())
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let key = std::sync::Arc::new(protocol::KeyPair::generate().expect("key"));
    let market = clients::market::MarketClient::new(reqwest::Client::new(), &cli.market, key);
    let passed = |listings: &[protocol::book::Listing]| -> Vec<(u64, u64)> {
        agents
            .iter()
            .map(|a| {
                listings
                    .iter()
                    .find(|l| &l.agent == a)
                    .map_or((0, 0), |l| (l.audits_passed, l.audits_failed))
            })
            .collect()
    };
    runtime.block_on(async {
        let before = passed(&market.offers(None).await.expect("offers"));
        // Audits come every second here, but an agent answers the market at most 8 audits
        // of a contract a minute (`429` past that, which the auditor honours, up to 60 s),
        // and this file runs six devnets at once on two cores.
        node::testing::eventually(150_000, "two more audits of every agent", || async {
            let now = passed(&market.offers(None).await.expect("offers"));
            now.iter().zip(&before).all(|(n, b)| n.0 >= b.0 + 2)
        })
        .await;
        let now = passed(&market.offers(None).await.expect("offers"));
        assert!(
            now.iter().all(|(_, failed)| *failed == 0),
            "audits failed on the repository's agents (passed, failed): {now:?}"
        );
    });
}

/// The devnet agent (index) that holds slot `slot` of the repository in `config_dir`.
pub fn slot_agent(net: &Devnet, config_dir: &Path, slot: usize) -> usize {
    let repo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config_dir.join("repo.json")).expect("repo.json"))
            .expect("json");
    let url = repo["slots"][slot]["endpoint"].as_str().expect("endpoint");
    net.agents
        .iter()
        .position(|a| a.url == url)
        .expect("a devnet agent")
}

/// A devnet of `agents` agents in a fresh directory, and the CLI pointed at it.
pub fn network(agents: usize) -> (tempfile::TempDir, Devnet, Cli) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = agents;
    opts.heartbeat_s = 1;
    // Audits every second, so a test can see the market's verdict on the repository's agents.
    opts.audit_interval_s = 1;
    let net = Devnet::up(&opts).expect("devnet");
    let file = net.file();
    let cli = Cli {
        wallet: file.wallet.key.clone(),
        market: file.market.url.clone(),
    };
    (tmp, net, cli)
}

/// Bytes stored on the running agents, from their status.
pub fn used_bytes(net: &Devnet) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let mut sum = 0;
        for a in net.agents.iter().filter(|a| a.running()) {
            let v: serde_json::Value = http
                .get(format!("{}/v1/status", a.url))
                .send()
                .await
                .expect("status")
                .json()
                .await
                .expect("json");
            sum += v["used_bytes"].as_u64().expect("used_bytes");
        }
        sum
    })
}

/// The trees are identical; on a difference, name the first differing entry (not its bytes).
pub fn same_tree(restored: &Path, original: &Path) {
    let (a, b) = (listing(restored), listing(original));
    let brief = |e: &(String, String, u32, i64, Vec<u8>)| {
        format!(
            "{} {} mode {:o} mtime {} {} bytes",
            e.0,
            e.1,
            e.2,
            e.3,
            e.4.len()
        )
    };
    for (x, y) in a.iter().zip(b.iter()) {
        assert!(x == y, "restored {} != original {}", brief(x), brief(y));
    }
    assert_eq!(a.len(), b.len(), "entry counts differ");
}

pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Start `backup create src` and kill -9 it once its first pack is stored (the local index
/// records it as pending).
pub fn kill_create_after_first_pack(home: &Path, src: &Path) {
    let mut child = create_until_first_pack(home, src);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
}

/// Start `backup create src` (output piped) and answer once its first pack is stored (the
/// local index records it as pending), while it still runs.
pub fn create_until_first_pack(home: &Path, src: &Path) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_backup"))
        .arg("--config-dir")
        .arg(home)
        .args(["create", &src.to_string_lossy(), "--json"])
        .env("BACKUP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn create");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let pending = std::fs::read(home.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["pending"].as_object().map(|o| o.len()))
            .unwrap_or(0);
        if pending > 0 {
            return child;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "create ended before a pack was stored"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no pack stored within 120 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A devnet of `agents` agents, each in a network namespace of its own on its own /24
/// (`devnet up --netns`, the market's network rule on), and the CLI pointed at it; `None`
/// (skip) without root or iproute2, except under `CI=true`, where that fails.
pub fn netns_network(agents: usize) -> Option<(tempfile::TempDir, Devnet, Cli)> {
    if let Err(e) = devnet::netns::check_can() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but namespaces cannot be made: {e}"
        );
        eprintln!("skipping: {e}");
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = agents;
    opts.heartbeat_s = 1;
    opts.audit_interval_s = 1;
    opts.netns = true;
    let net = Devnet::up(&opts).expect("devnet --netns");
    let file = net.file();
    let cli = Cli {
        wallet: file.wallet.key.clone(),
        market: file.market.url.clone(),
    };
    Some((tmp, net, cli))
}

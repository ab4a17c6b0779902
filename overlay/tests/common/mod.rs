//! Helpers the overlay's test binaries share: a real issuer, real `peer` processes on
//! loopback, the mint, the CLI.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use node::process::ChildGuard;
use protocol::KeyPair;

/// Longest a peer takes to print its `listening on` line.
pub const START_MS_MAX: u64 = 20_000;

pub struct Peer {
    pub url: String,
    pub dir: PathBuf,
    pub entity: String,
    pub key: Arc<KeyPair>,
    _child: ChildGuard,
}

pub struct Net {
    pub tmp: tempfile::TempDir,
    pub issuer: lcp::server::RunningIssuer,
    pub issuer_dir: PathBuf,
    pub http: reqwest::Client,
    pub rt: tokio::runtime::Runtime,
    /// The PostgreSQL server peers use (each its own fresh schema), when the test runs
    /// against it.
    pub postgres: Option<String>,
    schemas: std::sync::Mutex<Vec<db::testing::PgTestSchema>>,
}

/// A free loopback port (bound, then released for the peer that will listen on it: peers
/// name each other before they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Net {
    pub fn new() -> Net {
        Net::with_postgres(None)
    }

    /// Every backend to run a test on: SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set.
    pub fn backends() -> Vec<(&'static str, Net)> {
        let mut nets = vec![("sqlite", Net::new())];
        if let Some(url) = db::testing::postgres_url() {
            nets.push(("postgres", Net::with_postgres(Some(url))));
        }
        nets
    }

    pub fn with_postgres(postgres: Option<String>) -> Net {
        let tmp = tempfile::tempdir().expect("tempdir");
        let issuer_dir = tmp.path().join("issuer");
        let issuer = lcp::testing::start_issuer(&issuer_dir);
        Net {
            tmp,
            issuer,
            issuer_dir,
            http: reqwest::Client::new(),
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime"),
            postgres,
            schemas: Default::default(),
        }
    }

    /// Start `peer serve` named `name` listening on `port`, with `args` after the defaults.
    pub fn peer(&self, name: &str, port: u16, args: &[String]) -> Peer {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).expect("peer dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peer"));
        cmd.arg("serve")
            .arg("--data")
            .arg(&dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--issuer", &self.issuer.url])
            .args(args)
            .env("RUST_LOG", "warn");
        if let Some(base) = &self.postgres {
            let schema = db::testing::fresh_postgres(base, &format!("peer_{name}"))
                .expect("a PostgreSQL schema");
            cmd.args(["--database", &schema.url]);
            self.schemas.lock().expect("schemas").push(schema);
        }
        let (child, url) = node::process::spawn_server(cmd, START_MS_MAX)
            .unwrap_or_else(|e| panic!("peer {name}: {e}"));
        let key = Arc::new(node::keyfile::load(&dir.join("identity.key")).expect("peer key"));
        Peer {
            url,
            dir,
            entity: key.entity().to_string(),
            key,
            _child: child,
        }
    }

    /// Mint `amount` to `entity`.
    pub fn fund(&self, entity: &str, amount: u64) {
        let mint = lcp::testing::mint(&self.issuer, &self.issuer_dir, &self.http);
        let to = protocol::EntityId::parse(entity).expect("entity");
        self.rt
            .block_on(mint.transfer(&to, amount, None))
            .expect("mint");
    }

    /// The issuer balance of `key`'s entity.
    pub fn balance(&self, key: &Arc<KeyPair>) -> i64 {
        let c = clients::issuer::IssuerClient::new(
            self.http.clone(),
            &self.issuer.url,
            key.clone(),
            None,
        );
        self.rt.block_on(c.balance()).expect("balance").balance
    }

    /// A funded wallet key file of a stranger buyer.
    pub fn wallet(&self, name: &str, amount: u64) -> (PathBuf, Arc<KeyPair>) {
        let path = self.tmp.path().join(format!("{name}.key"));
        let key = Arc::new(node::keyfile::load_or_create(&path).expect("wallet"));
        self.fund(key.entity().as_str(), amount);
        (path, key)
    }

    /// The issuer's entity id (the currency).
    pub fn currency(&self) -> String {
        let key = node::keyfile::load(&self.issuer_dir.join("identity.key")).expect("issuer key");
        key.entity().to_string()
    }

    pub fn status(&self, peer: &Peer) -> serde_json::Value {
        let url = format!("{}/v1/status", peer.url);
        self.rt.block_on(async {
            reqwest::get(&url)
                .await
                .expect("status")
                .json()
                .await
                .expect("status json")
        })
    }

    /// Poll `check` on the peer's status until it holds (at most `wait_ms_max`).
    pub fn status_until(
        &self,
        peer: &Peer,
        wait_ms_max: u64,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms_max);
        loop {
            let s = self.status(peer);
            if check(&s) {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {s:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Start peers in a line (each the primary neighbour of the ones beside it).
pub fn line(net: &Net, n: usize, args: impl Fn(usize) -> Vec<String>) -> Vec<Peer> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    (0..n)
        .map(|i| {
            let mut a = args(i);
            for j in [i.wrapping_sub(1), i + 1] {
                if j < n {
                    a.push("--neighbor".into());
                    a.push(format!("http://127.0.0.1:{}", ports[j]));
                }
            }
            net.peer(&format!("p{}", i + 1), ports[i], &a)
        })
        .collect()
}

/// Wait until every peer knows its configured neighbours.
pub fn settled(net: &Net, peers: &[Peer]) {
    for (i, p) in peers.iter().enumerate() {
        let want = usize::from(i > 0) + usize::from(i + 1 < peers.len());
        net.status_until(p, 20_000, "neighbours learned", |s| {
            s["neighbors"].as_array().map_or(0, |a| a.len()) >= want
        });
    }
}

/// Write a document of `len` pseudo-random bytes into `dir`; answers its name.
pub fn document(dir: &Path, seed: u8, len: usize) -> (String, Vec<u8>) {
    std::fs::create_dir_all(dir).expect("share dir");
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let name = protocol::sha256_hex(&bytes);
    std::fs::write(dir.join(format!("doc-{seed}")), &bytes).expect("write document");
    (name, bytes)
}

/// Run the `peer` CLI, paying ahead by LCP transfer (`PEER_PAYWORDS=0`: these tests count
/// transfers; `cli_words` pays by payword, the default).
pub fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(args)
        .env("PEER_PAYWORDS", "0")
        .output()
        .expect("run peer")
}

/// Run the `peer` CLI as users do (paying by payword where the peer takes them); its stdout
/// as JSON, which must come.
pub fn cli_words(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(args)
        .env_remove("PEER_PAYWORDS")
        .output()
        .expect("run peer");
    assert!(
        out.status.success(),
        "peer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

/// Run the `peer` CLI, which must succeed; its stdout as JSON.
pub fn cli_json(args: &[&str]) -> serde_json::Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "peer {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "peer {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The kind of `entity` among `status`'s neighbours.
pub fn kind(status: &serde_json::Value, entity: &str) -> Option<String> {
    status["neighbors"]
        .as_array()?
        .iter()
        .find(|n| n["entity"] == entity)
        .and_then(|n| n["kind"].as_str().map(str::to_owned))
}

/// What `status` says `debtor` owes this peer on its tab (0 without one).
pub fn owed_to_me(status: &serde_json::Value, debtor: &str) -> u64 {
    status["tabs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["direction"] == "owes_me" && t["neighbor"] == debtor)
        .map(|t| t["owed"].as_u64().unwrap_or(0))
        .sum()
}

pub fn n(status: &serde_json::Value, field: &str) -> u64 {
    status[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {status:#}"))
}

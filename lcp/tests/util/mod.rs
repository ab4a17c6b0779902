//! Shared test helpers: an issuer per test in its own temporary directory, on SQLite or (when
//! `TEST_DATABASE_URL` is set) on a fresh PostgreSQL schema, stopped when dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use clients::issuer::IssuerClient;
use lcp::config::IssuerConfig;
use lcp::server::{RunningIssuer, ServeOptions};
use node::client::{http_client, ClientOptions, CounterStore};
use protocol::KeyPair;

/// Longest any test waits for a spawned binary to print its address.
pub const SPAWN_WAIT_MS_MAX: u64 = 30_000;

/// A test's database: SQLite under the test's directory (`None`), or a fresh PostgreSQL schema
/// that is dropped with this value.
pub struct TestDb(Option<db::testing::PgTestSchema>);

impl TestDb {
    /// The `--database` URL, `None` for SQLite.
    pub fn url(&self) -> Option<String> {
        self.0.as_ref().map(|s| s.url.clone())
    }
}

/// The databases every ledger test runs against: SQLite always, PostgreSQL when configured.
pub fn backends(label: &str) -> Vec<(&'static str, TestDb)> {
    let mut out = vec![("sqlite", TestDb(None))];
    if let Some(base) = db::testing::postgres_url() {
        let schema = db::testing::fresh_postgres(&base, label).expect("fresh postgres schema");
        out.push(("postgres", TestDb(Some(schema))));
    }
    out
}

pub struct TestIssuer {
    pub dir: tempfile::TempDir,
    pub running: RunningIssuer,
    pub key: Arc<KeyPair>,
    pub http: reqwest::Client,
}

impl TestIssuer {
    pub fn start(database: Option<String>, config: IssuerConfig) -> TestIssuer {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = lcp::server::start(ServeOptions {
            data_dir: dir.path().join("issuer"),
            listen: "127.0.0.1:0".into(),
            database,
            config,
            tls: None,
        })
        .expect("issuer starts");
        let key = Arc::new(
            node::keyfile::load(&dir.path().join("issuer/identity.key")).expect("issuer key"),
        );
        TestIssuer {
            dir,
            running,
            key,
            http: http_client(&ClientOptions::default()).expect("http client"),
        }
    }

    pub fn url(&self) -> &str {
        &self.running.url
    }

    /// A client acting as the issuer itself (the mint).
    pub fn mint(&self) -> IssuerClient {
        IssuerClient::new(
            self.http.clone(),
            self.url(),
            self.key.clone(),
            Some(CounterStore::beside_key(
                &self.dir.path().join("issuer/identity.key"),
            )),
        )
    }

    /// A fresh wallet with its key file and counter state in the test directory.
    pub fn wallet(&self, name: &str) -> (IssuerClient, PathBuf) {
        let path = self.dir.path().join(format!("{name}.key"));
        let key = node::keyfile::generate(&path).expect("wallet key");
        (
            IssuerClient::new(
                self.http.clone(),
                self.url(),
                Arc::new(key),
                Some(CounterStore::beside_key(&path)),
            ),
            path,
        )
    }

    pub async fn funded_wallet(&self, name: &str, amount: u64) -> IssuerClient {
        let (w, _) = self.wallet(name);
        self.mint()
            .transfer(w.signed().key().entity(), amount, Some("funding"))
            .await
            .expect("funding");
        w
    }

    pub async fn assert_sum_zero(&self) {
        assert_eq!(
            self.running.ledger.sum_of_balances().await.expect("sum"),
            0,
            "balances must sum to zero"
        );
    }
}

pub fn lcp_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lcp"))
}

pub use node::process::ChildGuard;

/// Spawn `lcp issuer serve` and wait for its `listening on` line.
pub fn spawn_issuer(data: &Path, database: Option<&str>, extra: &[&str]) -> (ChildGuard, String) {
    let mut cmd = Command::new(lcp_bin());
    cmd.args(["issuer", "serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(extra);
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    cmd.stderr(Stdio::inherit()).env("RUST_LOG", "warn");
    node::process::spawn_server(cmd, SPAWN_WAIT_MS_MAX).expect("issuer printed its address in time")
}

/// Run the `lcp` binary to completion; print everything when it fails unexpectedly.
pub fn lcp(args: &[&str]) -> std::process::Output {
    let out = Command::new(lcp_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run lcp");
    eprintln!(
        "$ lcp {}\n-> {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

//! `lcp demo`: the README's first command. Starts a real issuer (this binary, as a child process)
//! on embedded SQLite, makes two fresh wallets, funds one from the issuer and pays the other,
//! printing each step with the CLI command that does the same.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::Context;

use node::process::ChildGuard;

use clients::issuer::IssuerClient;
use node::client::{ClientOptions, CounterStore};

/// Longest the demo waits for its issuer to print its address.
const ISSUER_START_MS_MAX: u64 = 30_000;

/// Start `lcp issuer serve` as a child and read its `listening on` line.
fn spawn_issuer(exe: &Path, data: &Path, listen: &str) -> anyhow::Result<(ChildGuard, String)> {
    let mut cmd = Command::new(exe);
    cmd.args(["issuer", "serve", "--data"])
        .arg(data)
        .args(["--listen", listen])
        .stderr(Stdio::inherit())
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
    node::process::spawn_server(cmd, ISSUER_START_MS_MAX)
}

fn wallet(path: &Path) -> anyhow::Result<protocol::KeyPair> {
    Ok(node::keyfile::load_or_create(path)?)
}

pub async fn run(dir: PathBuf, listen: String, stay: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the lcp binary")?;
    let issuer_dir = dir.join("issuer");
    let (guard, url) = spawn_issuer(&exe, &issuer_dir, &listen)?;
    let d = dir.display();
    node::outln!("1. issuer running at {url} (SQLite in {}/issuer)", d);
    node::outln!("   $ lcp issuer serve --data {d}/issuer --listen {listen}");

    let alice_path = dir.join("alice.key");
    let bob_path = dir.join("bob.key");
    let alice = wallet(&alice_path)?;
    let bob = wallet(&bob_path)?;
    node::outln!("2. wallets: alice {}  bob {}", alice.entity(), bob.entity());
    node::outln!("   $ lcp keygen --out {d}/alice.key");

    let options = ClientOptions::default();
    let issuer_key_path = issuer_dir.join("identity.key");
    let issuer = IssuerClient::from_key_file(&url, &issuer_key_path, &options)?;
    let currency = issuer.currency().await?;
    let funded = issuer
        .transfer(alice.entity(), 1_000, Some("demo-funding"))
        .await?;
    node::outln!(
        "3. the issuer mints {} (1000 minor units) to alice: seq {}",
        currency.show(1_000),
        funded.value.seq
    );
    node::outln!(
        "   $ lcp transfer --key {d}/issuer/identity.key --issuer {url} --to {} --amount 1000",
        alice.entity()
    );

    let http = node::client::http_client(&options)?;
    let alice_client = IssuerClient::new(
        http.clone(),
        &url,
        Arc::new(alice),
        Some(CounterStore::beside_key(&alice_path)),
    );
    let bob_id = bob.entity().clone();
    let bob_client = IssuerClient::new(
        http,
        &url,
        Arc::new(bob),
        Some(CounterStore::beside_key(&bob_path)),
    );
    let paid = alice_client
        .transfer(&bob_id, 250, Some("order-42"))
        .await?;
    node::outln!(
        "4. alice pays bob {} for order-42: seq {}, fee {}, alice's balance {}, receipt {}…",
        currency.show(250),
        paid.value.seq,
        currency.show(paid.value.fee),
        currency.show(paid.value.balance),
        &paid.receipt[..16.min(paid.receipt.len())]
    );
    node::outln!("   $ lcp transfer --key {d}/alice.key --issuer {url} --to {bob_id} --amount 250 --transaction-id order-42");

    let page = bob_client.deposits(0, 1_000, Some("order-42")).await?;
    let got: u64 = page.deposits.iter().map(|d| d.amount).sum();
    node::outln!(
        "5. bob checks order-42 was paid: {} deposit(s), {} received, balance {}",
        page.deposits.len(),
        currency.show(got),
        currency.show(page.balance)
    );
    node::outln!("   $ lcp deposits --key {d}/bob.key --issuer {url} --transaction-id order-42");
    anyhow::ensure!(got >= 250, "bob did not see alice's payment");

    let alice_balance = alice_client.balance().await?;
    node::outln!(
        "6. balances: alice {}, bob {}",
        currency.show(alice_balance.balance),
        currency.show(page.balance)
    );
    node::outln!("   $ lcp balance --key {d}/alice.key --issuer {url}");
    if stay {
        node::outln!("issuer still running at {url}; Ctrl-C stops it");
        tokio::signal::ctrl_c().await.ok();
    }
    drop(guard);
    Ok(())
}

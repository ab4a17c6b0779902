//! The bank killed with SIGKILL while apps pay (issue 19): no answered payment is lost, none
//! is executed twice, and payments caught between the customer's balance and the issuer are
//! sent again after the restart until what the bank holds equals what its customer owns.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clients::issuer::IssuerClient;
use common::{add_customer, serve, Net};
use node::client::ClientOptions;

/// Longest wait for a start, for payments to be answered, and for pending ones to settle.
const WAIT_MS_MAX: u64 = 60_000;
/// Apps paying at once, and payments each sends at most.
const APPS: usize = 4;
const PAYMENTS_PER_APP: usize = 50;
/// Answered payments before the kill.
const ANSWERED_BEFORE_KILL: usize = 12;

fn bank_cmd(args: &[&str], data: &Path, database: Option<&str>) -> Command {
    let mut cmd = Command::new(common::bank_bin());
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn");
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_bank_loses_no_answered_payment_and_pays_none_twice() {
    for (backend, database) in db::testing::backends("bankcrash") {
        eprintln!("backend: {backend}");
        run(database.url().as_deref()).await;
    }
}

async fn run(database: Option<&str>) {
    let net = Net::start();
    let (tmp, issuer, http, mint) = (&net.tmp, &net.issuer, &net.http, &net.mint);
    let alice = net.wallet("alice");
    let alice_id = alice.signed().key().entity().to_string();

    let data = tmp.path().join("bank");
    add_customer(&data, "bob", "a long password", database);
    let (mut bank, url) = serve(&data, &issuer.url, database, &[]);
    let host = url.trim_start_matches("http://").to_owned();
    let bob = clients::names::resolve(&format!("bob@{host}"), &ClientOptions::default())
        .await
        .expect("bob resolves");
    const FUNDS: u64 = 100_000;
    mint.transfer_to(&bob, FUNDS, None).await.expect("fund bob");
    let grant = bank_cmd(
        &[
            "token",
            "grant",
            "--customer",
            "bob",
            "--issuer",
            issuer.entity.as_str(),
            "--limit",
            "1000000",
            "--json",
        ],
        &data,
        database,
    )
    .output()
    .expect("token grant");
    assert!(
        grant.status.success(),
        "{}",
        String::from_utf8_lossy(&grant.stderr)
    );
    let granted: serde_json::Value = serde_json::from_slice(&grant.stdout).expect("json");
    let token = granted["token"].as_str().expect("token").to_owned();
    // Wait until the bank has credited bob.
    node::testing::eventually(WAIT_MS_MAX, "bob credited", || {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        async move {
            let v: serde_json::Value = http
                .get(format!("{url}/lcp/v1/balance"))
                .bearer_auth(token)
                .send()
                .await
                .expect("balance")
                .json()
                .await
                .expect("json");
            v["balance"] == FUNDS
        }
    })
    .await;

    // Apps pay alice 10 each, each payment with its own transaction id, until the bank dies.
    let answered = Arc::new(AtomicUsize::new(0));
    let mut apps = Vec::new();
    for app in 0..APPS {
        let (http, url, token, alice_id, answered) = (
            http.clone(),
            url.clone(),
            token.clone(),
            alice_id.clone(),
            answered.clone(),
        );
        apps.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..PAYMENTS_PER_APP {
                let t = format!("t-{app}-{i}");
                let sent = http
                    .post(format!("{url}/lcp/v1/transfers"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"recipient": alice_id, "amount": 10, "transaction_id": t}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        ok.push(t);
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) if r.status().as_u16() == 502 => continue, // pending: resent later
                    _ => break, // the bank is gone
                }
            }
            ok
        }));
    }
    node::testing::eventually(WAIT_MS_MAX, "payments answered before the kill", || {
        let answered = answered.clone();
        async move { answered.load(Ordering::SeqCst) >= ANSWERED_BEFORE_KILL }
    })
    .await;
    bank.0.kill().expect("kill -9"); // std's kill sends SIGKILL
    let _ = bank.0.wait();
    let mut answered_ok = Vec::new();
    for a in apps {
        answered_ok.extend(a.await.expect("app task"));
    }
    assert!(answered_ok.len() >= ANSWERED_BEFORE_KILL);

    // Restarted on the same data: pending payments are sent again and settle.
    let (_bank, url) = serve(&data, &issuer.url, database, &[]);
    let bank_wallet = IssuerClient::new(
        http.clone(),
        &issuer.url,
        Arc::new(node::keyfile::load(&data.join("identity.key")).expect("bank key")),
        None,
    );
    node::testing::eventually(WAIT_MS_MAX, "what the bank holds = what bob owns", || {
        let (http, url, token, bank_wallet) = (
            http.clone(),
            url.clone(),
            token.clone(),
            bank_wallet.clone(),
        );
        async move {
            let owned: serde_json::Value = http
                .get(format!("{url}/lcp/v1/balance"))
                .bearer_auth(token)
                .send()
                .await
                .expect("balance")
                .json()
                .await
                .expect("json");
            let held = bank_wallet.balance().await.expect("held").balance;
            owned["balance"].as_i64() == Some(held)
        }
    })
    .await;

    let held = bank_wallet.balance().await.expect("held").balance;
    let mut at_alice: HashMap<String, u64> = HashMap::new();
    let mut after = 0;
    loop {
        let page = alice.deposits(after, 0, None).await.expect("deposits");
        if page.deposits.is_empty() {
            break;
        }
        for d in &page.deposits {
            let t = d.transaction_id.clone().expect("every payment has its id");
            assert_eq!(d.from_name.as_deref(), Some(format!("bob@{host}").as_str()));
            *at_alice.entry(t).or_default() += 1;
        }
        after = page.next;
    }
    for t in &answered_ok {
        assert_eq!(
            at_alice.get(t),
            Some(&1),
            "answered payment {t} executed once"
        );
    }
    assert!(
        at_alice.values().all(|n| *n == 1),
        "no payment executed twice"
    );
    // Default fees are zero: what left bob is what alice got.
    let paid: u64 = at_alice.len() as u64 * 10;
    assert_eq!(
        held,
        (FUNDS - paid) as i64,
        "bob's money = funds - payments made"
    );
    eprintln!(
        "{} answered before the kill, {} executed in all",
        answered_ok.len(),
        at_alice.len()
    );
}

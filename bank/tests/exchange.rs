//! The exchange end to end (issue 19, DESIGN 14, seed 004): two real issuers (currencies X
//! and Y), `bank serve --exchange`, and traders running `bank trade` with their own keys.
//! A matched trade settles in k steps, each slice paid by its payer at its own issuer and
//! confirmed by its receiver; a counter-party killed mid-trade is marked as having defaulted,
//! costs the other at most one slice, and may place no more orders.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::issuer::IssuerClient;
use common::{bank_bin, serve};
use node::client::CounterStore;

/// Slices per trade here.
const STEPS: u64 = 8;
/// A trader's time for its turn before it is marked.
const STEP_TIMEOUT_MS: u64 = 3_000;
/// Longest any wait here.
const WAIT_MS_MAX: u64 = 60_000;

struct Currency {
    issuer: lcp::server::RunningIssuer,
    mint: IssuerClient,
    fee_flat: u64,
    fee_bps: u64,
}

impl Currency {
    async fn start(dir: &Path, http: &reqwest::Client) -> Currency {
        let issuer = lcp::testing::start_issuer(dir);
        let mint = lcp::testing::mint(&issuer, dir, http);
        let d = get(&format!("{}/.well-known/lcp", issuer.url)).await;
        let fee = |n: &str| d["fees"][n].as_u64().unwrap_or(0);
        Currency {
            fee_flat: fee("transfer_flat"),
            fee_bps: fee("transfer_bps"),
            issuer,
            mint,
        }
    }

    fn fee(&self, amount: u64) -> i64 {
        protocol::fee_for(protocol::Amount(amount), self.fee_flat, self.fee_bps)
            .expect("fee")
            .0 as i64
    }

    fn wallet(&self, key: &Path, http: &reqwest::Client) -> IssuerClient {
        IssuerClient::new(
            http.clone(),
            &self.issuer.url,
            Arc::new(node::keyfile::load(key).expect("key")),
            Some(CounterStore::beside_key(key)),
        )
    }
}

/// `bank trade` for `key`: sell `sell` of `from` for at least `buy` of `to`.
fn trade(bank: &str, key: &Path, sell: (u64, &str), buy: (u64, &str)) -> Child {
    Command::new(bank_bin())
        .args(["trade", "--exchange", bank, "--key"])
        .arg(key)
        .args(["--sell", &sell.0.to_string(), "--sell-currency", sell.1])
        .args(["--buy", &buy.0.to_string(), "--buy-currency", buy.1])
        .args(["--wait-s", "60", "--json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bank trade")
}

/// Wait for `child` (bounded); its exit code and output.
async fn finish(mut child: Child) -> (i32, String, String) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "bank trade did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().expect("output");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("bank trade -> {}\nstdout: {o}\nstderr: {e}", out.status);
    (out.status.code().unwrap_or(-1), o, e)
}

fn key(dir: &Path, name: &str) -> (PathBuf, protocol::EntityId) {
    let path = dir.join(format!("{name}.key"));
    let id = node::keyfile::generate(&path)
        .expect("key")
        .entity()
        .clone();
    (path, id)
}

async fn get(url: &str) -> serde_json::Value {
    reqwest::get(url)
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// Wait until the pair's book shows an open order.
async fn rested(bank: &str, a: &str, b: &str) {
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    while get(&format!("{bank}/v1/exchange/book?a={a}&b={b}")).await["orders"]
        .as_array()
        .is_none_or(|o| o.is_empty())
    {
        assert!(Instant::now() < deadline, "the order never rested");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trades_settle_in_steps_and_a_defaulter_costs_at_most_one() {
    for (backend, database) in db::testing::backends("bank_exchange") {
        eprintln!("backend: {backend}");
        run(database.url().as_deref()).await;
    }
}

async fn run(database: Option<&str>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The shared client gives idle connections up before the servers' keep-alive closes them
    // (`node::client::POOL_IDLE_MS_MAX`).
    let http =
        node::client::http_client(&node::client::ClientOptions::default()).expect("http client");
    let x = Currency::start(&tmp.path().join("x"), &http).await;
    let y = Currency::start(&tmp.path().join("y"), &http).await;
    let (x_id, y_id) = (x.issuer.entity.to_string(), y.issuer.entity.to_string());
    let steps = STEPS.to_string();
    let timeout = STEP_TIMEOUT_MS.to_string();
    let (_bank, bank) = serve(
        &tmp.path().join("bank"),
        &x.issuer.url,
        database,
        &[
            "--issuer",
            &y.issuer.url,
            "--exchange",
            "--exchange-steps",
            &steps,
            "--exchange-step-timeout-ms",
            &timeout,
        ],
    );
    let traders: Vec<(PathBuf, protocol::EntityId)> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|n| key(tmp.path(), n))
        .collect();
    let [(alice, alice_id), (bob, bob_id), (carol, carol_id), (dave, dave_id)] =
        <[_; 4]>::try_from(traders).expect("four");
    // Alice and carol hold X; bob and dave hold Y.
    for (who, c) in [
        (&alice_id, &x),
        (&carol_id, &x),
        (&bob_id, &y),
        (&dave_id, &y),
    ] {
        c.mint.transfer(who, 10_000, None).await.expect("fund");
    }
    let balance = |c: &Currency, k: &Path| {
        let w = c.wallet(k, &http);
        async move { w.balance().await.expect("balance").balance }
    };

    // Bob rests an order (2000 Y for 1000 X); alice's crosses it at bob's price.
    let maker = trade(&bank, &bob, (2000, &y.issuer.url), (1000, &x_id));
    rested(&bank, &x_id, &y_id).await;
    let taker = trade(&bank, &alice, (1000, &x.issuer.url), (1500, &y_id));
    let (code, out, _) = finish(taker).await;
    assert_eq!(code, 0, "alice's trade");
    assert_eq!(finish(maker).await.0, 0, "bob's trade");
    let outcome: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let t = &outcome["trades"][0];
    assert_eq!(t["state"], "done");
    assert_eq!(t["steps"], STEPS);
    assert_eq!(
        (t["taker_amount"].as_u64(), t["maker_amount"].as_u64()),
        (Some(1000), Some(2000))
    );
    // Each paid its side in STEPS transfers, each with its fee, and got the other's.
    let fees = |c: &Currency, amount: u64| -> i64 {
        protocol_slices(amount).iter().map(|s| c.fee(*s)).sum()
    };
    assert_eq!(balance(&x, &alice).await, 10_000 - 1000 - fees(&x, 1000));
    assert_eq!(balance(&y, &alice).await, 2000);
    assert_eq!(balance(&y, &bob).await, 10_000 - 2000 - fees(&y, 2000));
    assert_eq!(balance(&x, &bob).await, 1000);
    assert_eq!(
        get(&format!("{bank}/v1/exchange/traders/{alice_id}")).await["completed"],
        1
    );
    // Each slice received is a `trade` record the exchange agreed to (DESIGN 11): alice
    // received bob's STEPS slices, bob alice's.
    for who in [&alice_id, &bob_id] {
        let page = get(&format!("{bank}/v1/records?public_key={who}")).await;
        let trades = page["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .filter(|b| b["type"] == "trade")
            .count();
        assert_eq!(trades as u64, STEPS, "{who}'s trade records: {page}");
    }
    assert!(
        get(&format!("{bank}/v1/exchange/book?a={x_id}&b={y_id}")).await["orders"]
            .as_array()
            .is_some_and(|o| o.is_empty()),
        "both orders filled"
    );

    // Dave rests 2000 Y for 1000 X; carol takes it; dave is killed mid-trade.
    let maker = trade(&bank, &dave, (2000, &y.issuer.url), (1000, &x_id));
    rested(&bank, &x_id, &y_id).await;
    let taker = trade(&bank, &carol, (1000, &x.issuer.url), (2000, &y_id));
    let mut maker = maker;
    let deadline = Instant::now() + Duration::from_millis(WAIT_MS_MAX);
    loop {
        let trades = get(&format!("{bank}/v1/exchange/trades?trader={carol_id}")).await;
        if trades["trades"][0]["halves_done"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the trade did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    maker.kill().expect("kill -9 dave");
    let _ = maker.wait();
    let (code, out, _) = finish(taker).await;
    assert_eq!(code, 1, "carol's trade did not settle");
    let outcome: serde_json::Value =
        serde_json::from_str(out.lines().next().expect("carol printed the outcome")).expect("json");
    let t = &outcome["trades"][0];
    let halves = t["halves_done"].as_u64().expect("halves");
    // Killed when it was dave's turn to pay, he defaulted; killed when it was his turn to
    // confirm carol's slice, the trade is disputed (the exchange cannot tell who lies).
    let disputed = match t["state"].as_str() {
        Some("defaulted") => {
            assert_eq!(t["defaulter"], dave_id.as_str());
            false
        }
        Some("disputed") => {
            assert_eq!(halves % 2, 0, "a dispute over carol's slice");
            true
        }
        other => panic!("the trade is {other:?}"),
    };
    eprintln!(
        "dave killed: the trade stopped after {halves} of {} halves",
        2 * STEPS
    );
    assert!(halves < 2 * STEPS, "stopped mid-trade at half {halves}");
    // Carol paid k slices of X and got back what dave paid: at most one slice short.
    let x_slices = protocol_slices(1000);
    // Her slices paid: one per even half done, and the one under dispute.
    let carol_slices = (halves.div_ceil(2) + u64::from(disputed)) as usize;
    let carol_paid_x: i64 = x_slices.iter().take(carol_slices).map(|s| *s as i64).sum();
    assert_eq!(
        balance(&x, &carol).await,
        10_000
            - carol_paid_x
            - x_slices
                .iter()
                .take(carol_slices)
                .map(|s| x.fee(*s))
                .sum::<i64>()
    );
    let carol_got_y = balance(&y, &carol).await;
    // Valued at the trade's price (2 Y per X): what carol is short, in X.
    let short_x = carol_paid_x - carol_got_y / 2;
    assert!(
        (0..=x_slices[0] as i64).contains(&short_x),
        "carol is short {short_x} X, more than one slice ({})",
        x_slices[0]
    );
    // Dave is marked: a default bars him from trading; a dispute counts for both.
    let standing = get(&format!("{bank}/v1/exchange/traders/{dave_id}")).await;
    if disputed {
        assert_eq!(standing["disputes"], 1, "{standing}");
        let carol_standing = get(&format!("{bank}/v1/exchange/traders/{carol_id}")).await;
        assert_eq!(carol_standing["disputes"], 1, "{carol_standing}");
    } else {
        assert_eq!(standing["defaults"], 1, "{standing}");
        let (code, _, err) = finish(trade(&bank, &dave, (10, &y.issuer.url), (1, &x_id))).await;
        assert_eq!(code, 1);
        assert!(err.contains("trader_defaulted"), "{err}");
    }

    // A claim nobody confirms (the payer lies, or the receiver does): the trade is
    // disputed, and neither side is barred. Erin takes frank's order and claims a slice she
    // never paid; frank's trader sees nothing and does not confirm.
    let (erin, _) = key(tmp.path(), "erin");
    let (frank, frank_id) = key(tmp.path(), "frank");
    y.mint
        .transfer(&frank_id, 10_000, None)
        .await
        .expect("fund frank");
    let maker = trade(&bank, &frank, (200, &y.issuer.url), (100, &x_id));
    rested(&bank, &x_id, &y_id).await;
    let liar = bank::exchange::trader::Trader::open(&bank, &erin)
        .await
        .expect("trader");
    let placed = liar
        .place(&bank::exchange::store::NewOrder {
            id: "erin-1".into(),
            sell_issuer: x_id.clone(),
            sell_amount: 100,
            buy_issuer: y_id.clone(),
            buy_amount: 200,
        })
        .await
        .expect("erin's order");
    let trade_id = placed.trades.first().expect("a trade").clone();
    liar.claim(&trade_id, 0).await.expect("erin's false claim");
    let (code, out, _) = finish(maker).await;
    assert_eq!(code, 1, "frank's trade did not settle");
    assert!(out.contains("disputed"), "{out}");
    let frank_standing = get(&format!("{bank}/v1/exchange/traders/{frank_id}")).await;
    assert_eq!(
        frank_standing["defaults"], 0,
        "frank is not barred: {frank_standing}"
    );
    assert_eq!(frank_standing["disputes"], 1, "{frank_standing}");
    assert_eq!(balance(&y, &frank).await, 10_000, "frank paid nothing");
}

/// The slices of `amount` in STEPS steps.
fn protocol_slices(amount: u64) -> Vec<u64> {
    bank::exchange::slices(amount, STEPS as u32)
}

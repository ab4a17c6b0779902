//! The agents' history after a devnet backup and a video view (issue 22): on every agent the
//! history's earnings per kind equal what its books say each contract earned, to the unit;
//! the same total is split by means of payment; bytes written and read equal what the agent
//! counted serving. Real binaries (issuer, market, agents, publisher, `backup`); the gateway
//! in-process; loopback only.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cdn::gateway::GatewayOptions;
use clients::issuer::IssuerClient;
use devnet::{Devnet, Options};
use node::client::ClientOptions;
use node::testing::{bin_dir, eventually};
use protocol::agent::{History, Summary};

const REQUEST_WAIT_MS_MAX: u64 = 60_000;
const PASSWORD: &str = "correct horse battery staple";

fn backup(home: &Path, args: &[&str]) -> serde_json::Value {
    let bin = bin_dir().join("backup");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        bin.display()
    );
    let out = Command::new(bin)
        .arg("--config-dir")
        .arg(home)
        .args(args)
        .env("BACKUP_PASSWORD", PASSWORD)
        .env_remove("BACKUP_CONFIG_DIR")
        .output()
        .expect("run backup");
    assert!(
        out.status.success(),
        "backup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("backup --json")
}

/// Every running agent's books (its contracts' figures, summed per currency) and its
/// history's totals, as (books, history) per currency.
type Figures = BTreeMap<String, [u64; 7]>;

async fn figures(http: &reqwest::Client, url: &str) -> (Figures, Figures, u64) {
    let summary: Summary = http
        .get(format!("{url}/v1/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("summary");
    let mut books = Figures::new();
    for c in &summary.contracts {
        // The usage books against the contracts' own columns: charges are what was spent,
        // and a contract paid for earned its price.
        if c.paid >= c.contract_price {
            let spent = c.paid as i64 - c.contract_price as i64 - c.credit;
            assert_eq!(
                c.earned.writes + c.earned.reads + c.earned.audits,
                u64::try_from(spent).expect("spent"),
                "{url}: contract {}",
                c.id
            );
            assert_eq!(c.earned.contract, c.contract_price, "{url}: {}", c.id);
        } else {
            assert_eq!(c.earned, Default::default(), "{url}: unpaid {}", c.id);
        }
        let b = books.entry(c.issuer.clone()).or_default();
        for (slot, v) in b.iter_mut().zip([
            c.earned.contract,
            c.earned.writes,
            c.earned.reads,
            c.earned.audits,
            c.bytes_written,
            c.bytes_read,
            c.audits_answered,
        ]) {
            *slot += v;
        }
    }
    let history: History = http
        .get(format!("{url}/v1/history?step=total"))
        .send()
        .await
        .expect("history")
        .json()
        .await
        .expect("history json");
    let mut kept = Figures::new();
    let mut by_words = 0;
    for p in history.periods.iter().filter(|p| !p.currency.is_empty()) {
        by_words += p.paid_by.payword;
        assert_eq!(
            p.earned.total,
            p.paid_by.deposit + p.paid_by.payword + p.paid_by.tab,
            "{url}: one total, two breakdowns: {p:?}"
        );
        kept.insert(
            p.currency.clone(),
            [
                p.earned.contract,
                p.earned.writes,
                p.earned.reads,
                p.earned.audits,
                p.bytes_written,
                p.bytes_read,
                p.audits_answered,
            ],
        );
    }
    // Currencies with nothing earned or served have no history row.
    books.retain(|_, v| v.iter().any(|n| *n > 0));
    (books, kept, by_words)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_backup_and_a_view_every_agents_history_is_its_books() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut opts = Options::new(&dir).expect("options");
    opts.heartbeat_s = 1;
    opts.cdn = true;
    let net = tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet");
    let file = net.file();
    let wallet = file.wallet.key.to_string_lossy().into_owned();

    // A backup, and its restore.
    let src = tmp.path().join("data");
    std::fs::create_dir_all(&src).expect("dir");
    let big: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big.bin"), &big).expect("write");
    for i in 0..5 {
        std::fs::write(src.join(format!("note-{i}.txt")), format!("note {i}\n")).expect("write");
    }
    let home = tmp.path().join("backup-home");
    backup(
        &home,
        &[
            "init",
            "--market",
            &file.market.url,
            "--wallet",
            &wallet,
            "--json",
        ],
    );
    backup(&home, &["create", &src.to_string_lossy(), "--json"]);
    let target = tmp.path().join("restored");
    backup(
        &home,
        &[
            "restore",
            "latest",
            "--target",
            &target.to_string_lossy(),
            "--json",
        ],
    );
    assert_eq!(
        std::fs::read(target.join("data").join("big.bin")).expect("restored"),
        big,
        "the restore is exact"
    );

    // A view through a gateway, paid per view.
    let cdn_info = net.cdn.as_ref().expect("the devnet started a publisher");
    let video: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = tmp.path().join("video.bin");
    std::fs::write(&path, &video).expect("write");
    let content = common::publish(
        &cdn_info.url,
        &cdn_info.data.join("identity.key"),
        &path,
        &[
            "--piece-kib",
            "32",
            "--replicas",
            "2",
            "--price-per-view",
            "10",
        ],
    )["content"]
        .as_str()
        .expect("content")
        .to_owned();
    let viewer = tmp.path().join("viewer.key");
    let key = node::keyfile::generate(&viewer).expect("key");
    IssuerClient::from_key_file(
        &file.issuer.url,
        &file.wallet.key,
        &ClientOptions::default(),
    )
    .expect("wallet")
    .transfer(key.entity(), 10_000, None)
    .await
    .expect("fund the viewer");
    let gw = cdn::gateway::start(GatewayOptions::new(&cdn_info.url, viewer)).expect("gateway");
    let resp = reqwest::Client::new()
        .get(format!("{}/v/{content}", gw.url))
        .timeout(Duration::from_millis(REQUEST_WAIT_MS_MAX))
        .send()
        .await
        .expect("watch");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.bytes().await.expect("body") == video,
        "the stream is the file"
    );

    // Every agent: its history is its books. Deposits and the market's audits go on
    // arriving, each moving both in one transaction, so the two are read until a quiet
    // moment shows them side by side.
    let http = reqwest::Client::new();
    let (mut earned_reads, mut read_bytes, mut earned, mut by_words) = (0u64, 0u64, 0u64, 0u64);
    for agent in net.agents.iter().filter(|a| a.running()) {
        let url = agent.url.clone();
        eventually(20_000, "the history to equal the books", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let (books, kept, _) = figures(&http, &url).await;
                if books != kept {
                    eprintln!("{url}: books {books:?} history {kept:?}");
                }
                books == kept
            }
        })
        .await;
        let (books, _, words) = figures(&http, &url).await;
        by_words += words;
        for v in books.values() {
            earned += v[0] + v[1] + v[2] + v[3];
            earned_reads += v[2];
            read_bytes += v[5];
        }
    }
    assert!(earned > 0, "the agents earned something");
    assert!(by_words > 0, "the backup paid its writes by payword");
    assert!(
        earned_reads > 0 && read_bytes > 0,
        "the restore and the view read from the agents"
    );
    drop(gw);
}

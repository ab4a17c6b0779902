//! The cdn end to end on a devnet (real binaries for the issuer, the market, the agents and,
//! with `--cdn`, the publisher; the gateway in-process; loopback only):
//! - a real MP4 (made here with ffmpeg) is published and read through the gateway
//!   byte-identical, whole and in ranges; ffprobe reads it through the gateway URL; headless
//!   Chromium plays it on the watch page (its `currentTime` advances);
//! - an unfunded viewer gets 402; a funded one pays the per-view price once per view; the
//!   agents are paid their read price; the publisher serves no piece bytes;
//! - pieces altered on an agent's disk are detected and fetched from another replica; an agent
//!   killed mid-stream does not stop the stream;
//! - replicas grow under demand and lapse when cold, on SQLite and on PostgreSQL.

/// The body policy's tests: a module here, not a test binary of its own (one link less).
#[path = "cdn/body.rs"]
mod body;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdn::gateway::{Gateway, GatewayOptions};
use clients::agent::AgentClient;
use clients::issuer::IssuerClient;
use common::{ffmpeg, publish, publish_clip};
use devnet::{Devnet, Options, Which};
use node::client::ClientOptions;
use node::testing::eventually;

/// Longest a request in these tests may take.
const REQUEST_WAIT_MS_MAX: u64 = 30_000;

async fn devnet_up(opts: Options) -> Devnet {
    tokio::task::spawn_blocking(move || Devnet::up(&opts))
        .await
        .expect("join")
        .expect("devnet")
}

/// A new wallet key under `dir`, funded with `amount` from the devnet's wallet (0: unfunded).
async fn viewer(net: &Devnet, dir: &Path, name: &str, amount: u64) -> PathBuf {
    let path = dir.join(format!("{name}.key"));
    let key = node::keyfile::generate(&path).expect("key");
    if amount > 0 {
        let wallet = IssuerClient::from_key_file(
            &net.issuer.url,
            &net.wallet.key,
            &ClientOptions::default(),
        )
        .expect("wallet");
        wallet
            .transfer(key.entity(), amount, None)
            .await
            .expect("fund viewer");
    }
    path
}

/// The value of the words the wallet beside `key` has not given out yet (its chains' escrow
/// still its own: returned at expiry if never spent).
fn words_left(key: &Path) -> i64 {
    clients::wallet::Wallet::beside_key(key)
        .chains()
        .expect("chains")
        .iter()
        .map(|c| c.summary(node::now_s()).value_left as i64)
        .sum()
}

async fn balance(net: &Devnet, key: &Path) -> i64 {
    IssuerClient::from_key_file(&net.issuer.url, key, &ClientOptions::default())
        .expect("wallet")
        .balance()
        .await
        .expect("balance")
        .balance
}

fn gateway(publisher: &str, wallet: &Path) -> cdn::gateway::RunningGateway {
    let mut o = GatewayOptions::new(publisher, wallet.to_path_buf());
    o.ahead_pieces = 3;
    cdn::gateway::start(o).expect("gateway")
}

async fn get(url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let http = reqwest::Client::new();
    let mut req = http
        .get(url)
        .timeout(Duration::from_millis(REQUEST_WAIT_MS_MAX));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

async fn stats(gw: &str, content: &str) -> serde_json::Value {
    let (status, body) = get(&format!("{gw}/v1/stats/{content}"), None).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("stats")
}

async fn status(publisher: &str) -> serde_json::Value {
    let (code, body) = get(&format!("{publisher}/v1/status"), None).await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).expect("status")
}

/// Every object file on agent `i` whose name starts with `prefix`.
fn objects_on(net: &Devnet, i: usize, prefix: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(&net.agents[i].data.join("objects"), &mut all);
    all.into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect()
}

/// What each agent has charged the publisher's contract so far (paid - price - credit, from
/// the agent's own view of the contract), with the contract's read price.
async fn spent(
    net: &Devnet,
    publisher_key: &Path,
) -> std::collections::BTreeMap<String, (i64, u64)> {
    let st = status(&net.cdn.as_ref().expect("cdn").url).await;
    let key = Arc::new(node::keyfile::load(publisher_key).expect("key"));
    let http = reqwest::Client::new();
    let mut out = std::collections::BTreeMap::new();
    for c in st["contracts"].as_array().expect("contracts") {
        let endpoint = c["endpoint"].as_str().expect("endpoint");
        let agent = AgentClient::new(http.clone(), endpoint, key.clone());
        if let Ok(v) = agent.contract(c["id"].as_str().expect("id")).await {
            out.insert(
                c["agent"].as_str().expect("agent").to_owned(),
                (
                    v.paid as i64 - v.contract_price as i64 - v.credit,
                    c["read_per_kib"].as_u64().expect("price"),
                ),
            );
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_stream_pay_verify_and_fail_over() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    if ffmpeg().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.heartbeat_s = 1;
    opts.cdn = true;
    let mut net = devnet_up(opts).await;
    let cdn_info = net.cdn.as_ref().expect("the devnet started a publisher");
    let publisher = cdn_info.url.clone();
    let publisher_key = cdn_info.data.join("identity.key");

    // A real MP4, in 32 KiB pieces on 2 agents each.
    let video = tmp.path().join("clip.mp4");
    let (published, original) = publish_clip(&publisher, &publisher_key, &video, 6);
    assert!(
        original.len() > 1 << 20,
        "the clip is {} bytes",
        original.len()
    );
    let content = published["content"].as_str().expect("content").to_owned();
    assert_eq!(published["size"], original.len() as u64);

    // Publishing again uploads nothing (it resumes from what the publisher holds).
    let again = publish(&publisher, &publisher_key, &video, &["--piece-kib", "32"]);
    assert_eq!(again["content"], content);
    assert_eq!(again["uploaded"], 0);

    // Only the publisher may publish.
    let stranger = viewer(&net, tmp.path(), "stranger", 0).await;
    let out = Command::new(env!("CARGO_BIN_EXE_cdn"))
        .args(["publish"])
        .arg(&video)
        .args(["--publisher", &publisher, "--key"])
        .arg(&stranger)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forbidden") && err.lines().count() == 1,
        "{err}"
    );

    // An unfunded viewer: 402, with a clear page for a browser.
    let broke = gateway(&publisher, &stranger);
    let (code, body) = get(&format!("{}/v/{content}", broke.url), None).await;
    assert_eq!(code, 402, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json error");
    assert_eq!(v["error"]["code"], "cannot_pay");
    // The price is said in the currency's units (250 minor units, 2 decimals).
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("price of 2.50 LCU")),
        "{v}"
    );
    let page = reqwest::Client::new()
        .get(format!("{}/watch/{content}", broke.url))
        .header("accept", "text/html")
        .send()
        .await
        .expect("watch");
    assert_eq!(page.status().as_u16(), 402);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("Payment required") && html.contains("Fund the wallet"),
        "{html}"
    );
    drop(broke);

    // A funded viewer.
    let wallet = viewer(&net, tmp.path(), "viewer", 10_000).await;
    let before = balance(&net, &wallet).await;
    let spent_before = spent(&net, &publisher_key).await;
    let gw = gateway(&publisher, &wallet);
    let url = format!("{}/v/{content}", gw.url);
    let started = Instant::now();
    let (code, whole) = get(&url, None).await;
    let cold_ms = started.elapsed().as_millis();
    assert_eq!(code, 200);
    assert!(whole == original, "the whole stream differs from the file");
    eprintln!("cold whole read of {} bytes: {cold_ms} ms", whole.len());
    let n = original.len() as u64;
    for (range, a, b) in [
        ("bytes=0-99", 0, 99),
        ("bytes=32760-32780", 32760, 32780),
        ("bytes=40000-", 40000, n - 1),
        ("bytes=-1000", n - 1000, n - 1),
    ] {
        let (code, part) = get(&url, Some(range)).await;
        assert_eq!(code, 206, "{range}");
        assert_eq!(part, original[a as usize..=b as usize], "{range}");
    }
    let (code, _) = get(&url, Some(&format!("bytes={n}-"))).await;
    assert_eq!(code, 416);
    // One Range parser (protocol::range) at the gateway as at the agents: several ranges or
    // a malformed range is `400 invalid_range`; another unit is ignored (RFC 9110 14.2).
    let (code, part) = get(&url, Some("items=1-2")).await;
    assert_eq!(
        (code, part == original),
        (200, true),
        "another unit: the whole body"
    );
    for range in ["bytes=0-1,5-6", "bytes=x-2", "bytes=4-2"] {
        let (code, body) = get(&url, Some(range)).await;
        assert_eq!(code, 400, "{range}");
        assert!(
            String::from_utf8_lossy(&body).contains("invalid_range"),
            "{range}"
        );
    }
    let (code, body) = get(&format!("{}/v/{}", gw.url, "0".repeat(32)), None).await;
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("unknown_content"));

    // ffprobe reads it through the gateway URL.
    let probe = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new("ffprobe")
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "format=duration:stream=codec_name",
                    "-of",
                    "json",
                ])
                .arg(&url)
                .output()
                .expect("run ffprobe")
        }
    })
    .await
    .expect("join");
    assert!(
        probe.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probed: serde_json::Value = serde_json::from_slice(&probe.stdout).expect("ffprobe json");
    assert_eq!(probed["streams"][0]["codec_name"], "h264");
    let duration: f64 = probed["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("duration");
    assert!((duration - 6.0).abs() < 0.5, "duration {duration}");

    // Headless Chromium plays it on the watch page: the position it reports advances.
    if let Some(browser) = node::testing::chromium() {
        let profile = tmp.path().join("chromium");
        let mut child = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--autoplay-policy=no-user-gesture-required",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("{}/watch/{content}", gw.url))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let gw_url = gw.url.clone();
        let content2 = content.clone();
        let played = async {
            eventually(
                60_000,
                "the video's currentTime to advance in Chromium",
                || {
                    let (gw_url, content2) = (gw_url.clone(), content2.clone());
                    async move {
                        stats(&gw_url, &content2).await["current_time_s"].as_f64() >= Some(1.0)
                    }
                },
            )
            .await;
        };
        played.await;
        let _ = child.kill();
        let _ = child.wait();

        // The publisher's status page and the gateway's catalog, as a browser renders them.
        let pages = tokio::task::spawn_blocking({
            let (publisher, gw_url, profile) = (
                publisher.clone(),
                gw.url.clone(),
                tmp.path().join("chromium-pages"),
            );
            move || {
                (
                    node::testing::run_chromium(browser, &profile, &["--dump-dom", &publisher]),
                    node::testing::run_chromium(browser, &profile, &["--dump-dom", &gw_url]),
                )
            }
        })
        .await
        .expect("join");
        assert!(
            pages.0.contains("Catalog")
                && pages.0.contains(&content)
                && pages.0.contains("Scaling events")
                && pages.0.contains("sold a view"),
            "publisher page: {}",
            pages.0
        );
        // Amounts on the page are in the currency's units (the devnet's LCU, 2 decimals).
        assert!(
            pages.0.contains(" LCU") && !pages.0.contains("(minor units)"),
            "publisher page amounts: {}",
            pages.0
        );
        assert!(
            pages.1.contains("clip.mp4")
                && pages.1.contains(&format!("/watch/{content}"))
                && pages.1.contains("2.50 LCU"),
            "gateway page (the price in the currency): {}",
            pages.1
        );
    }

    // Fetches a closed stream started ahead of the reader may still be running: wait until
    // the gateway is idle before comparing its figures with the agents'.
    let mut fetched = u64::MAX;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stats(&gw.url, &content).await["bytes_fetched"]
            .as_u64()
            .unwrap_or(0);
        if now == fetched {
            break;
        }
        fetched = now;
    }

    // One view was bought, once, for the per-view price: by payword, so the wallet's balance
    // fell by the chain's escrow and the words not given out are still the viewer's.
    let after = balance(&net, &wallet).await;
    assert_eq!(
        before - after - words_left(&wallet),
        250,
        "the viewer pays the per-view price once"
    );
    let spent_words: u64 = clients::wallet::Wallet::beside_key(&wallet)
        .chains()
        .expect("chains")
        .iter()
        .map(|c| c.summary(node::now_s()).words_spent)
        .sum();
    assert_eq!(
        spent_words, 250,
        "the view was paid in paywords (one minor unit each)"
    );
    // The view is recorded by both sides (DESIGN 11): the wallet's chain holds a `view`
    // proposal to the publisher and the publisher's agreement, and the publisher holds the
    // viewer's half.
    let viewer_key = Arc::new(node::keyfile::load(&wallet).expect("viewer key"));
    let mut recorded = None;
    eventually(10_000, "the view's record to be agreed", || {
        let found = clients::records::RecordChain::open(&wallet, viewer_key.clone())
            .ok()
            .and_then(|chain| {
                let p = chain
                    .own()
                    .iter()
                    .find(|b| b.kind == "view" && b.transaction.contains(&content))?
                    .clone();
                let a = chain.agreement(p.sequence_number)?.clone();
                Some((p, a))
            });
        let ok = found.is_some();
        recorded = found;
        async move { ok }
    })
    .await;
    let (proposal, agreement) = recorded.expect("recorded");
    protocol::record::check_agreement(&proposal, &agreement).expect("the publisher agreed");
    assert_eq!(proposal.transaction_json()["price"], 250);
    let held: protocol::record::RecordsPage = reqwest::get(format!(
        "{publisher}/v1/records?public_key={}&from=1",
        viewer_key.entity()
    ))
    .await
    .expect("records")
    .json()
    .await
    .expect("page");
    assert!(
        held.blocks.contains(&proposal),
        "the publisher holds the viewer's half"
    );
    // `cdn records` run while another process appends to the chain (the gateway's background
    // records; here this test holds it) waits its turn rather than failing as busy.
    let held = clients::records::RecordChain::open(&wallet, viewer_key.clone()).expect("chain");
    let records = Command::new(env!("CARGO_BIN_EXE_cdn"))
        .args([
            "records",
            "--json",
            "--publisher",
            publisher.as_str(),
            "--wallet",
        ])
        .arg(&wallet)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cdn records");
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
    let out = records.wait_with_output().expect("cdn records");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(shown["waiting"], 0, "{shown}");
    assert!(
        shown["blocks"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["type"] == "view" && b["agreed"] == true)),
        "{shown}"
    );
    let st = stats(&gw.url, &content).await;
    assert_eq!(st["spend"], 250);
    assert_eq!(st["spend_shown"], "2.50 LCU");
    let pst = status(&publisher).await;
    let entry = pst["contents"]
        .as_array()
        .expect("contents")
        .iter()
        .find(|c| c["content"] == content.as_str())
        .expect("listed");
    assert_eq!(entry["views"], 1);
    assert_eq!(entry["income"], 250);

    // The agents were paid their read price for what they served, and the publisher served
    // no piece bytes: everything came from the agents.
    let spent_after = spent(&net, &publisher_key).await;
    let mut charged_expected = 0i64;
    for (agent, bytes) in st["bytes_per_agent"].as_object().expect("per agent") {
        let price = spent_before
            .get(agent)
            .expect("a contract with the agent")
            .1;
        // Pieces are whole KiB except the file's last one.
        charged_expected += (bytes.as_u64().expect("bytes").div_ceil(1024) * price) as i64;
    }
    let mut charged = 0i64;
    // Pieces are whole KiB but the last: each fetch of it rounds up on its own.
    let rounding: i64 = spent_before.values().map(|(_, p)| *p as i64).sum();
    for (agent, (s0, _)) in &spent_before {
        charged += spent_after.get(agent).map(|s| s.0).unwrap_or(*s0) - s0;
    }
    assert!(
        charged >= charged_expected && charged <= charged_expected + rounding,
        "the agents charged {charged} for the bytes they served, at their read prices {charged_expected}"
    );
    assert!(st["bytes_fetched"].as_u64().expect("fetched") >= n);
    assert!(
        st["publisher_bytes"].as_u64().expect("publisher bytes") < n / 4,
        "the publisher sent {} bytes for a {n}-byte video",
        st["publisher_bytes"]
    );
    // The bytes each agent served are recorded with it (DESIGN 11, `tokens`): the agreed
    // totals in the wallet's chain are the bytes the gateway fetched from each agent.
    let per_agent = st["bytes_per_agent"]
        .as_object()
        .expect("per agent")
        .clone();
    let agreed_totals = |chain: &clients::records::RecordChain| {
        let mut agreed = std::collections::BTreeMap::new();
        for b in chain.own().iter().filter(|b| b.kind == "tokens") {
            if chain.agreement(b.sequence_number).is_some() {
                agreed.insert(
                    b.link_public_key.clone(),
                    b.transaction_json()["bytes_total"].as_u64().unwrap_or(0),
                );
            }
        }
        agreed
    };
    eventually(20_000, "the tokens records to be agreed", || {
        let gateway = gw.gateway.clone();
        let (path, key, n) = (wallet.clone(), viewer_key.clone(), per_agent.len());
        async move {
            gateway.record_tokens_now().await;
            gateway.tokens_unrecorded() == 0
                && clients::records::RecordChain::open(&path, key)
                    .is_ok_and(|chain| agreed_totals(&chain).len() == n)
        }
    })
    .await;
    let totals = agreed_totals(
        &clients::records::RecordChain::open(&wallet, viewer_key.clone()).expect("chain"),
    );
    for (agent, bytes) in &per_agent {
        assert_eq!(
            totals.get(agent).copied(),
            bytes.as_u64(),
            "agent {agent}'s recorded total"
        );
        // The agent's own chain links from sequence 1 and holds its agreements; its copy of
        // the wallet's chain holds the wallet's `tokens` proposals to it, as the wallet has them.
        let info = net
            .file()
            .agents
            .into_iter()
            .find(|a| &a.entity == agent)
            .expect("a devnet agent");
        let page = |of: &str| {
            let url = format!("{}/v1/records?public_key={of}&from=1", info.url);
            async move {
                reqwest::get(url)
                    .await
                    .expect("records")
                    .json::<protocol::record::RecordsPage>()
                    .await
                    .expect("page")
            }
        };
        let own = page(agent).await;
        protocol::record::check_chain(&own.blocks).expect("the agent's chain links");
        assert_eq!(own.blocks.first().map(|b| b.sequence_number), Some(1));
        let chain =
            clients::records::RecordChain::open(&wallet, viewer_key.clone()).expect("chain");
        let copy = page(viewer_key.entity().as_str()).await;
        for p in chain
            .own()
            .iter()
            .filter(|b| b.kind == "tokens" && &b.link_public_key == agent)
        {
            assert!(copy.blocks.contains(p), "the agent holds the wallet's half");
            let a = chain.agreement(p.sequence_number).expect("agreed");
            assert!(own.blocks.contains(a), "the agent's chain holds its half");
        }
    }
    drop(gw);

    // Pieces altered on one agent's disk: detected, fetched from another replica, exact.
    let victim = (0..net.agents.len())
        .max_by_key(|&i| objects_on(&net, i, &format!("c-{content}-")).len())
        .expect("an agent");
    let altered = objects_on(&net, victim, &format!("c-{content}-"));
    assert!(
        altered.len() >= 2,
        "agent {victim} holds {} pieces",
        altered.len()
    );
    for p in &altered {
        let mut bytes = std::fs::read(p).expect("read piece");
        bytes[0] ^= 0xff;
        std::fs::write(p, bytes).expect("alter piece");
    }
    // Restart: the agent's in-memory read cache must not hide the altered bytes.
    net.restart(Which::Agent(victim))
        .expect("restart the agent");
    let wallet2 = viewer(&net, tmp.path(), "viewer2", 10_000).await;
    let gw2 = gateway(&publisher, &wallet2);
    let (code, whole) = get(&format!("{}/v/{content}", gw2.url), None).await;
    assert_eq!(code, 200);
    assert!(
        whole == original,
        "a stream with altered pieces differs from the file"
    );
    let st2 = stats(&gw2.url, &content).await;
    assert!(
        st2["corrupt"].as_u64().expect("corrupt") >= 1,
        "no altered piece was detected: {st2}\nvictim {victim}; publisher log:\n{}",
        std::fs::read_to_string(net.dir.join("logs/cdn.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.contains("bought a view") && !l.contains("sold a view"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(st2["failovers"].as_u64() >= st2["corrupt"].as_u64());
    drop(gw2);
    // The gateway reported each bad piece; the publisher checked, deleted the bad replica and
    // placed the piece again from a good one.
    let corrupt = st2["corrupt"].as_u64().expect("corrupt") as usize;
    let publisher2 = publisher.clone();
    eventually(
        30_000,
        "the publisher to repair every reported piece",
        || {
            let publisher = publisher2.clone();
            async move {
                let st = status(&publisher).await;
                st["events"].to_string().matches("repaired piece").count() >= corrupt
                    && st["contents"][0]["replicas_min"] == 2
            }
        },
    )
    .await;
    // Pieces never fetched from the victim were not reported: put those right by hand, so the
    // next part loses only the killed agent.
    let good: std::collections::HashSet<String> = original
        .chunks(32 << 10)
        .map(protocol::sha256_hex)
        .collect();
    for p in &altered {
        let Ok(mut bytes) = std::fs::read(p) else {
            continue; // deleted by the repair
        };
        if !good.contains(&protocol::sha256_hex(&bytes)) {
            bytes[0] ^= 0xff;
            std::fs::write(p, bytes).expect("restore piece");
        }
    }
    net.restart(Which::Agent(victim))
        .expect("restart the agent");

    // An agent killed mid-stream, as a player reads it range by range: the stream completes,
    // identical. The agent killed is the one the gateway will try first for a piece it has
    // instructions for but has not fetched yet, so a failover must happen.
    let wallet3 = viewer(&net, tmp.path(), "viewer3", 10_000).await;
    let mut o = GatewayOptions::new(&publisher, wallet3.clone());
    o.ahead_pieces = 1;
    let gw3 = cdn::gateway::start(o).expect("gateway");
    let url3 = format!("{}/v/{content}", gw3.url);
    const STEP: u64 = 64 << 10;
    let mut got = Vec::new();
    let (code, first) = get(&url3, Some(&format!("bytes=0-{}", STEP - 1))).await;
    assert_eq!(code, 206);
    got.extend_from_slice(&first);
    let mut killed = None;
    for _ in 0..100 {
        let st3 = stats(&gw3.url, &content).await;
        if let Some((_, agent)) = st3["upcoming"].as_object().and_then(|u| u.iter().next()) {
            let agent = agent.as_str().expect("agent").to_owned();
            killed = net.agents.iter().position(|a| a.entity == agent);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = killed.expect("the gateway has instructions for pieces not fetched yet");
    let fetched_at_kill = stats(&gw3.url, &content).await["pieces_fetched"]
        .as_u64()
        .expect("fetched");
    net.kill(Which::Agent(killed)).expect("kill");
    let mut at = STEP;
    while at < n {
        let end = (at + STEP - 1).min(n - 1);
        let (code, part) = get(&url3, Some(&format!("bytes={at}-{end}"))).await;
        assert_eq!(code, 206, "range {at}-{end} after the kill");
        got.extend_from_slice(&part);
        at = end + 1;
    }
    assert!(
        got == original,
        "the stream with a killed agent differs from the file"
    );
    let st3 = stats(&gw3.url, &content).await;
    assert!(
        st3["pieces_fetched"].as_u64().expect("fetched") > fetched_at_kill,
        "pieces came after the kill"
    );
    assert!(
        st3["failovers"].as_u64().expect("failovers") >= 1,
        "no failover after the kill: {st3}"
    );
}

/// Demand on a publisher run in-process on `database` (SQLite when `None`).
async fn scaling_on(net: &Devnet, dir: &Path, database: Option<String>) {
    let data = dir.join("publisher");
    let key_path = data.join("identity.key");
    std::fs::create_dir_all(&data).expect("dir");
    let key = node::keyfile::load_or_create(&key_path).expect("key");
    let wallet =
        IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
            .expect("wallet");
    wallet
        .transfer(key.entity(), 50_000_000, None)
        .await
        .expect("fund the publisher");
    let options = cdn::serve::ServeOptions {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".into(),
        market: net.market.url.clone(),
        database,
        issuer_url: None,
        publisher: cdn::publisher::PublisherOptions {
            agents: 4,
            block_bytes: 16 << 20,
            contract_days: 1,
            hot_reads_per_replica: 2,
            cold_after_s: 2,
            scale_interval_s: 1,
            ..cdn::publisher::PublisherOptions::default()
        },
        tls: None,
        bank: None,
    };
    let running = tokio::task::spawn_blocking(move || cdn::serve::start(options))
        .await
        .expect("join")
        .expect("publisher");
    let url = running.url.clone();
    let file = dir.join("clip.bin");
    let bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).expect("write");
    let published = publish(
        &url,
        &key_path,
        &file,
        &[
            "--piece-kib",
            "64",
            "--replicas",
            "1",
            "--price-per-view",
            "5",
        ],
    );
    let content = published["content"].as_str().expect("content").to_owned();
    let replicas = |s: &serde_json::Value| {
        let c = &s["contents"][0];
        (
            c["replicas_min"].as_u64().unwrap_or(0),
            c["replicas_max"].as_u64().unwrap_or(0),
        )
    };
    assert_eq!(replicas(&status(&url).await), (1, 1));
    let used = |s: &serde_json::Value| -> u64 {
        s["contracts"]
            .as_array()
            .expect("contracts")
            .iter()
            .filter_map(|c| c["used_bytes"].as_u64())
            .sum()
    };
    let used_before = used(&status(&url).await);

    // Demand: views bought one after another, each reading every piece.
    let viewer_key = viewer(net, dir, "demand", 1_000_000).await;
    let deadline = Instant::now() + Duration::from_millis(60_000);
    loop {
        let g =
            Arc::new(Gateway::new(GatewayOptions::new(&url, viewer_key.clone())).expect("gateway"));
        let s = g.session(&content).await.expect("view");
        for i in 0..s.manifest.pieces.len() as u64 {
            let piece = g.piece(&s, i).await.expect("piece");
            assert_eq!(piece.len() as u64, s.manifest.piece_len(i));
        }
        if replicas(&status(&url).await).0 >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replicas did not grow under demand"
        );
    }
    let hot = status(&url).await;
    assert!(used(&hot) > used_before, "more replicas take more space");
    assert!(
        hot["events"].to_string().contains("hot"),
        "the status shows the scaling: {}",
        hot["events"]
    );

    // No demand: the extra replicas lapse, and the agents' space is freed.
    eventually(30_000, "extra replicas to lapse when cold", || {
        let url = url.clone();
        async move { replicas(&status(&url).await) == (1, 1) }
    })
    .await;
    let cold = status(&url).await;
    assert_eq!(used(&cold), used_before, "lapsed replicas free their space");
    assert!(cold["events"].to_string().contains("cold"));
    // The content still streams from its remaining replica.
    let g = Arc::new(Gateway::new(GatewayOptions::new(&url, viewer_key)).expect("gateway"));
    let s = g.session(&content).await.expect("view");
    let mut all = Vec::new();
    for i in 0..s.manifest.pieces.len() as u64 {
        all.extend_from_slice(&g.piece(&s, i).await.expect("piece"));
    }
    assert!(all == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_grow_under_demand_and_lapse_when_cold() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = 4;
    opts.heartbeat_s = 1;
    let net = devnet_up(opts).await;
    for (label, db) in db::testing::backends("cdn_scaling") {
        eprintln!("backend {label}");
        let dir = tmp.path().join(label);
        scaling_on(&net, &dir, db.url()).await;
    }
}

/// Issue 15: sold per piece (`cdn serve --price-per-piece`), a viewer who reads only the
/// start of a content pays for those pieces only, in paywords the publisher checks alone and
/// later redeems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_sold_by_payword_charge_only_what_is_watched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = 3;
    opts.heartbeat_s = 1;
    let net = devnet_up(opts).await;
    let data = tmp.path().join("publisher");
    let key_path = data.join("identity.key");
    std::fs::create_dir_all(&data).expect("dir");
    let key = node::keyfile::load_or_create(&key_path).expect("key");
    let mint =
        IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
            .expect("wallet");
    mint.transfer(key.entity(), 50_000_000, None)
        .await
        .expect("fund the publisher");
    let price = 3;
    let options = cdn::serve::ServeOptions {
        data_dir: data.clone(),
        listen: "127.0.0.1:0".into(),
        market: net.market.url.clone(),
        database: None,
        issuer_url: None,
        publisher: cdn::publisher::PublisherOptions {
            agents: 2,
            block_bytes: 16 << 20,
            contract_days: 1,
            price_per_piece: price,
            payword_redeem_threshold: 1,
            payword_redeem_interval_ms: 200,
            ..cdn::publisher::PublisherOptions::default()
        },
        tls: None,
        bank: None,
    };
    let running = tokio::task::spawn_blocking(move || cdn::serve::start(options))
        .await
        .expect("join")
        .expect("publisher");
    let publisher = running.url.clone();
    // 64 pieces of 16 KiB.
    let file = tmp.path().join("long.bin");
    let bytes: Vec<u8> = (0..64 * 16 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&file, &bytes).expect("write");
    let published = publish(
        &publisher,
        &key_path,
        &file,
        &["--piece-kib", "16", "--replicas", "1"],
    );
    let content = published["content"].as_str().expect("content").to_owned();
    let wallet = viewer(&net, tmp.path(), "viewer", 100_000).await;
    let gw = gateway(&publisher, &wallet);
    let url = format!("{}/v/{content}", gw.url);
    let (code, part) = get(&url, Some("bytes=0-20000")).await;
    assert_eq!(code, 206);
    assert!(part == bytes[..=20000], "the first pieces are exact");
    // Let the gateway's read-ahead settle before counting what it paid.
    let mut fetched = 0;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats(&gw.url, &content).await["pieces_fetched"]
            .as_u64()
            .unwrap_or(0);
        if now == fetched {
            break;
        }
        fetched = now;
    }
    let chains = clients::wallet::Wallet::beside_key(&wallet)
        .chains()
        .expect("chains");
    let spent: u64 = chains
        .iter()
        .map(|c| c.summary(node::now_s()).words_spent)
        .sum();
    let pieces_paid = spent / price;
    assert_eq!(spent % price, 0, "whole pieces are paid");
    assert!(
        (2..=16).contains(&pieces_paid),
        "read 2 pieces (and a few ahead), paid {pieces_paid} of 64"
    );
    let st = stats(&gw.url, &content).await;
    assert_eq!(st["spend"].as_u64(), Some(spent), "{st}");
    // The publisher redeems what it was paid.
    let chain = chains[0].chain.clone();
    eventually(10_000, "the publisher to redeem the viewer's words", || {
        let (mint, chain) = (&mint, chain.clone());
        async move {
            mint.chain(&chain)
                .await
                .map(|c| c.redeemed.iter().map(|r| r.to + 1 - r.from).sum::<u64>() == spent)
                .unwrap_or(false)
        }
    })
    .await;
    // The publisher's status says so too.
    let st = status(&publisher).await;
    assert_eq!(st["paywords"][0]["accepted"].as_u64(), Some(spent), "{st}");
    assert_eq!(st["paywords"][0]["redeemed"].as_u64(), Some(spent), "{st}");
    assert_eq!(st["paywords"][0]["pending"].as_u64(), Some(0), "{st}");
}

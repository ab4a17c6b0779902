//! The devnet end to end, with the real binaries as child processes (built by
//! `cargo test --workspace`; `cargo test -p devnet` alone uses whatever `target/debug` holds):
//! up, devnet.json, offers in the book, the buyer's walk-through (match, contracts bought, paid,
//! used and registered), audits by the market, a killed agent restarted with its data, the
//! whole network brought back on the same directory, and the binary stopping on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clients::agent::AgentClient;
use devnet::{Devnet, DevnetFile, Options, Which};
use protocol::book::MatchRequest;

fn options(dir: &std::path::Path, agents: usize) -> Options {
    let mut o = Options::new(dir).expect("options");
    o.agents = agents;
    o.heartbeat_s = 1;
    o.audit_interval_s = 1;
    o.probe_interval_s = 1;
    o
}

fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn request(k: u64, n: u64) -> MatchRequest {
    MatchRequest {
        currency: String::new(),
        shard_bytes: 64 * 1024,
        data_shards: k,
        total_shards: Some(n),
        duration_s: 3600,
        expected_read_bytes: 0,
        max_failure_probability: 1e-3,
        exclude: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_buy_audit_kill_restart_and_come_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let opts = options(&dir, 3);
    let mut net = tokio::task::spawn_blocking({
        let opts = opts.clone();
        move || Devnet::up(&opts).expect("devnet up")
    })
    .await
    .expect("task");

    // devnet.json names every service with a live pid.
    let file = DevnetFile::load(&dir).expect("devnet.json");
    assert_eq!(file.agents.len(), 3);
    for s in std::iter::once(&file.issuer)
        .chain(std::iter::once(&file.market))
        .chain(&file.agents)
    {
        assert!(alive(s.pid), "{} runs", s.url);
    }
    let http = node::client::http_client(&Default::default()).expect("http");
    let key = std::sync::Arc::new(node::keyfile::load(&file.wallet.key).expect("wallet key"));
    let market = clients::market::MarketClient::new(http.clone(), &file.market.url, key.clone());
    let offers = market
        .offers(Some(&file.issuer.entity))
        .await
        .expect("offers");
    assert_eq!(
        offers.len(),
        3,
        "every agent's offer is in the book when up returns"
    );
    let prices: std::collections::BTreeSet<u64> =
        offers.iter().map(|o| o.reference_price).collect();
    assert_eq!(prices.len(), 3, "agents have varied prices");

    // The walk-through: 2-of-3, bought, paid, stored and registered.
    let out = devnet::buy(&dir, request(2, 3)).await.expect("buy");
    let contracts = out["contracts"].as_array().expect("contracts");
    assert_eq!(contracts.len(), 3);
    let funds = devnet::WALLET_FUNDS;
    let balance = out["balance"].as_i64().expect("balance");
    assert!(balance < funds as i64, "the wallet paid");
    // Each contract is recorded by the wallet and its agent (DESIGN 11), and the market's
    // crawl (as often as its audits here) brings the wallet's chain to the market.
    assert!(
        contracts.iter().all(|c| c["recorded"] == true),
        "every contract recorded: {contracts:?}"
    );
    node::testing::eventually(
        40_000,
        "the market to crawl the wallet's records",
        || async {
            market
                .records(&file.wallet.entity)
                .await
                .is_ok_and(|blocks| blocks.len() >= 3)
        },
    )
    .await;

    // The market audits the registered contracts and they pass.
    node::testing::eventually(20_000, "an audit passed on every agent", || async {
        market
            .offers(Some(&file.issuer.entity))
            .await
            .map(|o| {
                o.iter()
                    .all(|l| l.audits_passed >= 1 && l.audits_failed == 0)
            })
            .unwrap_or(false)
    })
    .await;

    // Kill agent 0 (SIGKILL): the market sees it offline; restarted, it has its data.
    let a0 = &contracts
        .iter()
        .find(|c| c["endpoint"] == file.agents[0].url)
        .expect("agent 0 chosen");
    let (id, object) = (
        a0["contract"].as_str().expect("id").to_owned(),
        a0["object"].as_str().expect("o").to_owned(),
    );
    let pid0 = file.agents[0].pid;
    net.kill(Which::Agent(0)).expect("kill");
    assert!(!alive(pid0));
    node::testing::eventually(10_000, "agent 0 offline in the book", || async {
        market
            .offers(Some(&file.issuer.entity))
            .await
            .map(|o| {
                o.iter()
                    .any(|l| l.agent == file.agents[0].entity && !l.online)
            })
            .unwrap_or(false)
    })
    .await;
    net.restart(Which::Agent(0)).expect("restart");
    assert_eq!(
        net.agents[0].url, file.agents[0].url,
        "same address after restart"
    );
    let client = AgentClient::new(http.clone(), &net.agents[0].url, key.clone());
    let bytes = client
        .get(&id, &object, None)
        .await
        .expect("data survives kill -9");
    assert_eq!(bytes.len(), 64 * 1024);

    // Down, then up on the same directory: the same network comes back, not re-funded.
    let pids: Vec<u32> = DevnetFile::load(&dir)
        .expect("file")
        .agents
        .iter()
        .map(|a| a.pid)
        .collect();
    tokio::task::spawn_blocking(move || drop(net))
        .await
        .expect("down");
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "children stop with the devnet"
    );
    let net = tokio::task::spawn_blocking(move || Devnet::up(&opts).expect("devnet up again"))
        .await
        .expect("task");
    let again = net.file();
    assert_eq!(again.issuer.entity, file.issuer.entity);
    assert_eq!(again.market.url, file.market.url);
    for (a, b) in again.agents.iter().zip(&file.agents) {
        assert_eq!((&a.entity, &a.url), (&b.entity, &b.url));
    }
    let wallet = clients::issuer::IssuerClient::from_key_file(
        &again.issuer.url,
        &again.wallet.key,
        &Default::default(),
    )
    .expect("wallet");
    assert_eq!(
        wallet.balance().await.expect("balance").balance,
        balance,
        "funded once"
    );
    // The one paid read was used above; the contract's view (a free query) lists the object.
    let view = AgentClient::new(http, &net.agents[0].url, key)
        .contract(&id)
        .await
        .expect("contract after coming back");
    assert_eq!(view.status, "active");
    assert!(view
        .objects
        .iter()
        .any(|o| o.name == object && o.size == 64 * 1024));
    tokio::task::spawn_blocking(move || drop(net))
        .await
        .expect("down");
}

#[test]
fn the_binary_prints_ready_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--agents", "2", "--heartbeat-s", "1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devnet up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().expect("stderr");
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a line within 60 s");
    assert_eq!(
        line,
        format!("devnet ready: {}", dir.join("devnet.json").display())
    );
    let file = DevnetFile::load(&dir).expect("devnet.json");

    // A second `up` on the same directory says what is going on.
    let second = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--agents", "2", "--dir"])
        .arg(&dir)
        .output()
        .expect("second devnet up");
    let message = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{message}");
    assert!(
        message.contains("this directory's devnet is already running")
            && message.contains(&format!("pid {}", child.id())),
        "{message}"
    );
    assert!(alive(file.agents[0].pid), "the first devnet is untouched");

    // An agent killed behind the devnet's back is reaped (no zombie) and named.
    let victim = file.agents[1].pid;
    Command::new("kill")
        .args(["-KILL", &victim.to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(20);
    let said = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match err_rx.recv_timeout(left) {
            Ok(l) if l.contains("agent-1") && l.contains("exited") => break l,
            Ok(_) => continue,
            Err(_) => panic!("no line about agent-1 within 20 s"),
        }
    };
    assert!(said.contains(&format!("pid {victim}")), "{said}");
    assert!(
        !std::path::Path::new(&format!("/proc/{victim}")).exists(),
        "agent-1 was reaped, not left a zombie"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "devnet did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "clean exit: {status}");
    for s in std::iter::once(&file.issuer)
        .chain(std::iter::once(&file.market))
        .chain(&file.agents)
    {
        assert!(!alive(s.pid), "{} stopped with the devnet", s.url);
    }
    // Stopped, the directory is free for the next devnet.
    drop(node::datadir::lock(&dir, "devnet").expect("the directory is free"));

    // The README's command with no --agents brings the same network back: two agents.
    let mut again = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--heartbeat-s", "1", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet up again");
    let stdout = again.stdout.take().expect("stdout");
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .next()
        .unwrap_or_default();
    assert!(ready.starts_with("devnet ready"), "{ready}");
    let back = DevnetFile::load(&dir).expect("devnet.json");
    assert_eq!(back.agents.len(), 2, "as many agents as before");
    assert_eq!(
        back.agents.iter().map(|a| &a.entity).collect::<Vec<_>>(),
        file.agents.iter().map(|a| &a.entity).collect::<Vec<_>>()
    );
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .expect("kill");
    let deadline = Instant::now() + Duration::from_secs(30);
    while again.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "devnet did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

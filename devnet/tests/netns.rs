//! `devnet up --netns` (issue 20, DESIGN 15): every service in a network namespace of its own
//! on a bridge the devnet makes, the market's one-agent-per-/24 rule on, and the fault verbs
//! (`cut`, `heal`, `slow`) through the real binary. Needs root and iproute2: skipped without
//! them, except under `CI=true` (CI runs as root), where their absence fails.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devnet::{Devnet, DevnetFile, Options};
use protocol::book::MatchRequest;

/// Longest one request to a service may take here (a cut host never answers).
const REQUEST_MS_MAX: u64 = 3_000;

/// Root and `ip`, or `None` (skip) outside CI.
fn can_netns() -> Option<()> {
    match devnet::netns::check_can() {
        Ok(()) => Some(()),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but namespaces cannot be made: {e}"
            );
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("ip link")
        .success()
}

/// `devnet ARGS`: (exit code, stdout, stderr).
fn devnet_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(args)
        .output()
        .expect("run devnet");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The /24 of an `http://a.b.c.d:port` URL.
fn network(url: &str) -> String {
    let host = url
        .trim_start_matches("http://")
        .split(':')
        .next()
        .expect("host");
    let mut octets: Vec<&str> = host.split('.').collect();
    octets.truncate(3);
    octets.join(".")
}

async fn answers(url: &str) -> bool {
    let http = reqwest::Client::new();
    http.get(format!("{url}/.well-known/lcp"))
        .timeout(Duration::from_millis(REQUEST_MS_MAX))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
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
async fn namespaced_hosts_keep_the_network_rule_and_can_be_cut_slowed_and_healed() {
    if can_netns().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let mut opts = Options::new(&dir).expect("options");
    opts.agents = 6;
    opts.heartbeat_s = 1;
    opts.netns = true;
    // Two agents on each of three /24s: a match may take one of each, never two of one.
    opts.agents_per_network = 2;
    let net = tokio::task::spawn_blocking({
        let opts = opts.clone();
        move || Devnet::up(&opts).expect("devnet up --netns")
    })
    .await
    .expect("task");

    // devnet.json gives each host's namespace and address, inside the devnet's range.
    let file = DevnetFile::load(&dir).expect("devnet.json");
    let info = file.netns.clone().expect("netns recorded");
    let range = info.range.trim_end_matches(".0.0/16").to_string();
    let listed = namespaces();
    let services: Vec<_> = std::iter::once(&file.issuer)
        .chain(std::iter::once(&file.market))
        .chain(file.agents.iter())
        .collect();
    for s in &services {
        let ns = s.netns.as_deref().expect("a namespace per service");
        let address = s.address.as_deref().expect("an address per host");
        assert_eq!(s.url, format!("http://{address}:8080"));
        assert!(listed.contains(ns), "{ns} not in {listed}");
        assert!(s.url.starts_with(&format!("http://{range}.")), "{}", s.url);
        assert!(answers(&s.url).await, "{} does not answer", s.url);
    }
    let agent_networks: std::collections::BTreeSet<String> =
        file.agents.iter().map(|a| network(&a.url)).collect();
    assert_eq!(agent_networks.len(), 3, "{agent_networks:?}");

    // The market's rule, for real: a match of three spreads over the three /24s every time;
    // four cannot be placed.
    let key = std::sync::Arc::new(protocol::KeyPair::generate().expect("key"));
    let market =
        clients::market::MarketClient::new(reqwest::Client::new(), &file.market.url, key.clone());
    let mut req = request(2, 3);
    req.currency = file.issuer.entity.clone();
    for _ in 0..5 {
        let answer = market.match_agents(&req).await.expect("match of 3");
        let networks: std::collections::BTreeSet<String> =
            answer.agents.iter().map(|a| network(&a.endpoint)).collect();
        assert_eq!(
            networks.len(),
            answer.agents.len(),
            "two shards on one /24: {:?}",
            answer
                .agents
                .iter()
                .map(|a| &a.endpoint)
                .collect::<Vec<_>>()
        );
    }
    let mut four = request(2, 4);
    four.currency = file.issuer.entity.clone();
    let refused = market.match_agents(&four).await;
    assert!(
        refused.is_err(),
        "four shards on three networks: {refused:?}"
    );

    // The buyer's walk-through crosses the bridge from this machine's namespace.
    let dir_arg = dir.to_string_lossy().into_owned();
    let (code, out, err) = devnet_cli(&["buy", "--dir", &dir_arg, "--total-shards", "3", "--json"]);
    assert_eq!(code, 0, "{err}");
    let bought: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let endpoints: std::collections::BTreeSet<String> = bought["contracts"]
        .as_array()
        .expect("contracts")
        .iter()
        .map(|c| network(c["endpoint"].as_str().expect("endpoint")))
        .collect();
    assert_eq!(endpoints.len(), 3, "{bought}");

    // Cut: agent-0 no longer answers, its neighbour on the same /24 still does; heal: back.
    let (a0, a1) = (file.agents[0].url.clone(), file.agents[1].url.clone());
    let (code, _, err) = devnet_cli(&["cut", "--dir", &dir_arg, "agent-0"]);
    assert_eq!(code, 0, "{err}");
    assert!(!answers(&a0).await, "a cut agent answered");
    assert!(answers(&a1).await, "an agent that was not cut went silent");
    // An agent may also be named by its index or its entity id.
    let (code, _, err) = devnet_cli(&["heal", "--dir", &dir_arg, &file.agents[0].entity]);
    assert_eq!(code, 0, "{err}");
    node::testing::eventually(10_000, "agent-0 answers after heal", || answers(&a0)).await;

    // Slow: a thin uplink (tbf) shapes what the agent sends; heal removes it.
    let ns1 = file.agents[1].netns.clone().expect("ns");
    let (code, _, err) = devnet_cli(&["slow", "--dir", &dir_arg, "1", "--rate-kbit", "800"]);
    assert_eq!(code, 0, "{err}");
    let qdisc = || {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns1, "tc", "qdisc", "show", "dev", "eth0"])
            .output()
            .expect("tc");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(qdisc().contains("800Kbit"), "{}", qdisc());
    assert!(answers(&a1).await, "a slowed agent still answers");
    // Delay: netem where the kernel has it, else a netfilter queue held by a worker in the
    // namespace (iptables needed). Every packet the agent sends is held at least 80 ms, so a
    // request on a new connection (its SYN-ACK and its answer) takes at least 160 ms.
    let (code, out, err) = devnet_cli(&["slow", "--dir", &dir_arg, "agent-1", "--delay-ms", "80"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("80 ms later"), "{out}");
    let started = Instant::now();
    assert!(answers(&a1).await, "a delayed agent still answers");
    assert!(
        started.elapsed() >= Duration::from_millis(160),
        "answered in {:?}: no delay was added",
        started.elapsed()
    );
    let (code, _, err) = devnet_cli(&["heal", "--dir", &dir_arg, "agent-1"]);
    assert_eq!(code, 0, "{err}");
    assert!(!qdisc().contains("tbf"), "{}", qdisc());
    // Healed: no delay worker left in the namespace, no queue rule.
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns1])
        .output()
        .expect("ip netns pids");
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("delay-worker"),
            "a delay worker outlived heal"
        );
    }
    assert!(answers(&a1).await);

    // Bad input: one line, exit 1, nothing changed.
    for (args, says) in [
        (vec!["cut", "--dir", &dir_arg, "agent-9"], "no service"),
        (vec!["cut", "--dir", &dir_arg, "wallet"], "no service"),
        (
            vec!["slow", "--dir", &dir_arg, "agent-1", "--rate-kbit", "0"],
            "at least 1",
        ),
        (
            vec!["slow", "--dir", &dir_arg, "agent-1", "--loss-pct", "101"],
            "0 to 100",
        ),
    ] {
        let (code, _, err) = devnet_cli(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains(says) && err.trim().lines().count() == 1,
            "{err}"
        );
    }
    for s in &services {
        assert!(answers(&s.url).await, "{} stopped answering", s.url);
    }

    // Stopped, the devnet leaves no namespace, bridge or process behind.
    let pids: Vec<u32> = services.iter().map(|s| s.pid).collect();
    drop(net);
    let prefix = format!("lcpdev-{}-", info.tag);
    assert!(!namespaces().contains(&prefix), "{}", namespaces());
    assert!(!link_exists(&info.bridge));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "pid {pid} still runs"
        );
    }
}

/// A devnet killed with SIGKILL leaves its namespaces and services behind; the next `up` on
/// the same directory removes them first and comes back on the same addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_namespaced_devnet_is_cleaned_up_by_the_next_start() {
    if can_netns().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let dir_arg = dir.to_string_lossy().into_owned();
    let mut child = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--dir", &dir_arg, "--agents", "2", "--netns"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("devnet up");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("devnet ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("devnet ready within 60 s");
    let first = DevnetFile::load(&dir).expect("devnet.json");
    let info = first.netns.clone().expect("netns");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // Its services run on in their namespaces.
    let orphan = first.agents[0].pid;
    assert!(std::path::Path::new(&format!("/proc/{orphan}")).exists());
    assert!(namespaces().contains(&format!("lcpdev-{}-", info.tag)));

    // Brought back on the same directory (the CLI would infer --netns from devnet.json).
    let mut opts = Options::new(&dir).expect("options");
    opts.agents = 2;
    opts.heartbeat_s = 1;
    opts.netns = true;
    let started = Instant::now();
    let net = tokio::task::spawn_blocking(move || Devnet::up(&opts).expect("up again"))
        .await
        .expect("task");
    eprintln!("back in {} ms", started.elapsed().as_millis());
    let again = net.file();
    assert_eq!(again.netns.as_ref().map(|n| &n.range), Some(&info.range));
    assert_eq!(again.agents[0].url, first.agents[0].url, "same address");
    // The orphan was killed (a zombie of no one is reaped by init; gone or dead).
    node::testing::eventually(5_000, "the orphaned agent is gone", || async {
        std::fs::read_to_string(format!("/proc/{orphan}/stat")).map_or(true, |s| s.contains(") Z "))
    })
    .await;
    assert!(answers(&again.agents[0].url).await);
    drop(net);
    assert!(!namespaces().contains(&format!("lcpdev-{}-", info.tag)));
    assert!(!link_exists(&info.bridge));
}

/// Without `ip` (or root), `devnet up --netns` says so in one line and exits 1, having made
/// nothing.
#[test]
fn without_ip_netns_says_so_and_exits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let out = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--agents", "1", "--netns"])
        .env("PATH", tmp.path())
        .env(
            "DEVNET_BIN_DIR",
            devnet::default_bin_dir().expect("bin dir"),
        )
        .output()
        .expect("run devnet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        (err.contains("needs the `ip` command") || err.contains("needs root"))
            && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!dir.join("devnet.json").exists());
}

/// `--agents-per-network` means nothing on loopback: refused in one line, nothing started.
#[test]
fn agents_per_network_without_netns_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let out = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args(["up", "--dir"])
        .arg(&dir)
        .args(["--agents", "2", "--agents-per-network", "2"])
        .output()
        .expect("run devnet");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--agents-per-network needs --netns") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!dir.join("devnet.json").exists());
}

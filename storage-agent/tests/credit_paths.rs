//! Payments over credit paths between six real agent processes (issue 17, DESIGN 12):
//!
//! ```text
//!            B ---- T
//!   W --- A  C ---- T        W: the wallet (lcp CLI), A..E, T: agents; T the target
//!            D -- E -- T
//! ```
//!
//! B, C and D each extend A a line of 40; T extends B, C and E 50; E extends D 50; A
//! extends the wallet 150 when asked. No single path carries 100; the paths together do.
//! Lines are opened by the nodes themselves from `[[credit.neighbors]]` in their config.
//! Node A keeps its books on PostgreSQL when `TEST_DATABASE_URL` is set, the rest on SQLite.

mod util;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use clients::credit::{self, Counters};
use node::client::SignedClient;
use node::credit::{CreditPolicy, NeighborConfig};
use protocol::credit::flow::PathShare;
use protocol::credit::LineView;
use protocol::KeyPair;
use storage_agent::config::AgentConfig;

const NAMES: [&str; 6] = ["A", "B", "C", "D", "E", "T"];
/// What A and T extend a wallet that asks (the wallets' lines with them).
const GIVE_MAX: u64 = 1_000_000_000_000;

struct Node {
    name: &'static str,
    data: PathBuf,
    listen: String,
    url: String,
    entity: String,
    database: Option<String>,
    guard: Option<node::process::ChildGuard>,
}

struct Net {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    currency: String,
    wallet_path: PathBuf,
    wallet: Arc<KeyPair>,
    http: reqwest::Client,
    _pg: Option<db::testing::PgTestSchema>,
}

fn lcp_bin() -> PathBuf {
    let path = node::testing::bin_dir().join("lcp");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A free port for an agent whose neighbours must know its URL before it starts. Picked
/// below the kernel's ephemeral range (32768 and up), where servers that bind port 0 (every
/// other test) never land, so the port cannot be taken between this check and the agent's
/// bind; tried until one binds.
fn free_listen() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    for _ in 0..1_000 {
        let seed = u64::from(std::process::id())
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(node::now_ms())
            .wrapping_add(SEQ.fetch_add(7_919, Ordering::Relaxed));
        let port = 20_000 + (seed % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return format!("127.0.0.1:{port}");
        }
    }
    panic!("no free port below the ephemeral range");
}

fn start(node: &mut Node) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_storage-agent"));
    cmd.args(["serve", "--listen", &node.listen, "--data"])
        .arg(&node.data)
        .stderr(std::process::Stdio::inherit())
        // Their issuer is not running (no contracts here): its watcher's warnings are noise.
        .env("RUST_LOG", "error");
    if let Some(url) = &node.database {
        cmd.args(["--database", url]);
    }
    let (guard, url) = node::process::spawn_server(cmd, util::SPAWN_WAIT_MS_MAX)
        .unwrap_or_else(|e| panic!("agent {}: {e}", node.name));
    assert_eq!(
        url, node.url,
        "{} listens where its neighbours expect",
        node.name
    );
    node.guard = Some(guard);
}

impl Net {
    fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    fn name_of(&self, entity: &str) -> String {
        if entity == self.wallet.entity().as_str() {
            return "W".into();
        }
        self.nodes
            .iter()
            .find(|n| n.entity == entity)
            .map(|n| n.name.to_owned())
            .unwrap_or_else(|| entity.to_owned())
    }

    /// Every node's copy of every line: (holder, creditor, debtor) -> view.
    async fn books(&self) -> HashMap<(String, String, String), LineView> {
        let mut out = HashMap::new();
        for n in &self.nodes {
            let page: protocol::credit::LinesPage = self
                .http
                .get(format!("{}/v1/credit/lines", n.url))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", n.name))
                .json()
                .await
                .expect("lines");
            for l in page.lines {
                let key = (
                    n.name.to_owned(),
                    self.name_of(&l.creditor),
                    self.name_of(&l.debtor),
                );
                out.insert(key, l);
            }
        }
        out
    }

    fn lcp(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(lcp_bin())
            .args(args)
            .output()
            .expect("lcp runs")
    }
}

/// The six nodes, configured and running, with every configured line open at both ends.
async fn six_nodes() -> Net {
    six_nodes_scaled(1).await
}

/// [`six_nodes`] with every configured line `scale` times larger.
async fn six_nodes_scaled(scale: u64) -> Net {
    let dir = tempfile::tempdir().expect("tempdir");
    let currency = KeyPair::generate().expect("key").entity().to_string();
    let pg = std::env::var("TEST_DATABASE_URL")
        .ok()
        .map(|base| db::testing::fresh_postgres(&base, "credit_paths").expect("PostgreSQL schema"));
    let mut nodes: Vec<Node> = NAMES
        .iter()
        .map(|&name| {
            let data = dir.path().join(name);
            util::write_agent_config(&data, "http://127.0.0.1:9", 1 << 20);
            let entity = node::keyfile::load(&data.join("identity.key"))
                .expect("key")
                .entity()
                .to_string();
            let listen = free_listen();
            Node {
                name,
                url: format!("http://{listen}"),
                listen,
                data,
                entity,
                database: None,
                guard: None,
            }
        })
        .collect();
    nodes[0].database = pg.as_ref().map(|p| p.url.clone());
    let url = |name: &str| {
        nodes
            .iter()
            .find(|n| n.name == name)
            .expect("node")
            .url
            .clone()
    };
    let neighbor = |name: &str, give: u64, trust: f64| NeighborConfig {
        url: url(name),
        trust,
        give: give * scale,
        currency: Some(currency.clone()),
    };
    let neighbors: HashMap<&str, (u64, Vec<NeighborConfig>)> = HashMap::from([
        (
            "A",
            (
                GIVE_MAX,
                vec![
                    neighbor("B", 0, 0.9),
                    neighbor("C", 0, 0.5),
                    neighbor("D", 0, 0.8),
                ],
            ),
        ),
        (
            "B",
            (0, vec![neighbor("A", 40, 0.9), neighbor("T", 0, 0.5)]),
        ),
        (
            "C",
            (0, vec![neighbor("A", 40, 0.9), neighbor("T", 0, 0.9)]),
        ),
        (
            "D",
            (0, vec![neighbor("A", 40, 0.9), neighbor("E", 0, 0.9)]),
        ),
        (
            "E",
            (0, vec![neighbor("D", 50, 0.9), neighbor("T", 0, 0.9)]),
        ),
        (
            "T",
            (
                GIVE_MAX,
                vec![
                    neighbor("B", 50, 0.9),
                    neighbor("C", 50, 0.9),
                    neighbor("E", 50, 0.9),
                ],
            ),
        ),
    ]);
    for n in &mut nodes {
        let mut config = AgentConfig::load(&n.data).expect("config");
        let (give_max, list) = neighbors[n.name].clone();
        config.credit = CreditPolicy {
            give_max,
            neighbors: list,
            ..CreditPolicy::default()
        };
        config.save(&n.data).expect("config");
    }
    for n in &mut nodes {
        start(n);
    }
    let http = node::client::http_client(&Default::default()).expect("http");
    let wallet_path = dir.path().join("wallet.key");
    let wallet = Arc::new(node::keyfile::generate(&wallet_path).expect("wallet"));
    let net = Net {
        dir,
        nodes,
        currency,
        wallet_path,
        wallet,
        http,
        _pg: pg,
    };
    // Seven lines, each at both ends: fourteen copies.
    util::eventually(
        30_000,
        "every configured line open at both ends",
        || async { net.books().await.len() == 14 },
    )
    .await;
    // And every node knows where its neighbours answer: A sees all seven hops toward T.
    let paths_url = format!(
        "{}/v1/credit/paths?to={}&currency={}",
        net.node("A").url,
        net.node("T").entity,
        net.currency
    );
    util::eventually(30_000, "A to see every hop toward T", || async {
        let answer: Option<protocol::credit::flow::PathsAnswer> =
            match net.http.get(&paths_url).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
        answer.is_some_and(|a| a.edges.len() == 7)
    })
    .await;
    net
}

/// The owed amounts of every line by (creditor, debtor), checking that both copies of each
/// line agree and nothing is held.
async fn settled(net: &Net) -> HashMap<(String, String), u64> {
    let books = net.books().await;
    let mut owed: HashMap<(String, String), u64> = HashMap::new();
    for ((holder, creditor, debtor), l) in &books {
        assert_eq!(
            (l.held, l.repaying),
            (0, 0),
            "{holder}'s copy of {creditor}->{debtor} holds nothing"
        );
        assert!(
            l.owed <= l.limit,
            "{holder}: {creditor}->{debtor} within its limit"
        );
        if let Some(other) = owed.insert((creditor.clone(), debtor.clone()), l.owed) {
            assert_eq!(other, l.owed, "both copies of {creditor}->{debtor} agree");
        }
    }
    owed
}

async fn eventually_settled(net: &Net) -> HashMap<(String, String), u64> {
    util::eventually(30_000, "every hold settled", || async {
        net.books()
            .await
            .values()
            .all(|l| l.held == 0 && l.repaying == 0)
    })
    .await;
    settled(net).await
}

fn counters_next(c: &Counters) -> u64 {
    // Counters hands out one value per call; borrow one for a hand-made command.
    c.take()
}

fn key(c: &str, d: &str) -> (String, String) {
    (c.to_owned(), d.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_no_single_path_carries_arrives_whole_split_over_paths() {
    let net = six_nodes().await;
    let (a, t) = (net.node("A"), net.node("T"));
    let wallet = net.wallet_path.to_str().expect("utf-8");

    // The wallet asks A for a line; A proposes, the wallet countersigns (the CLI).
    let out = net.lcp(&[
        "credit",
        "open",
        "--key",
        wallet,
        "--node",
        &a.url,
        "--currency",
        &net.currency,
        "--ask",
        "150",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(line["state"]["limit"], 150);
    assert!(line["creditor_signature"].is_string() && line["debtor_signature"].is_string());
    let before = settled(&net).await;
    assert_eq!(before.len(), 8, "seven configured lines and the wallet's");
    assert!(before.values().all(|&o| o == 0));

    // Trust along paths: A trusts B 0.9, B trusts T 0.5; C 0.5 then 0.9; D 0.8, E 0.9, 0.9.
    let trust_url = format!("{}/v1/credit/trust?to={}", a.url, t.entity);
    util::eventually(10_000, "A to learn its neighbours", || async {
        let answer: Option<protocol::credit::TrustAnswer> =
            match net.http.get(&trust_url).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
        answer.is_some_and(|a| a.trust > 0.6)
    })
    .await;
    let out = net.lcp(&[
        "credit", "trust", "--key", wallet, "--via", &a.url, "--to", &t.entity, "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trust: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let expected = 0.8f64 * 0.9 * 0.9;
    assert!(
        (trust["trust"].as_f64().expect("trust") - expected).abs() < 1e-9,
        "{trust}"
    );

    // 100 over paths of 40, 40 and 20.
    let out = net.lcp(&[
        "credit",
        "pay",
        "--key",
        wallet,
        "--via",
        &a.url,
        "--to",
        &t.entity,
        "--currency",
        &net.currency,
        "--amount",
        "100",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paid: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let paths: Vec<PathShare> = serde_json::from_value(paid["paths"].clone()).expect("paths");
    assert!(paths.len() >= 3, "split over paths: {paid}");
    assert_eq!(paths.iter().map(|p| p.amount).sum::<u64>(), 100);
    assert!(paths.iter().all(|p| p.amount <= 40 && p.path.len() <= 5));
    let after = eventually_settled(&net).await;
    let expected: HashMap<(String, String), u64> = HashMap::from([
        (key("A", "W"), 100),
        (key("B", "A"), 40),
        (key("C", "A"), 40),
        (key("D", "A"), 20),
        (key("T", "B"), 40),
        (key("T", "C"), 40),
        (key("E", "D"), 20),
        (key("T", "E"), 20),
    ]);
    assert_eq!(after, expected, "every line moved by exactly its share");

    // Bad input: a one-line error and a non-zero exit, nothing sent.
    for (args, says) in [
        (
            vec![
                "credit",
                "pay",
                "--key",
                wallet,
                "--via",
                &a.url,
                "--to",
                "bob",
                "--currency",
                &net.currency,
                "--amount",
                "5",
            ],
            "--to must be an entity id",
        ),
        (
            vec![
                "credit",
                "pay",
                "--key",
                wallet,
                "--via",
                "127.0.0.1:1",
                "--to",
                &t.entity,
                "--currency",
                &net.currency,
                "--amount",
                "5",
            ],
            "is not a URL",
        ),
        (
            vec![
                "credit",
                "open",
                "--key",
                wallet,
                "--node",
                &a.url,
                "--currency",
                &net.currency,
            ],
            "--give",
        ),
    ] {
        let out = net.lcp(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
    // More than the paths can carry: refused up front, nothing moves.
    let out = net.lcp(&[
        "credit",
        "pay",
        "--key",
        wallet,
        "--via",
        &a.url,
        "--to",
        &t.entity,
        "--currency",
        &net.currency,
        "--amount",
        "60",
        "--json",
    ]);
    assert!(!out.status.success());
    let refused: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        refused["error"]["code"], "insufficient_capacity",
        "{refused}"
    );
    assert_eq!(settled(&net).await, expected);

    // Paths prepared for less than the payment's total: the target never fulfils, every
    // hold on the way is released, nothing moves.
    let via = SignedClient::new(net.http.clone(), &a.url, net.wallet.clone());
    let plan = credit::plan(&net.http, &net.wallet, &via, &t.entity, &net.currency, 10)
        .await
        .expect("a plan for 10");
    let counters = Counters::from(node::now_ms() << 16);
    let short = credit::send(
        &net.http,
        &net.wallet,
        &via,
        &plan.target_url,
        &net.currency,
        &plan.shares,
        30,
        None,
        1_500,
        &counters,
    )
    .await
    .expect_err("a payment that cannot arrive whole");
    assert_eq!(short.code(), "payment_incomplete", "{short}");
    assert_eq!(eventually_settled(&net).await, expected, "nothing moved");

    // A fulfil with a wrong secret, sent while a payment is held open (the target waits for
    // a total the path does not carry): refused by A even from the peer it paid, and by
    // anyone else as a payment A never paid them; the payment then lapses and moves nothing.
    let share = plan.shares[0].clone();
    let next = net
        .nodes
        .iter()
        .find(|n| n.entity == share.path[2])
        .expect("A's next hop is a node");
    let next_key = Arc::new(node::keyfile::load(&next.data.join("identity.key")).expect("key"));
    let (sealed_secret, condition) = sealed_to(&net, &t.url, &[7u8; 32]).await;
    let held_open = protocol::credit::Prepare {
        payment: uuid::Uuid::new_v4().to_string(),
        amount: 2,
        total: 3,
        currency: net.currency.clone(),
        path: share.path.clone(),
        sealed_secret,
        condition,
        expires_at: node::now_ms() + 3_000 + share.path.len() as u64 * 2_000,
        lines: Vec::new(),
        transaction_id: None,
    };
    let prepared = {
        let (via, body, counter) = (
            via.clone(),
            serde_json::to_vec(&held_open).expect("json"),
            counters_next(&counters),
        );
        tokio::spawn(async move {
            via.command::<serde_json::Value>("POST", "/v1/credit/prepare", body, counter)
                .await
        })
    };
    let as_next = SignedClient::new(net.http.clone(), &a.url, next_key);
    let wrong = serde_json::json!({"payment": held_open.payment, "secret": "11".repeat(32)});
    let mut code = None;
    for round in 0u64..100 {
        let e = as_next
            .command::<serde_json::Value>(
                "POST",
                "/v1/credit/fulfill",
                serde_json::to_vec(&wrong).expect("json"),
                node::now_ms() * 1000 + round,
            )
            .await
            .expect_err("a wrong secret is refused");
        code = e.code().map(str::to_owned);
        if code.as_deref() != Some("unknown_payment") {
            break; // A holds the payment now
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(code.as_deref(), Some("wrong_secret"));
    let stranger = SignedClient::new(
        net.http.clone(),
        &a.url,
        Arc::new(KeyPair::generate().expect("key")),
    );
    let e = stranger
        .command::<serde_json::Value>(
            "POST",
            "/v1/credit/fulfill",
            serde_json::to_vec(&wrong).expect("json"),
            1,
        )
        .await
        .expect_err("not a peer A paid");
    assert_eq!(e.code(), Some("unknown_payment"));
    let lapsed = tokio::time::timeout(std::time::Duration::from_secs(30), prepared)
        .await
        .expect("the held payment ends")
        .expect("task")
        .expect_err("it never arrives whole");
    assert_eq!(lapsed.code(), Some("payment_incomplete"), "{lapsed}");
    assert_eq!(eventually_settled(&net).await, expected, "nothing moved");

    // Replays and forgeries: a prepare sent twice, a fulfil with a wrong secret.
    let replay_plan = credit::plan(&net.http, &net.wallet, &via, &a.entity, &net.currency, 5)
        .await
        .expect("a plan to A itself");
    let paid = credit::send(
        &net.http,
        &net.wallet,
        &via,
        &replay_plan.target_url,
        &net.currency,
        &replay_plan.shares,
        5,
        None,
        3_000,
        &counters,
    )
    .await
    .expect("5 to A");
    let owed_now = settled(&net).await[&key("A", "W")];
    assert_eq!(owed_now, 105);
    let command = |path: &'static str, body: serde_json::Value| {
        let via = via.clone();
        let counter = counters_next(&counters);
        async move {
            via.command::<serde_json::Value>(
                "POST",
                path,
                serde_json::to_vec(&body).expect("json"),
                counter,
            )
            .await
            .expect_err("refused")
            .code()
            .map(str::to_owned)
        }
    };
    let settled_again = command(
        "/v1/credit/fulfill",
        serde_json::json!({"payment": paid.payment, "secret": "00".repeat(32)}),
    );
    assert_eq!(settled_again.await.as_deref(), Some("payment_settled"));
    let unknown = command(
        "/v1/credit/fulfill",
        serde_json::json!({"payment": "00000000-0000-4000-8000-000000000000", "secret": "00".repeat(32)}),
    );
    assert_eq!(unknown.await.as_deref(), Some("unknown_payment"));
    // The same prepare again (a new counter, the same body): a replay, refused.
    let secret = [9u8; protocol::credit::SECRET_BYTES];
    let (sealed_secret, condition) = sealed_to(&net, &a.url, &secret).await;
    let prepare = protocol::credit::Prepare {
        payment: uuid::Uuid::new_v4().to_string(),
        amount: 2,
        total: 2,
        currency: net.currency.clone(),
        path: vec![net.wallet.entity().to_string(), a.entity.clone()],
        sealed_secret,
        condition,
        expires_at: node::now_ms() + 5_000,
        lines: Vec::new(),
        transaction_id: None,
    };
    let body = serde_json::to_value(&prepare).expect("json");
    let first = via
        .command::<protocol::credit::Fulfilled>(
            "POST",
            "/v1/credit/prepare",
            serde_json::to_vec(&body).expect("json"),
            counters_next(&counters),
        )
        .await
        .expect("a payment of 2 to A");
    assert_eq!(
        protocol::credit::check_secret(&first.value.secret, &prepare.condition).expect("secret"),
        secret
    );
    assert_eq!(
        command("/v1/credit/prepare", body).await.as_deref(),
        Some("duplicate_prepare")
    );
    // Forged: signed by a stranger who is not the hop before A on the path.
    let stranger = Arc::new(KeyPair::generate().expect("key"));
    let as_stranger = SignedClient::new(net.http.clone(), &a.url, stranger);
    let forged = protocol::credit::Prepare {
        payment: uuid::Uuid::new_v4().to_string(),
        ..prepare.clone()
    };
    let e = as_stranger
        .command::<serde_json::Value>(
            "POST",
            "/v1/credit/prepare",
            serde_json::to_vec(&forged).expect("json"),
            1,
        )
        .await
        .expect_err("not the hop before");
    assert_eq!(e.code(), Some("line_refused"));
    assert_eq!(
        settled(&net).await[&key("A", "W")],
        107,
        "the replay and the forgery moved nothing"
    );
    drop(net);
}

/// `secret` sealed to the credit key the node at `url` shows in its descriptor, and the
/// condition it fulfils.
async fn sealed_to(
    net: &Net,
    url: &str,
    secret: &[u8; protocol::credit::SECRET_BYTES],
) -> (String, String) {
    let descriptor: serde_json::Value = net
        .http
        .get(format!("{url}/.well-known/lcp"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let condition = protocol::credit::condition_of(secret);
    let sealed = protocol::credit::seal::seal(
        secret,
        &condition,
        descriptor["credit_key"].as_str().expect("credit_key"),
    )
    .expect("seal");
    (sealed, condition)
}

/// Every copy of every line within its limit, holds included.
async fn within_limits(net: &Net) {
    for ((holder, c, d), l) in net.books().await {
        assert!(
            l.owed + l.held <= l.limit && l.repaying <= l.owed,
            "{holder}'s copy of {c}->{d} past its limit: {l:?}"
        );
    }
}

async fn ask_line(net: &Net, limit: &str) {
    ask_line_at(net, &net.wallet_path, "A", limit).await
}

async fn ask_line_at(net: &Net, wallet: &std::path::Path, node: &str, limit: &str) {
    let out = net.lcp(&[
        "credit",
        "open",
        "--key",
        wallet.to_str().expect("utf-8"),
        "--node",
        &net.node(node).url,
        "--currency",
        &net.currency,
        "--ask",
        limit,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_payments_never_take_a_line_past_its_limit() {
    let net = Arc::new(six_nodes().await);
    ask_line(&net, "150").await;
    let (a_url, t) = (net.node("A").url.clone(), net.node("T").entity.clone());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Watch every book while the payments race.
    let watcher = {
        let (net, done) = (net.clone(), done.clone());
        tokio::spawn(async move {
            let mut looks = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                within_limits(&net).await;
                looks += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            looks
        })
    };
    let payments = (0..50u64).map(|i| {
        let (net, a_url, t) = (net.clone(), a_url.clone(), t.clone());
        tokio::spawn(async move {
            let via = SignedClient::new(net.http.clone(), &a_url, net.wallet.clone());
            let counters = Counters::from((node::now_ms() << 16) + i * 64);
            credit::pay(
                &net.http,
                &net.wallet,
                &via,
                &t,
                &net.currency,
                4,
                None,
                3_000,
                &counters,
            )
            .await
            .map(|p| p.amount)
        })
    });
    let mut paid = 0u64;
    let mut refused = 0u32;
    for p in payments.collect::<Vec<_>>() {
        match p.await.expect("join") {
            Ok(amount) => paid += amount,
            Err(_) => refused += 1,
        }
    }
    let owed = eventually_settled(&net).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let looks = watcher.await.expect("watcher");
    assert!(looks > 0, "the books were watched while the payments ran");
    assert!(paid > 0, "some payments arrived");
    assert!(paid <= 120, "the paths carry 120 at most: {paid}");
    eprintln!("paid {paid} in {} payments, {refused} refused", paid / 4);
    let o = |c: &str, d: &str| owed.get(&key(c, d)).copied().unwrap_or(0);
    assert_eq!(o("A", "W"), paid, "the wallet owes A exactly what arrived");
    assert_eq!(
        o("B", "A") + o("C", "A") + o("D", "A"),
        paid,
        "A passed all of it on"
    );
    assert_eq!(o("T", "B"), o("B", "A"), "B passed on what it got");
    assert_eq!(o("T", "C"), o("C", "A"), "C passed on what it got");
    assert_eq!(o("E", "D"), o("D", "A"), "D passed on what it got");
    assert_eq!(o("T", "E"), o("E", "D"), "E passed on what it got");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hop_killed_between_prepare_and_fulfil_ends_as_its_neighbours() {
    let mut net = six_nodes().await;
    ask_line(&net, "150").await;
    let before = settled(&net).await;
    // One path through E, for 20 of a payment of 50: the target holds it and waits.
    let path: Vec<String> = ["A", "D", "E", "T"]
        .iter()
        .map(|n| net.node(n).entity.clone())
        .collect();
    let path = [vec![net.wallet.entity().to_string()], path].concat();
    let share = PathShare { path, amount: 20 };
    let (http, wallet, currency) = (net.http.clone(), net.wallet.clone(), net.currency.clone());
    let (a_url, t_url) = (net.node("A").url.clone(), net.node("T").url.clone());
    let payment = tokio::spawn(async move {
        let via = SignedClient::new(http.clone(), &a_url, wallet.clone());
        let counters = Counters::from(node::now_ms() << 16);
        credit::send(
            &http,
            &wallet,
            &via,
            &t_url,
            &currency,
            &[share],
            50,
            None,
            4_000,
            &counters,
        )
        .await
    });
    // Held all the way to the target, then E is killed.
    util::eventually(10_000, "the path held up to the target", || async {
        net.books()
            .await
            .iter()
            .any(|((holder, c, d), l)| holder == "T" && c == "T" && d == "E" && l.held == 20)
    })
    .await;
    let e = net.nodes.iter_mut().find(|n| n.name == "E").expect("E");
    drop(e.guard.take()); // SIGKILL
    let failed = payment
        .await
        .expect("join")
        .expect_err("the payment cannot arrive");
    eprintln!("the payer heard: {failed}");
    let e = net.nodes.iter_mut().find(|n| n.name == "E").expect("E");
    start(e);
    // Every hold lapses or is settled by the peer's word; every line as it was, both copies.
    let after = eventually_settled(&net).await;
    assert_eq!(after, before, "nothing moved, and the restarted hop agrees");
}

fn percentile(sorted_ms: &[f64], p: usize) -> f64 {
    sorted_ms[(sorted_ms.len() * p / 100).min(sorted_ms.len() - 1)]
}

/// Latency of a 4-hop, 3-path payment on loopback (docs/BENCHMARKS.md): the wallet W pays T
/// 100 (40, 40 and 20 over three paths, one of four hops), then a second wallet at T pays A
/// 100 back over the reverse paths, which restores every line between the agents, round
/// after round. `cargo test --release -p storage-agent --test credit_paths
/// credit_bench_latency -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn credit_bench_latency() {
    const ROUNDS: usize = 100;
    let net = six_nodes().await;
    ask_line(&net, "1000000000000").await;
    let w2_path = net.dir.path().join("wallet2.key");
    let w2 = Arc::new(node::keyfile::generate(&w2_path).expect("wallet 2"));
    ask_line_at(&net, &w2_path, "T", "1000000000000").await;
    let (a, t) = (net.node("A"), net.node("T"));
    let via_a = SignedClient::new(net.http.clone(), &a.url, net.wallet.clone());
    let via_t = SignedClient::new(net.http.clone(), &t.url, w2.clone());
    let mut ms = Vec::new();
    for round in 0..ROUNDS as u64 {
        let counters = Counters::from((node::now_ms() << 16) + round * 128);
        let t0 = std::time::Instant::now();
        let paid = credit::pay(
            &net.http,
            &net.wallet,
            &via_a,
            &t.entity,
            &net.currency,
            100,
            None,
            10_000,
            &counters,
        )
        .await
        .expect("W pays T");
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
        assert_eq!(paid.paths.len(), 3, "three paths");
        assert_eq!(
            paid.paths.iter().map(|p| p.path.len()).max(),
            Some(5),
            "one of four hops"
        );
        let t0 = std::time::Instant::now();
        credit::pay(
            &net.http,
            &w2,
            &via_t,
            &a.entity,
            &net.currency,
            100,
            None,
            10_000,
            &counters,
        )
        .await
        .expect("W2 pays A back");
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "credit payment of 100 over 3 paths (4 hops at most), {} payments: p50 {:.1} ms, \
         p99 {:.1} ms, mean {:.1} ms (plan included: paths asked of every node)",
        ms.len(),
        percentile(&ms, 50),
        percentile(&ms, 99),
        mean
    );
    let owed = eventually_settled(&net).await;
    assert_eq!(owed[&key("A", "W")], 100 * ROUNDS as u64);
}

/// Payments per second through one node (docs/BENCHMARKS.md): many wallets' payments of 1
/// over W -> A -> B -> T at once, each prepared on a fixed path (no planning), lines large
/// enough never to fill. `cargo test --release -p storage-agent --test credit_paths
/// credit_bench_throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn credit_bench_throughput() {
    const CONCURRENCY: u64 = 16;
    const SECONDS: u64 = 10;
    let net = Arc::new(six_nodes_scaled(1_000_000).await);
    ask_line(&net, "1000000000000").await;
    let path: Vec<String> = [net.wallet.entity().to_string()]
        .into_iter()
        .chain(["A", "B", "T"].iter().map(|n| net.node(n).entity.clone()))
        .collect();
    let t_url = net.node("T").url.clone();
    let a_url = net.node("A").url.clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(SECONDS);
    let workers = (0..CONCURRENCY).map(|w| {
        let (net, path, t_url, a_url) = (net.clone(), path.clone(), t_url.clone(), a_url.clone());
        tokio::spawn(async move {
            let via = SignedClient::new(net.http.clone(), &a_url, net.wallet.clone());
            let counters = Counters::from((node::now_ms() << 16) + (w << 40));
            let share = [PathShare { path, amount: 1 }];
            let (mut ok, mut failed) = (0u64, 0u64);
            while std::time::Instant::now() < deadline {
                match credit::send(
                    &net.http,
                    &net.wallet,
                    &via,
                    &t_url,
                    &net.currency,
                    &share,
                    1,
                    None,
                    5_000,
                    &counters,
                )
                .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        })
    });
    let (mut ok, mut failed) = (0u64, 0u64);
    for w in workers.collect::<Vec<_>>() {
        let (o, f) = w.await.expect("join");
        ok += o;
        failed += f;
    }
    println!(
        "credit payments of 1 over W -> A -> B -> T, {CONCURRENCY} at once for {SECONDS} s: \
         {:.0} payments/s through A ({ok} arrived, {failed} failed)",
        ok as f64 / SECONDS as f64
    );
    let owed = eventually_settled(&net).await;
    assert_eq!(owed[&key("A", "W")], ok);
}

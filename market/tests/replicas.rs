//! Two `market serve` processes on one PostgreSQL (issue 14, "several market processes"): they
//! answer the same listings and the same matches for the same book, an offer posted to one is
//! matched by the other, and no update is lost when both take writes for the same agents.
//!
//! The agents are `market::bench`'s synthetic ones: their own keys and signed offers, their
//! endpoints answered by one stand-in server in this process (a loopback /24 per network).
//! Both markets keep the one-agent-per-/24 rule.
//!
//! What "no update lost" covers here:
//! - offers: every agent heartbeats to A and B in turn (each agent's posts one after the other,
//!   all agents at once); both must end listing every agent online with its last offer;
//! - the prober: two more processes set to probe every second probe nothing while the first
//!   market holds the auditor lease (reputations written by two markets at once are checked
//!   in tests/reputation_race.rs).
//!
//! PostgreSQL only (`TEST_DATABASE_URL`); skipped with a note without it, a failure under
//! `CI=true`.

mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::book::{Listing, MatchRequest};
use protocol::market::{Offer, OFFER_TYPE, REFERENCE_DURATION_S};
use util::{listings, market_entity, match_raw, MarketProcess, Synth};

/// Networks of the book's agents (two agents on each): the newcomer has one more of its own.
const NETWORKS: usize = 30;
/// Agents whose first offer goes to market A, then those whose first goes to B.
const ON_A: usize = 40;
const ON_B: usize = 20;
/// The newcomer: the cheapest agent, on a network of its own, posted to A only after the
/// markets compared their matches.
const NEWCOMER: usize = ON_A + ON_B;
const AGENTS: usize = NEWCOMER + 1;
const SEED: u64 = 14;
const DAY_S: u64 = 86_400;
const MIB: u64 = 1 << 20;
/// Concurrent offer posts while the book is filled.
const POST_CONCURRENCY: usize = 8;
/// Longest one market may take to show what was posted to the other. A market may cache the
/// book in memory; the first look is immediate, later ones every [`POLL_MS`].
const SEEN_WAIT_MS_MAX: u64 = 5_000;
const POLL_MS: u64 = 100;
/// Heartbeats per agent in the concurrent phase, to A and B in turn.
const HEARTBEAT_ROUNDS: u64 = 8;
/// `free_bytes` of heartbeat `r` is this plus `r`, so the listing says which offer it kept.
const FREE_BYTES_BASE: u64 = 1 << 40;
/// How long the two processes without the lease are watched.
const PROBING_MS: u64 = 8_000;

/// The terms that make an agent the cheapest for every request here (price 1: contract_min,
/// no write or read charge), and able to take every shape.
fn cheapest(a: &mut market::bench::Agent, storage_per_gib_day: u64) {
    a.storage_per_gib_day = storage_per_gib_day;
    a.contract_min = 1;
    a.write_per_kib = 0;
    a.read_per_kib = 0;
    a.duration_s_max = 365 * DAY_S;
    a.block_bytes_max = 4 << 30;
}

fn request(
    currency: &str,
    k: u64,
    n: Option<u64>,
    target: f64,
    days: u64,
    shard_mib: u64,
) -> MatchRequest {
    MatchRequest {
        currency: currency.to_owned(),
        shard_bytes: shard_mib * MIB,
        data_shards: k,
        total_shards: n,
        duration_s: days * DAY_S,
        expected_read_bytes: shard_mib * MIB,
        max_failure_probability: target,
        exclude: Vec::new(),
    }
}

/// What must be the same in two markets' answers to one match: the status, and the agents
/// chosen with their prices and p_fail, the failure probability, the total and the candidates
/// (each set sorted by agent); for a refusal its code and the best achievable.
fn summary(status: u16, body: &serde_json::Value) -> serde_json::Value {
    let sorted = |list: &serde_json::Value, fields: &[&str]| -> serde_json::Value {
        let mut out: Vec<serde_json::Value> = list
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|x| {
                        fields
                            .iter()
                            .map(|f| (f.to_string(), x[*f].clone()))
                            .collect()
                    })
                    .map(|m: serde_json::Map<String, serde_json::Value>| m.into())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by_key(|x| x["agent"].to_string());
        out.into()
    };
    let chosen = ["agent", "endpoint", "price", "p_fail"];
    if status == 200 {
        serde_json::json!({
            "status": status,
            "agents": sorted(&body["agents"], &chosen),
            "failure_probability": body["failure_probability"],
            "total_price": body["total_price"],
            "candidates": sorted(&body["candidates"], &["agent", "price", "p_fail"]),
        })
    } else {
        let d = &body["error"]["details"];
        serde_json::json!({
            "status": status,
            "code": body["error"]["code"],
            "best_failure_probability": d["best_failure_probability"],
            "best": sorted(&d["best"]["agents"], &chosen),
            "best_total_price": d["best"]["total_price"],
        })
    }
}

/// A listing as JSON, by agent: everything the book says of each agent.
fn by_agent(list: &[Listing]) -> BTreeMap<String, serde_json::Value> {
    list.iter()
        .map(|l| {
            let v = serde_json::to_value(l).expect("listing json");
            (l.agent.clone(), v)
        })
        .collect()
}

fn free_bytes_of(l: &Listing) -> u64 {
    let (_, offer) = l.offer.open::<Offer>(OFFER_TYPE).expect("listed offer");
    offer.free_bytes
}

/// How many looks it took to see a write made through the other market (1: at once).
struct Looks {
    looks: u32,
    waited: Duration,
}

impl std::fmt::Display for Looks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.looks == 1 {
            write!(f, "at the first look ({:?})", self.waited)
        } else {
            write!(f, "at look {}, after {:?}", self.looks, self.waited)
        }
    }
}

/// Poll (at once, then every [`POLL_MS`], for at most [`SEEN_WAIT_MS_MAX`]) until `check`
/// answers; answers that and how many looks it took, or panics with `what` and the last
/// refusal.
async fn within_seen_wait<T, F, Fut>(what: &str, mut check: F) -> (T, Looks)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    let mut looks = 0;
    loop {
        looks += 1;
        match check().await {
            Ok(v) => {
                return (
                    v,
                    Looks {
                        looks,
                        waited: started.elapsed(),
                    },
                )
            }
            Err(last) => {
                assert!(
                    started.elapsed() < Duration::from_millis(SEEN_WAIT_MS_MAX),
                    "not within {SEEN_WAIT_MS_MAX} ms: {what}; last: {last}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
}

/// Wait until the market at `market` lists exactly `book` (entity ids), each agent online and
/// with `free_bytes` when given; answers its listing.
async fn until_listed(
    http: &reqwest::Client,
    market: &str,
    currency: &str,
    book: &[String],
    free_bytes: Option<u64>,
) -> (Vec<Listing>, Looks) {
    let mut want: Vec<String> = book.to_vec();
    want.sort();
    let want = &want;
    within_seen_wait(&format!("{market} lists the whole book"), || async move {
        let list = listings(http, market, currency).await;
        let mut got: Vec<String> = list.iter().map(|l| l.agent.clone()).collect();
        got.sort();
        let offline: Vec<&str> = list
            .iter()
            .filter(|l| !l.online)
            .map(|l| l.agent.as_str())
            .collect();
        let stale: Vec<(&str, u64)> = list
            .iter()
            .filter(|l| free_bytes.is_some_and(|f| free_bytes_of(l) != f))
            .map(|l| (l.agent.as_str(), free_bytes_of(l)))
            .collect();
        if &got != want {
            Err(format!("{} listed, {} expected", got.len(), want.len()))
        } else if !offline.is_empty() {
            Err(format!("offline: {offline:?}"))
        } else if !stale.is_empty() {
            Err(format!("older offers kept (agent, free_bytes): {stale:?}"))
        } else {
            Ok(list)
        }
    })
    .await
}

/// Wait until the market at `market` answers `req` choosing `agent`; answers how long it took.
async fn until_chosen(
    http: &reqwest::Client,
    market: &str,
    req: &MatchRequest,
    agent: &str,
) -> Looks {
    within_seen_wait(&format!("{market} chooses {agent}"), || async {
        let (status, body) = match_raw(http, market, req).await;
        let chosen = status == 200
            && body["agents"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["agent"] == agent));
        if chosen {
            Ok(())
        } else {
            Err(format!("{status} {}", summary(status, &body)))
        }
    })
    .await
    .1
}

/// The reputation shown for an agent after `probes` answered probes from the prior: its p_fail
/// over the reference 30 days, by the market's reliability model.
fn p_fail_after_probes(probes: u64) -> f64 {
    use market::reliability::{Outcome, Reputation};
    let mut rep = Reputation::default();
    for _ in 0..probes {
        rep.observe(Outcome::ProbeAnswered);
    }
    rep.p_fail(REFERENCE_DURATION_S)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_market_processes_on_one_postgres_agree_and_lose_no_update() {
    let Some(base) = util::postgres_or_skip("two market processes on one PostgreSQL") else {
        return;
    };
    let started = Instant::now();
    let schema = db::testing::fresh_postgres(&base, "replicas").expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let synth = Arc::new(Synth::start(AGENTS, NETWORKS + 1, SEED, |i, a| {
        if i == NEWCOMER {
            a.network = NETWORKS;
            cheapest(a, 1);
        } else {
            a.network = i % NETWORKS;
            // Dearer than price 1 for every request here: the newcomer and the repriced
            // agent below are the cheapest, whatever the seed.
            a.contract_min = a.contract_min.max(2);
        }
    }));
    let currency = synth.currency.issuer.to_string();
    let http = synth.http.clone();
    let entity = |i: usize| synth.entity(i);

    // A first: it migrates the schema, which B then finds up to date.
    let a = MarketProcess::start(&dir.path().join("a"), Some(&schema.url), 3_600);
    let b = MarketProcess::start(&dir.path().join("b"), Some(&schema.url), 3_600);
    let audience_a = market_entity(&http, &a.url).await;
    let audience_b = market_entity(&http, &b.url).await;
    eprintln!("two markets up in {:?}", started.elapsed());

    // 1. The book, split between the two: both list all of it, the same way.
    let to_a: Vec<usize> = (0..ON_A).collect();
    let to_b: Vec<usize> = (ON_A..NEWCOMER).collect();
    let refused = synth
        .post_all(&a.url, &audience_a, &to_a, POST_CONCURRENCY)
        .await;
    assert!(refused.is_empty(), "A refused offers: {refused:?}");
    let refused = synth
        .post_all(&b.url, &audience_b, &to_b, POST_CONCURRENCY)
        .await;
    assert!(refused.is_empty(), "B refused offers: {refused:?}");
    let book: Vec<String> = (0..NEWCOMER).map(entity).collect();
    let (list_a, waited_a) = until_listed(&http, &a.url, &currency, &book, None).await;
    let (list_b, waited_b) = until_listed(&http, &b.url, &currency, &book, None).await;
    eprintln!("both list the book (A {waited_a}, B {waited_b})");
    assert_eq!(
        by_agent(&list_a),
        by_agent(&list_b),
        "A and B list the book differently"
    );

    // 2. The same matches: the same agents, prices, p_fail, totals; the same refusals.
    let mut excluding = request(&currency, 4, None, 1e-3, 30, 4);
    excluding.exclude = (0..6).map(entity).collect();
    let shapes = [
        (
            "k4 auto 1e-3 30d 4MiB",
            request(&currency, 4, None, 1e-3, 30, 4),
        ),
        (
            "k6 n10 1e-2 30d 1MiB",
            request(&currency, 6, Some(10), 1e-2, 30, 1),
        ),
        (
            "k6 n20 1e-9 30d 1MiB",
            request(&currency, 6, Some(20), 1e-9, 30, 1),
        ),
        (
            "k10 auto 1e-6 30d 16MiB",
            request(&currency, 10, None, 1e-6, 30, 16),
        ),
        (
            "k2 auto 1e-6 7d 2MiB",
            request(&currency, 2, None, 1e-6, 7, 2),
        ),
        ("k4 auto 1e-3 excluding 6", excluding),
        // Cannot be met with at most 30 networks: both must refuse, with the same best.
        (
            "k20 auto 1e-9 30d 4MiB",
            request(&currency, 20, None, 1e-9, 30, 4),
        ),
    ];
    let mut met = 0;
    for (name, req) in &shapes {
        let (status_a, body_a) = match_raw(&http, &a.url, req).await;
        let (status_b, body_b) = match_raw(&http, &b.url, req).await;
        let (sa, sb) = (summary(status_a, &body_a), summary(status_b, &body_b));
        assert_eq!(sa, sb, "{name}: A and B answer differently");
        assert!(
            status_a == 200 || body_a["error"]["code"] == "cannot_meet_target",
            "{name}: {status_a} {body_a}"
        );
        if status_a == 200 {
            met += 1;
            assert!(
                !body_a["agents"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| req
                        .exclude
                        .contains(&x["agent"].as_str().unwrap_or_default().to_owned()))),
                "{name}: an excluded agent was chosen"
            );
        }
    }
    assert!(met >= 5, "only {met} of {} shapes were met", shapes.len());

    // 3. An offer posted to A is matched by B, and a new offer of an agent A knows, posted to
    // B, is matched by A.
    let newcomer = entity(NEWCOMER);
    let offer = synth.offer(NEWCOMER, |_| {});
    synth
        .post(&a.url, &audience_a, NEWCOMER, &offer)
        .await
        .expect("the newcomer's offer");
    let cheap = request(&currency, 4, None, 1e-3, 30, 4);
    let took = until_chosen(&http, &b.url, &cheap, &newcomer).await;
    eprintln!("B chose the newcomer posted to A {took}");
    // The only agent left: B must answer it alone.
    let mut only = request(&currency, 1, Some(1), 0.2, 30, 4);
    only.exclude = book.clone();
    let (status, body) = match_raw(&http, &b.url, &only).await;
    assert_eq!(status, 200, "{body}");
    let chosen: Vec<&str> = body["agents"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["agent"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        chosen,
        [newcomer.as_str()],
        "B, all but the newcomer excluded"
    );

    // An agent first posted to A, repriced through B to the newcomer's price.
    let repriced = (0..ON_A)
        .find(|&i| synth.agents[i].duration_s_max >= 30 * DAY_S)
        .expect("an agent selling 30-day contracts");
    let offer = synth.offer(repriced, |o| {
        let c = &mut o.currencies[0];
        (
            c.storage_per_gib_day,
            c.contract_min,
            c.write_per_kib,
            c.read_per_kib,
        ) = (2, 1, 0, 0);
        o.block_bytes_max = 4 << 30;
    });
    synth
        .post(&b.url, &audience_b, repriced, &offer)
        .await
        .expect("the repriced offer");
    let took = until_chosen(&http, &a.url, &cheap, &entity(repriced)).await;
    eprintln!("A chose the agent repriced through B {took}");

    // 4. Heartbeats for every agent, to A and B in turn, all agents at once: both end with
    // every agent online and its last offer (none overwritten by an older one).
    let mut beats = tokio::task::JoinSet::new();
    for i in 0..AGENTS {
        let synth = synth.clone();
        let targets = [
            (a.url.clone(), audience_a.clone()),
            (b.url.clone(), audience_b.clone()),
        ];
        beats.spawn(async move {
            for round in 0..HEARTBEAT_ROUNDS {
                let (url, audience) = &targets[(i + round as usize) % 2];
                let offer = synth.offer(i, |o| o.free_bytes = FREE_BYTES_BASE + round);
                synth
                    .post(url, audience, i, &offer)
                    .await
                    .map_err(|e| format!("agent {i}, heartbeat {round} to {url}: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = beats.join_next().await {
        done.expect("heartbeat task").expect("heartbeat accepted");
    }
    let everyone: Vec<String> = (0..AGENTS).map(entity).collect();
    let last = Some(FREE_BYTES_BASE + HEARTBEAT_ROUNDS - 1);
    let (list_a, waited_a) = until_listed(&http, &a.url, &currency, &everyone, last).await;
    let (list_b, waited_b) = until_listed(&http, &b.url, &currency, &everyone, last).await;
    eprintln!(
        "{} heartbeats: both list every agent's last offer (A {waited_a}, B \
         {waited_b})",
        AGENTS as u64 * HEARTBEAT_ROUNDS
    );
    assert_eq!(
        by_agent(&list_a),
        by_agent(&list_b),
        "A and B list the book differently"
    );
    let prior = p_fail_after_probes(0);
    assert!(
        list_a.iter().all(|l| l.p_fail == prior),
        "no probe ran yet, every agent is at the prior p_fail {prior}"
    );

    // 5. The prober runs in one process: C and D, probing every second, probe nothing while
    // A (probing once an hour) holds the auditor lease. Without the lease each would probe
    // every agent every second. No heartbeats go out in this phase, so whatever the stand-in
    // answers would be probes. (Two processes writing reputations at once lose no update:
    // tests/reputation_race.rs.)
    let before: Vec<u64> = (0..AGENTS).map(|i| synth.standin.answered(i)).collect();
    let mut c = MarketProcess::start(&dir.path().join("c"), Some(&schema.url), 1);
    let mut d = MarketProcess::start(&dir.path().join("d"), Some(&schema.url), 1);
    tokio::time::sleep(Duration::from_millis(PROBING_MS)).await;
    let probes: u64 = (0..AGENTS)
        .map(|i| synth.standin.answered(i) - before[i])
        .sum();
    c.kill();
    d.kill();
    assert_eq!(
        probes,
        0,
        "processes without the auditor lease probed: {}",
        std::fs::read_to_string(&c.log).unwrap_or_default()
    );
    eprintln!("replicas: {:?} in all", started.elapsed());
}

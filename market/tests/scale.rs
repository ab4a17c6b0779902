//! A synthetic book of 10,000 agents (issue 14): every match meets its target exactly (the
//! failure probability it reports is the Poisson-binomial loss of the chosen agents' p_fail,
//! computed here, and within the target), and never picks an offline agent or two agents on
//! one /24. SQLite, and PostgreSQL when TEST_DATABASE_URL is set.
//!
//! The book is built as agents build it: 10,000 signed offers posted over HTTP to a real
//! `market serve` process, their endpoints answered by `market::bench`'s stand-in on 1,000
//! loopback /24s (`127.A.B.1`). It is laid out so that a careless choice would break the rules:
//! - the [`OFFLINE`] cheapest agents go silent (their endpoint answers `503`) once their
//!   offers are in; the market's prober (every second here) must find them offline, and then
//!   no match may choose them, nor list them as candidates;
//! - the [`CLUSTERED`] next cheapest share [`CLUSTER_NETWORKS`] networks, so the cheapest
//!   online choice would put several on one /24.
//!
//! Everything checked is computed here from the answers and from the terms the test gave its
//! agents (prices through `protocol::market::request_price`, the DESIGN's formula), not with
//! the market's selection code.

mod util;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use market::bench::Shape;
use protocol::book::{MatchAnswer, MatchRequest};
use util::{listings, market_entity, match_raw, MarketProcess, Synth};

const AGENTS: usize = 10_000;
const NETWORKS: usize = 1_000;
/// The cheapest agents, silent once their offers are in.
const OFFLINE: usize = 200;
/// The next cheapest, on [`CLUSTER_NETWORKS`] networks only.
const CLUSTERED: usize = 200;
const CLUSTER_NETWORKS: usize = 10;
const SEED: u64 = 10_000;
const DAY_S: u64 = 86_400;
const MIB: u64 = 1 << 20;
/// Concurrent offer posts.
const POST_CONCURRENCY: usize = 16;
/// Longest wait for the book to show every agent, the silent ones offline.
const BOOK_WAIT_S_MAX: u64 = 120;
/// Between looks at the book while waiting.
const BOOK_POLL_MS: u64 = 500;
/// Relative difference allowed between the reported failure probability and the one computed
/// here (the same sum, perhaps in another order).
const LOSS_RELATIVE_EPSILON: f64 = 1e-9;

/// Terms that make an agent cheaper than every ordinary one for every request here.
fn cheap(a: &mut market::bench::Agent, storage_per_gib_day: u64) {
    a.storage_per_gib_day = storage_per_gib_day;
    a.contract_min = 1;
    a.write_per_kib = 0;
    a.read_per_kib = 0;
    a.duration_s_max = 365 * DAY_S;
    a.block_bytes_max = 4 << 30;
}

fn is_offline(i: usize) -> bool {
    i < OFFLINE
}

fn is_clustered(i: usize) -> bool {
    (OFFLINE..OFFLINE + CLUSTERED).contains(&i)
}

/// Probability that fewer than `k` of agents failing independently with probabilities `p`
/// survive: the Poisson-binomial tail, by dynamic programming over the number of failures.
fn loss_probability(p: &[f64], k: usize) -> f64 {
    // failures[j]: probability that exactly j of the agents so far failed.
    let mut failures = vec![0.0f64; p.len() + 1];
    failures[0] = 1.0;
    for (seen, &q) in p.iter().enumerate() {
        for j in (0..=seen + 1).rev() {
            let stay = failures[j] * (1.0 - q);
            let fail = if j > 0 { failures[j - 1] * q } else { 0.0 };
            failures[j] = stay + fail;
        }
    }
    // Fewer than k survive: more than n - k failed.
    let n = p.len();
    failures
        .iter()
        .enumerate()
        .filter(|(j, _)| *j + k > n)
        .map(|(_, f)| f)
        .sum()
}

/// The /24 of an endpoint `http://A.B.C.D:port/...`.
fn slash_24(endpoint: &str) -> String {
    let host = endpoint
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap_or_default();
    let ip: std::net::Ipv4Addr = host
        .parse()
        .unwrap_or_else(|_| panic!("endpoint {endpoint} has no IPv4 host"));
    let o = ip.octets();
    format!("{}.{}.{}.0/24", o[0], o[1], o[2])
}

/// Check one met match against the rules; answers how many clustered agents it chose.
fn check_answer(
    name: &str,
    synth: &Synth,
    index: &HashMap<String, usize>,
    req: &MatchRequest,
    answer: &MatchAnswer,
) -> usize {
    let n = answer.agents.len();
    let k = req.data_shards as usize;
    match req.total_shards {
        Some(want) => assert_eq!(n as u64, want, "{name}: n"),
        None => assert!(n >= k, "{name}: {n} agents for k = {k}"),
    }
    let mut agents = HashSet::new();
    let mut networks = HashSet::new();
    let mut total = 0u64;
    for c in &answer.agents {
        let &i = index
            .get(&c.agent)
            .unwrap_or_else(|| panic!("{name}: chose {}, not one of the book's", c.agent));
        assert!(!is_offline(i), "{name}: chose agent {i}, offline");
        assert!(
            !req.exclude.contains(&c.agent),
            "{name}: chose agent {i}, excluded"
        );
        assert!(agents.insert(i), "{name}: chose agent {i} twice");
        let a = &synth.agents[i];
        assert_eq!(c.endpoint, a.endpoint, "{name}: agent {i}'s endpoint");
        assert!(
            networks.insert(slash_24(&c.endpoint)),
            "{name}: two agents on {} (agent {i} one of them)",
            slash_24(&c.endpoint)
        );
        assert!(
            c.p_fail > 0.0 && c.p_fail < 1.0,
            "{name}: agent {i} p_fail {}",
            c.p_fail
        );
        let terms = protocol::market::OfferCurrency {
            issuer: synth.currency.issuer.clone(),
            issuer_url: synth.currency.issuer_url.clone(),
            storage_per_gib_day: a.storage_per_gib_day,
            write_per_kib: a.write_per_kib,
            read_per_kib: a.read_per_kib,
            contract_min: a.contract_min,
            pay_to: None,
        };
        let price = protocol::market::request_price(
            &terms,
            req.shard_bytes,
            req.duration_s,
            req.expected_read_bytes,
        )
        .expect("price");
        assert_eq!(c.price, price, "{name}: agent {i}'s price");
        total += c.price;
    }
    assert_eq!(answer.total_price, total, "{name}: total price");
    let p: Vec<f64> = answer.agents.iter().map(|c| c.p_fail).collect();
    let loss = loss_probability(&p, k);
    let reported = answer.failure_probability;
    assert!(
        (loss - reported).abs() <= LOSS_RELATIVE_EPSILON * loss.max(reported),
        "{name}: reported failure probability {reported:e}, the chosen agents' is {loss:e}"
    );
    assert!(
        reported <= req.max_failure_probability,
        "{name}: failure probability {reported:e} over the target {:e}",
        req.max_failure_probability
    );
    for c in &answer.candidates {
        if let Some(&i) = index.get(&c.agent) {
            assert!(!is_offline(i), "{name}: agent {i}, offline, is a candidate");
        }
    }
    answer
        .agents
        .iter()
        .filter(|c| index.get(&c.agent).is_some_and(|&i| is_clustered(i)))
        .count()
}

/// Build the book in a market on `database` (SQLite when `None`) and check matches of several
/// shapes; says how long each part took.
async fn book_of_ten_thousand(backend: &str, synth: &Arc<Synth>, database: Option<String>) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    // Probes every second: the silent agents are found offline while the book fills.
    let market = MarketProcess::start(&dir.path().join("market"), database.as_deref(), 1);
    let http = synth.http.clone();
    let audience = market_entity(&http, &market.url).await;
    let currency = synth.currency.issuer.to_string();

    // The cheapest agents first; then they go silent, and the rest of the book fills.
    let first: Vec<usize> = (0..OFFLINE).collect();
    let refused = synth
        .post_all(&market.url, &audience, &first, POST_CONCURRENCY)
        .await;
    assert!(refused.is_empty(), "[{backend}] refused: {refused:?}");
    for i in 0..OFFLINE {
        synth.standin.set_silent(i, true);
    }
    let filling = Instant::now();
    let rest: Vec<usize> = (OFFLINE..AGENTS).collect();
    let refused = synth
        .post_all(&market.url, &audience, &rest, POST_CONCURRENCY)
        .await;
    let fill = filling.elapsed();
    assert!(
        refused.is_empty(),
        "[{backend}] {} refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    eprintln!(
        "[{backend}] {} offers posted in {fill:.1?} ({:.0}/s, {POST_CONCURRENCY} clients)",
        rest.len(),
        rest.len() as f64 / fill.as_secs_f64()
    );

    // The book: every agent, the silent ones offline and only they.
    let index = synth_index(synth);
    let waiting = Instant::now();
    let mut looks = 0;
    loop {
        looks += 1;
        let list = listings(&http, &market.url, &currency).await;
        let listed = list.len();
        let wrong: Vec<(usize, bool)> = list
            .iter()
            .filter_map(|l| {
                let i = *index.get(&l.agent)?;
                (l.online == is_offline(i)).then_some((i, l.online))
            })
            .collect();
        if listed == AGENTS && wrong.is_empty() {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(BOOK_WAIT_S_MAX),
            "[{backend}] within {BOOK_WAIT_S_MAX} s: {listed} of {AGENTS} listed, {} online or \
             offline wrongly (agent, online), e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(BOOK_POLL_MS)).await;
    }
    eprintln!(
        "[{backend}] the book lists {AGENTS} agents, the {OFFLINE} silent ones offline, after \
         {:.1?} more ({looks} looks)",
        waiting.elapsed()
    );

    // Matches of several shapes.
    let mut shapes: Vec<(String, MatchRequest)> = Shape::all(u64::MAX)
        .into_iter()
        .map(|s| (s.name.clone(), s.request(&synth.currency.issuer)))
        .collect();
    let extra = [
        (4, Some(8), 1e-3, 30, 4),
        (20, None, 1e-9, 7, 4),
        (10, None, 1e-6, 30, 1),
    ];
    for (k, n, target, days, mib) in extra {
        let s = Shape {
            name: format!(
                "k{k} n{} {target:.0e} {days}d {mib}MiB",
                n.map_or("auto".to_owned(), |n| n.to_string())
            ),
            data_shards: k,
            total_shards: n,
            max_failure_probability: target,
            duration_s: days * DAY_S,
            shard_bytes: mib * MIB,
        };
        shapes.push((s.name.clone(), s.request(&synth.currency.issuer)));
    }
    // The cheap clustered agents of half the cluster networks excluded.
    let mut excluding = shapes[1].1.clone();
    excluding.exclude = (OFFLINE..OFFLINE + CLUSTERED)
        .filter(|i| synth.agents[*i].network < CLUSTER_NETWORKS / 2)
        .map(|i| synth.entity(i))
        .collect();
    shapes.push((
        format!("{} excluding {}", shapes[1].0, excluding.exclude.len()),
        excluding,
    ));
    for (name, req) in &shapes {
        let asked = Instant::now();
        let (status, body) = match_raw(&http, &market.url, req).await;
        let took = asked.elapsed();
        assert_eq!(status, 200, "[{backend}] {name}: {body}");
        let answer: MatchAnswer = serde_json::from_value(body).expect("match answer");
        let clustered = check_answer(name, synth, &index, req, &answer);
        eprintln!(
            "[{backend}] {name}: {} agents ({clustered} of the clustered), loss {:.3e}, price \
             {}, {} candidates, in {took:.1?}",
            answer.agents.len(),
            answer.failure_probability,
            answer.total_price,
            answer.candidates.len()
        );
    }
    eprintln!("[{backend}] {:.1?} in all", started.elapsed());
}

/// The book's agents by entity id.
/// The book read in pages: agents in it, and listings per page (not a divisor of it).
const PAGED_AGENTS: usize = 2_500;
const PAGE_LISTINGS: usize = 997;

/// `GET url`: the status and the JSON body.
async fn get_json(http: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let resp = http.get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

/// The agents of the book in `currency`, read `limit` at a time by following `next_offset`.
async fn pages(http: &reqwest::Client, market: &str, currency: &str, limit: usize) -> Vec<String> {
    let mut agents = Vec::new();
    let mut offset = 0;
    loop {
        let (status, page) = get_json(
            http,
            &format!("{market}/v1/offers?currency={currency}&offset={offset}&limit={limit}"),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let listed = page["offers"].as_array().expect("offers");
        assert!(listed.len() <= limit, "a page longer than its limit");
        agents.extend(
            listed
                .iter()
                .map(|l| l["agent"].as_str().unwrap_or("").to_owned()),
        );
        match page["next_offset"].as_u64() {
            Some(next) => {
                assert_eq!(next as usize, offset + listed.len(), "{page}");
                offset = next as usize;
            }
            None => {
                assert_eq!(page["total"].as_u64(), Some(agents.len() as u64));
                return agents;
            }
        }
    }
}

fn synth_index(synth: &Synth) -> HashMap<String, usize> {
    (0..synth.agents.len())
        .map(|i| (synth.entity(i), i))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_of_ten_thousand_agents_meets_targets_exactly_and_keeps_the_rules() {
    for (backend, database) in db::testing::backends("scale") {
        let built = Instant::now();
        let synth = Arc::new(Synth::start(AGENTS, NETWORKS, SEED, |i, a| {
            if is_offline(i) {
                cheap(a, 1 + (i % 5) as u64);
            } else if is_clustered(i) {
                cheap(a, 6 + (i % 10) as u64);
                a.network = i % CLUSTER_NETWORKS;
            } else {
                a.contract_min = a.contract_min.max(2);
            }
        }));
        eprintln!(
            "[{backend}] {AGENTS} agents and the stand-in on {NETWORKS} networks in {:.1?}",
            built.elapsed()
        );
        book_of_ten_thousand(backend, &synth, database.url()).await;
    }
}

/// `GET /v1/offers` in pages (`offset`, `limit`, `next_offset`): the pages in turn list the
/// whole book in its order, one agent can be asked for alone (`agent=`), and a page size
/// the market does not take is refused with `invalid_query`. The market never probes here
/// (every heartbeat is fresh for an hour), so the book does not move between pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_book_reads_in_pages_in_its_order() {
    let synth = Arc::new(Synth::start(
        PAGED_AGENTS,
        PAGED_AGENTS / 4,
        SEED,
        |_, _| {},
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let market = MarketProcess::start(&dir.path().join("market"), None, 3_600);
    let http = synth.http.clone();
    let audience = market_entity(&http, &market.url).await;
    let currency = synth.currency.issuer.to_string();
    let every: Vec<usize> = (0..PAGED_AGENTS).collect();
    let refused = synth
        .post_all(&market.url, &audience, &every, POST_CONCURRENCY)
        .await;
    assert!(refused.is_empty(), "refused: {refused:?}");

    let whole = listings(&http, &market.url, &currency).await;
    assert_eq!(
        whole.len(),
        PAGED_AGENTS,
        "the first page holds a book this size"
    );
    assert!(
        whole
            .windows(2)
            .all(|w| w[0].adjusted_price <= w[1].adjusted_price),
        "the book is not cheapest first"
    );
    let order: Vec<&str> = whole.iter().map(|l| l.agent.as_str()).collect();
    let paged = pages(&http, &market.url, &currency, PAGE_LISTINGS).await;
    assert_eq!(paged, order, "the pages list the book in another order");

    let some = &whole[PAGED_AGENTS / 2];
    let (status, alone) = get_json(
        &http,
        &format!(
            "{}/v1/offers?currency={currency}&agent={}",
            market.url, some.agent
        ),
    )
    .await;
    assert_eq!(status, 200, "{alone}");
    assert_eq!(alone["total"], 1, "{alone}");
    assert_eq!(alone["offers"][0]["agent"], some.agent.as_str());
    assert_eq!(alone["offers"][0]["reference_price"], some.reference_price);
    assert!(alone.get("next_offset").is_none(), "{alone}");

    for bad in ["limit=0", "limit=100001"] {
        let (status, body) = get_json(&http, &format!("{}/v1/offers?{bad}", market.url)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{bad}: {body}");
    }

    // The web page shows the book a page at a time, with a link to the next.
    let html = http
        .get(format!("{}/?currency={currency}&page=2", market.url))
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page");
    let rows = html.matches("<tr class=\"offer\"").count();
    assert_eq!(rows, market::page::PAGE_ROWS, "rows on page 2");
    assert!(
        html.contains(&format!(
            "data-agent=\"{}\"",
            order[market::page::PAGE_ROWS]
        )),
        "page 2 starts with the book's 101st agent"
    );
    assert!(html.contains("rel=\"next\"") && html.contains("rel=\"prev\""));
}

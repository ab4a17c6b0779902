//! `market bench`: a load generator for a running market (issue 14, step 1).
//!
//! It creates N synthetic agents (Ed25519 keys, varied prices, block and duration limits,
//! spread over many /24 networks), starts one stand-in server in this process that answers
//! every agent's `/.well-known/lcp` as that agent ([`standin`]), and then:
//! 1. fills the book: every agent posts its signed offer (a signed `POST /v1/offers` of the
//!    offer envelope, as `storage_agent::tasks::heartbeat` does), with bounded concurrency;
//! 2. measures: heartbeats (each a freshly issued and signed offer) go out open loop at the
//!    chosen rate, at most [`HEARTBEATS_IN_FLIGHT_MAX`] unanswered (past that one is skipped
//!    and counted: the market is not keeping up), while C clients each ask for matches of
//!    several shapes ([`Shape::all`]) one after the other (closed loop).
//!
//! It reports ([`report`]) offers posted per second, heartbeat and match latency percentiles,
//! matches per second and errors by code. Every answered match is checked against the rules a
//! buyer relies on (k..n agents, distinct agents on distinct /24s, the failure probability the
//! exact Poisson-binomial loss of the chosen agents' p_fail and within the target).
//!
//! Limits of the stand-in, said where the figures are published: the agents' endpoints all
//! answer from this process on loopback (one listener per network, a path per agent), so the
//! market's endpoint checks cost it a loopback round trip, not an internet one; and synthetic
//! agents start unvetted at the prior reputation, since reputations come only from the
//! market's own audits and probes and no API sets them.
//!
//! Receipts (the market's signatures on answers) are not verified: on one machine that CPU
//! would come out of the market being measured (as `lcp bench` does by default).

mod report;
mod standin;
mod stats;
mod synth;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{EntityId, ErrorBody, KeyPair};
use tokio::task::JoinSet;

pub use report::{FillReport, HeartbeatReport, MatchReport, Report, ShapeReport, SteadyReport};
pub use standin::{StandIn, NETWORKS_MAX};
pub use stats::{Errors, Latency};
pub use synth::{Agent, Currency, Shape, OFFER_VALIDITY_S};

use crate::book::MatchAnswer;

pub const AGENTS_DEFAULT: usize = 1_000;
pub const MATCHES_DEFAULT: usize = 100;
pub const CONCURRENCY_DEFAULT: usize = 2;
pub const POST_CONCURRENCY_DEFAULT: usize = 16;
pub const K_MAX_DEFAULT: u64 = 30;
pub const FILL_S_MAX_DEFAULT: u64 = 300;
pub const SECONDS_MIN_DEFAULT: u64 = 10;
pub const SECONDS_MAX_DEFAULT: u64 = 120;
pub const SEED_DEFAULT: u64 = 1;
/// The bench's own runtime threads: the machine's two cores are shared with the market.
pub const CLIENT_THREADS: usize = 2;
/// Networks when not given: one per agent up to this many (each is one listening socket).
pub const NETWORKS_DEFAULT_MAX: usize = 1_000;
/// Most synthetic agents one bench makes (keys are generated and held in memory).
pub const AGENTS_MAX: usize = 1_000_000;
/// Heartbeats sent and not yet answered at most; past it a due heartbeat is skipped.
pub const HEARTBEATS_IN_FLIGHT_MAX: usize = 512;
/// Longest wait for the market to answer one offer post (the market itself waits up to
/// `book::ENDPOINT_WAIT_MS_MAX` for the agent's endpoint).
const OFFER_WAIT_MS_MAX: u64 = 30_000;
/// Longest wait for one match (at 10,000 agents a match took tens of seconds).
const MATCH_WAIT_MS_MAX: u64 = 120_000;
/// Longest wait for the market's descriptor at the start.
const DESCRIPTOR_WAIT_MS_MAX: u64 = 10_000;
/// Longest the heartbeat sender sleeps between looks at the clock (the stop flag is seen
/// within this).
const HEARTBEAT_TICK_MS_MAX: u64 = 20;
/// Longest wait for heartbeats still in flight when the measured phase ends.
const DRAIN_WAIT_MS_MAX: u64 = 30_000;
/// Heartbeats per second when not given: every agent once a minute (the issue's 1,700/s
/// for 100,000 agents).
const HEARTBEAT_PERIOD_S_DEFAULT: f64 = 60.0;
/// Relative tolerance when re-computing a match's failure probability (the DP sums the
/// same terms in another order).
const LOSS_RELATIVE_EPSILON: f64 = 1e-6;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Config(String),
    #[error("the stand-in endpoint server: {0}")]
    StandIn(String),
    #[error("the market at {url}: {message}")]
    Market { url: String, message: String },
    #[error("cannot make a key: {0}")]
    Key(String),
    #[error("cannot sign an offer: {0}")]
    Sign(String),
    #[error("cannot seed reputations in the market's database: {0}")]
    Reputations(String),
}

/// What `market bench` runs; its flags (`market bench --help`) are these fields.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The market's URL, e.g. http://127.0.0.1:7200
    #[arg(long = "market", env = "MARKET_URL", value_name = "URL")]
    pub market_url: String,
    /// Synthetic agents to create, each with its own key, prices and limits
    #[arg(long, default_value_t = AGENTS_DEFAULT)]
    pub agents: usize,
    /// Loopback /24 networks (127.A.B.1) the agents' endpoints are spread over [default:
    /// one per agent, at most 1,000]
    #[arg(long)]
    pub networks: Option<usize>,
    /// Heartbeats (re-signed offers) per second while matches run [default: every agent
    /// once a minute, agents / 60]
    #[arg(long)]
    pub heartbeats_per_s: Option<f64>,
    /// Matches to ask for after the book is filled (shapes k = 4..30, targets 1e-3..1e-9)
    #[arg(long, default_value_t = MATCHES_DEFAULT)]
    pub matches: usize,
    /// Concurrent match clients, each waiting for its answer before asking again
    #[arg(long, default_value_t = CONCURRENCY_DEFAULT)]
    pub concurrency: usize,
    /// Concurrent offer posts while the book is filled
    #[arg(long, default_value_t = POST_CONCURRENCY_DEFAULT)]
    pub post_concurrency: usize,
    /// Skip match shapes whose k (data shards) is larger than this
    #[arg(long, default_value_t = K_MAX_DEFAULT)]
    pub k_max: u64,
    /// Longest the book may take to fill, in seconds (agents not posted by then are left out)
    #[arg(long, default_value_t = FILL_S_MAX_DEFAULT)]
    pub fill_s_max: u64,
    /// Shortest the measured phase runs, in seconds: heartbeats go on after the matches
    #[arg(long, default_value_t = SECONDS_MIN_DEFAULT)]
    pub seconds_min: u64,
    /// Longest the measured phase runs, in seconds: matches still running are cut and counted
    #[arg(long, default_value_t = SECONDS_MAX_DEFAULT)]
    pub seconds_max: u64,
    /// Issuer entity id the offers are priced in [default: a fresh id, so the matches see
    /// only this run's agents]
    #[arg(long)]
    pub currency: Option<String>,
    /// Seed for the agents' prices and limits (the same seed, the same terms)
    #[arg(long, default_value_t = SEED_DEFAULT)]
    pub seed: u64,
    /// After the fill, give every agent a synthetic reputation (as `market seed-reputations`
    /// does) straight in the market's database, a SQLite file or a PostgreSQL URL: no API
    /// sets reputations, and without it every agent is an unvetted newcomer at the prior
    #[arg(long, value_name = "DATABASE")]
    pub reputations_in: Option<String>,
}

impl Options {
    /// The defaults, against `market_url`.
    pub fn new(market_url: &str) -> Options {
        Options {
            market_url: market_url.to_owned(),
            agents: AGENTS_DEFAULT,
            networks: None,
            heartbeats_per_s: None,
            matches: MATCHES_DEFAULT,
            concurrency: CONCURRENCY_DEFAULT,
            post_concurrency: POST_CONCURRENCY_DEFAULT,
            k_max: K_MAX_DEFAULT,
            fill_s_max: FILL_S_MAX_DEFAULT,
            seconds_min: SECONDS_MIN_DEFAULT,
            seconds_max: SECONDS_MAX_DEFAULT,
            currency: None,
            seed: SEED_DEFAULT,
            reputations_in: None,
        }
    }
}

/// What every request of the run shares.
struct Ctx {
    http: reqwest::Client,
    market: String,
    /// The market's entity id: the audience requests are signed for.
    audience: String,
    currency: Currency,
    counters: node::client::ClockCounter,
    agents: Vec<Agent>,
}

/// Run the bench against `options.market_url`.
pub async fn run(options: Options) -> Result<Report, BenchError> {
    check(&options)?;
    let shapes = Shape::all(options.k_max);
    if options.matches > 0 && shapes.is_empty() {
        return Err(BenchError::Config(format!(
            "no match shape has k at most {} (the smallest k is 4)",
            options.k_max
        )));
    }
    node::client::check_url(&options.market_url).map_err(|e| BenchError::Config(e.to_string()))?;
    let market = options.market_url.trim_end_matches('/').to_owned();
    let http = node::client::http_client(&node::client::ClientOptions::default())
        .map_err(|e| BenchError::Config(e.to_string()))?;
    let audience = market_entity(&http, &market).await?;
    let networks = options
        .networks
        .unwrap_or(options.agents.min(NETWORKS_DEFAULT_MAX));
    let (count, seed) = (options.agents, options.seed);
    // Key generation is CPU work (about 20 µs a key): off the async workers.
    let mut agents = tokio::task::spawn_blocking(move || Agent::generate(count, networks, seed))
        .await
        .map_err(|e| BenchError::Key(e.to_string()))??;
    let entities: Arc<Vec<EntityId>> =
        Arc::new(agents.iter().map(|a| a.key.entity().clone()).collect());
    // Binding up to thousands of listeners and waiting for the server thread: off the workers.
    let standin = tokio::task::spawn_blocking(move || StandIn::start(networks, entities))
        .await
        .map_err(|e| BenchError::StandIn(e.to_string()))??;
    for (i, a) in agents.iter_mut().enumerate() {
        a.endpoint = standin
            .endpoint(i, a.network)
            .ok_or_else(|| BenchError::StandIn(format!("no listener for network {}", a.network)))?;
    }
    let issuer = match &options.currency {
        Some(c) => EntityId::parse(c)
            .map_err(|_| BenchError::Config(format!("--currency {c:?} is not an entity id")))?,
        None => KeyPair::generate()
            .map_err(|e| BenchError::Key(e.to_string()))?
            .entity()
            .clone(),
    };
    let ctx = Arc::new(Ctx {
        http,
        market: market.clone(),
        audience,
        currency: Currency {
            issuer: issuer.clone(),
            // Only the market's page asks an issuer for its currency: this one has none
            // (the stand-in answers 404), so amounts show in minor units there.
            issuer_url: standin
                .endpoint(0, 0)
                .map(|e| format!("{e}/issuer"))
                .unwrap_or_default(),
        },
        counters: node::client::ClockCounter::default(),
        agents,
    });
    let fill = fill(&ctx, options.post_concurrency, options.fill_s_max).await;
    if let Some(location) = options.reputations_in.clone() {
        let seed = options.seed;
        tokio::task::spawn_blocking(move || -> Result<usize, BenchError> {
            let database = db::Database::open(db::Location::parse(&location), crate::migrations())
                .map_err(|e| BenchError::Reputations(e.to_string()))?;
            let mut conn = database
                .get()
                .map_err(|e| BenchError::Reputations(e.to_string()))?;
            let seeded = crate::tools::seed_reputations(&mut conn, seed)
                .map_err(|e| BenchError::Reputations(e.to_string()))?;
            // The seeding rewrote every row at once, which no market does: its aftermath
            // (SQLite's write-ahead log checkpointed by the market's next write, PostgreSQL's
            // dead rows) is paid here, not in the measured phase.
            use diesel::RunQueryDsl;
            let settle: &[&str] = match &*conn {
                db::AnyConnection::Sqlite(_) => &["PRAGMA wal_checkpoint(TRUNCATE)"],
                db::AnyConnection::Postgresql(_) => &["VACUUM ANALYZE agents", "CHECKPOINT"],
            };
            for statement in settle {
                diesel::sql_query(*statement)
                    .execute(&mut *conn)
                    .map_err(|e| BenchError::Reputations(format!("{statement}: {e}")))?;
            }
            Ok(seeded)
        })
        .await
        .map_err(|e| BenchError::Reputations(e.to_string()))??;
        // Every row changed at once: the market reads them all at its next refresh. One
        // untimed match takes that before the measured phase, which would otherwise count it.
        if let Some(shape) = shapes.first() {
            let _ = match_once(&ctx, shape).await;
        }
    }
    let steady = steady(&ctx, &options, &shapes).await;
    Ok(Report {
        market,
        agents: options.agents,
        networks,
        seed: options.seed,
        currency: issuer.to_string(),
        fill,
        steady,
        endpoint_requests: standin.served(),
    })
}

fn check(o: &Options) -> Result<(), BenchError> {
    let bad = |m: String| Err(BenchError::Config(m));
    if o.agents == 0 || o.agents > AGENTS_MAX {
        return bad(format!("--agents must be 1 to {AGENTS_MAX}"));
    }
    if let Some(n) = o.networks {
        if n == 0 || n > NETWORKS_MAX {
            return bad(format!("--networks must be 1 to {NETWORKS_MAX}"));
        }
    }
    if let Some(r) = o.heartbeats_per_s {
        if !(r.is_finite() && r >= 0.0) {
            return bad("--heartbeats-per-s must be a number at least 0".into());
        }
    }
    if o.concurrency == 0 || o.post_concurrency == 0 {
        return bad("--concurrency and --post-concurrency must be at least 1".into());
    }
    if o.seconds_min > o.seconds_max {
        return bad("--seconds-min must be at most --seconds-max".into());
    }
    Ok(())
}

/// The market's entity id, from its descriptor; it must say it is a market.
async fn market_entity(http: &reqwest::Client, market: &str) -> Result<String, BenchError> {
    let fail = |message: String| BenchError::Market {
        url: market.to_owned(),
        message,
    };
    let doc: serde_json::Value = http
        .get(format!("{market}/.well-known/lcp"))
        .timeout(Duration::from_millis(DESCRIPTOR_WAIT_MS_MAX))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?
        .json()
        .await
        .map_err(|e| fail(format!("no descriptor: {e}")))?;
    if doc["role"] != "market" {
        return Err(fail(format!("answers as {}, not as a market", doc["role"])));
    }
    let entity = doc["entity"].as_str().unwrap_or_default();
    EntityId::parse(entity)
        .map(|e| e.to_string())
        .map_err(|_| fail("its descriptor names no valid entity".into()))
}

/// A stable code for a request that got no answer.
fn transport_code(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    }
    .to_owned()
}

/// The error code of a refusal: the body's `error.code`, else `http_<status>`.
fn error_code(status: u16, body: &[u8]) -> String {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.error.code)
        .unwrap_or_else(|_| format!("http_{status}"))
}

/// Agent `i` issues, signs and posts its offer, as a storage agent's heartbeat does. Answers
/// the time from signing to the market's answer.
async fn post_offer(ctx: &Ctx, i: usize) -> Result<Duration, String> {
    let agent = ctx.agents.get(i).ok_or("no_such_agent")?;
    let started = Instant::now();
    let envelope = agent
        .signed_offer(&ctx.currency, node::now_s())
        .map_err(|_| "bench_sign")?;
    let body = serde_json::to_vec(&envelope).map_err(|_| "bench_encode")?;
    let auth = protocol::sign_request(
        &agent.key,
        &ctx.audience,
        "POST",
        "/v1/offers",
        node::now_ms(),
        Some(ctx.counters.next()),
        &body,
    );
    let mut req = ctx
        .http
        .post(format!("{}/v1/offers", ctx.market))
        .timeout(Duration::from_millis(OFFER_WAIT_MS_MAX))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in auth.headers() {
        req = req.header(name, value);
    }
    let resp = req.send().await.map_err(|e| transport_code(&e))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport_code(&e))?;
    if status >= 400 {
        return Err(error_code(status, &bytes));
    }
    Ok(started.elapsed())
}

/// Post every agent's first offer, `concurrency` at a time, for at most `s_max` seconds.
async fn fill(ctx: &Arc<Ctx>, concurrency: usize, s_max: u64) -> FillReport {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(s_max);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.min(ctx.agents.len()) {
        let (ctx, next) = (ctx.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Errors::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ctx.agents.len() || Instant::now() >= deadline {
                    break;
                }
                match post_offer(&ctx, i).await {
                    Ok(d) => latencies.push(d),
                    Err(code) => errors.add(&code),
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::with_capacity(ctx.agents.len());
    let mut errors = Errors::default();
    // Each worker ends by the deadline plus one post's wait: bounded.
    while let Some(done) = workers.join_next().await {
        match done {
            Ok((l, e)) => {
                latencies.extend(l);
                for (code, n) in e.0 {
                    *errors.0.entry(code).or_insert(0) += n;
                }
            }
            Err(_) => errors.add("bench_task_failed"),
        }
    }
    let elapsed = started.elapsed();
    let accepted = latencies.len();
    FillReport {
        posted: accepted.saturating_add(usize::try_from(errors.total()).unwrap_or(usize::MAX)),
        accepted,
        seconds: elapsed.as_secs_f64(),
        offers_per_s: stats::per_s(accepted, elapsed),
        latency: Latency::of(&latencies),
        errors,
    }
}

/// Heartbeats at `per_s` (open loop) until `stop` or `end`.
async fn heartbeats(
    ctx: Arc<Ctx>,
    per_s: f64,
    end: Instant,
    stop: Arc<AtomicBool>,
) -> HeartbeatReport {
    let started = Instant::now();
    let slots = Arc::new(tokio::sync::Semaphore::new(HEARTBEATS_IN_FLIGHT_MAX));
    let mut in_flight: JoinSet<Result<Duration, String>> = JoinSet::new();
    let (mut sent, mut skipped) = (0u64, 0u64);
    let mut next_agent = 0usize;
    let mut latencies = Vec::new();
    let mut errors = Errors::default();
    let mut record = |done: Result<Result<Duration, String>, tokio::task::JoinError>| match done {
        Ok(Ok(d)) => latencies.push(d),
        Ok(Err(code)) => errors.add(&code),
        Err(_) => errors.add("bench_task_failed"),
    };
    let tick_max = Duration::from_millis(HEARTBEAT_TICK_MS_MAX);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let due = (started.elapsed().as_secs_f64() * per_s) as u64;
        while sent + skipped < due {
            let agent = next_agent % ctx.agents.len();
            next_agent += 1;
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let ctx = ctx.clone();
                    in_flight.spawn(async move {
                        let r = post_offer(&ctx, agent).await;
                        drop(permit);
                        r
                    });
                    sent += 1;
                }
                Err(_) => skipped += 1,
            }
        }
        while let Some(done) = in_flight.try_join_next() {
            record(done);
        }
        // Until the next heartbeat is due, but look at the stop flag often.
        let next_due_s = (sent + skipped + 1) as f64 / per_s - started.elapsed().as_secs_f64();
        let wait = Duration::try_from_secs_f64(next_due_s.max(0.0))
            .unwrap_or(tick_max)
            .clamp(Duration::from_millis(1), tick_max);
        tokio::time::sleep(wait).await;
    }
    let elapsed = started.elapsed();
    let drain_end = tokio::time::Instant::now() + Duration::from_millis(DRAIN_WAIT_MS_MAX);
    let mut unfinished = 0;
    loop {
        match tokio::time::timeout_at(drain_end, in_flight.join_next()).await {
            Ok(Some(done)) => record(done),
            Ok(None) => break,
            Err(_) => {
                unfinished = in_flight.len();
                in_flight.abort_all();
                break;
            }
        }
    }
    let accepted = latencies.len();
    HeartbeatReport {
        target_per_s: per_s,
        sent,
        accepted,
        skipped_behind: skipped,
        unfinished,
        per_s: stats::per_s(accepted, elapsed),
        latency: Latency::of(&latencies),
        errors,
    }
}

/// What one answered match gave: its latency, agents chosen and candidates considered.
struct Met {
    latency: Duration,
    chosen: usize,
    candidates: usize,
}

/// Ask for one match of `shape` and check the answer.
async fn match_once(ctx: &Ctx, shape: &Shape) -> Result<Met, String> {
    let request = shape.request(&ctx.currency.issuer);
    let started = Instant::now();
    let resp = ctx
        .http
        .post(format!("{}/v1/match", ctx.market))
        .timeout(Duration::from_millis(MATCH_WAIT_MS_MAX))
        .json(&request)
        .send()
        .await
        .map_err(|e| transport_code(&e))?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| transport_code(&e))?;
    let latency = started.elapsed();
    if status >= 400 {
        return Err(error_code(status, &bytes));
    }
    let answer: MatchAnswer = serde_json::from_slice(&bytes).map_err(|_| "undecodable")?;
    check_answer(shape, &answer)?;
    Ok(Met {
        latency,
        chosen: answer.agents.len(),
        candidates: answer.candidates.len(),
    })
}

/// The rules a buyer relies on, checked on a match's answer; the code of the first broken.
fn check_answer(shape: &Shape, answer: &MatchAnswer) -> Result<(), String> {
    let n = answer.agents.len();
    let k = usize::try_from(shape.data_shards).unwrap_or(usize::MAX);
    let n_ok = match shape.total_shards {
        Some(want) => n as u64 == want,
        None => n >= k,
    };
    if !n_ok {
        return Err("answer_wrong_n".into());
    }
    let mut agents: Vec<&str> = answer.agents.iter().map(|a| a.agent.as_str()).collect();
    agents.sort_unstable();
    agents.dedup();
    let mut networks: Vec<String> = answer
        .agents
        .iter()
        .filter_map(|a| crate::book::network_of(&a.endpoint).ok())
        .collect();
    networks.sort_unstable();
    networks.dedup();
    if agents.len() != n || networks.len() != n {
        return Err("answer_same_agent_or_network".into());
    }
    let p: Vec<f64> = answer.agents.iter().map(|a| a.p_fail).collect();
    let loss = crate::select::loss_probability(&p, k);
    let reported = answer.failure_probability;
    if (loss - reported).abs() > LOSS_RELATIVE_EPSILON * loss.max(reported)
        || reported > shape.max_failure_probability
    {
        return Err("answer_misses_target".into());
    }
    Ok(())
}

/// The measured phase: heartbeats at the chosen rate while `options.concurrency` clients
/// run `options.matches` matches.
async fn steady(ctx: &Arc<Ctx>, options: &Options, shapes: &[Shape]) -> SteadyReport {
    let started = Instant::now();
    let end_min = started + Duration::from_secs(options.seconds_min);
    let end_max = started + Duration::from_secs(options.seconds_max);
    let per_s = options
        .heartbeats_per_s
        .unwrap_or(ctx.agents.len() as f64 / HEARTBEAT_PERIOD_S_DEFAULT);
    let stop = Arc::new(AtomicBool::new(false));
    let beats = tokio::spawn(heartbeats(ctx.clone(), per_s, end_max, stop.clone()));

    let next = Arc::new(AtomicUsize::new(0));
    let shapes_shared: Arc<Vec<Shape>> = Arc::new(shapes.to_vec());
    let mut clients = JoinSet::new();
    for _ in 0..options.concurrency {
        let (ctx, next, shapes) = (ctx.clone(), next.clone(), shapes_shared.clone());
        let matches = options.matches;
        clients.spawn(async move {
            let mut out: Vec<(usize, Option<Result<Met, String>>)> = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                if i >= matches || now >= end_max || shapes.is_empty() {
                    break;
                }
                let s = i % shapes.len();
                // `None`: cut by the phase's end.
                let r = tokio::time::timeout(end_max - now, match_once(&ctx, &shapes[s]))
                    .await
                    .ok();
                out.push((s, r));
            }
            out
        });
    }
    let mut per_shape: Vec<(usize, usize, Vec<Duration>)> = vec![(0, 0, Vec::new()); shapes.len()];
    let mut latencies = Vec::new();
    let mut errors = Errors::default();
    let (mut answered, mut cut, mut candidates_last) = (0, 0, 0);
    // Every match is bounded by the phase's end: so is this.
    while let Some(done) = clients.join_next().await {
        let Ok(results) = done else {
            errors.add("bench_task_failed");
            continue;
        };
        for (s, r) in results {
            match r {
                None => cut += 1,
                Some(Ok(met)) => {
                    answered += 1;
                    latencies.push(met.latency);
                    candidates_last = met.candidates;
                    if let Some(entry) = per_shape.get_mut(s) {
                        entry.0 += 1;
                        entry.1 = met.chosen;
                        entry.2.push(met.latency);
                    }
                }
                Some(Err(code)) => {
                    // A refusal is an answer too (409 cannot_meet_target); a transport
                    // failure is not.
                    if !matches!(code.as_str(), "timeout" | "connect" | "transport") {
                        answered += 1;
                    }
                    errors.add(&code);
                }
            }
        }
    }
    let matching = started.elapsed();
    if let Some(rest) = end_min.checked_duration_since(Instant::now()) {
        tokio::time::sleep(rest).await;
    }
    stop.store(true, Ordering::Relaxed);
    let heartbeats = beats.await.unwrap_or_else(|_| HeartbeatReport {
        target_per_s: per_s,
        sent: 0,
        accepted: 0,
        skipped_behind: 0,
        unfinished: 0,
        per_s: 0.0,
        latency: Latency::default(),
        errors: {
            let mut e = Errors::default();
            e.add("bench_task_failed");
            e
        },
    });
    let met = latencies.len();
    SteadyReport {
        seconds: started.elapsed().as_secs_f64(),
        heartbeats,
        matches: MatchReport {
            concurrency: options.concurrency,
            requested: options.matches,
            answered,
            met,
            cut_at_deadline: cut,
            seconds: matching.as_secs_f64(),
            per_s: stats::per_s(met, matching),
            latency: Latency::of(&latencies),
            errors,
            candidates_last,
            shapes: shapes
                .iter()
                .zip(per_shape)
                .map(|(shape, (met, chosen_last, l))| ShapeReport {
                    shape: shape.clone(),
                    met,
                    chosen_last,
                    latency: Latency::of(&l),
                })
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_checked() {
        let ok = Options::new("http://127.0.0.1:1");
        assert!(check(&ok).is_ok());
        for bad in [
            Options {
                agents: 0,
                ..ok.clone()
            },
            Options {
                networks: Some(NETWORKS_MAX + 1),
                ..ok.clone()
            },
            Options {
                heartbeats_per_s: Some(f64::NAN),
                ..ok.clone()
            },
            Options {
                concurrency: 0,
                ..ok.clone()
            },
            Options {
                seconds_min: 10,
                seconds_max: 5,
                ..ok.clone()
            },
        ] {
            assert!(check(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refusals_are_named_by_their_code() {
        let body = br#"{"error":{"code":"cannot_meet_target","message":"m"}}"#;
        assert_eq!(error_code(409, body), "cannot_meet_target");
        assert_eq!(error_code(502, b"<html>"), "http_502");
    }
}

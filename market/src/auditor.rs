//! The market's background loops: the auditor challenges agents on registered contracts
//! (random contract, random object, random leaf, proof checked against the registered root)
//! and the prober asks agents with a live offer who they are. Each outcome goes to the
//! agent's reputation at once.
//!
//! **Schedule** ([`schedule`]): each agent with a running registered contract is audited
//! `audits_per_agent_day` times a day (`market serve --audits-per-agent-day`), at instants a
//! period apart (a day over that number) offset by a phase hashed from its entity, so the
//! audits of many agents spread evenly over the period, the same way after a restart. Every
//! tick (`--audit-interval-s`) the auditor audits the agents with an instant since the last
//! tick: an agent at most once a tick, so a tick longer than the period caps the rate at one
//! audit per agent per tick. Without `--audits-per-agent-day` the period is the tick: every
//! agent once a tick, as the fixed rounds before the schedule did.
//!
//! **Bounds**: at most [`AUDITS_IN_FLIGHT_MAX`] audits and [`PROBES_IN_FLIGHT_MAX`] probes at
//! once, each waiting at most [`CHALLENGE_WAIT_MS_MAX`], and [`RECORDS_IN_FLIGHT_MAX`] outcomes
//! being written; targets are read [`targets::TARGETS_BATCH_MAX`] agents at a time, the next
//! batch while the audits of the last run. An auditor that cannot keep up (a tick's audits
//! take longer than the tick) falls behind gracefully: the next window is longer, so it holds
//! more agents, each still audited once.
//!
//! **Probes**: every `--probe-interval-s`, each agent with a live offer is probed unless its
//! heartbeat arrived within that interval and it is online: the heartbeat just proved it up,
//! and counts as the answered probe (the same reputation evidence, without the request).
//!
//! **One process of several**: market processes sharing a database run the loops only while
//! they hold the `auditor` lease ([`Lease`], `book::lease`; [`AUDITOR_LEASE_MS`] long by
//! default, `--auditor-lease-ms`), renewed every third of its length; the others skip their
//! ticks. The schedule is the same in every process (phases come from entities), so a process
//! that takes over audits the agents due from then on. A holder that dies is replaced within
//! the lease's length and a renewal; the audits due meanwhile are not made up (each agent is due again a
//! period later).
//!
//! A refusal to an audit (`402` included: an agent never charges a listed auditor) is a failed
//! audit; `429` puts it off, for at most [`AUDIT_DEFERRALS_MAX`] of the agent's audits in a
//! row; no answer marks the agent offline.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use clients::agent::{verify_audit, AgentClient};
use futures_util::stream::{FuturesUnordered, StreamExt};
use node::client::ClientError;
use node::now_s;
use tokio::sync::Semaphore;

use crate::book::{Market, AUDITOR_LEASE};
use crate::error::Error;
use crate::reliability::Outcome;

pub mod schedule;
pub mod targets;

pub use schedule::Schedule;
use targets::{Live, Target, TARGETS_BATCH_MAX};

/// Longest wait for one audit answer or probe.
pub const CHALLENGE_WAIT_MS_MAX: u64 = 5_000;
/// Audits waiting for their answer at once, at most. Audits are mostly waiting (two requests
/// to the agent each), so many overlap; the bound keeps the sockets and memory of a tick
/// small whatever the number of agents due: 128 x (a 16 KiB leaf) is 2 MiB of answers, and
/// 128 agents that never answer hold the auditor back at most [`CHALLENGE_WAIT_MS_MAX`].
pub const AUDITS_IN_FLIGHT_MAX: usize = 128;
/// Probes waiting for their answer at once, at most (as [`AUDITS_IN_FLIGHT_MAX`]).
pub const PROBES_IN_FLIGHT_MAX: usize = 128;
/// Outcomes of one round being written at once, at most. Writes to an agent's row are
/// serialised by the database anyway (the market clock), so more would only hold pooled
/// connections (`db::POOL_SIZE_MAX`, 8) that heartbeats and matches need, and time out
/// waiting for the database's lock.
pub const RECORDS_IN_FLIGHT_MAX: usize = 2;

/// An agent's audits in a row it may put off (`429`) before that counts as a failed audit: an
/// honest agent rate-limits a burst, an agent dodging audits does it every time.
pub const AUDIT_DEFERRALS_MAX: u32 = 3;
/// Longest wait an agent's `429` may ask of the auditor before it audits that agent again.
/// An agent limits a listed auditor per contract per minute (the storage agent's
/// `AUDIT_FREE_INTERVAL_S`); a wait past that would be a way to dodge audits.
pub const RETRY_AFTER_HONOURED_S_MAX: u64 = 60;

/// A uniformly random number below `bound` (> 0), from the OS source.
pub fn random_below(bound: u64) -> u64 {
    let mut raw = [0u8; 8];
    // SystemRandom reads the OS source; if it ever failed, auditing leaf 0 is still an audit.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw);
    u64::from_le_bytes(raw) % bound.max(1)
}

/// How long the `auditor` lease lasts past a renewal, by default (`market serve
/// --auditor-lease-ms`).
pub const AUDITOR_LEASE_MS: u64 = 30_000;
/// Shortest lease a process may ask for: a renewal is a database write every third of it.
pub const AUDITOR_LEASE_MS_MIN: u64 = 300;

/// Whether this process runs the auditor and the prober: it holds the `auditor` lease.
/// Its holder renews it every third of its length and stops counting itself the holder a
/// third before it expires (a margin for a stalled renewal and for clocks); a holder that
/// dies is replaced by another process within the lease's length and a renewal.
/// Clones share their state.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Until when (ms since the epoch) this process counts itself the holder; 0: not.
    until_ms: Arc<AtomicU64>,
    /// The lease's length.
    length_ms: Arc<AtomicU64>,
}

impl Default for Lease {
    fn default() -> Self {
        Lease {
            until_ms: Arc::default(),
            length_ms: Arc::new(AtomicU64::new(AUDITOR_LEASE_MS)),
        }
    }
}

impl Lease {
    /// Set the lease's length (at least [`AUDITOR_LEASE_MS_MIN`]) before it is first taken.
    pub fn set_length_ms(&self, ms: u64) {
        self.length_ms
            .store(ms.max(AUDITOR_LEASE_MS_MIN), Ordering::SeqCst);
    }

    /// The lease's length.
    pub fn length_ms(&self) -> u64 {
        self.length_ms.load(Ordering::SeqCst)
    }

    /// How often the holder renews it (a third of its length).
    pub fn renew_every_ms(&self) -> u64 {
        self.length_ms() / 3
    }

    /// Whether this process holds the lease (as of its last renewal).
    pub fn held(&self) -> bool {
        node::now_ms() < self.until_ms.load(Ordering::SeqCst)
    }

    /// Take or renew the lease now; answers whether this process holds it.
    pub async fn renew(&self, market: &Market) -> bool {
        let asked_ms = node::now_ms();
        let length_ms = self.length_ms();
        let held = match market.hold_lease(AUDITOR_LEASE, length_ms).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "cannot renew the auditor lease");
                false
            }
        };
        let until = if held {
            asked_ms + (length_ms - self.renew_every_ms())
        } else {
            0
        };
        self.until_ms.store(until, Ordering::SeqCst);
        held
    }

    /// Whether this process holds the lease, renewing it first if its last renewal is too
    /// old (a loop alone, without [`Lease::keep`], still takes it).
    pub async fn hold(&self, market: &Market) -> bool {
        self.held() || self.renew(market).await
    }

    /// Renew the lease every third of its length, forever.
    pub async fn keep(self, market: Arc<Market>) {
        let mut was = false;
        loop {
            let held = self.renew(&market).await;
            if held != was {
                tracing::info!(
                    instance = market.instance(),
                    held,
                    "auditor lease: {}",
                    if held {
                        "this process audits and probes"
                    } else {
                        "another process audits and probes"
                    }
                );
                was = held;
            }
            tokio::time::sleep(Duration::from_millis(self.renew_every_ms())).await;
        }
    }
}

/// How often the auditor runs and how often it audits each agent (`market serve`'s
/// `--audit-interval-s` and `--audits-per-agent-day`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditorOptions {
    /// Seconds between ticks; each tick audits the agents due since the last.
    pub tick_s: u64,
    /// Audits of each agent a day, spread evenly; `None`: one per tick; `Some(0)`: no audits.
    pub audits_per_agent_day: Option<u64>,
}

impl AuditorOptions {
    /// The tick, at least a second.
    pub fn tick(&self) -> Duration {
        Duration::from_secs(self.tick_s.max(1))
    }

    /// The schedule these options ask for; `None`: no audits.
    pub fn schedule(&self) -> Option<Schedule> {
        match self.audits_per_agent_day {
            None => Some(Schedule::every(self.tick())),
            Some(n) => Schedule::per_day(n),
        }
    }

    /// Audits per agent per day the auditor gives when it keeps up: the schedule's, at most
    /// one per tick.
    pub fn per_agent_day(&self) -> f64 {
        let per_tick = 86_400.0 / self.tick().as_secs_f64();
        self.schedule()
            .map_or(0.0, |s| s.per_agent_day().min(per_tick))
    }
}

/// Audit the agents due, every tick, while this process holds `lease`, forever (see the
/// module's documentation).
pub async fn audit_loop(market: Arc<Market>, options: AuditorOptions, lease: Lease) {
    let Some(schedule) = options.schedule() else {
        tracing::info!("auditor off: 0 audits per agent per day");
        return;
    };
    let tick = options.tick();
    tracing::info!(
        audits_per_agent_day = options.per_agent_day(),
        period_s = schedule.period_ms() as f64 / 1e3,
        tick_s = tick.as_secs(),
        in_flight_max = AUDITS_IN_FLIGHT_MAX,
        "auditor"
    );
    let mut from = node::now_ms();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let to = node::now_ms();
        if !lease.hold(&market).await {
            // Another process audits this window.
            from = to;
            continue;
        }
        let started = Instant::now();
        match audit_tick(&market, &schedule, from, to).await {
            Ok(done) => {
                // The next window starts here whatever failed: an agent whose outcome could
                // not be recorded is audited again at its next instant.
                from = to;
                if let Some(e) = done.error {
                    tracing::warn!(error = %e, failed = done.failed, "audits not recorded");
                }
                let took = started.elapsed();
                if took > tick {
                    tracing::warn!(
                        due = done.due,
                        sent = done.audited.len(),
                        took_ms = took.as_millis() as u64,
                        tick_s = tick.as_secs(),
                        "the auditor is behind: a tick's audits took longer than the tick"
                    );
                } else {
                    tracing::debug!(due = done.due, sent = done.audited.len(), "audit tick");
                }
            }
            // Nothing audited: the window stays open, its agents are due at the next tick.
            Err(e) => tracing::warn!(error = %e, "audit tick failed"),
        }
    }
}

/// What one tick (or round) of audits did.
#[derive(Debug, Default)]
pub struct Audited {
    /// Agents that were due (with a running registered contract).
    pub due: usize,
    /// Agents challenged (each once) whose outcome was recorded or put off, in the order
    /// their audits ended.
    pub audited: Vec<String>,
    /// Audits whose outcome could not be recorded (or targets that could not be read).
    pub failed: usize,
    /// The first of those errors.
    pub error: Option<Error>,
}

/// One tick: audit, once each, the agents with a running registered contract that
/// `schedule` has due in `(from_ms, to_ms]`. Errs only when the agents could not be listed
/// (nothing was audited).
pub async fn audit_tick(
    market: &Market,
    schedule: &Schedule,
    from_ms: u64,
    to_ms: u64,
) -> Result<Audited, Error> {
    let now = now_s();
    let mut agents = targets::agents_with_contracts(market, now).await?;
    // An agent that put off its last audit is left alone for the wait it asked for: an
    // auditor that came back every tick would turn an honest rate limit into failed audits.
    agents.retain(|a| schedule.due(a, from_ms, to_ms) && !market.audit_put_off(a, now));
    Ok(audit_agents(market, agents, AUDITS_IN_FLIGHT_MAX).await)
}

/// One round, whatever the schedule: for each agent with running registered contracts, one
/// challenge. Answers how many challenges were sent (the first error if an outcome could not
/// be recorded).
pub async fn audit_round(market: &Market) -> Result<usize, Error> {
    let agents = targets::agents_with_contracts(market, now_s()).await?;
    let done = audit_agents(market, agents, AUDITS_IN_FLIGHT_MAX).await;
    match done.error {
        Some(e) => Err(e),
        None => Ok(done.audited.len()),
    }
}

/// Audit each of `agents` (distinct) once: a random running contract, a random object, a
/// random leaf; at most `in_flight` at once. Targets are read in batches as the audits need
/// them (the next batch while the audits of the last run), so memory stays bounded by the
/// batch and `in_flight`, not the number of agents.
pub async fn audit_agents(market: &Market, agents: Vec<String>, in_flight: usize) -> Audited {
    type Loading<'a> = Pin<Box<dyn Future<Output = Result<Vec<Target>, Error>> + Send + 'a>>;
    enum Event {
        Loaded(Result<Vec<Target>, Error>),
        Audited(Result<String, Error>),
        Idle,
    }
    let now = now_s();
    let in_flight = in_flight.max(1);
    let records = Semaphore::new(RECORDS_IN_FLIGHT_MAX);
    let mut done = Audited {
        due: agents.len(),
        ..Audited::default()
    };
    let mut batches = agents.chunks(TARGETS_BATCH_MAX);
    let mut ready: VecDeque<Target> = VecDeque::new();
    let mut loading: Option<(usize, Loading<'_>)> = None;
    let mut pending = FuturesUnordered::new();
    loop {
        while pending.len() < in_flight {
            let Some(t) = ready.pop_front() else { break };
            pending.push(audit_one(market, t, &records));
        }
        if loading.is_none() && ready.len() < TARGETS_BATCH_MAX {
            if let Some(batch) = batches.next() {
                let read: Loading<'_> = Box::pin(targets::targets_of(market, batch.to_vec(), now));
                loading = Some((batch.len(), read));
            }
        }
        let event = std::future::poll_fn(|cx| {
            if let Some((_, read)) = loading.as_mut() {
                if let Poll::Ready(r) = read.as_mut().poll(cx) {
                    return Poll::Ready(Event::Loaded(r));
                }
            }
            match pending.poll_next_unpin(cx) {
                Poll::Ready(Some(r)) => Poll::Ready(Event::Audited(r)),
                Poll::Ready(None) if loading.is_none() => Poll::Ready(Event::Idle),
                _ => Poll::Pending,
            }
        })
        .await;
        match event {
            Event::Loaded(Ok(targets)) => {
                loading = None;
                ready.extend(targets);
            }
            Event::Loaded(Err(e)) => {
                done.failed += loading.take().map_or(0, |(n, _)| n);
                done.error.get_or_insert(e);
            }
            Event::Audited(Ok(agent)) => done.audited.push(agent),
            Event::Audited(Err(e)) => {
                done.failed += 1;
                done.error.get_or_insert(e);
            }
            Event::Idle => break,
        }
    }
    done
}

/// Send one challenge and record its outcome (at most [`RECORDS_IN_FLIGHT_MAX`] recording at
/// once, through `records`); answers the agent.
async fn audit_one(market: &Market, t: Target, records: &Semaphore) -> Result<String, Error> {
    let leaf = random_below(t.object.leaf_count);
    let answer = ask(
        market,
        &t.endpoint,
        &t.contract,
        &t.object.name,
        (&t.object.merkle_root, t.object.leaf_count),
        leaf,
    )
    .await;
    let outcome = outcome_of(market, &t.agent, &answer);
    tracing::debug!(
        agent = t.agent,
        contract = t.contract,
        object = t.object.name,
        leaf,
        ?answer,
        ?outcome,
        "audit"
    );
    if let Some(o) = outcome {
        let _turn = records.acquire().await;
        market.record_audit(&t.agent, &t.contract, o).await?;
    }
    Ok(t.agent)
}

/// What an agent answered one audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The proof leads to the registered root.
    Verified,
    /// An answer whose proof does not lead to the registered root.
    Mismatch,
    /// Any refusal but a rate limit: `402` included (an agent must not charge a listed
    /// auditor), unknown objects, errors, an answer that is not an audit answer.
    Refused { status: u16, code: String },
    /// `429`: the agent asks the auditor to come back later (after `retry_after_s`, when it
    /// said).
    Deferred {
        reason: String,
        retry_after_s: Option<u64>,
    },
    /// No answer: a network failure or no answer within [`CHALLENGE_WAIT_MS_MAX`].
    Unreachable(String),
}

/// Ask the agent at `endpoint` for `leaf` of `object` and its proof, and check the proof
/// against `root`.
pub async fn ask(
    market: &Market,
    endpoint: &str,
    contract: &str,
    object: &str,
    (root, leaf_count): (&str, u64),
    leaf: u64,
) -> Answer {
    let client = AgentClient::new(market.http.clone(), endpoint, market.key.clone());
    let answer = tokio::time::timeout(
        Duration::from_millis(CHALLENGE_WAIT_MS_MAX),
        client.audit(contract, object, leaf),
    )
    .await;
    match answer {
        Err(_) => Answer::Unreachable(format!(
            "{endpoint}: no answer within {CHALLENGE_WAIT_MS_MAX} ms"
        )),
        // The object's size too: a buyer claiming more leaves than the object has would
        // otherwise have the agent fail audits of leaves that do not exist.
        Ok(Ok(a)) if verify_audit(&a, root, leaf) && a.leaf_count == leaf_count => Answer::Verified,
        Ok(Ok(_)) => Answer::Mismatch,
        Ok(Err(ClientError::Api {
            status: 429,
            code,
            message,
            details,
        })) => Answer::Deferred {
            reason: format!("{code}: {message}"),
            retry_after_s: details
                .as_ref()
                .and_then(|d| d.get("retry_after_s"))
                .and_then(serde_json::Value::as_u64),
        },
        Ok(Err(ClientError::Api { status, code, .. })) => Answer::Refused { status, code },
        Ok(Err(ClientError::Unreachable { url, message })) => {
            Answer::Unreachable(format!("{url}: {message}"))
        }
        // It answered, but not with an audit answer (or a receipt that does not verify).
        Ok(Err(e)) => Answer::Refused {
            status: 200,
            code: format!("undecodable answer: {e}"),
        },
    }
}

/// What an audit answer says about the agent: a passed or failed audit, the agent down, or
/// (a deferral, up to [`AUDIT_DEFERRALS_MAX`] of its audits in a row) nothing yet.
fn outcome_of(market: &Market, agent: &str, answer: &Answer) -> Option<Outcome> {
    // A 429 without a wait is put off for one tick's worth at least.
    let deferred = match answer {
        Answer::Deferred { retry_after_s, .. } => Some(retry_after_s.unwrap_or(1)),
        _ => None,
    };
    let deferrals = market.count_deferral(agent, deferred);
    match answer {
        Answer::Verified => Some(Outcome::AuditPassed),
        // A wrong proof, or a refusal: it cannot (or will not) show what it contracted to keep.
        Answer::Mismatch | Answer::Refused { .. } => Some(Outcome::AuditFailed),
        Answer::Deferred { .. } if deferrals > AUDIT_DEFERRALS_MAX => Some(Outcome::AuditFailed),
        Answer::Deferred { .. } => None,
        // No answer at all: the agent is down.
        Answer::Unreachable(_) => Some(Outcome::ProbeUnanswered),
    }
}

/// Every `every`, while this process holds `lease`, probe the agents with a live offer that
/// have not just heartbeated (see [`probe_live`]).
pub async fn probe_loop(market: Arc<Market>, every: Duration, lease: Lease) {
    let heard_within_s = i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(every).await;
        if !lease.hold(&market).await {
            continue;
        }
        let started = Instant::now();
        match probe_live(&market, Some(heard_within_s), PROBES_IN_FLIGHT_MAX).await {
            Ok(p) => {
                if let Some(e) = p.error {
                    tracing::warn!(error = %e, failed = p.failed, "probes not recorded");
                }
                tracing::debug!(
                    probed = p.probed,
                    answered = p.answered,
                    heard = p.heard,
                    took_ms = started.elapsed().as_millis() as u64,
                    "probe round"
                );
            }
            Err(e) => tracing::warn!(error = %e, "probe round failed"),
        }
    }
}

/// Probe every agent whose offer is live, heartbeat or not. Answers how many answered.
pub async fn probe_round(market: &Market) -> Result<usize, Error> {
    let p = probe_live(market, None, PROBES_IN_FLIGHT_MAX).await?;
    match p.error {
        Some(e) => Err(e),
        None => Ok(p.answered),
    }
}

/// What one round of probes did.
#[derive(Debug, Default)]
pub struct Probed {
    /// Agents asked who they are.
    pub probed: usize,
    /// Of those, agents that answered as themselves.
    pub answered: usize,
    /// Agents not asked: online, with a heartbeat within `heard_within_s` (counted as an
    /// answered probe).
    pub heard: usize,
    /// Outcomes that could not be recorded.
    pub failed: usize,
    /// The first of those errors.
    pub error: Option<Error>,
}

/// Probe the agents with a live offer, at most `in_flight` at once, each waiting at most
/// [`CHALLENGE_WAIT_MS_MAX`]. With `heard_within_s`, an online agent whose last heartbeat is
/// more recent than that is not asked: its heartbeat is the answer. Errs only when the agents
/// could not be listed.
pub async fn probe_live(
    market: &Market,
    heard_within_s: Option<i64>,
    in_flight: usize,
) -> Result<Probed, Error> {
    let now = now_s();
    let live = targets::live_agents(market, now).await?;
    let in_flight = in_flight.max(1);
    let records = Semaphore::new(RECORDS_IN_FLIGHT_MAX);
    let mut p = Probed::default();
    let mut rows = live.into_iter();
    let mut pending = FuturesUnordered::new();
    // Agents whose heartbeat is the answer, recorded together (see `Market::observe_many`).
    let mut heard: Vec<String> = Vec::new();
    loop {
        while pending.len() < in_flight {
            let Some(a) = rows.next() else { break };
            if heard_within_s
                .is_some_and(|w| a.online && now.saturating_sub(a.last_heartbeat_s) < w)
            {
                heard.push(a.entity);
                if heard.len() >= HEARD_PER_TRANSACTION_MAX {
                    record_heard(market, &mut heard, &mut p).await;
                }
                continue;
            }
            pending.push(probe_one(market, a, &records));
        }
        match pending.next().await {
            Some(Ok(ok)) => {
                p.probed += 1;
                p.answered += usize::from(ok);
            }
            Some(Err(e)) => {
                p.failed += 1;
                p.error.get_or_insert(e);
            }
            None => break,
        }
    }
    record_heard(market, &mut heard, &mut p).await;
    Ok(p)
}

/// Heard agents recorded in one transaction at most.
pub const HEARD_PER_TRANSACTION_MAX: usize = 1_024;

/// Record the `heard` agents' heartbeats as answered probes, in one transaction, and empty it.
async fn record_heard(market: &Market, heard: &mut Vec<String>, p: &mut Probed) {
    let agents = std::mem::take(heard);
    let n = agents.len();
    match market.observe_many(agents, Outcome::ProbeAnswered).await {
        Ok(()) => p.heard += n,
        Err(e) => {
            p.failed += n;
            p.error.get_or_insert(e);
        }
    }
}

/// Probe one agent and record the outcome (through `records`, as audits). Answers whether it
/// answered.
async fn probe_one(market: &Market, a: Live, records: &Semaphore) -> Result<bool, Error> {
    let ok = answers_as(market, &a.endpoint, &a.entity).await;
    let outcome = if ok {
        Outcome::ProbeAnswered
    } else {
        Outcome::ProbeUnanswered
    };
    let _turn = records.acquire().await;
    market.observe(&a.entity, outcome).await?;
    Ok(ok)
}

/// Whether `endpoint` answers `/.well-known/lcp` as `entity` within [`CHALLENGE_WAIT_MS_MAX`].
async fn answers_as(market: &Market, endpoint: &str, entity: &str) -> bool {
    let url = format!("{}/.well-known/lcp", endpoint.trim_end_matches('/'));
    let wait = Duration::from_millis(CHALLENGE_WAIT_MS_MAX);
    let asked = async {
        let resp = market.http.get(&url).timeout(wait).send().await.ok()?;
        let doc: serde_json::Value = resp.json().await.ok()?;
        (doc.get("entity")?.as_str()? == entity).then_some(())
    };
    matches!(tokio::time::timeout(wait, asked).await, Ok(Some(())))
}

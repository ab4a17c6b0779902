//! Bench tools over a market's database, for synthetic books only (issue 14):
//! - `market seed-reputations` gives every agent a synthetic reputation (no API sets one: a
//!   real market learns them from audits, probes and reports), so a bench book has vetted and
//!   unvetted agents of varied reliability;
//! - `market check-selection` measures what pre-selection costs: each bench shape is matched
//!   on the pre-selected candidates, as `POST /v1/match` does, and by a long local search
//!   ([`select::long_search`]) over every candidate of the whole book, and the prices are
//!   compared.

use db::{AnyConnection, Database};
use diesel::prelude::*;
use serde::Serialize;

use crate::bench::Shape;
use crate::book::index::Index;
use crate::book::load_index;
use crate::error::Error;
use crate::schema::agents;
use crate::select;

/// Range of the synthetic 30-day failure probabilities (log-uniform between).
pub const SEEDED_P30_MIN: f64 = 1e-4;
pub const SEEDED_P30_MAX: f64 = 0.2;
/// Synthetic evidence weight (alpha + beta) of a seeded agent.
pub const SEEDED_WEIGHT: f64 = 100.0;
/// Audits passed are uniform in 0..=this: about 60% of agents reach the 5 of vetting.
pub const SEEDED_AUDITS_MAX: u64 = 12;

/// Give every agent a reputation drawn from `seed` and its entity id. Answers how many.
pub fn seed_reputations(conn: &mut AnyConnection, seed: u64) -> Result<usize, Error> {
    db::write_transaction(conn, |conn| {
        let changed = crate::book::tick(conn)?;
        let entities: Vec<String> = agents::table.select(agents::entity).load(conn)?;
        for entity in &entities {
            // Deterministic per (seed, entity): the same book gets the same reputations.
            let mut input = seed.to_le_bytes().to_vec();
            input.extend_from_slice(entity.as_bytes());
            let digest = ring::digest::digest(&ring::digest::SHA256, &input);
            let word = |i: usize| {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&digest.as_ref()[i * 8..i * 8 + 8]);
                u64::from_le_bytes(raw)
            };
            let unit = (word(0) >> 11) as f64 / (1u64 << 53) as f64;
            let p30 =
                (SEEDED_P30_MIN.ln() + unit * (SEEDED_P30_MAX.ln() - SEEDED_P30_MIN.ln())).exp();
            let passed = word(1) % (SEEDED_AUDITS_MAX + 1);
            diesel::update(agents::table.find(entity))
                .set((
                    agents::alpha.eq(SEEDED_WEIGHT * (1.0 - p30)),
                    agents::beta.eq(SEEDED_WEIGHT * p30),
                    agents::audits_passed.eq(i64::try_from(passed).unwrap_or(0)),
                    agents::audits_failed.eq(0),
                    agents::changed.eq(changed),
                ))
                .execute(conn)?;
        }
        Ok(entities.len())
    })
}

/// One shape's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedShape {
    pub shape: String,
    pub candidates_whole: usize,
    pub candidates_preselected: usize,
    /// `None` when the target cannot be met.
    pub price_preselected: Option<u64>,
    pub price_long_search: Option<u64>,
    /// price_preselected / (the lower of both prices) - 1: what pre-selection cost.
    pub excess: Option<f64>,
    /// The long search met the target and the pre-selected candidates could not.
    pub missed: bool,
    pub long_search_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub agents: usize,
    pub currency: String,
    pub restarts: usize,
    pub shapes: Vec<CheckedShape>,
    /// The largest excess over the shapes that both met.
    pub worst_excess: Option<f64>,
}

/// Compare matches on pre-selected candidates with a long search over the whole book, for
/// every bench shape with k <= `k_max`, in the currency most agents offer.
pub fn check_selection(
    database: &Database,
    same_network_ok: bool,
    k_max: u64,
    restarts: usize,
    seed: u64,
) -> Result<CheckReport, Error> {
    let mut conn = database.get()?;
    let mut index = Index::new();
    load_index(&mut conn, &mut index)?;
    let currency = index
        .busiest_currency()
        .ok_or_else(|| Error::UnknownCurrency("(the book is empty)".into()))?;
    let now = node::now_s();
    let mut shapes = Vec::new();
    for shape in Shape::all(k_max) {
        let mut req = shape.request(
            &protocol::EntityId::parse(&currency)
                .map_err(|_| Error::UnknownCurrency(currency.clone()))?,
        );
        req.exclude.clear();
        let request = select::Request {
            data_shards: shape.data_shards as usize,
            total_shards: shape.total_shards.map(|n| n as usize),
            max_failure_probability: shape.max_failure_probability,
            same_network_ok,
        };
        let (Some(narrow), Some(whole)) = (
            index.pool(&req, now, same_network_ok),
            index.whole_pool(&req, now, same_network_ok),
        ) else {
            continue;
        };
        let price = |o: &select::Outcome| match o {
            select::Outcome::Met(c) => Some(c.total_price),
            select::Outcome::CannotMeet(_) => None,
        };
        let fast = price(&select::select(&narrow.candidates, &request));
        let started = std::time::Instant::now();
        let slow = price(&select::long_search(
            &whole.candidates,
            &request,
            restarts,
            seed,
        ));
        let long_search_ms = started.elapsed().as_millis() as u64;
        // The long search is a reference, not an oracle: the better of the two is the best
        // found, and pre-selection is judged against it.
        let best = match (fast, slow) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        shapes.push(CheckedShape {
            shape: shape.name.clone(),
            candidates_whole: whole.candidates.len(),
            candidates_preselected: narrow.candidates.len(),
            price_preselected: fast,
            price_long_search: slow,
            excess: fast
                .zip(best)
                .map(|(f, b)| f as f64 / b.max(1) as f64 - 1.0),
            missed: fast.is_none() && slow.is_some(),
            long_search_ms,
        });
    }
    let worst_excess = shapes
        .iter()
        .filter_map(|s| s.excess)
        .max_by(f64::total_cmp);
    Ok(CheckReport {
        agents: index.agent_count(),
        currency,
        restarts,
        shapes,
        worst_excess,
    })
}

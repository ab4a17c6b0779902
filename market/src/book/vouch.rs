//! Reputation from records (DESIGN 11): after each crawl round the market ranks the graph of
//! agreed records it holds (`market::ranking`, seeded at the agents it audited itself) and
//! stores each agent's vouch (0 to 1) in its row, where `reliability::Reputation` reads it as
//! a prior while the market's own audits are few.
//!
//! Invariants:
//! - Only agreed records count: an agreement whose proposal the market also holds (both
//!   halves, both checked when crawled). A proposal alone is one party's claim.
//! - Seeds are the market's own evidence: agents with audits passed, weighted by them.
//! - Rows are written, under the market clock, only when their vouch moved by
//!   [`VOUCH_STEP`] or more, so a round over a steady graph writes nothing.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use node::records::record_blocks;

use super::Market;
use crate::error::Error;
use crate::ranking::{record_value, vouch, DealGraph};
use crate::reliability::VETTING_AUDITS_MIN;
use crate::schema::agents;

/// Agreed records ranked at most (the newest are left out past it).
pub const RANK_RECORDS_MAX: i64 = 1_000_000;
/// Smallest change of an agent's vouch that is written.
pub const VOUCH_STEP: f64 = 0.01;

/// What a ranking did.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RankReport {
    pub records: usize,
    pub entities: usize,
    pub agents_changed: usize,
}

impl Market {
    /// Rank the agreed records held here and store the agents' vouch.
    pub async fn rank_records(&self) -> Result<RankReport, Error> {
        self.db
            .run(|conn| {
                let proposals: HashSet<(String, i64)> = record_blocks::table
                    .filter(record_blocks::link_sequence_number.eq(0))
                    .select((record_blocks::public_key, record_blocks::sequence_number))
                    .limit(RANK_RECORDS_MAX)
                    .load::<(String, i64)>(conn)?
                    .into_iter()
                    .collect();
                let agreements: Vec<(String, String, i64, String)> = record_blocks::table
                    .filter(record_blocks::link_sequence_number.gt(0))
                    .select((
                        record_blocks::public_key,
                        record_blocks::link_public_key,
                        record_blocks::link_sequence_number,
                        record_blocks::transaction,
                    ))
                    .order((record_blocks::public_key, record_blocks::sequence_number))
                    .limit(RANK_RECORDS_MAX)
                    .load(conn)?;
                let mut graph = DealGraph::default();
                let mut records = 0;
                for (agreer, proposer, seq, tx) in agreements {
                    if !proposals.contains(&(proposer.clone(), seq)) {
                        continue;
                    }
                    let value = serde_json::from_str(&tx).map_or(1.0, |v| record_value(&v));
                    graph.add_deal(&agreer, &proposer, value);
                    records += 1;
                }
                let rows: Vec<(String, i64, f64)> = agents::table
                    .select((agents::entity, agents::audits_passed, agents::vouch))
                    .load(conn)?;
                let seeds: Vec<(String, f64)> = rows
                    .iter()
                    .filter(|(_, passed, _)| *passed > 0)
                    .map(|(e, passed, _)| (e.clone(), *passed as f64))
                    .collect();
                let scores = graph.rank(&seeds);
                let score = |e: &str| scores.get(e).copied().unwrap_or(0.0);
                // The reference: the mean score of vetted agents (of any audited one when none
                // is vetted yet).
                let vetted: Vec<f64> = rows
                    .iter()
                    .filter(|(_, p, _)| p.unsigned_abs() >= VETTING_AUDITS_MIN)
                    .map(|(e, _, _)| score(e))
                    .collect();
                let pool: Vec<f64> = if vetted.is_empty() {
                    seeds.iter().map(|(e, _)| score(e)).collect()
                } else {
                    vetted
                };
                let reference = if pool.is_empty() {
                    0.0
                } else {
                    pool.iter().sum::<f64>() / pool.len() as f64
                };
                let changes: HashMap<String, f64> = rows
                    .iter()
                    .filter_map(|(e, _, old)| {
                        let v = (vouch(score(e), reference) / VOUCH_STEP).round() * VOUCH_STEP;
                        ((v - old).abs() >= VOUCH_STEP / 2.0).then(|| (e.clone(), v))
                    })
                    .collect();
                let report = RankReport {
                    records,
                    entities: graph.len(),
                    agents_changed: changes.len(),
                };
                if !changes.is_empty() {
                    db::write_transaction(conn, |conn| {
                        let changed = super::tick(conn)?;
                        for (entity, v) in &changes {
                            diesel::update(agents::table.find(entity))
                                .set((agents::vouch.eq(v), agents::changed.eq(changed)))
                                .execute(conn)?;
                        }
                        Ok::<_, Error>(())
                    })?;
                }
                Ok(report)
            })
            .await
    }
}

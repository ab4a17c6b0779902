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
//!   [`VOUCH_STEP`] or more, and only for agents audited fewer than `VETTING_AUDITS_MIN` times
//!   (the only ones whose prior it changes), so a round over a steady graph writes nothing
//!   and a book of 100,000 audited agents with no records writes nothing either.
//! - A vouch counts only what an entity's deals brought it, never a seed's own restarts.

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

/// The last ranking: each entity's score and vouch, and what it was computed from.
#[derive(Debug, Default, Clone)]
pub struct Ranking {
    pub scores: HashMap<String, f64>,
    /// Each seed's share of the restarts (its audits over all seeds' audits).
    pub restart: HashMap<String, f64>,
    /// Per entity: (value delivered, value received) in agreed records. The server that
    /// agreed delivered (an agent its storage, a publisher its view); the proposer received.
    pub flows: HashMap<String, (f64, f64)>,
    /// The mean score of vetted agents (of audited ones when none is vetted).
    pub reference: f64,
    pub records: usize,
}

impl Ranking {
    /// `entity`'s (score, vouch); (0, 0) for an entity with no agreed record. The vouch
    /// counts only what the entity's deals brought it: a seed's own share of the restarts
    /// (what it would hold with no deal at all) is taken off first, so an audited agent does
    /// not vouch for itself.
    pub fn of(&self, entity: &str) -> (f64, f64) {
        let score = self.scores.get(entity).copied().unwrap_or(0.0);
        let own = self.restart.get(entity).copied().unwrap_or(0.0);
        (score, vouch((score - own).max(0.0), self.reference))
    }
}

/// A ranking older than this is computed again when asked for (`GET /v1/reputation`).
pub const RANKING_STALE_MS_MAX: u64 = 60_000;

/// Rank the agreed records held in the database (see the module documentation). Blocking.
fn compute(conn: &mut db::AnyConnection) -> Result<(Ranking, Vec<(String, f64)>), Error> {
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
    let mut flows: HashMap<String, (f64, f64)> = HashMap::new();
    let mut records = 0;
    for (agreer, proposer, seq, tx) in agreements {
        if !proposals.contains(&(proposer.clone(), seq)) {
            continue;
        }
        let value = serde_json::from_str(&tx).map_or(1.0, |v| record_value(&v));
        graph.add_deal(&agreer, &proposer, value);
        flows.entry(agreer).or_insert((0.0, 0.0)).0 += value;
        flows.entry(proposer).or_insert((0.0, 0.0)).1 += value;
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
    let seed_total: f64 = seeds.iter().map(|(_, w)| w).sum();
    let restart: HashMap<String, f64> = seeds
        .iter()
        .map(|(e, w)| (e.clone(), w / seed_total))
        .collect();
    let score = |e: &str| scores.get(e).copied().unwrap_or(0.0);
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
    // Only agents audited fewer than VETTING_AUDITS_MIN times use a vouch
    // (`reliability::Reputation`): the others' rows are not written.
    let stored: Vec<(String, f64)> = rows
        .into_iter()
        .filter(|(_, passed, _)| passed.unsigned_abs() < VETTING_AUDITS_MIN)
        .map(|(e, _, v)| (e, v))
        .collect();
    Ok((
        Ranking {
            scores,
            restart,
            flows,
            reference,
            records,
        },
        stored,
    ))
}

impl Market {
    /// Rank the agreed records held here and store the agents' vouch.
    pub async fn rank_records(&self) -> Result<RankReport, Error> {
        let (ranking, report) = self
            .db
            .run(|conn| {
                let (ranking, stored) = compute(conn)?;
                let changes: HashMap<String, f64> = stored
                    .iter()
                    .filter_map(|(e, old)| {
                        let v = (ranking.of(e).1 / VOUCH_STEP).round() * VOUCH_STEP;
                        ((v - old).abs() >= VOUCH_STEP / 2.0).then(|| (e.clone(), v))
                    })
                    .collect();
                let report = RankReport {
                    records: ranking.records,
                    entities: ranking.scores.len(),
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
                Ok::<_, Error>((ranking, report))
            })
            .await?;
        *self
            .ranking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), std::sync::Arc::new(ranking)));
        Ok(report)
    }

    /// The last ranking, computed again when older than [`RANKING_STALE_MS_MAX`] (a process
    /// that does not crawl ranks when asked).
    pub async fn ranking(&self) -> Result<std::sync::Arc<Ranking>, Error> {
        let fresh = || {
            let last = self
                .ranking
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            last.filter(|(at, _)| {
                at.elapsed() < std::time::Duration::from_millis(RANKING_STALE_MS_MAX)
            })
            .map(|(_, r)| r)
        };
        if let Some(r) = fresh() {
            return Ok(r);
        }
        // One ranking at a time: requests arriving meanwhile take its result.
        let _turn = self.ranking_turn.lock().await;
        if let Some(r) = fresh() {
            return Ok(r);
        }
        let ranking = std::sync::Arc::new(self.db.run(compute).await?.0);
        *self
            .ranking
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), ranking.clone()));
        Ok(ranking)
    }

    /// `GET /v1/reputation?entity=X`: what the market's records say of X.
    pub async fn reputation(
        &self,
        entity: &str,
    ) -> Result<protocol::book::EntityReputation, Error> {
        let ranking = self.ranking().await?;
        let (score, vouch) = ranking.of(entity);
        let who = entity.to_owned();
        let (head, proofs) = self
            .db
            .run(move |conn| {
                let head = node::records::head(conn, &who)
                    .map_err(|e| Error::Db(db::DbError::Task(e.to_string())))?
                    .map_or(0, |b| b.sequence_number);
                let proofs: i64 = node::records::record_frauds::table
                    .filter(node::records::record_frauds::public_key.eq(&who))
                    .count()
                    .get_result(conn)?;
                Ok::<_, Error>((head, proofs))
            })
            .await?;
        Ok(protocol::book::EntityReputation {
            entity: entity.to_owned(),
            score,
            vouch,
            reference_score: ranking.reference,
            records_ranked: ranking.records,
            head,
            forked: proofs > 0,
            fraud_proofs: proofs.unsigned_abs(),
            contributed: ranking.flows.get(entity).map_or(0.0, |f| f.0),
            consumed: ranking.flows.get(entity).map_or(0.0, |f| f.1),
        })
    }
}

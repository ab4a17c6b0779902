//! Heartbeats written in groups, and the market clock every write to `agents` takes.
//!
//! Group commit, leader style: a heartbeat queues its row, then waits for its turn to write;
//! whoever gets the turn writes everything queued (up to [`HEARTBEATS_PER_COMMIT_MAX`]) in one
//! transaction and answers each. At 1,700 heartbeats/s that is a few commits a second rather
//! than 1,700 (issue 14).
//!
//! Invariants:
//! - Every transaction that writes `agents` calls [`tick`] first: the clock row's lock is held
//!   until commit, so `changed` values commit in order (the index relies on it) and
//!   read-modify-writes of a reputation never interleave, in one process or several.
//! - A heartbeat is answered only after the transaction holding its row committed.
//! - Once its group committed, a heartbeat's row is applied to this process's index as it
//!   committed (its offer parsed already, the columns it did not write read back in the
//!   transaction), so a refresh that finds the row unchanged since skips it (`index`). Its
//!   position is not the index's watermark: rows of other processes before it are still read.
//! - Heartbeats commit relaxed (`db::relaxed_write_transaction`): a power cut may lose the
//!   last moments of them, and the agents' next heartbeats (every minute) restore them. No
//!   reputation is written this way.

use db::AnyConnection;
use diesel::prelude::*;
use protocol::market::Offer;
use protocol::Envelope;

use super::{AgentRow, Market};
use crate::error::Error;
use crate::schema::{agents, market_clock};

/// Heartbeats waiting for a commit at most; past it a heartbeat is `503 busy`.
pub const HEARTBEATS_QUEUED_MAX: usize = 8_192;
/// Heartbeats one transaction writes at most.
pub const HEARTBEATS_PER_COMMIT_MAX: usize = 1_024;

struct Pending {
    row: AgentRow,
    /// The row's offer, opened and verified when it was posted.
    parsed: (Envelope, Offer),
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

/// The queue of heartbeats not yet written, and the turn to write them.
#[derive(Default)]
pub(super) struct HeartbeatQueue {
    queue: std::sync::Mutex<Vec<Pending>>,
    turn: tokio::sync::Mutex<()>,
}

/// The next value of the market clock. Call it first in any transaction that writes `agents`
/// and stamp the written rows' `changed` with it.
pub(crate) fn tick(conn: &mut AnyConnection) -> Result<i64, Error> {
    diesel::update(market_clock::table.find(1))
        .set(market_clock::value.eq(market_clock::value + 1))
        .execute(conn)?;
    Ok(market_clock::table
        .find(1)
        .select(market_clock::value)
        .first(conn)?)
}

impl Market {
    /// Store one heartbeat's row (insert or refresh), grouped with others arriving meanwhile.
    pub(super) async fn write_heartbeat(
        &self,
        row: AgentRow,
        parsed: (Envelope, Offer),
    ) -> Result<(), Error> {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        {
            let mut queue = self
                .heartbeats
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if queue.len() >= HEARTBEATS_QUEUED_MAX {
                return Err(Error::Busy(format!(
                    "{HEARTBEATS_QUEUED_MAX} heartbeats are waiting to be written"
                )));
            }
            queue.push(Pending { row, parsed, done });
        }
        loop {
            let _turn = self.heartbeats.turn.lock().await;
            match answer.try_recv() {
                Ok(result) => return result.map_err(|e| Error::Db(db::DbError::Task(e))),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(Error::Db(db::DbError::Task(
                        "the heartbeat's writer stopped".into(),
                    )))
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let group: Vec<Pending> = {
                let mut queue = self
                    .heartbeats
                    .queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let n = queue.len().min(HEARTBEATS_PER_COMMIT_MAX);
                queue.drain(..n).collect()
            };
            let mut rows = Vec::with_capacity(group.len());
            let mut offers = Vec::with_capacity(group.len());
            let mut answers = Vec::with_capacity(group.len());
            for p in group {
                rows.push(p.row);
                offers.push(p.parsed);
                answers.push(p.done);
            }
            let written = self
                .db
                .run(move |conn| {
                    db::relaxed_write_transaction(conn, |conn| write_group(conn, rows))
                })
                .await;
            let written = match written {
                Ok(rows) => {
                    self.apply_written(rows, offers);
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            };
            for done in answers {
                // A waiter that gave up (its request was dropped) no longer listens.
                let _ = done.send(written.clone());
            }
        }
    }
}

/// Refresh or insert each row, stamped with one clock value; answers the rows as they will
/// commit (in the same order).
fn write_group(conn: &mut AnyConnection, rows: Vec<AgentRow>) -> Result<Vec<AgentRow>, Error> {
    let changed = tick(conn)?;
    // A statement per row, on PostgreSQL too: one multi-row `INSERT ... ON CONFLICT DO
    // UPDATE` per group was measured three times slower there at 100,000 agents (505 against
    // 1,666 heartbeats/s absorbed, docs/BENCHMARKS.md).
    write_one_by_one(conn, &rows, changed)?;
    read_back(conn, rows, changed)
}

/// Refresh or insert each row, a statement each.
fn write_one_by_one(
    conn: &mut AnyConnection,
    rows: &[AgentRow],
    changed: i64,
) -> Result<(), Error> {
    for row in rows {
        // A heartbeat proves the agent is up: it is online again. Reputation is left alone.
        let updated = diesel::update(agents::table.find(&row.entity))
            .set((
                agents::endpoint.eq(&row.endpoint),
                agents::network.eq(&row.network),
                agents::offer.eq(&row.offer),
                agents::offer_expires_s.eq(row.offer_expires_s),
                agents::last_heartbeat_s.eq(row.last_heartbeat_s),
                agents::endpoint_checked_s.eq(row.endpoint_checked_s),
                agents::online.eq(1),
                agents::changed.eq(changed),
            ))
            .execute(conn)?;
        if updated == 0 {
            let mut row = row.clone();
            row.changed = changed;
            diesel::insert_into(agents::table)
                .values(&row)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// `rows` as they will commit: what the heartbeat wrote, and the rest read back.
fn read_back(
    conn: &mut AnyConnection,
    mut rows: Vec<AgentRow>,
    changed: i64,
) -> Result<Vec<AgentRow>, Error> {
    // What a heartbeat does not write (reputation, first seen, vouch), as it stands now: the
    // clock's lock, held since `tick`, keeps any other writer out until commit.
    let entities: Vec<&str> = rows.iter().map(|r| r.entity.as_str()).collect();
    let kept: std::collections::HashMap<String, Kept> = agents::table
        .filter(agents::entity.eq_any(&entities))
        .select((
            agents::entity,
            (
                agents::alpha,
                agents::beta,
                agents::audits_passed,
                agents::audits_failed,
                agents::first_seen_s,
                agents::vouch,
            ),
        ))
        .load::<(String, Kept)>(conn)?
        .into_iter()
        .collect();
    for row in &mut rows {
        let k = kept.get(&row.entity).ok_or_else(|| {
            Error::Db(db::DbError::Task(format!(
                "{} vanished while written",
                row.entity
            )))
        })?;
        (
            row.alpha,
            row.beta,
            row.audits_passed,
            row.audits_failed,
            row.first_seen_s,
            row.vouch,
        ) = *k;
        row.online = 1;
        row.changed = changed;
    }
    Ok(rows)
}

/// The columns of an agent's row a heartbeat leaves alone.
type Kept = (f64, f64, i64, i64, i64, f64);

impl Market {
    /// Apply rows just committed by a heartbeat group to the index (see the module's
    /// invariants).
    fn apply_written(&self, rows: Vec<AgentRow>, offers: Vec<(Envelope, Offer)>) {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Last first: of an agent's two heartbeats in one group (one clock value), the last
        // is the one written, and the index takes one row per value.
        for (row, (envelope, offer)) in rows.into_iter().zip(offers).rev() {
            index.apply_written(row, envelope, offer);
        }
    }
}

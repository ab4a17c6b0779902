//! The index and the database: the first load, and refreshes that bring the index up to the
//! `agents` table (pairs of (`changed`, entity) first, then the rows the index does not hold),
//! taking turns, with their timings; the book's counts for `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use db::AnyConnection;
use diesel::prelude::*;

use super::{BookCounts, Index, LiveAgent, Parsed, REFRESH_ROWS_MAX};
use crate::book::{AgentRow, Market};
use crate::error::Error;
use crate::schema::agents;

/// Apply every row written since `index`'s watermark (all of them for a new index).
pub fn load_index(conn: &mut AnyConnection, index: &mut Index) -> Result<(), Error> {
    loop {
        let (rows, more) = rows_since(conn, &index.watermark)?;
        for row in rows {
            index.apply(row);
        }
        if !more {
            return Ok(());
        }
    }
}

/// Rows after `watermark` in (`changed`, entity) order, at most [`REFRESH_ROWS_MAX`]; `true`
/// when there may be more. Rows of one transaction share a `changed` and commit together, so
/// a refresh may stop inside such a group and read its rest next time.
fn rows_since(
    conn: &mut AnyConnection,
    watermark: &(i64, String),
) -> Result<(Vec<AgentRow>, bool), Error> {
    rows_after(conn, watermark, REFRESH_ROWS_MAX)
}

/// The (`changed`, entity) of rows after `watermark`, in that order, at most `limit`; `true`
/// when there may be more. Read from the (`changed`, entity) index alone.
fn changes_after(
    conn: &mut AnyConnection,
    (changed, entity): &(i64, String),
    limit: i64,
) -> Result<(Vec<(i64, String)>, bool), Error> {
    let pairs: Vec<(i64, String)> = agents::table
        .filter(agents::changed.ge(*changed))
        .filter(agents::changed.gt(*changed).or(agents::entity.gt(entity)))
        .order((agents::changed, agents::entity))
        .select((agents::changed, agents::entity))
        .limit(limit)
        .load(conn)?;
    let more = pairs.len() as i64 == limit;
    Ok((pairs, more))
}

/// Rows a refresh applies per hold of the index's write lock.
const APPLY_ROWS_PER_LOCK_MAX: usize = 512;

/// Entities whose rows one statement reads at most.
const ROWS_PER_STATEMENT_MAX: usize = 1_000;

/// The rows of `entities`, as they are now.
fn rows_of(conn: &mut AnyConnection, entities: &[&str]) -> Result<Vec<AgentRow>, Error> {
    let mut rows = Vec::with_capacity(entities.len());
    for chunk in entities.chunks(ROWS_PER_STATEMENT_MAX) {
        rows.extend(
            agents::table
                .filter(agents::entity.eq_any(chunk))
                .load::<AgentRow>(conn)?,
        );
    }
    Ok(rows)
}

pub(super) fn rows_after(
    conn: &mut AnyConnection,
    (changed, entity): &(i64, String),
    limit: i64,
) -> Result<(Vec<AgentRow>, bool), Error> {
    let rows: Vec<AgentRow> = agents::table
        // `changed >= c` on its own, so PostgreSQL scans the (changed, entity) index from `c`
        // on (with only the OR it read the whole table: 100 ms a match at 100,000 agents).
        .filter(agents::changed.ge(*changed))
        .filter(agents::changed.gt(*changed).or(agents::entity.gt(entity)))
        .order((agents::changed, agents::entity))
        .limit(limit)
        .load(conn)?;
    let more = rows.len() as i64 == limit;
    Ok((rows, more))
}

impl Market {
    /// Bring the index up to the database: rows written since it was last read, by this
    /// process or another. A refresh that started after `asked` (and so after the caller's
    /// moment) answers for every caller waiting on it; `stale_ms_max` lets callers that can
    /// live with an older view (heartbeats) skip it.
    pub async fn fresh_index(&self, stale_ms_max: u64) -> Result<(), Error> {
        self.fresh_index_timed(stale_ms_max, None).await
    }

    /// [`Market::fresh_index`], counting its parts in `timings` (a match's refresh).
    pub(in crate::book) async fn fresh_index_timed(
        &self,
        stale_ms_max: u64,
        timings: Option<&crate::book::timings::MatchTimings>,
    ) -> Result<(), Error> {
        let asked = Instant::now();
        let fresh_enough = || {
            let last = *self
                .index_read_at
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            last.is_some_and(|last| {
                last >= asked || asked.duration_since(last).as_millis() < u128::from(stale_ms_max)
            })
        };
        // Callers content with an older view (1,700 heartbeats/s) do not queue for the turn:
        // a match's refresh would wait behind every one of them. Nor do they wait for a
        // refresh under way (a long one reads a whole book whose reputations all changed).
        if stale_ms_max > 0 && fresh_enough() {
            return Ok(());
        }
        let _turn = if stale_ms_max > 0 {
            match self.index_turn.try_lock() {
                Ok(turn) => turn,
                Err(_) => return Ok(()),
            }
        } else {
            self.index_turn.lock().await
        };
        if let Some(t) = timings {
            t.add(crate::book::timings::Phase::RefreshWait, asked.elapsed());
        }
        if fresh_enough() {
            return Ok(());
        }
        let started = Instant::now();
        let index = self.index.clone();
        let took = self
            .db
            .run(move |conn| -> Result<std::time::Duration, Error> {
                let began = Instant::now();
                refresh_from(conn, &index).map(|()| began.elapsed())
            })
            .await?;
        if let Some(t) = timings {
            t.add(crate::book::timings::Phase::RefreshDb, took);
        }
        *self
            .index_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(started);
        Ok(())
    }
}

/// Bring `index` up to the database (see [`Market::fresh_index`]). Blocking.
fn refresh_from(conn: &mut AnyConnection, index: &std::sync::RwLock<Index>) -> Result<(), Error> {
    // Refreshes take turns (`index_turn`), so the watermark read here is still the index's
    // when the rows are applied. Rows are read and parsed before the lock is taken: matches
    // scanning the index wait only for the map updates.
    loop {
        let watermark = index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .watermark
            .clone();
        let (pairs, more) = changes_after(conn, &watermark, REFRESH_ROWS_MAX)?;
        let Some(last) = pairs.last().cloned() else {
            return Ok(());
        };
        let need: Vec<&str> = {
            let ix = index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pairs
                .iter()
                .filter(|(changed, entity)| !ix.holds(entity, *changed))
                .map(|(_, entity)| entity.as_str())
                .collect()
        };
        // Most rows new (a first load, another process's heartbeats): read the range in
        // order; a few: those rows alone.
        let rows = if need.len() * 2 > pairs.len() {
            rows_after(conn, &watermark, pairs.len() as i64)?.0
        } else {
            rows_of(conn, &need)?
        };
        let parsed: Vec<Parsed> = rows.into_iter().map(Parsed::of).collect();
        // A few hundred rows per hold of the lock, so that matches scanning meanwhile wait
        // milliseconds, not the whole backlog (the watermark moves after the last).
        let mut parsed = parsed.into_iter().peekable();
        while parsed.peek().is_some() {
            let mut ix = index
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for p in parsed.by_ref().take(APPLY_ROWS_PER_LOCK_MAX) {
                ix.apply_parsed(p);
            }
        }
        index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .advance(last);
        if !more {
            return Ok(());
        }
    }
}

impl Market {
    /// Counts over the book for `/metrics`, from an index at most `stale_ms_max` old.
    pub async fn book_counts(&self, stale_ms_max: u64) -> Result<BookCounts, Error> {
        self.fresh_index(stale_ms_max).await?;
        let now = crate::book::now_s();
        let ix = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut counts = BookCounts {
            known: ix.agents.len() as u64,
            ..BookCounts::default()
        };
        for a in ix.agents.values() {
            let live = a.offer_expires_s > now;
            counts.live += u64::from(live);
            counts.online += u64::from(live && a.reputation.online);
            counts.audits_passed = counts
                .audits_passed
                .saturating_add(a.reputation.audits_passed);
            counts.audits_failed = counts
                .audits_failed
                .saturating_add(a.reputation.audits_failed);
        }
        Ok(counts)
    }

    /// The indexed agent, if any (as of the last refresh).
    pub fn indexed(&self, entity: &str) -> Option<Arc<LiveAgent>> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(entity)
    }
}

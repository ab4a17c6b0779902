//! The agent's history (issue 22): what it stored, served and earned, per UTC day (a year
//! kept), per hour (two days kept) and in total (never dropped: the Prometheus counters).
//!
//! - Events ([`note`]): bytes written and read, audits answered, earnings by kind and by
//!   means of payment, paywords redeemed. Added to the day's and the hour's row of the
//!   event's currency in the transaction that earns or serves, so a figure commits with what
//!   it counts: one `UPDATE` per row, the row made on first use
//!   ([`db::insert_unless_taken`]). Totals ([`totals`]) are the days kept plus what pruning
//!   folded into a `total` row, so they never go down.
//! - Samples ([`sample`]): used and reserved bytes, probes answered, the market's rating;
//!   written to the row with currency "" by the sampler task and after each heartbeat.
//! - [`prune`] drops what is past its keeping; [`periods`] reads a range back.
//!
//! Invariant: in every row, `earned_contract + earned_writes + earned_reads + earned_audits
//! == by_deposit + by_payword + by_tab` (both breakdowns of one total; `usage::count` and
//! `usage::credit_paid` split each amount both ways).

use db::AnyConnection;
use diesel::prelude::*;
use protocol::agent::{Earned, HistoryPeriod, PaidBy};

use crate::schema::history;

pub const DAY_S: i64 = 86_400;
pub const HOUR_S: i64 = 3_600;
/// Daily rows kept: a year (and the day in progress).
pub const DAYS_KEPT: i64 = 366;
/// Hourly rows kept: two days.
pub const HOURS_KEPT: i64 = 48;
/// Periods one history query answers at most (a year of days in a few currencies).
pub const PERIODS_MAX: i64 = 4_096;

/// Events to add to a period's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub bytes_written: i64,
    pub bytes_read: i64,
    pub bytes_read_tokens: i64,
    pub audits_answered: i64,
    pub earned_contract: i64,
    pub earned_writes: i64,
    pub earned_reads: i64,
    pub earned_audits: i64,
    pub by_deposit: i64,
    pub by_payword: i64,
    pub by_tab: i64,
    pub paywords_redeemed: i64,
    /// Probes answered (samples, and days folded into the total by [`prune`]).
    pub probes_answered: i64,
}

impl Delta {
    fn is_empty(&self) -> bool {
        *self == Delta::default()
    }

    /// A period's events as a delta (pruning folds old days into the total with it).
    fn events_of(p: &HistoryPeriod) -> Delta {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Delta {
            bytes_written: big(p.bytes_written),
            bytes_read: big(p.bytes_read),
            bytes_read_tokens: big(p.bytes_read_tokens),
            audits_answered: big(p.audits_answered),
            earned_contract: big(p.earned.contract),
            earned_writes: big(p.earned.writes),
            earned_reads: big(p.earned.reads),
            earned_audits: big(p.earned.audits),
            by_deposit: big(p.paid_by.deposit),
            by_payword: big(p.paid_by.payword),
            by_tab: big(p.paid_by.tab),
            paywords_redeemed: big(p.paywords_redeemed),
            probes_answered: big(p.probes_answered),
        }
    }
}

/// The periods an event at `now_s` belongs to.
fn steps(now_s: i64) -> [(&'static str, i64); 2] {
    [
        ("day", now_s - now_s.rem_euclid(DAY_S)),
        ("hour", now_s - now_s.rem_euclid(HOUR_S)),
    ]
}

/// Add `d` to the day and hour rows of `cur` (inside the caller's transaction, after every
/// contract, tab line and usage row it changes; only rows always taken after these follow,
/// such as the payment cursor, stats and the command log: one lock order for every
/// transaction, so PostgreSQL never deadlocks on the shared period rows).
pub fn note(conn: &mut AnyConnection, now_s: i64, cur: &str, d: &Delta) -> QueryResult<()> {
    debug_assert_eq!(
        d.earned_contract + d.earned_writes + d.earned_reads + d.earned_audits,
        d.by_deposit + d.by_payword + d.by_tab,
        "both breakdowns of one total"
    );
    if d.is_empty() {
        return Ok(());
    }
    for (period, start) in steps(now_s) {
        add(conn, period, start, cur, d)?;
    }
    Ok(())
}

/// Add `d` to one row, made on first use.
fn add(
    conn: &mut AnyConnection,
    period: &str,
    start: i64,
    cur: &str,
    d: &Delta,
) -> QueryResult<()> {
    let update = |conn: &mut AnyConnection| {
        use history::*;
        db::cached(
            diesel::update(history::table.find((period, start, cur))).set((
                (
                    bytes_written.eq(bytes_written + d.bytes_written),
                    bytes_read.eq(bytes_read + d.bytes_read),
                    bytes_read_tokens.eq(bytes_read_tokens + d.bytes_read_tokens),
                    audits_answered.eq(audits_answered + d.audits_answered),
                    earned_contract.eq(earned_contract + d.earned_contract),
                    earned_writes.eq(earned_writes + d.earned_writes),
                    earned_reads.eq(earned_reads + d.earned_reads),
                ),
                (
                    earned_audits.eq(earned_audits + d.earned_audits),
                    by_deposit.eq(by_deposit + d.by_deposit),
                    by_payword.eq(by_payword + d.by_payword),
                    by_tab.eq(by_tab + d.by_tab),
                    paywords_redeemed.eq(paywords_redeemed + d.paywords_redeemed),
                    probes_answered.eq(probes_answered + d.probes_answered),
                ),
            )),
        )
        .execute(conn)
    };
    if update(conn)? == 1 {
        return Ok(());
    }
    // Made here, or by another transaction just now: either way the row is there after.
    db::insert_unless_taken(conn, |conn| {
        diesel::insert_into(history::table)
            .values((
                history::step.eq(period),
                history::start_s.eq(start),
                history::currency.eq(cur),
            ))
            .execute(conn)
    })?;
    update(conn).map(|_| ())
}

/// What the sampler saw: space, probes answered since the last sample, the market's rating.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sample {
    pub used_bytes: u64,
    pub reserved_bytes: u64,
    pub probes: u64,
    /// (p_fail, audits passed, audits failed), when a market rates the agent.
    pub rating: Option<(f64, u64, u64)>,
}

/// Write `s` to the day and hour rows with currency "" (inside the caller's transaction).
pub fn sample(conn: &mut AnyConnection, now_s: i64, s: &Sample) -> QueryResult<()> {
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let probes = Delta {
        probes_answered: big(s.probes),
        ..Delta::default()
    };
    for (period, start) in steps(now_s) {
        // Makes the row when it is not there yet, whatever the probes.
        add(conn, period, start, "", &probes)?;
        use history::*;
        let row = history::table.find((period, start, ""));
        db::cached(diesel::update(row).set((
            used_bytes.eq(big(s.used_bytes)),
            reserved_bytes.eq(big(s.reserved_bytes)),
        )))
        .execute(conn)?;
        if let Some((p, passed, failed)) = s.rating {
            db::cached(diesel::update(row).set((
                p_fail.eq(Some(p)),
                audits_passed.eq(big(passed)),
                audits_failed.eq(big(failed)),
            )))
            .execute(conn)?;
        }
    }
    Ok(())
}

/// Drop daily rows older than [`DAYS_KEPT`] (their events folded into the currency's
/// `total` row first, so totals never go down) and hourly ones older than [`HOURS_KEPT`].
pub fn prune(conn: &mut AnyConnection, now_s: i64) -> QueryResult<usize> {
    let today = now_s - now_s.rem_euclid(DAY_S);
    let this_hour = now_s - now_s.rem_euclid(HOUR_S);
    let old_before = today - DAYS_KEPT * DAY_S + 1;
    // Every old day, uncapped: each is folded once, in the transaction that deletes it.
    let old = load(conn, &["day"], i64::MIN, old_before, None)?;
    for p in totals_of(old) {
        add(conn, "total", 0, &p.currency, &Delta::events_of(&p))?;
    }
    let days = diesel::delete(
        history::table
            .filter(history::step.eq("day"))
            .filter(history::start_s.lt(old_before)),
    )
    .execute(conn)?;
    let hours = diesel::delete(
        history::table
            .filter(history::step.eq("hour"))
            .filter(history::start_s.le(this_hour - HOURS_KEPT * HOUR_S)),
    )
    .execute(conn)?;
    Ok(days + hours)
}

/// Everything since the agent began keeping history, per currency: the days kept plus what
/// [`prune`] folded into the `total` rows (step `total`, start 0).
pub fn totals(conn: &mut AnyConnection) -> QueryResult<Vec<HistoryPeriod>> {
    // One statement, uncapped: a prune committing between two reads cannot count a day
    // twice (kept and folded).
    let rows = load(conn, &["day", "total"], i64::MIN, i64::MAX, None)?;
    Ok(totals_of(rows))
}

/// `rows`' events summed per currency, as `total` periods.
fn totals_of(rows: Vec<HistoryPeriod>) -> Vec<HistoryPeriod> {
    let mut by: std::collections::BTreeMap<String, HistoryPeriod> = Default::default();
    for p in rows {
        by.entry(p.currency.clone())
            .or_insert_with(|| HistoryPeriod {
                step: "total".into(),
                currency: p.currency.clone(),
                ..HistoryPeriod::default()
            })
            .add_events(&p);
    }
    by.into_values().collect()
}

type Row = (
    (String, i64, String, i64, i64, i64, i64),
    (i64, i64, i64, i64, i64, i64, i64),
    (i64, i64, i64, i64, i64, i64, Option<f64>),
);

/// The `step` periods starting in [from, to), by start then currency, at most
/// [`PERIODS_MAX`] (the newest).
pub fn periods(
    conn: &mut AnyConnection,
    period: &str,
    from: i64,
    to: i64,
) -> QueryResult<Vec<HistoryPeriod>> {
    load(conn, &[period], from, to, Some(PERIODS_MAX))
}

/// The rows of `steps` starting in [from, to), by start then currency, in one statement; at
/// most `cap` (the newest) when given.
fn load(
    conn: &mut AnyConnection,
    steps: &[&str],
    from: i64,
    to: i64,
    cap: Option<i64>,
) -> QueryResult<Vec<HistoryPeriod>> {
    use history::*;
    let mut q = history::table
        .select((
            (
                step,
                start_s,
                currency,
                bytes_written,
                bytes_read,
                bytes_read_tokens,
                audits_answered,
            ),
            (
                earned_contract,
                earned_writes,
                earned_reads,
                earned_audits,
                by_deposit,
                by_payword,
                by_tab,
            ),
            (
                paywords_redeemed,
                used_bytes,
                reserved_bytes,
                probes_answered,
                audits_passed,
                audits_failed,
                p_fail,
            ),
        ))
        .filter(step.eq_any(steps.iter().map(|s| s.to_string()).collect::<Vec<_>>()))
        .filter(start_s.ge(from))
        .filter(start_s.lt(to))
        // Newest first, so a cut drops the oldest; answered oldest first.
        .order((start_s.desc(), currency.desc()))
        .into_boxed();
    if let Some(cap) = cap {
        q = q.limit(cap);
    }
    let rows: Vec<Row> = q.load(conn)?;
    let u = i64::unsigned_abs;
    Ok(rows
        .into_iter()
        .rev()
        .map(
            |(
                (st, start, cur, bw, br, brt, aa),
                (ec, ew, er, ea, bd, bp, bt),
                (pr, ub, rb, pa, ap, af, pf),
            )| {
                HistoryPeriod {
                    step: st,
                    start_s: u(start),
                    currency: cur,
                    bytes_written: u(bw),
                    bytes_read: u(br),
                    bytes_read_tokens: u(brt),
                    audits_answered: u(aa),
                    earned: Earned {
                        contract: u(ec),
                        writes: u(ew),
                        reads: u(er),
                        audits: u(ea),
                        total: u(ec)
                            .saturating_add(u(ew))
                            .saturating_add(u(er))
                            .saturating_add(u(ea)),
                    },
                    paid_by: PaidBy {
                        deposit: u(bd),
                        payword: u(bp),
                        tab: u(bt),
                    },
                    paywords_redeemed: u(pr),
                    used_bytes: u(ub),
                    reserved_bytes: u(rb),
                    probes_answered: u(pa),
                    audits_passed: u(ap),
                    audits_failed: u(af),
                    p_fail: pf,
                }
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, url: Option<String>) -> db::Database {
        let location = match url {
            Some(u) => db::Location::parse(&u),
            None => db::Location::sqlite_in(dir, "agent.db"),
        };
        db::Database::open(location, crate::migrations()).expect("database")
    }

    #[test]
    fn a_year_of_days_and_two_days_of_hours_are_kept_and_totals_never_dropped() {
        for (backend, database) in db::testing::backends("history_keep") {
            let dir = tempfile::tempdir().expect("dir");
            let db = open(dir.path(), database.url());
            let mut conn = db.get().expect("conn");
            let conn = &mut *conn;
            let now = 1_800_000_000i64;
            let written = Delta {
                bytes_written: 10,
                earned_writes: 4,
                by_tab: 1,
                by_deposit: 3,
                ..Delta::default()
            };
            // One event an hour for three days back, then one a day for 400 days back.
            let times: Vec<i64> = (0..72)
                .map(|h| now - h * HOUR_S)
                .chain((3..400).map(|d| now - d * DAY_S))
                .collect();
            db::write_transaction(conn, |conn| {
                times
                    .iter()
                    .try_for_each(|t| note(conn, *t, "ed25519:c", &written))
                    .map_err(crate::Error::from)
            })
            .expect("notes");
            let events = times.len() as u64 + 1;
            db::write_transaction(conn, |conn| {
                note(conn, now, "ed25519:c", &written)?;
                let seen = Sample {
                    used_bytes: 5,
                    reserved_bytes: 9,
                    probes: 2,
                    rating: Some((0.01, 3, 1)),
                };
                sample(conn, now, &seen).map_err(crate::Error::from)
            })
            .expect("note and sample");
            db::write_transaction(conn, |conn| prune(conn, now).map_err(crate::Error::from))
                .expect("prune");
            let days = periods(conn, "day", 0, now + 1).expect("days");
            let hours = periods(conn, "hour", 0, now + 1).expect("hours");
            let money_days = days.iter().filter(|p| !p.currency.is_empty()).count() as i64;
            let money_hours = hours.iter().filter(|p| !p.currency.is_empty()).count() as i64;
            assert_eq!(money_days, DAYS_KEPT, "{backend}: a year of days");
            assert_eq!(money_hours, HOURS_KEPT, "{backend}: two days of hours");
            let total = &totals(conn).expect("total")[..];
            let money = total
                .iter()
                .find(|p| p.currency == "ed25519:c")
                .expect("total");
            // Every event since the first, whatever was pruned.
            assert_eq!(money.bytes_written, events * 10);
            assert_eq!(money.earned.writes, events * 4);
            assert_eq!(
                money.earned.total,
                money.paid_by.deposit + money.paid_by.tab
            );
            let sampled = hours
                .iter()
                .find(|p| p.currency.is_empty())
                .expect("sample row");
            assert_eq!(
                (
                    sampled.used_bytes,
                    sampled.reserved_bytes,
                    sampled.probes_answered
                ),
                (5, 9, 2)
            );
            assert_eq!((sampled.p_fail, sampled.audits_passed), (Some(0.01), 3));
            // The day in progress holds this hour's events and the earlier hours of today.
            let today = days.last().expect("today");
            assert_eq!(today.start_s as i64, now - now.rem_euclid(DAY_S));
        }
    }
}

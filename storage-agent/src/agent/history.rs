//! The agent's history (issue 22): what it stored, served and earned, per UTC day (a year
//! kept), per hour (two days kept) and in total (never dropped: the Prometheus counters).
//!
//! - Events ([`note`]): bytes written and read, audits answered, earnings by kind and by
//!   means of payment, paywords redeemed. Added to the period's row of the event's currency
//!   in the transaction that earns or serves, so a figure commits with what it counts: one
//!   `UPDATE` per step, the row made on first use ([`db::insert_unless_taken`]).
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
}

impl Delta {
    fn is_empty(&self) -> bool {
        *self == Delta::default()
    }
}

/// The periods an event at `now_s` belongs to.
fn steps(now_s: i64) -> [(&'static str, i64); 3] {
    [
        ("day", now_s - now_s.rem_euclid(DAY_S)),
        ("hour", now_s - now_s.rem_euclid(HOUR_S)),
        ("total", 0),
    ]
}

/// Add `d` to the day, hour and total rows of `currency` (inside the caller's transaction).
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
        let add = |conn: &mut AnyConnection| {
            use history::*;
            diesel::update(history::table.find((period, start, cur)))
                .set((
                    bytes_written.eq(bytes_written + d.bytes_written),
                    bytes_read.eq(bytes_read + d.bytes_read),
                    bytes_read_tokens.eq(bytes_read_tokens + d.bytes_read_tokens),
                    audits_answered.eq(audits_answered + d.audits_answered),
                    earned_contract.eq(earned_contract + d.earned_contract),
                    earned_writes.eq(earned_writes + d.earned_writes),
                    earned_reads.eq(earned_reads + d.earned_reads),
                    earned_audits.eq(earned_audits + d.earned_audits),
                    by_deposit.eq(by_deposit + d.by_deposit),
                    by_payword.eq(by_payword + d.by_payword),
                    by_tab.eq(by_tab + d.by_tab),
                    paywords_redeemed.eq(paywords_redeemed + d.paywords_redeemed),
                ))
                .execute(conn)
        };
        if add(conn)? == 1 {
            continue;
        }
        let made = db::insert_unless_taken(conn, |conn| {
            diesel::insert_into(history::table)
                .values((
                    history::step.eq(period),
                    history::start_s.eq(start),
                    history::currency.eq(cur),
                ))
                .execute(conn)
        })?;
        // Made here or by another transaction just now: either way the row is there.
        let _ = made;
        add(conn)?;
    }
    Ok(())
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

/// Write `s` to the day and hour rows with currency "" (probes also to the total).
pub fn sample(conn: &mut AnyConnection, now_s: i64, s: &Sample) -> QueryResult<()> {
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for (period, start) in steps(now_s) {
        let set = |conn: &mut AnyConnection| {
            use history::*;
            let row = history::table.find((period, start, ""));
            let n = diesel::update(row)
                .set(probes_answered.eq(probes_answered + big(s.probes)))
                .execute(conn)?;
            if period != "total" && n == 1 {
                diesel::update(row)
                    .set((
                        used_bytes.eq(big(s.used_bytes)),
                        reserved_bytes.eq(big(s.reserved_bytes)),
                    ))
                    .execute(conn)?;
                if let Some((p, passed, failed)) = s.rating {
                    diesel::update(row)
                        .set((
                            p_fail.eq(Some(p)),
                            audits_passed.eq(big(passed)),
                            audits_failed.eq(big(failed)),
                        ))
                        .execute(conn)?;
                }
            }
            Ok::<_, diesel::result::Error>(n)
        };
        if set(conn)? == 1 {
            continue;
        }
        db::insert_unless_taken(conn, |conn| {
            diesel::insert_into(history::table)
                .values((
                    history::step.eq(period),
                    history::start_s.eq(start),
                    history::currency.eq(""),
                ))
                .execute(conn)
        })?;
        set(conn)?;
    }
    Ok(())
}

/// Drop daily rows older than [`DAYS_KEPT`] and hourly ones older than [`HOURS_KEPT`].
pub fn prune(conn: &mut AnyConnection, now_s: i64) -> QueryResult<usize> {
    let today = now_s - now_s.rem_euclid(DAY_S);
    let this_hour = now_s - now_s.rem_euclid(HOUR_S);
    let days = diesel::delete(
        history::table
            .filter(history::step.eq("day"))
            .filter(history::start_s.le(today - DAYS_KEPT * DAY_S)),
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

type Row = (
    (String, i64, String, i64, i64, i64, i64),
    (i64, i64, i64, i64, i64, i64, i64),
    (i64, i64, i64, i64, i64, i64, Option<f64>),
);

/// The `step` periods starting in [from_s, to_s), by start then currency, at most
/// [`PERIODS_MAX`].
pub fn periods(
    conn: &mut AnyConnection,
    period: &str,
    from: i64,
    to: i64,
) -> QueryResult<Vec<HistoryPeriod>> {
    use history::*;
    let rows: Vec<Row> = history::table
        .filter(step.eq(period))
        .filter(start_s.ge(from))
        .filter(start_s.lt(to))
        .order((start_s, currency))
        .limit(PERIODS_MAX)
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
        .load(conn)?;
    let u = i64::unsigned_abs;
    Ok(rows
        .into_iter()
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
            prune(conn, now).expect("prune");
            let days = periods(conn, "day", 0, now + 1).expect("days");
            let hours = periods(conn, "hour", 0, now + 1).expect("hours");
            let money_days = days.iter().filter(|p| !p.currency.is_empty()).count() as i64;
            let money_hours = hours.iter().filter(|p| !p.currency.is_empty()).count() as i64;
            assert_eq!(money_days, DAYS_KEPT, "{backend}: a year of days");
            assert_eq!(money_hours, HOURS_KEPT, "{backend}: two days of hours");
            let total = &periods(conn, "total", 0, 1).expect("total")[..];
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

//! The history part of the owner's page (issue 22): a time-range selector, charts of space,
//! bandwidth, earnings (per currency, stacked by kind) and the market's rating, and per
//! currency the month to date, an estimate for the month and the same earnings by means of
//! payment.

use std::collections::{BTreeMap, BTreeSet};

use protocol::agent::HistoryPeriod;
use protocol::market::{format_rfc3339, parse_rfc3339};

use crate::agent::history::{DAY_S, HOUR_S};
use crate::agent::Agent;
use crate::charts::{chart, Series, Style};
use crate::dashboard::{esc, human};
use crate::error::Error;

/// The ranges the selector offers: (name, step, periods).
pub const RANGES: [(&str, &str, i64); 5] = [
    ("48h", "hour", 48),
    ("7d", "day", 7),
    ("30d", "day", 30),
    ("90d", "day", 90),
    ("365d", "day", 365),
];
/// The range shown when the page is asked for none (or an unknown one).
pub const RANGE_DEFAULT: &str = "30d";

const KIND_COLORS: [(&str, &str); 4] = [
    ("contract", "#6a51a3"),
    ("writes", "#2b8cbe"),
    ("reads", "#31a354"),
    ("audits", "#fd8d3c"),
];

/// The range `?range=` asks for, or the default.
pub fn range_of(query: &str) -> (&'static str, &'static str, i64) {
    let asked = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("range="))
        .unwrap_or(RANGE_DEFAULT);
    RANGES
        .iter()
        .copied()
        .find(|(name, ..)| *name == asked)
        .or_else(|| RANGES.iter().copied().find(|(n, ..)| *n == RANGE_DEFAULT))
        .unwrap_or(RANGES[2])
}

/// A period's label: `YYYY-MM-DD` for days, `MM-DD HHh` for hours.
fn label(step: &str, start_s: i64) -> String {
    let t = format_rfc3339(start_s);
    match (step, t.get(..10), t.get(5..10), t.get(11..13)) {
        ("hour", _, Some(md), Some(h)) => format!("{md} {h}h"),
        (_, Some(day), ..) => day.to_owned(),
        _ => t,
    }
}

/// The first second of the UTC month holding `now_s`, and of the next.
fn month_of(now_s: i64) -> (i64, i64) {
    let t = format_rfc3339(now_s);
    let (y, m): (i64, i64) = (
        t.get(..4).and_then(|s| s.parse().ok()).unwrap_or(1970),
        t.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(1),
    );
    let start = parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00Z")).unwrap_or(0);
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = parse_rfc3339(&format!("{ny:04}-{nm:02}-01T00:00:00Z")).unwrap_or(start);
    (start, next)
}

/// The history section of the page, for the range in `query`; `token_query` (HTML, escaped)
/// is appended to the selector's links when the page was opened with a token.
pub async fn section(agent: &Agent, query: &str, token_query: &str) -> Result<String, Error> {
    let (range, step, count) = range_of(query);
    let now = node::now_s();
    let step_s = if step == "hour" { HOUR_S } else { DAY_S };
    let last = now - now.rem_euclid(step_s);
    let first = last - (count - 1) * step_s;
    let history = agent
        .history(step, first.unsigned_abs(), (now + 1).unsigned_abs())
        .await?;
    let starts: Vec<i64> = (0..count).map(|i| first + i * step_s).collect();
    let labels: Vec<String> = starts.iter().map(|s| label(step, *s)).collect();
    let mut rows: BTreeMap<(i64, &str), &HistoryPeriod> = BTreeMap::new();
    let mut currencies: BTreeSet<&str> = BTreeSet::new();
    for p in &history.periods {
        rows.insert((p.start_s as i64, p.currency.as_str()), p);
        if !p.currency.is_empty() {
            currencies.insert(p.currency.as_str());
        }
    }
    let per = |cur: &str, f: &dyn Fn(&HistoryPeriod) -> u64| -> Vec<u64> {
        starts
            .iter()
            .map(|s| rows.get(&(*s, cur)).map_or(0, |p| f(p)))
            .collect()
    };
    let summed = |f: &dyn Fn(&HistoryPeriod) -> u64| -> Vec<u64> {
        starts
            .iter()
            .map(|s| {
                currencies
                    .iter()
                    .filter_map(|c| rows.get(&(*s, *c)))
                    .map(|p| f(p))
                    .fold(0u64, u64::saturating_add)
            })
            .collect()
    };
    // Levels carry forward over periods with no sample (the agent was down, say), and, for
    // the market's figures, over samples taken before any market rated the agent.
    let level = |f: &dyn Fn(&HistoryPeriod) -> Option<u64>| -> Vec<u64> {
        let mut last = 0;
        starts
            .iter()
            .map(|s| {
                if let Some(v) = rows.get(&(*s, "")).and_then(|p| f(p)) {
                    last = v;
                }
                last
            })
            .collect()
    };
    let rated = |p: &HistoryPeriod| p.p_fail.is_some();
    let bytes = |n: u64| human(n);
    let mut out = String::new();
    out.push_str("<h2>History</h2><nav id=\"ranges\" aria-label=\"time range\">");
    for (name, ..) in RANGES {
        let current = if name == range {
            " aria-current=\"page\" class=current"
        } else {
            ""
        };
        out.push_str(&format!(
            "<a href=\"?range={name}{token_query}\"{current}>{name}</a> "
        ));
    }
    out.push_str("</nav><div class=charts>");
    out.push_str(&chart(
        "chart-space",
        "Space: used and reserved by contracts",
        &labels,
        &[
            Series {
                name: "used",
                color: "#2b8cbe",
                values: level(&|p| Some(p.used_bytes)),
            },
            Series {
                name: "reserved",
                color: "#9ecae1",
                values: level(&|p| Some(p.reserved_bytes)),
            },
        ],
        Style::Lines,
        &bytes,
    ));
    out.push_str(&chart(
        "chart-bandwidth",
        "Bandwidth: written (ingress) and read (egress)",
        &labels,
        &[
            Series {
                name: "written",
                color: "#756bb1",
                values: summed(&|p| p.bytes_written),
            },
            Series {
                name: "read",
                color: "#31a354",
                values: summed(&|p| p.bytes_read),
            },
        ],
        Style::Grouped,
        &bytes,
    ));
    for (i, cur) in currencies.iter().enumerate() {
        let show = |n: u64| agent.show_amount(cur, n);
        let kinds: [(&str, Vec<u64>); 4] = [
            ("contract", per(cur, &|p| p.earned.contract)),
            ("writes", per(cur, &|p| p.earned.writes)),
            ("reads", per(cur, &|p| p.earned.reads)),
            ("audits", per(cur, &|p| p.earned.audits)),
        ];
        let series: Vec<Series<'_>> = kinds
            .iter()
            .zip(KIND_COLORS)
            .map(|((name, values), (_, color))| Series {
                name,
                color,
                values: values.clone(),
            })
            .collect();
        out.push_str(&format!(
            "<div class=currency data-currency=\"{}\">",
            esc(cur)
        ));
        out.push_str(&chart(
            &format!("chart-earned-{i}"),
            &format!("Earned in {}", short(cur)),
            &labels,
            &series,
            Style::Stacked,
            &show,
        ));
        let total = |f: &dyn Fn(&HistoryPeriod) -> u64| -> u64 {
            per(cur, f).into_iter().fold(0u64, u64::saturating_add)
        };
        out.push_str(&format!(
            "<p class=means>In this range: {} earned; paid by deposit {}, by payword {}, on the \
             tab {}; paywords redeemed {}.</p></div>",
            esc(&show(total(&|p| p.earned.total))),
            esc(&show(total(&|p| p.paid_by.deposit))),
            esc(&show(total(&|p| p.paid_by.payword))),
            esc(&show(total(&|p| p.paid_by.tab))),
            esc(&show(total(&|p| p.paywords_redeemed))),
        ));
    }
    if currencies.is_empty() {
        out.push_str("<p class=empty>Nothing earned in this range yet.</p>");
    }
    if !history.periods.iter().any(rated) {
        out.push_str(
            "<p class=empty id=\"not-rated\">No market rated this agent in this range: start \
             it with --market URL.</p>",
        );
    }
    out.push_str(&chart(
        "chart-rating",
        "The market's rating: chance of losing data over 30 days",
        &labels,
        &[Series {
            name: "p_fail",
            color: "#de2d26",
            // In hundredths of a percent, so the chart's integers keep two decimals.
            values: level(&|p| p.p_fail.map(|f| (f * 10_000.0).round() as u64)),
        }],
        Style::Lines,
        &|v| format!("{}.{:02}%", v / 100, v % 100),
    ));
    out.push_str(&chart(
        "chart-audits",
        "Audits the market counted (passed, failed) and probes answered",
        &labels,
        &[
            Series {
                name: "passed",
                color: "#31a354",
                values: level(&|p| rated(p).then_some(p.audits_passed)),
            },
            Series {
                name: "failed",
                color: "#de2d26",
                values: level(&|p| rated(p).then_some(p.audits_failed)),
            },
            Series {
                name: "probes",
                color: "#969696",
                values: per("", &|p| p.probes_answered),
            },
        ],
        Style::Lines,
        &|v| v.to_string(),
    ));
    out.push_str("</div>");
    out.push_str(&month(agent, now).await?);
    Ok(out)
}

/// The first and last few characters of an issuer id.
fn short(id: &str) -> String {
    match (id.get(..14), id.get(id.len().saturating_sub(6)..)) {
        (Some(a), Some(b)) if id.len() > 24 => format!("{a}…{b}"),
        _ => id.to_owned(),
    }
}

/// Per currency: earned this month so far, and the month's estimate at this pace.
async fn month(agent: &Agent, now: i64) -> Result<String, Error> {
    let (start, next) = month_of(now);
    let days = agent
        .history("day", start.unsigned_abs(), (now + 1).unsigned_abs())
        .await?;
    // Per currency: (earned, of which writes, reads and audits).
    let mut totals: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for p in days.periods.iter().filter(|p| !p.currency.is_empty()) {
        let t = totals.entry(p.currency.as_str()).or_default();
        t.0 = t.0.saturating_add(p.earned.total);
        t.1 =
            t.1.saturating_add(p.earned.writes + p.earned.reads + p.earned.audits);
    }
    // Contract prices come when contracts are bought: they are not projected. Writes, reads
    // and audits go on at the month's pace so far, over at least a day (an hour's pace on
    // the 1st would say little).
    let elapsed = (now - start).max(DAY_S) as f64;
    let remaining = (next - now).max(0) as f64;
    let mut rows = String::new();
    for (cur, (total, usage)) in &totals {
        let estimate = total.saturating_add((*usage as f64 * remaining / elapsed).round() as u64);
        rows.push_str(&format!(
            "<tr data-currency=\"{}\"><td><code>{}</code></td><td class=mtd>{}</td>\
             <td class=estimate>{}</td></tr>",
            esc(cur),
            esc(&short(cur)),
            esc(&agent.show_amount(cur, *total)),
            esc(&agent.show_amount(cur, estimate)),
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=3>Nothing earned this month yet.</td></tr>");
    }
    Ok(format!(
        "<h3>This month ({})</h3><table id=\"month\"><tr><th>currency</th><th>month to date\
         </th><th>estimate for the month</th></tr>{rows}</table><p class=note>The estimate \
         adds the month's pace of writes, reads and audits so far to what is earned; \
         contract prices are counted as they come.</p>",
        esc(format_rfc3339(start).get(..7).unwrap_or(""))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_labels_and_months() {
        assert_eq!(range_of("range=48h").1, "hour");
        assert_eq!(range_of("token=x&range=7d").0, "7d");
        assert_eq!(range_of("range=bogus").0, RANGE_DEFAULT);
        assert_eq!(range_of("").0, RANGE_DEFAULT);
        let t = parse_rfc3339("2026-11-30T19:00:00Z").expect("time");
        assert_eq!(label("day", t), "2026-11-30");
        assert_eq!(label("hour", t), "11-30 19h");
        let (start, next) = month_of(t);
        assert_eq!(format_rfc3339(start), "2026-11-01T00:00:00Z");
        assert_eq!(format_rfc3339(next), "2026-12-01T00:00:00Z");
        let dec = parse_rfc3339("2026-12-31T23:59:59Z").expect("time");
        assert_eq!(format_rfc3339(month_of(dec).1), "2027-01-01T00:00:00Z");
    }
}

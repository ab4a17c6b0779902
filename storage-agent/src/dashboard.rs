//! `GET /`: the home user's page. Server-rendered HTML, no script needed.

use actix_web::HttpResponse;

use crate::agent::State;
use crate::error::Error;

pub use node::cli::format_bytes as human;
pub use node::html::escape as esc;

/// The market's rating of this agent, in words.
fn reliability(standing: Option<crate::agent::MarketStanding>) -> String {
    match standing {
        None => "Not rated yet: start the agent with --market URL; the market rates it from \
                 audits and uptime probes."
            .to_owned(),
        Some(m) => format!(
            "The market at {market} estimates a <b id=\"p-fail\">{p:.2}%</b> chance of losing \
             data over 30 days; audits <b id=\"audits-passed\">{passed} passed</b>, \
             <b id=\"audits-failed\">{failed} failed</b>; {status}, {online}; the records of \
             its deals vouch for it <b id=\"vouch\">{vouch:.0}%</b>.",
            market = esc(&m.market),
            p = m.p_fail * 100.0,
            passed = m.audits_passed,
            failed = m.audits_failed,
            vouch = m.vouch * 100.0,
            status = if m.vetted {
                "vetted"
            } else {
                "not yet vetted (new agents get a small share of matches)"
            },
            online = if m.online {
                "seen online"
            } else {
                "seen <b>offline</b>"
            },
        ),
    }
}

pub async fn page(req: actix_web::HttpRequest, agent: State) -> Result<HttpResponse, Error> {
    crate::owner::require_owner(&req, &agent)?;
    let s = agent.summary().await?;
    let mut rows = String::new();
    for c in &s.contracts {
        rows.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.id),
            esc(&c.status),
            human(c.used_bytes),
            human(c.block_bytes),
            c.objects.len(),
            esc(&agent.show_amount(&c.issuer, c.credit)),
            esc(&c.end)
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=6>No contracts yet. Buyers find this agent through its offer.</td></tr>");
    }
    let earnings: String = s
        .earnings
        .iter()
        .map(|e| {
            format!(
                "<li><span class=income>{}</span> from <code>{}</code> ({})</li>",
                esc(&agent.show_amount(&e.issuer, e.income)),
                esc(&e.issuer),
                esc(&e.issuer_url)
            )
        })
        .collect();
    let holdings = agent.payword_holdings().await?;
    let paywords: String = if holdings.is_empty() {
        "<tr><td colspan=5>No paywords yet: buyers paying by payword show here.</td></tr>".into()
    } else {
        holdings
            .iter()
            .map(|h| {
                format!(
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=pending>{}</td><td>{}</td></tr>",
                    esc(&h.issuer),
                    esc(&agent.show_amount(&h.issuer, h.accepted)),
                    esc(&agent.show_amount(&h.issuer, h.redeemed)),
                    esc(&agent.show_amount(&h.issuer, h.pending)),
                    h.chains
                )
            })
            .collect()
    };
    // The selector's links keep a token the page was opened with in its query (as it came,
    // escaped for the attribute), never one from a header.
    let token_query = crate::owner::query_token(req.query_string())
        .map(|t| format!("&amp;token={}", esc(t)))
        .unwrap_or_default();
    let history = crate::history_page::section(&agent, req.query_string(), &token_query).await?;
    let me = agent.key.entity().to_string();
    let lines = agent
        .credit
        .lines(None)
        .await
        .map_err(|e| Error::Store(format!("credit lines: {e}")))?;
    let credit = node::credit::lines_html(&lines.lines, &me, &|c, n| agent.show_amount(c, n));
    let errors: String = if s.recent_errors.is_empty() {
        "<li>none</li>".into()
    } else {
        s.recent_errors
            .iter()
            .map(|e| format!("<li>{}</li>", esc(e)))
            .collect()
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Storage agent</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
.cards {{ display: flex; gap: 1rem; flex-wrap: wrap; }}
.card {{ border: 1px solid #ccc; border-radius: 8px; padding: 1rem; min-width: 10rem; }}
.card b {{ display: block; font-size: 1.4rem; }}
table {{ border-collapse: collapse; margin-top: 1rem; display: block; max-width: 100%; overflow-x: auto; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; }}
code {{ overflow-wrap: anywhere; }}
#ranges a {{ margin-right: .6rem; }}
#ranges a.current {{ font-weight: bold; text-decoration: none; color: #222; }}
.charts {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 30rem), 1fr)); gap: 1rem; }}
figure.chart {{ margin: 0; border: 1px solid #ddd; border-radius: 8px; padding: .5rem; }}
figure.chart svg {{ display: block; height: 12rem; }}
figure.chart .axis {{ stroke: #999; }}
figure.chart .scale {{ font-size: 11px; fill: #555; }}
.legend {{ list-style: none; padding: 0; margin: .3rem 0 0; display: flex; flex-wrap: wrap; gap: .8rem; font-size: .9rem; }}
.swatch {{ display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: middle; }}
@media (max-width: 480px) {{ body {{ margin: .8rem; }} table {{ font-size: .85rem; }} }}
</style></head>
<body>
<h1>Storage agent</h1>
<p>Entity <code id="entity">{entity}</code></p>
<div class="cards">
 <div class="card">Free<b id="free">{free}</b></div>
 <div class="card">Used<b id="used">{used}</b></div>
 <div class="card">Reserved by contracts<b id="reserved">{reserved}</b></div>
 <div class="card">Capacity<b id="capacity">{capacity}</b></div>
 <div class="card">Active contracts<b id="active">{active}</b></div>
 <div class="card">Audits answered<b id="audits">{audits}</b></div>
</div>
{history}
<h2>Payments received</h2><p>Contract prices and the credit buyers paid ahead (some of it not yet used), per currency.</p><ul id="earnings">{earnings}</ul>
<h2>Paywords</h2><p>Words buyers paid with (no issuer involved), what the issuers paid for them so far, and what is still to redeem, per currency.</p>
<table id="paywords"><tr><th>issuer</th><th>held</th><th>redeemed</th><th>pending</th><th>chains</th></tr>{paywords}</table>
{credit}
<h2>Reliability</h2><p id="reliability">{reliability}</p>
<h2>Contracts</h2>
<table id="contracts"><tr><th>id</th><th>status</th><th>used / block</th><th>objects</th><th>credit</th><th>ends</th></tr>{rows}</table>
<h2>Recent errors</h2><ul id="errors">{errors}</ul>
</body></html>"#,
        entity = esc(&s.entity),
        reliability = reliability(agent.standing()),
        free = human(s.free_bytes),
        used = human(s.used_bytes),
        reserved = human(s.reserved_bytes),
        capacity = human(s.capacity_bytes),
        active = s.contracts_active,
        audits = s.audits_answered,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

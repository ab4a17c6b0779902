//! `GET /`: the offer book as a web page: prices, reliability and adjusted price per agent.
//! Server-rendered HTML that refreshes itself; no script needed.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use storage_agent::dashboard::{esc, human};

use crate::error::Error;
use crate::server::State;

/// Seconds between the page's own refreshes.
const REFRESH_S: u32 = 10;

#[derive(Deserialize)]
pub struct PageQuery {
    currency: Option<String>,
}

pub async fn page(query: web::Query<PageQuery>, market: State) -> Result<HttpResponse, Error> {
    let offers = market.offers(query.currency.as_deref()).await?;
    let mut rows = String::new();
    for o in &offers {
        let free = o
            .offer
            .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
            .map(|(_, offer)| human(offer.free_bytes))
            .unwrap_or_default();
        let short: String = o.agent.chars().take(12).collect();
        rows.push_str(&format!(
            "<tr class=\"offer\" data-agent=\"{agent}\"><td><code title=\"{agent}\">{short}…</code></td>\
             <td>{endpoint}</td><td>{free}</td><td class=\"num\">{price}</td>\
             <td class=\"num\">{p_fail:.2e}</td><td class=\"num adjusted\">{adjusted:.1}</td>\
             <td class=\"num\">{passed} / {failed}</td><td>{online}</td><td>{vetted}</td></tr>",
            agent = esc(&o.agent),
            endpoint = esc(&o.endpoint),
            price = o.reference_price,
            p_fail = o.p_fail,
            adjusted = o.adjusted_price,
            passed = o.audits_passed,
            failed = o.audits_failed,
            online = if o.online { "online" } else { "<strong>offline</strong>" },
            vetted = if o.vetted { "vetted" } else { "new" },
        ));
    }
    if offers.is_empty() {
        rows.push_str("<tr><td colspan=\"9\" id=\"empty\">No live offers yet: agents post theirs with <code>storage-agent serve --market URL</code>.</td></tr>");
    }
    let currency = offers
        .first()
        .map(|o| o.currency.clone())
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
<title>Storage market</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\
table{{border-collapse:collapse}}td,th{{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:left}}\
.num{{text-align:right;font-variant-numeric:tabular-nums}}</style></head><body>\
<h1>Storage market</h1>\
<p>Market <code>{entity}</code>. <span id=\"count\">{count}</span> live offers, cheapest \
reliability-adjusted price first. Prices in <code>{currency}</code> for the reference request \
(1 GiB for 30 days); <em>p_fail</em> is the estimated chance of losing the data over those 30 days; \
the adjusted price is price / nines, where nines = -log10(p_fail).</p>\
<table id=\"offers\"><thead><tr><th>agent</th><th>endpoint</th><th>free</th><th>price</th>\
<th>p_fail</th><th>adjusted</th><th>audits passed / failed</th><th>up</th><th>status</th></tr></thead>\
<tbody>{rows}</tbody></table></body></html>",
        entity = esc(market.key.entity().as_str()),
        count = offers.len(),
        currency = esc(&currency),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

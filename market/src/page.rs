//! `GET /`: the offer book as a web page: prices, reliability and adjusted price per agent.
//! Server-rendered HTML that refreshes itself; no script needed.

use actix_web::{web, HttpResponse};
use node::cli::format_bytes as human;
use node::html::escape as esc;
use serde::Deserialize;

use crate::book::State;
use crate::error::Error;

/// Seconds between the page's own refreshes.
const REFRESH_S: u32 = 10;
/// Offers shown on one page; the rest are on the next pages (`?page=N`).
pub const PAGE_ROWS: usize = 100;

#[derive(Deserialize)]
pub struct PageQuery {
    currency: Option<String>,
    /// The page shown, from 1.
    page: Option<usize>,
}

/// The URL of the issuer a listing's prices are in, from its offer.
fn issuer_url_of(listing: &crate::book::Listing) -> Option<String> {
    let (_, offer) = listing
        .offer
        .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
        .ok()?;
    let issuer = protocol::EntityId::parse(&listing.currency).ok()?;
    Some(offer.currency(&issuer)?.issuer_url.clone())
}

/// A price of `minor` units (possibly fractional, as adjusted prices are) for people.
fn show_price(minor: f64, currency: Option<&protocol::ledger::Currency>) -> String {
    match currency {
        Some(c) => {
            let scale = 10f64.powi(i32::try_from(c.decimals).unwrap_or(0));
            format!("{:.*} {}", c.decimals as usize, minor / scale, esc(&c.code))
        }
        None => format!("{minor:.0} (minor units)"),
    }
}

pub async fn page(query: web::Query<PageQuery>, market: State) -> Result<HttpResponse, Error> {
    let page_no = query.page.unwrap_or(1).max(1);
    let first = (page_no - 1).saturating_mul(PAGE_ROWS);
    let crate::book::OffersPage { offers, total } = market
        .offers_page(query.currency.as_deref(), None, first, PAGE_ROWS)
        .await?;
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    // Each issuer's currency, asked at once (each bounded, failures remembered), so a page
    // view waits for the slowest issuer once, not for every offer in turn.
    let mut urls: Vec<String> = offers.iter().filter_map(issuer_url_of).collect();
    urls.sort();
    urls.dedup();
    let m: &crate::book::Market = &market;
    let known: std::collections::HashMap<String, protocol::ledger::Currency> =
        futures_util::future::join_all(
            urls.iter()
                .map(|u| async move { m.currency_at(u).await.map(|c| (u.clone(), c)) }),
        )
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut rows = String::new();
    for o in &offers {
        let opened = o
            .offer
            .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
            .ok()
            .map(|(_, offer)| offer);
        let free = opened
            .as_ref()
            .map(|offer| human(offer.free_bytes))
            .unwrap_or_default();
        // Each row's prices are in the listing's currency: say which, with its units.
        let currency = issuer_url_of(o).and_then(|u| known.get(&u).cloned());
        let code = currency
            .as_ref()
            .map(|c| c.code.clone())
            .unwrap_or_default();
        let issuer_short: String = o.currency.chars().take(16).collect();
        let short: String = o.agent.chars().take(12).collect();
        rows.push_str(&format!(
            "<tr class=\"offer\" data-agent=\"{agent}\"><td><code title=\"{agent}\">{short}…</code></td>\
             <td>{endpoint}</td><td>{free}</td>\
             <td><span class=\"code\">{code}</span> <code title=\"{issuer}\">{issuer_short}…</code></td>\
             <td class=\"num price\">{price}</td>\
             <td class=\"num\">{p_fail:.2e}</td><td class=\"num adjusted\">{adjusted}</td>\
             <td class=\"num\">{passed} / {failed}</td><td>{online}</td><td>{vetted}</td></tr>",
            agent = esc(&o.agent),
            endpoint = esc(&o.endpoint),
            code = esc(&code),
            issuer = esc(&o.currency),
            issuer_short = esc(&issuer_short),
            price = show_price(o.reference_price as f64, currency.as_ref()),
            p_fail = o.p_fail,
            adjusted = show_price(o.adjusted_price, currency.as_ref()),
            passed = o.audits_passed,
            failed = o.audits_failed,
            online = if o.online { "online" } else { "<strong>offline</strong>" },
            vetted = if o.forked {
                "<strong class=\"forked\">forked: never matched</strong>".to_owned()
            } else {
                let status = if o.vetted { "vetted" } else { "new" };
                if o.vouch > 0.0 {
                    format!("{status}; records vouch {:.0}%", o.vouch * 100.0)
                } else {
                    status.to_owned()
                }
            },
        ));
    }
    if total == 0 {
        rows.push_str("<tr><td colspan=\"10\" id=\"empty\">No live offers yet: agents post theirs with <code>storage-agent serve --market URL</code>.</td></tr>");
    }
    let which = match &query.currency {
        Some(c) => format!("in the currency of issuer <code>{}</code>", esc(c)),
        None => "in each offer's first currency (add <code>?currency=ISSUER_ID</code> to compare \
                 offers in one currency)"
            .to_owned(),
    };
    // Links to the neighbouring pages keep the currency asked for.
    let link = |to: usize| -> String {
        let mut href = format!("/?page={to}");
        if let Some(c) = &query.currency {
            href.push_str(&format!("&amp;currency={}", esc(c)));
        }
        href
    };
    let mut nav = format!(
        "<nav id=\"pages\">Offers {from}&ndash;{to} of {total}, page {page_no} of {pages}.",
        from = if offers.is_empty() { 0 } else { first + 1 },
        to = first + offers.len(),
    );
    if page_no > 1 {
        nav.push_str(&format!(
            " <a rel=\"prev\" href=\"{}\">previous</a>",
            link(page_no - 1)
        ));
    }
    if page_no < pages {
        nav.push_str(&format!(
            " <a rel=\"next\" href=\"{}\">next</a>",
            link(page_no + 1)
        ));
    }
    nav.push_str("</nav>");
    let credit = match market.credit.lines(None).await {
        Ok(page) => node::credit::lines_html(&page.lines, market.key.entity().as_str(), &|_, n| {
            format!("{n} (minor units)")
        }),
        Err(_) => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\
<title>Storage market</title><style>\
body{{font-family:system-ui,sans-serif;margin:2rem;color:#222}}\
table{{border-collapse:collapse}}td,th{{padding:.3rem .7rem;border-bottom:1px solid #ddd;text-align:left}}\
.num{{text-align:right;font-variant-numeric:tabular-nums}}</style></head><body>\
<h1>Storage market</h1>\
<p>Market <code>{entity}</code>. <span id=\"count\">{count}</span> live offers, cheapest \
reliability-adjusted price first. Prices are {which}, for the reference request \
(1 GiB for 30 days); <em>p_fail</em> is the estimated chance of losing the data over those 30 days; \
the adjusted price is price / nines, where nines = -log10(p_fail).</p>\
<table id=\"offers\"><thead><tr><th>agent</th><th>endpoint</th><th>free</th><th>currency</th><th>price</th>\
<th>p_fail</th><th>adjusted</th><th>audits passed / failed</th><th>up</th><th>status</th></tr></thead>\
<tbody>{rows}</tbody></table>{nav}{credit}</body></html>",
        entity = esc(market.key.entity().as_str()),
        count = total,
    );
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

//! The peer's status page (`GET /`): what it earned, whom it deals with and what it owes.
//! Every value is escaped. Amounts are in the currency's minor units.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use node::html::escape as esc;

use crate::peer::status::Status;
use crate::peer::Peer;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:72em;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(9.5em,1fr));gap:.8em}\
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em}\
.card b{display:block;font-size:1.4em}.card span{color:#666;font-size:.85em}\
table{border-collapse:collapse;margin:.6em 0;width:100%}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}\
th{background:#f4f4f4}code{font-size:.85em;word-break:break-all}.none{color:#777}\
.primary{color:#063}.secondary{color:#035}.undesirable{color:#a00}\
@media (max-width:600px){.cards{grid-template-columns:1fr 1fr}td,th{font-size:.85em}}";

/// `GET /` of a peer.
pub async fn status_page(p: web::Data<Arc<Peer>>) -> HttpResponse {
    let body = match p.status().await {
        Ok(s) => render(&s),
        Err(e) => format!("<p class=undesirable>{}</p>", esc(&e.to_string())),
    };
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html><html><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>Peer</title><style>{STYLE}</style></head><body>{body}</body></html>"
        ))
}

/// An entity id shortened for people (the full id in the title).
fn short(entity: &str) -> String {
    let tail = entity.strip_prefix("ed25519:").unwrap_or(entity);
    format!(
        "<code title=\"{}\">{}…</code>",
        esc(entity),
        esc(&tail.chars().take(12).collect::<String>())
    )
}

fn card(value: impl std::fmt::Display, label: &str) -> String {
    format!(
        "<div class=card><b>{}</b><span>{}</span></div>",
        esc(&value.to_string()),
        esc(label)
    )
}

pub fn render(s: &Status) -> String {
    let mut h = format!(
        "<h1>Peer {}</h1><p>{} · strategy <b>{}</b> · policy <b>{}</b> · fee {} per solicitation · \
         commission {} · price {} per document</p>",
        short(&s.peer),
        esc(&s.url),
        esc(s.strategy),
        s.policy,
        s.solicit_fee,
        s.commission,
        s.price
    );
    h.push_str("<div class=cards>");
    for (v, l) in [
        (s.solicitations_seen, "solicitations seen"),
        (s.solicitations_forwarded, "solicitations forwarded"),
        (s.fees_earned, "fees earned"),
        (s.commissions_earned, "commissions earned"),
        (s.documents_sold, "documents sold"),
        (s.sales_income, "sales income"),
        (s.searches, "own searches"),
        (s.contests, "contests"),
    ] {
        h.push_str(&card(v, l));
    }
    h.push_str(&card(s.documents, "documents held"));
    h.push_str("</div>");

    h.push_str("<h2>Neighbours</h2>");
    if s.neighbors.is_empty() {
        h.push_str("<p class=none>No neighbours yet.</p>");
    } else {
        h.push_str("<table><tr><th>kind</th><th>peer</th><th>URL</th></tr>");
        for n in &s.neighbors {
            h.push_str(&format!(
                "<tr class=\"{k}\"><td class=\"{k}\">{k}</td><td>{}</td><td>{}</td></tr>",
                short(&n.entity),
                esc(&n.url),
                k = esc(&n.kind)
            ));
        }
        h.push_str("</table>");
    }

    h.push_str("<h2>Tabs</h2>");
    if s.tabs.is_empty() {
        h.push_str("<p class=none>No tabs yet.</p>");
    } else {
        h.push_str("<table><tr><th>neighbour</th><th>who owes</th><th>owed</th><th>limit</th><th>settles at</th></tr>");
        for t in &s.tabs {
            let who = if t.direction == "owes_me" {
                "they owe me"
            } else {
                "I owe them"
            };
            h.push_str(&format!(
                "<tr><td>{}</td><td>{who}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                short(&t.neighbor),
                t.owed,
                t.limit,
                t.threshold
            ));
        }
        h.push_str("</table>");
    }
    if !s.paid_ahead.is_empty() {
        h.push_str(
            "<h2>Paid ahead here</h2><p class=none>Transfers received from buyers without a \
             tab here (and any other transfer): fees and prices are drawn from them.</p>\
             <table><tr><th>buyer</th><th>balance</th></tr>",
        );
        for c in &s.paid_ahead {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                short(&c.buyer),
                c.balance
            ));
        }
        h.push_str("</table>");
    }
    if !s.paywords.is_empty() {
        h.push_str(
            "<h2>Paywords</h2><table><tr><th>issuer</th><th>taken</th><th>redeemed</th>\
             <th>pending</th><th>chains</th></tr>",
        );
        for w in &s.paywords {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                short(&w.issuer),
                w.accepted,
                w.redeemed,
                w.pending,
                w.chains
            ));
        }
        h.push_str("</table>");
    }
    if !s.copies.is_empty() {
        h.push_str("<h2>Copies kept (concealed sources)</h2><ul>");
        for c in &s.copies {
            h.push_str(&format!("<li><code>{}</code></li>", esc(c)));
        }
        h.push_str("</ul>");
    }
    h
}

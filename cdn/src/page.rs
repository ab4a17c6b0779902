//! The HTML pages: the publisher's status page, the gateway's index, the player page with live
//! figures, and the clear error page (402 when the viewer cannot pay). Every value is escaped.

use node::service::ServiceError;
use protocol::cdn::Catalog;
use protocol::ledger::Currency;

use crate::error::Error;
use crate::manifest::Manifest;
use crate::publisher::Status;

pub use node::html::escape as esc;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f4f4f4}code{background:#f4f4f4;padding:0 .2em}.bad{color:#a00}";

fn shell(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// `GET /` of the publisher.
pub async fn status_page(p: crate::publisher::State) -> actix_web::HttpResponse {
    let mut body = match p.status().await {
        Ok(s) => render_status(&s),
        Err(e) => format!("<p class=bad>{}</p>", esc(&e.to_string())),
    };
    if let Ok(lines) = p.credit_lines.lines(None).await {
        let me = p.key.entity().to_string();
        body.push_str(&node::credit::lines_html(&lines.lines, &me, &|_, n| {
            show_amount(None, n)
        }));
    }
    actix_web::HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(shell("Publisher", &body))
}

/// An amount in minor units for people, in the currency's `units` when known.
pub fn show_amount(
    units: Option<&Currency>,
    amount: impl Into<i128> + std::fmt::Display,
) -> String {
    match units {
        Some(c) => c.show(amount),
        None => format!("{amount} (minor units)"),
    }
}

/// [`show_amount`] of an amount that may be unknown (`null`).
fn show_maybe(units: Option<&Currency>, amount: Option<i64>) -> String {
    amount.map_or_else(|| "null".to_owned(), |a| show_amount(units, a))
}

fn render_status(s: &Status) -> String {
    let units = s.currency_units.as_ref();
    let money = |v: i64| esc(&show_amount(units, v));
    let mut out = format!(
        "<h1>Publisher</h1><p>Entity <code>{}</code>, balance {} (issuer <code>{}</code>)</p>",
        esc(s.publisher.as_str()),
        esc(&show_maybe(units, s.balance)),
        esc(s.currency.as_str())
    );
    out.push_str("<h2>Catalog</h2><table><tr><th>content</th><th>title</th><th>size</th><th>price per view</th><th>replicas (min-max, base)</th><th>views</th><th>income</th><th>piece reads this round</th></tr>");
    for c in &s.contents {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}-{} ({})</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.content), esc(&c.title), c.size, money(c.price_per_view),
            c.replicas_min, c.replicas_max, c.replicas_base,
            c.views, money(c.income), c.pieces_asked_this_round
        ));
    }
    out.push_str("</table><h2>Contracts</h2><table><tr><th>agent</th><th>endpoint</th><th>read per KiB</th><th>used / block bytes</th><th>credit (estimate)</th><th>ends</th></tr>");
    for c in &s.contracts {
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.agent), esc(&c.endpoint), money(c.read_per_kib),
            c.used_bytes, c.block_bytes, esc(&show_maybe(units, c.credit_estimate)), esc(&c.ends)
        ));
    }
    out.push_str("</table><h2>Paywords from viewers</h2><table id=paywords><tr><th>issuer</th><th>accepted</th><th>redeemed</th><th>pending</th><th>chains</th></tr>");
    for h in &s.paywords {
        let m = |v: u64| money(i64::try_from(v).unwrap_or(i64::MAX));
        out.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&h.issuer),
            m(h.accepted),
            m(h.redeemed),
            m(h.pending),
            h.chains
        ));
    }
    if s.paywords.is_empty() {
        out.push_str("<tr><td colspan=5>none yet</td></tr>");
    }
    out.push_str("</table><h2>Scaling events</h2><ul>");
    for e in &s.events {
        out.push_str(&format!(
            "<li>{} <code>{}</code> {}</li>",
            esc(&e.time),
            esc(&e.content),
            esc(&e.what)
        ));
    }
    out.push_str("</ul>");
    out
}

/// `GET /` of the gateway: the publisher's catalog with links to watch.
pub fn gateway_index(catalog: &Catalog) -> String {
    let mut out = String::from("<h1>Catalog</h1><table><tr><th>title</th><th>size</th><th>price per view</th><th></th></tr>");
    for c in &catalog.contents {
        let id = esc(&c.content);
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/watch/{id}\">watch</a></td></tr>",
            esc(&c.title),
            c.size,
            esc(&show_amount(
                catalog.currency_units.as_ref(),
                c.price_per_view
            ))
        ));
    }
    out.push_str("</table>");
    shell("Catalog", &out)
}

/// `GET /watch/{content}`: the player and its live figures.
pub fn player_page(m: &Manifest) -> String {
    let id = esc(&m.content);
    let body = format!(
        "<h1>{title}</h1>\
<video id=v src=\"/v/{id}\" controls autoplay muted playsinline width=640></video>\
<table id=figures><tr><th>position</th><td id=pos>0</td></tr>\
<tr><th>throughput</th><td id=tp>-</td></tr><tr><th>failovers</th><td id=fo>0</td></tr>\
<tr><th>corrupt pieces rejected</th><td id=bad>0</td></tr><tr><th>spend</th><td id=spend>-</td></tr></table>\
<h2>Bytes per agent</h2><table id=agents></table>\
<script>\
const v=document.getElementById('v');const id='{id}';\
function fmt(n){{return n>1e6?(n/1e6).toFixed(1)+' MB':n+' B'}}\
async function tick(){{\
 try{{await fetch('/v1/stats/'+id+'/player',{{method:'POST',headers:{{'content-type':'application/json'}},body:JSON.stringify({{current_time_s:v.currentTime}})}});\
 const s=await (await fetch('/v1/stats/'+id)).json();\
 document.getElementById('pos').textContent=v.currentTime.toFixed(2)+' s';\
 document.getElementById('tp').textContent=fmt(s.throughput_bytes_per_s)+'/s';\
 document.getElementById('fo').textContent=s.failovers;\
 document.getElementById('bad').textContent=s.corrupt;\
 document.getElementById('spend').textContent=s.spend_shown;\
 const t=document.getElementById('agents');t.textContent='';\
 for(const [a,b] of Object.entries(s.bytes_per_agent)){{const r=t.insertRow();r.insertCell().textContent=a.slice(0,20)+'…';r.insertCell().textContent=fmt(b)}}\
 }}catch(e){{}}\
}}\
setInterval(tick,500);v.play().catch(()=>{{}});\
</script>",
        title = esc(&m.title)
    );
    shell(&m.title, &body)
}

/// The page a browser gets for an error; for 402 it says what to do.
pub fn error_page(e: &Error) -> String {
    let advice = match e {
        Error::CannotPay { .. } => {
            "<p>Your wallet cannot pay for this view. Fund the wallet this gateway uses \
             (<code>--wallet</code>) in the publisher's currency, then reload.</p>"
        }
        Error::UnknownContent(_) => "<p>The publisher has no such content.</p>",
        _ => "",
    };
    shell(
        "Cannot play",
        &format!(
            "<h1>{} {}</h1><p class=bad>{}</p>{advice}",
            e.status().as_u16(),
            if matches!(e, Error::CannotPay { .. }) {
                "Payment required"
            } else {
                "Cannot play"
            },
            esc(&e.to_string())
        ),
    )
}

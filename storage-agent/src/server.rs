//! The agent's HTTP API (DESIGN section 5). Handlers parse, authenticate, call [`Agent`] and map
//! the result; commands' answers are signed (receipts).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{self, Metrics, ServiceError};
use protocol::{EntityId, Envelope, RequestKind, VerifiedRequest};
use serde::Deserialize;

use crate::agent::paywords::PaywordHeaders;
use crate::agent::{request_key, Agent, Answer, Cmd, RangeSpec, Read, State};
use crate::config::OBJECT_BYTES_MAX;
use crate::error::Error;
use crate::owner::require_owner;

/// Sent with answers that leave the buyer's running tab past `tab_threshold`: the debt to
/// settle (pay to any of the buyer's contracts). Lowercase: HTTP/1 header names are case-blind.
pub const AMOUNT_DUE_HEADER: &str = "lcp-amount-due";
/// The agent's half of a buyer's tab update (DESIGN 12): `<id>;<seq>;<owed>;<signature>`.
pub const LINE_HEADER: &str = "lcp-line";

/// Longest an upload waits for one of the agent's upload slots before `503 overloaded`.
const PUT_SLOT_WAIT_MS_MAX: u64 = 10_000;

/// Largest JSON body (contracts, retrieval and audit requests).
const JSON_BODY_BYTES_MAX: u64 = 64 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig, agent: Arc<Agent>) {
    node::records::routes(cfg, agent.records.clone());
    node::credit::http::routes(cfg, agent.credit.clone());
    cfg.app_data(web::Data::new(agent))
        .route("/", web::get().to(crate::dashboard::page))
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/offer", web::get().to(offer))
        .route("/v1/status", web::get().to(status))
        .route("/v1/history", web::get().to(history))
        .route("/v1/contracts", web::post().to(create_contract))
        .route("/v1/contracts/{id}", web::get().to(get_contract))
        .route(
            "/v1/contracts/{id}/objects/{name}",
            web::put().to(put_object),
        )
        .route(
            "/v1/contracts/{id}/objects/{name}",
            web::get().to(get_object),
        )
        .route(
            "/v1/contracts/{id}/objects/{name}",
            web::delete().to(delete_object),
        )
        .route(
            "/v1/contracts/{id}/retrievals",
            web::post().to(create_retrieval),
        )
        .route("/v1/contracts/{id}/audit", web::post().to(audit))
        .route("/v1/r/{token}", web::get().to(redeem))
        .default_service(web::to(service::not_found_route));
}

fn cmd<'a>(v: &'a VerifiedRequest, key: &'a str) -> Result<Cmd<'a>, Error> {
    let counter = v
        .counter
        .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
    Ok(Cmd {
        sender: &v.entity,
        counter,
        body_sha256: key,
    })
}

/// What a command is remembered by: its method, path and body (see `agent::request_key`).
fn key_of(req: &HttpRequest, v: &VerifiedRequest) -> String {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    request_key(req.method().as_str(), path, &v.body_sha256)
}

/// A command's outcome, success or refusal, signed for the sender ([`service::outcome`]), with
/// the agent's extras: storage failures go on the dashboard, and a tab past its threshold adds
/// the settle header.
fn signed(agent: &Agent, v: &VerifiedRequest, result: Result<Answer, Error>) -> HttpResponse {
    let settle = result.as_ref().ok().and_then(|a| a.settle);
    if let Err(e) = &result {
        agent.note_refusal(e);
        if e.internal() {
            agent.note_error(e.to_string());
        }
    }
    let (status, body) = service::outcome(result.map(|a| (a.status, a.body)));
    let mut resp = node::http::signed_response(&agent.key, v, status, body);
    if let Some(due) = settle {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&due.to_string()) {
            resp.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(AMOUNT_DUE_HEADER),
                value,
            );
        }
    }
    resp
}

async fn descriptor(agent: State) -> HttpResponse {
    // How the market probes an agent: counted for the history (issue 22).
    agent
        .probes
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    service::descriptor(
        "storage-agent",
        agent.key.entity(),
        serde_json::json!({
            "endpoint": agent.endpoint(),
            // Charged requests take LCP-Payword (DESIGN 10).
            "paywords": true,
            // Secrets of credit payments to this agent are sealed to it (DESIGN 12).
            "credit_key": agent.credit.credit_key_hex(),
            "credit_key_signature": agent.credit.credit_key_signature(),
            // Where to pay in each currency (DESIGN 14): `pay_to` when the agent is paid
            // into a bank account, the agent's own entity otherwise.
            "currencies": agent.config.currencies.iter().map(|c| serde_json::json!({
                "issuer": c.issuer,
                "issuer_url": c.issuer_url,
                "pay_to": c.bank.as_ref().map(|b| b.name.clone()),
            })).collect::<Vec<_>>(),
        }),
    )
}

/// One figure of a history period.
type Figure = fn(&protocol::agent::HistoryPeriod) -> u64;

async fn metrics(req: HttpRequest, agent: State) -> Result<HttpResponse, Error> {
    require_owner(&req, &agent)?;
    let s = agent.summary().await?;
    // The history's totals (issue 22): counters since the agent began keeping history.
    let totals = agent.history("total", 0, 1).await?.periods;
    let money: Vec<_> = totals.iter().filter(|p| !p.currency.is_empty()).collect();
    let sum = |f: Figure| -> u64 { totals.iter().map(f).fold(0, u64::saturating_add) };
    let per_issuer = |f: Figure| {
        money
            .iter()
            .map(move |p| (p.currency.clone(), f(p)))
            .collect::<Vec<_>>()
    };
    let mut m = Metrics::default()
        .counter("agent_bytes_written_total", sum(|p| p.bytes_written))
        .counter("agent_bytes_read_total", sum(|p| p.bytes_read))
        .counter(
            "agent_bytes_read_tokens_total",
            sum(|p| p.bytes_read_tokens),
        )
        .counter("agent_probes_answered_total", sum(|p| p.probes_answered));
    let series: [(&str, Figure); 8] = [
        ("agent_earned_contract_total", |p| p.earned.contract),
        ("agent_earned_writes_total", |p| p.earned.writes),
        ("agent_earned_reads_total", |p| p.earned.reads),
        ("agent_earned_audits_total", |p| p.earned.audits),
        ("agent_paid_by_deposit_total", |p| p.paid_by.deposit),
        ("agent_paid_by_payword_total", |p| p.paid_by.payword),
        ("agent_paid_by_tab_total", |p| p.paid_by.tab),
        ("agent_paywords_redeemed_total", |p| p.paywords_redeemed),
    ];
    for (name, f) in series {
        m = m.labelled(name, "counter", "issuer", per_issuer(f));
    }
    let m = m
        .gauge("agent_capacity_bytes", s.capacity_bytes)
        .gauge("agent_reserved_bytes", s.reserved_bytes)
        .gauge("agent_used_bytes", s.used_bytes)
        .gauge("agent_contracts_active", s.contracts_active)
        .gauge("agent_contracts_pending", s.contracts_pending)
        .gauge("agent_objects", s.objects)
        .counter("agent_audits_answered_total", s.audits_answered)
        .counter(
            "agent_payment_required_total",
            agent
                .payments_asked
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .counter(
            "agent_payword_payments_total",
            agent
                .payword_payments
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .labelled(
            "agent_income_total",
            "counter",
            "issuer",
            s.earnings.iter().map(|e| (e.issuer.clone(), e.income)),
        );
    Ok(m.response())
}

async fn offer(agent: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(agent.offer().await?))
}

/// The owner's: space, counts and earnings. Object names and hashes are the buyers' business,
/// so they are left out (the dashboard shows counts only).
async fn status(req: HttpRequest, agent: State) -> Result<HttpResponse, Error> {
    require_owner(&req, &agent)?;
    let mut summary = agent.summary().await?;
    for c in &mut summary.contracts {
        c.objects.clear();
    }
    Ok(HttpResponse::Ok().json(summary))
}

/// `GET /v1/history?from=&to=&step=` query (Unix seconds; `step` day, hour or total).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    from: Option<u64>,
    to: Option<u64>,
    step: Option<String>,
    /// The owner's token, when not asked from loopback (`crate::owner`).
    #[allow(dead_code)]
    token: Option<String>,
}

/// The owner's: the agent's history (issue 22), behind the dashboard's protection. By
/// default the last 30 days by day, or the last 48 hours by hour.
async fn history(
    req: HttpRequest,
    query: Result<web::Query<HistoryQuery>, actix_web::Error>,
    agent: State,
) -> Result<HttpResponse, Error> {
    require_owner(&req, &agent)?;
    let q = query.map_err(|e| Error::InvalidQuery(e.to_string()))?;
    let step = q.step.clone().unwrap_or_else(|| "day".into());
    let span_s = match step.as_str() {
        "day" => 30 * crate::agent::history::DAY_S,
        "hour" => crate::agent::history::HOURS_KEPT * crate::agent::history::HOUR_S,
        "total" => 0,
        _ => return Err(Error::InvalidQuery("step is day, hour or total".into())),
    };
    let now = node::now_s().max(0).unsigned_abs();
    // Periods starting before `to`: the one in progress included by default.
    let to = q.to.unwrap_or(now + 1);
    let from = q
        .from
        .unwrap_or_else(|| to.saturating_sub(span_s.unsigned_abs()));
    if from > to {
        return Err(Error::InvalidQuery("from is after to".into()));
    }
    let (from, to) = if step == "total" { (0, 1) } else { (from, to) };
    Ok(HttpResponse::Ok().json(agent.history(&step, from, to).await?))
}

/// Verify a signed request to this agent, its signature checked in a batch (issue 21).
async fn authenticate(
    req: &HttpRequest,
    body: &[u8],
    agent: &Agent,
    kind: RequestKind,
) -> Result<VerifiedRequest, Error> {
    service::authenticate_batched(req, body, &agent.key, kind, &agent.verifier).await
}

async fn create_contract(
    req: HttpRequest,
    payload: web::Payload,
    agent: State,
) -> Result<HttpResponse, Error> {
    let bytes = service::body::<Error>(&req, payload, JSON_BODY_BYTES_MAX).await?;
    let v = authenticate(&req, &bytes, &agent, RequestKind::Command).await?;
    let key = key_of(&req, &v);
    let result = async {
        let envelope: Envelope = service::parse_json::<_, Error>(&bytes)?;
        agent.create_contract(cmd(&v, &key)?, envelope).await
    }
    .await;
    Ok(signed(&agent, &v, result))
}

async fn get_contract(
    req: HttpRequest,
    path: web::Path<String>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let v = authenticate(&req, b"", &agent, RequestKind::Query).await?;
    // Words sent with the view credit the contract: how a buyer pays ahead by payword.
    agent
        .take_payword(&path, &v.entity, &PaywordHeaders::of(&req), false)
        .await?;
    Ok(HttpResponse::Ok().json(agent.contract(&path, &v.entity).await?))
}

async fn put_object(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<(String, String)>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let (id, name) = path.into_inner();
    let entity = agent.key.entity().as_str();
    // A client that declares the body's hash (and its length) is authenticated, and its
    // contract checked, before the body is read: a forged or hopeless upload never takes an
    // upload slot. Without a Content-Length (chunked) it goes the unverified way.
    let declared_bytes = req
        .headers()
        .get("content-length")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<u64>().ok());
    let pre = match declared_bytes {
        Some(_) => node::http::authenticate_declared(&req, entity, RequestKind::Command)?,
        None => None,
    };
    let mut _sender_upload = None;
    let paywords = PaywordHeaders::of(&req);
    if let Some(v) = &pre {
        let key = key_of(&req, v);
        let checked = async {
            // Words carried by the write pay for it: credited before the credit is checked.
            agent.take_payword(&id, &v.entity, &paywords, false).await?;
            agent
                .precheck_put(&id, &name, cmd(v, &key)?, declared_bytes)
                .await
        }
        .await;
        if let Err(e) = checked {
            return Ok(signed(&agent, v, Err(e)));
        }
        match agent.upload_of(&v.entity, PUT_SLOT_WAIT_MS_MAX).await {
            Ok(permit) => _sender_upload = Some(permit),
            Err(e) => return Ok(signed(&agent, v, Err(e))),
        }
    }
    // Declared uploads took their words before the credit check, above.
    let paid_early = pre.is_some();
    let slots = match pre {
        Some(_) => agent.put_slots.clone(),
        None => agent.unverified_put_slots.clone(),
    };
    // Bounded: each upload is buffered whole (up to OBJECT_BYTES_MAX) before it is stored.
    let _slot = tokio::time::timeout(
        std::time::Duration::from_millis(PUT_SLOT_WAIT_MS_MAX),
        slots.acquire_owned(),
    )
    .await
    .map_err(|_| Error::Overloaded)?
    .map_err(|_| Error::Overloaded)?;
    let bytes = service::body::<Error>(&req, payload, OBJECT_BYTES_MAX).await?;
    let v = match pre {
        Some(v) => {
            // The signature covers the declared hash; a body with another hash is not the
            // body that was signed.
            if !node::http::body_matches(bytes.clone(), &v.body_sha256).await {
                return Err(Error::Auth(protocol::AuthError::InvalidSignature));
            }
            v
        }
        None => {
            node::http::authenticate_body(&req, bytes.clone(), entity, RequestKind::Command).await?
        }
    };
    let key = key_of(&req, &v);
    let result = async {
        if !paid_early {
            agent.take_payword(&id, &v.entity, &paywords, false).await?;
        }
        agent.put_object(&id, &name, cmd(&v, &key)?, bytes).await
    }
    .await;
    let line = match &result {
        Ok(_) => agent.tab_line_header(v.entity.as_str()).await,
        Err(_) => None,
    };
    let mut resp = signed(&agent, &v, result);
    with_line(&mut resp, line);
    Ok(resp)
}

async fn delete_object(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let v = authenticate(&req, b"", &agent, RequestKind::Command).await?;
    let key = key_of(&req, &v);
    let (id, name) = path.into_inner();
    let result = async { agent.delete_object(&id, &name, cmd(&v, &key)?).await }.await;
    Ok(signed(&agent, &v, result))
}

fn range_of(req: &HttpRequest) -> Result<Option<RangeSpec>, Error> {
    match req.headers().get("range") {
        None => Ok(None),
        Some(h) => RangeSpec::from_header(
            h.to_str()
                .map_err(|_| Error::InvalidRange("not ASCII".into()))?,
        )
        .map_err(Error::from),
    }
}

/// 200 with the whole object, or 206 with `Content-Range` for a range request.
fn bytes_response(ranged: bool, read: Read) -> HttpResponse {
    let Read {
        bytes,
        range,
        size,
        settle,
    } = read;
    let mut resp = if ranged {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header(("accept-ranges", "bytes"))
        .content_type("application/octet-stream");
    if let Some(due) = settle {
        resp.insert_header((AMOUNT_DUE_HEADER, due.to_string()));
    }
    if ranged {
        let last = range.end.saturating_sub(1);
        resp.insert_header((
            "content-range",
            format!("bytes {}-{last}/{size}", range.start),
        ));
    }
    resp.body(bytes)
}

async fn get_object(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let v = authenticate(&req, b"", &agent, RequestKind::Command).await?;
    let (id, name) = path.into_inner();
    let range = range_of(&req)?;
    let read = async {
        let payword = agent.payword_work(&id, &v.entity, &PaywordHeaders::of(&req));
        agent
            .read_object(&id, &name, cmd(&v, "")?, v.time_ms, range, payword)
            .await
    }
    .await
    .inspect_err(|e| agent.note_refusal(e))?;
    let line = agent.tab_line_header(v.entity.as_str()).await;
    let mut resp = bytes_response(range.is_some(), read);
    with_line(&mut resp, line);
    Ok(resp)
}

/// Add `LCP-Line` (the agent's half of the buyer's tab state, DESIGN 12) when there is one.
fn with_line(resp: &mut HttpResponse, line: Option<String>) {
    if let Some(value) = line.and_then(|l| actix_web::http::header::HeaderValue::from_str(&l).ok())
    {
        resp.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static(LINE_HEADER),
            value,
        );
    }
}

async fn redeem(
    req: HttpRequest,
    token: web::Path<String>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let range = range_of(&req)?;
    let read = agent.redeem(&token, range).await?;
    Ok(bytes_response(range.is_some(), read))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrievalRequest {
    /// One object (the answer is one retrieval) ...
    #[serde(default)]
    object: Option<String>,
    /// ... or several (the answer is `{"retrievals": [...]}`, in the same order).
    #[serde(default)]
    objects: Option<Vec<String>>,
    uses: u64,
    expires_in_s: u64,
}

async fn create_retrieval(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let bytes = service::body::<Error>(&req, payload, JSON_BODY_BYTES_MAX).await?;
    let v = authenticate(&req, &bytes, &agent, RequestKind::Command).await?;
    let key = key_of(&req, &v);
    let result = async {
        let r: RetrievalRequest = service::parse_json::<_, Error>(&bytes)?;
        let (objects, batch) = match (r.object, r.objects) {
            (Some(o), None) => (vec![o], false),
            (None, Some(list)) => (list, true),
            _ => return Err(Error::InvalidJson("give either object or objects".into())),
        };
        agent
            .create_retrievals(
                &path,
                cmd(&v, &key)?,
                &objects,
                r.uses,
                r.expires_in_s,
                batch,
            )
            .await
    }
    .await;
    Ok(signed(&agent, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditRequest {
    object: String,
    leaf: u64,
}

/// Audits are signed; the buyer's charged ones (past the free one an interval) carry a counter
/// like reads (DESIGN section 3), so a captured audit cannot be replayed and charged again.
/// Listed auditors are never charged. The answer is not stored or signed.
async fn audit(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    agent: State,
) -> Result<HttpResponse, Error> {
    let bytes = service::body::<Error>(&req, payload, JSON_BODY_BYTES_MAX).await?;
    let has_counter = req
        .headers()
        .get(protocol::HEADER_COUNTER)
        .is_some_and(|h| !h.is_empty());
    let kind = if has_counter {
        RequestKind::Command
    } else {
        RequestKind::Query
    };
    let v = authenticate(&req, &bytes, &agent, kind).await?;
    let a: AuditRequest = service::parse_json::<_, Error>(&bytes)?;
    let who: &EntityId = &v.entity;
    let counted = v.counter.map(|c| (c, v.time_ms));
    if counted.is_some() {
        agent
            .take_payword(&path, who, &PaywordHeaders::of(&req), true)
            .await?;
    }
    let answer = agent
        .audit(&path, who, counted, &a.object, a.leaf)
        .await
        .inspect_err(|e| agent.note_refusal(e));
    match answer {
        Ok(a) => {
            // A buyer's charged audit moves its tab, like a read: the agent's half of the new
            // state goes with the answer (an auditor has no tab here, so gets none).
            let line = match counted {
                Some(_) => agent.tab_line_header(who.as_str()).await,
                None => None,
            };
            let mut resp = HttpResponse::Ok().json(a);
            with_line(&mut resp, line);
            Ok(resp)
        }
        Err(e @ Error::RateLimited { retry_after_s }) => Ok(HttpResponse::TooManyRequests()
            .insert_header(("retry-after", retry_after_s.to_string()))
            .json(e.body())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/agent.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/agent.json"),
            include_str!("server.rs"),
        );
    }
}

//! The market's HTTP API (DESIGN section 6). Handlers parse, authenticate, call [`Market`] and
//! map the result; signed commands' answers are signed (receipts).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{self, Metrics};
use protocol::{Envelope, RequestKind, VerifiedRequest};
use serde::Deserialize;

use crate::book::{
    Market, MatchRequest, Registration, Report, State, OFFERS_PAGE_DEFAULT, OFFERS_PAGE_MAX,
};
use crate::error::Error;

/// Largest request body: offers, match requests, reports (registrations may list many objects).
const BODY_BYTES_MAX: u64 = 64 * 1024;
const REGISTRATION_BYTES_MAX: u64 = 4 << 20;

pub fn routes(cfg: &mut web::ServiceConfig, market: Arc<Market>) {
    node::records::routes(cfg, market.records.clone());
    node::credit::http::routes(cfg, market.credit.clone());
    cfg.app_data(web::Data::new(market))
        .route("/", web::get().to(crate::page::page))
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/reputation", web::get().to(reputation))
        .route("/v1/offers", web::post().to(post_offer))
        .route("/v1/offers", web::get().to(get_offers))
        .route("/v1/match", web::post().to(match_agents))
        .route("/v1/contracts", web::post().to(register))
        .route("/v1/contracts", web::get().to(contracts_of))
        .route("/v1/reports", web::post().to(report))
        .default_service(web::to(service::not_found_route));
}

async fn body(req: &HttpRequest, payload: web::Payload, limit: u64) -> Result<bytes::Bytes, Error> {
    service::body(req, payload, limit).await
}

async fn auth(req: &HttpRequest, body: &[u8], market: &Market) -> Result<VerifiedRequest, Error> {
    service::authenticate_batched(
        req,
        body,
        &market.key,
        RequestKind::Command,
        &market.verifier,
    )
    .await
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    service::parse_json(bytes)
}

/// A command's outcome, success or refusal, signed for the sender.
fn signed(
    market: &Market,
    v: &VerifiedRequest,
    result: Result<serde_json::Value, Error>,
) -> HttpResponse {
    service::signed_result(&market.key, v, result.map(|value| (200, value.to_string())))
}

async fn descriptor(market: State) -> HttpResponse {
    service::descriptor(
        "market",
        market.key.entity(),
        serde_json::json!({
            "endpoint": market.endpoint(),
            "credit_key": market.credit.credit_key_hex(),
            "credit_key_signature": market.credit.credit_key_signature(),
        }),
    )
}

async fn metrics(market: State) -> Result<HttpResponse, Error> {
    // From the offer index (a second old at most), not the table: a scrape of a book of
    // 100,000 agents must not read 100,000 rows.
    let c = market.book_counts(METRICS_STALE_MS_MAX).await?;
    Ok(Metrics::default()
        .gauge("market_agents_known", c.known)
        .gauge("market_offers_live", c.live)
        .gauge("market_agents_online", c.online)
        .counter("market_audits_passed_total", c.audits_passed)
        .counter("market_audits_failed_total", c.audits_failed)
        .gauge(
            "market_auditor_lease_held",
            u64::from(market.auditor_lease.held()),
        )
        .labelled(
            "market_match_phase_seconds_total",
            "counter",
            "phase",
            market
                .timings
                .totals()
                .into_iter()
                .map(|(phase, seconds, _)| (phase.to_owned(), seconds)),
        )
        .labelled(
            "market_match_phases_total",
            "counter",
            "phase",
            market
                .timings
                .totals()
                .into_iter()
                .map(|(phase, _, times)| (phase.to_owned(), times)),
        )
        .response())
}

/// How old a view of the book `/metrics` may show.
const METRICS_STALE_MS_MAX: u64 = 1_000;

async fn post_offer(
    req: HttpRequest,
    payload: web::Payload,
    market: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, &bytes, &market).await?;
    let result = async {
        let envelope: Envelope = parse_json(&bytes)?;
        market.post_offer(&v.entity, envelope).await
    }
    .await;
    Ok(signed(&market, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffersQuery {
    currency: Option<String>,
    /// One agent's listing alone (an agent reading its standing).
    agent: Option<String>,
    /// Listings skipped (cheapest first), for the next page.
    #[serde(default)]
    offset: usize,
    /// Listings answered, at most [`OFFERS_PAGE_MAX`]; [`OFFERS_PAGE_DEFAULT`] when absent.
    limit: Option<usize>,
}

/// `GET /v1/offers?currency=&agent=&offset=&limit=`: a page of the book, with `total` (live offers in
/// all) and `next_offset` (absent on the last page).
async fn get_offers(query: web::Query<OffersQuery>, market: State) -> Result<HttpResponse, Error> {
    let limit = query.limit.unwrap_or(OFFERS_PAGE_DEFAULT);
    if limit == 0 || limit > OFFERS_PAGE_MAX {
        return Err(Error::InvalidQuery(format!(
            "limit must be from 1 to {OFFERS_PAGE_MAX}"
        )));
    }
    let page = market
        .offers_page(
            query.currency.as_deref(),
            query.agent.as_deref(),
            query.offset,
            limit,
        )
        .await?;
    let end = query.offset.saturating_add(page.offers.len());
    let mut answer = serde_json::json!({
        "offers": page.offers,
        "total": page.total,
        "offset": query.offset,
    });
    if end < page.total {
        answer["next_offset"] = end.into();
    }
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReputationQuery {
    entity: String,
}

/// `GET /v1/reputation?entity=X` (`protocol::book::EntityReputation`): X's score in the graph
/// of agreed records, its vouch, the head of its chain as held here, and whether a fork proof
/// is kept against it.
async fn reputation(
    query: web::Query<ReputationQuery>,
    market: State,
) -> Result<HttpResponse, Error> {
    if protocol::EntityId::parse(&query.entity).is_err() {
        return Err(Error::InvalidQuery("entity must be an entity id".into()));
    }
    Ok(HttpResponse::Ok().json(market.reputation(&query.entity).await?))
}

async fn match_agents(
    req: HttpRequest,
    payload: web::Payload,
    market: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let request: MatchRequest = parse_json(&bytes)?;
    Ok(HttpResponse::Ok().json(market.match_agents(&request).await?))
}

async fn register(
    req: HttpRequest,
    payload: web::Payload,
    market: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, REGISTRATION_BYTES_MAX).await?;
    // Up to 4 MiB: hashed off the async workers.
    let v =
        service::authenticate_body::<Error>(&req, bytes.clone(), &market.key, RequestKind::Command)
            .await?;
    let result = async {
        let counter = v
            .counter
            .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
        // A repetition is answered from the command log, without auditing anything again.
        if let Some(answer) = market
            .replay_registration(&v.entity, counter, &v.body_sha256)
            .await?
        {
            return Ok(answer);
        }
        let registration: Registration = parse_json(&bytes)?;
        market
            .register(&v.entity, counter, &v.body_sha256, registration)
            .await
    }
    .await;
    Ok(service::signed_result(&market.key, &v, result))
}

/// The sender's own registered contracts (a signed query).
async fn contracts_of(req: HttpRequest, market: State) -> Result<HttpResponse, Error> {
    let v = service::authenticate_batched::<Error>(
        &req,
        b"",
        &market.key,
        RequestKind::Query,
        &market.verifier,
    )
    .await?;
    let contracts = market.contracts_of(&v.entity).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "contracts": contracts })))
}

async fn report(
    req: HttpRequest,
    payload: web::Payload,
    market: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, &bytes, &market).await?;
    let result = async {
        let r: Report = parse_json(&bytes)?;
        let counter = v
            .counter
            .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
        market.report(&v.entity, counter, &v.body_sha256, r).await
    }
    .await;
    Ok(signed(&market, &v, result))
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/market.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/market.json"),
            include_str!("server.rs"),
        );
    }
}

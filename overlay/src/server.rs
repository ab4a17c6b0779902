//! The peer's HTTP API (DESIGN 13). Handlers parse, authenticate, call [`Peer`] and map the
//! result; charged answers carry the solicitor's tab state here as `LCP-Line`.
//!
//! | call | who | what |
//! |---|---|---|
//! | `GET /` | anyone | status page: neighbours, tabs, solicitations, commissions, sales |
//! | `GET /v1/status` | anyone | the same as JSON |
//! | `GET /v1/terms` | anyone | `{peer, solicit_fee, currencies, commission, strategy, policy, tab_limit, tab_threshold}` |
//! | `POST /v1/solicit` | a peer or buyer (command, pays the fee) | `{document, max_price, currency, hops_left, respond_by, solicitation?}` -> `{bids}` |
//! | `POST /v1/accept` | the bid's solicitor (command, pays the price) | `{bid, buyer}` -> `{url, token, peer}` |
//! | `POST /v1/contest` | the bid's buyer (command) | `{bid, reason?}` -> `{bid, refunded}` |
//! | `GET /v1/retrievals/{token}` | the token's buyer (signed query) | the document's bytes, once |
//!
//! Every peer is a credit node too (`node::credit::http`), and answers `/.well-known/lcp`
//! with role `peer` and its terms, and `/metrics`.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{self, Metrics};
use protocol::overlay::{Accept, Contest, ContestAnswer, Solicit};
use protocol::{RequestKind, VerifiedRequest};

use crate::error::Error;
use crate::peer::Peer;

/// Largest JSON body a call takes.
const BODY_BYTES_MAX: u64 = 16 * 1024;

type State = web::Data<Arc<Peer>>;

pub fn routes(cfg: &mut web::ServiceConfig, peer: Arc<Peer>) {
    node::credit::http::routes(cfg, peer.credit_lines.clone());
    cfg.app_data(web::Data::new(peer))
        .route("/", web::get().to(crate::page::status_page))
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/status", web::get().to(status))
        .route("/v1/terms", web::get().to(terms))
        .route("/v1/solicit", web::post().to(solicit))
        .route("/v1/accept", web::post().to(accept))
        .route("/v1/contest", web::post().to(contest))
        .route("/v1/retrievals/{token}", web::get().to(retrieve))
        .default_service(web::to(service::not_found_route));
}

async fn command(
    req: &HttpRequest,
    payload: web::Payload,
    p: &Peer,
) -> Result<(bytes::Bytes, VerifiedRequest), Error> {
    let bytes = service::body::<Error>(req, payload, BODY_BYTES_MAX).await?;
    let v = service::authenticate_batched::<Error>(
        req,
        &bytes,
        &p.key,
        RequestKind::Command,
        &p.verifier,
    )
    .await?;
    Ok((bytes, v))
}

fn answer<T: serde::Serialize>(v: &T) -> Result<(u16, String), Error> {
    serde_json::to_string(v)
        .map(|body| (200, body))
        .map_err(|e| Error::InvalidRequest(e.to_string()))
}

/// The signed answer, with the solicitor's tab state here when it has a tab (the most
/// recently changed: the one this request charged).
async fn charged(
    p: &Peer,
    v: &VerifiedRequest,
    result: Result<(u16, String), Error>,
) -> HttpResponse {
    let mut resp = service::signed_result(&p.key, v, result);
    if let Some(line) = p.tab_header(v.entity.as_str()).await {
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&line) {
            resp.headers_mut().insert(
                actix_web::http::header::HeaderName::from_static(clients::peer::LINE_HEADER),
                value,
            );
        }
    }
    resp
}

async fn descriptor(p: State) -> HttpResponse {
    let terms = serde_json::to_value(p.terms()).unwrap_or_default();
    service::descriptor(
        "peer",
        p.key.entity(),
        serde_json::json!({
            "terms": terms,
            "credit_key": p.credit_lines.credit_key_hex(),
            "credit_key_signature": p.credit_lines.credit_key_signature(),
        }),
    )
}

async fn metrics(p: State) -> Result<HttpResponse, Error> {
    let s = p.status().await?;
    Ok(Metrics::default()
        .counter("peer_solicitations_seen_total", s.solicitations_seen)
        .counter(
            "peer_solicitations_forwarded_total",
            s.solicitations_forwarded,
        )
        .counter("peer_searches_total", s.searches)
        .counter("peer_fees_earned_total", s.fees_earned)
        .counter("peer_commissions_earned_total", s.commissions_earned)
        .counter("peer_documents_sold_total", s.documents_sold)
        .counter("peer_contests_total", s.contests)
        .gauge("peer_documents", s.documents)
        .gauge("peer_neighbors", s.neighbors.len())
        .response())
}

async fn status(p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.status().await?))
}

async fn terms(p: State) -> HttpResponse {
    HttpResponse::Ok().json(p.terms())
}

async fn solicit(req: HttpRequest, payload: web::Payload, p: State) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, &p).await?;
    let parsed = service::parse_json::<Solicit, Error>(&bytes);
    let words = node::paywords::PaywordHeaders::of(&req);
    let result = async {
        answer(
            &p.solicit(v.entity.as_str(), v.counter.unwrap_or(0), parsed?, words)
                .await?,
        )
    }
    .await;
    Ok(charged(&p, &v, result).await)
}

async fn accept(req: HttpRequest, payload: web::Payload, p: State) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, &p).await?;
    let parsed = service::parse_json::<Accept, Error>(&bytes);
    let result = async {
        let a = parsed?;
        let words = node::paywords::PaywordHeaders::of(&req);
        answer(
            &p.accept(v.entity.as_str(), &a.bid, &a.buyer, &words)
                .await?,
        )
    }
    .await;
    Ok(charged(&p, &v, result).await)
}

async fn contest(req: HttpRequest, payload: web::Payload, p: State) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, &p).await?;
    let parsed = service::parse_json::<Contest, Error>(&bytes);
    let result = async {
        let c = parsed?;
        let refunded = p.contest(v.entity.as_str(), &c.bid, &c.reason).await?;
        answer(&ContestAnswer {
            bid: c.bid,
            refunded,
        })
    }
    .await;
    Ok(charged(&p, &v, result).await)
}

async fn retrieve(
    req: HttpRequest,
    path: web::Path<String>,
    p: State,
) -> Result<HttpResponse, Error> {
    let v =
        service::authenticate_batched::<Error>(&req, &[], &p.key, RequestKind::Query, &p.verifier)
            .await?;
    let got = p.retrieve(v.entity.as_str(), &path).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("lcp-document", got.document))
        .body(got.bytes))
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/peer.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/peer.json"),
            include_str!("server.rs"),
        );
    }
}

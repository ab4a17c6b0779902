//! The publisher's HTTP API. Handlers parse, authenticate, call [`Publisher`] and map the result.
//!
//! | call | who | what |
//! |---|---|---|
//! | `GET /` | anyone | status page: catalog, replicas, views, contracts, scaling events |
//! | `GET /v1/status` | anyone | the same as JSON |
//! | `GET /v1/contents` | anyone | the catalog |
//! | `GET /v1/contents/{id}` | anyone | the signed manifest |
//! | `POST /v1/uploads` | the publisher (command) | start or resume an upload |
//! | `PUT /v1/uploads/{id}/pieces/{i}` | the publisher (command) | store a piece on agents |
//! | `POST /v1/uploads/{id}/publish` | the publisher (command) | sign and list the manifest |
//! | `POST /v1/views` | a viewer (command) | `{content, view}`: buy a view paid with transaction id `view` |
//! | `POST /v1/views/{view}/pieces` | the view's viewer (command) | `{from, count}`: retrieval instructions |
//! | `POST /v1/views/{view}/reports` | the view's viewer (command) | `{piece, agent}`: an agent served bad bytes |

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{self, Metrics};
use protocol::cdn::{
    BadPiece, BadPieceAnswer, BuyView, Instructions, InstructionsRequest, PieceStored,
    UploadRequest,
};
use protocol::{RequestKind, VerifiedRequest};

use crate::error::Error;
use crate::publisher::{Publisher, State};

/// Largest JSON body (an upload request lists every piece hash: 65 bytes each).
const BODY_BYTES_MAX: u64 = 8 << 20;

pub fn routes(cfg: &mut web::ServiceConfig, publisher: Arc<Publisher>) {
    node::records::routes(cfg, publisher.records.clone());
    node::credit::http::routes(cfg, publisher.credit_lines.clone());
    cfg.app_data(web::Data::new(publisher))
        .route("/", web::get().to(crate::page::status_page))
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/status", web::get().to(status))
        .route("/v1/contents", web::get().to(catalog))
        .route("/v1/contents/{id}", web::get().to(manifest))
        .route("/v1/uploads", web::post().to(create_upload))
        .route("/v1/uploads/{id}/pieces/{i}", web::put().to(put_piece))
        .route("/v1/uploads/{id}/publish", web::post().to(publish))
        .route("/v1/views", web::post().to(buy_view))
        .route("/v1/views/{view}/pieces", web::post().to(instructions))
        .route("/v1/views/{view}/reports", web::post().to(report))
        .default_service(web::to(service::not_found_route));
}

/// Read a command's body under the body policy and verify its signature (the body hashed off
/// the async workers when it is large: pieces are up to 8 MiB).
async fn command(
    req: &HttpRequest,
    payload: web::Payload,
    limit: u64,
    p: &Publisher,
) -> Result<(bytes::Bytes, VerifiedRequest), Error> {
    let bytes = service::body::<Error>(req, payload, limit).await?;
    let v = service::authenticate_body::<Error>(req, bytes.clone(), &p.key, RequestKind::Command)
        .await?;
    Ok((bytes, v))
}

fn only_publisher(v: &VerifiedRequest, p: &Publisher) -> Result<(), Error> {
    if &v.entity == p.key.entity() {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// A successful command's answer as (status, JSON) for [`service::signed_result`].
fn answer<T: serde::Serialize>(v: &T) -> Result<(u16, String), Error> {
    serde_json::to_string(v)
        .map(|body| (200, body))
        .map_err(|e| Error::InvalidRequest(e.to_string()))
}

async fn descriptor(p: State) -> HttpResponse {
    service::descriptor(
        "cdn",
        p.key.entity(),
        serde_json::json!({
            "currency": p.currency,
            "issuer_url": p.issuer_url,
            // Sold per piece (paid with each window of instructions), or per view when 0.
            "price_per_piece": p.options().price_per_piece,
            // Where views are paid by transfer (DESIGN 14): a bank customer's name when the
            // publisher is paid into a bank account; absent: its own entity.
            "pay_to": p.pay_to,
            "paywords": true,
            "credit_key": p.credit_lines.credit_key_hex(),
            "credit_key_signature": p.credit_lines.credit_key_signature(),
        }),
    )
}

async fn metrics(p: State) -> Result<HttpResponse, Error> {
    let s = p.status().await?;
    Ok(Metrics::default()
        .gauge("cdn_contents", s.contents.len())
        .counter("cdn_views_total", s.views_total())
        .counter("cdn_income_total", s.income_total())
        .gauge("cdn_contracts", s.contracts.len())
        .counter("cdn_replication_bytes_total", s.replication_bytes)
        .response())
}

async fn status(p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.status().await?))
}

async fn catalog(p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.catalog().await?))
}

async fn manifest(path: web::Path<String>, p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.manifest(&path).await?))
}

async fn create_upload(
    req: HttpRequest,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, BODY_BYTES_MAX, &p).await?;
    let result = async {
        only_publisher(&v, &p)?;
        let upload: UploadRequest = service::parse_json::<_, Error>(&bytes)?;
        answer(&p.create_upload(upload).await?)
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

async fn put_piece(
    req: HttpRequest,
    path: web::Path<(String, u64)>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, crate::manifest::PIECE_BYTES_MAX, &p).await?;
    let (content, i) = path.into_inner();
    let result = async {
        only_publisher(&v, &p)?;
        let replicas = p.put_piece(&content, i, bytes).await?;
        answer(&PieceStored {
            content: content.clone(),
            piece: i,
            replicas,
        })
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (_, v) = command(&req, payload, BODY_BYTES_MAX, &p).await?;
    let result = async {
        only_publisher(&v, &p)?;
        answer(&p.publish(&path).await?)
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

async fn buy_view(
    req: HttpRequest,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, BODY_BYTES_MAX, &p).await?;
    let result = async {
        let b: BuyView = service::parse_json::<_, Error>(&bytes)?;
        let words = node::paywords::PaywordHeaders::of(&req);
        let viewer = crate::publisher::Viewer {
            entity: &v.entity,
            name: b.payer.as_deref(),
        };
        answer(&p.buy_view(viewer, &b.content, &b.view, &words).await?)
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

async fn instructions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, BODY_BYTES_MAX, &p).await?;
    let result = async {
        let w: InstructionsRequest = service::parse_json::<_, Error>(&bytes)?;
        let words = node::paywords::PaywordHeaders::of(&req);
        let pieces = p
            .instructions(&v.entity, &path, w.from, w.count, &words)
            .await?;
        answer(&Instructions { pieces })
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

async fn report(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command(&req, payload, BODY_BYTES_MAX, &p).await?;
    let result = async {
        let b: BadPiece = service::parse_json::<_, Error>(&bytes)?;
        let confirmed = p
            .report_bad_piece(&v.entity, &path, b.piece, &b.agent)
            .await?;
        answer(&BadPieceAnswer {
            piece: b.piece,
            confirmed,
        })
    }
    .await;
    Ok(service::signed_result(&p.key, &v, result))
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/publisher.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/publisher.json"),
            include_str!("server.rs"),
        );
    }
}

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
use protocol::{ErrorBody, RequestKind, VerifiedRequest};
use serde::Deserialize;

use crate::error::Error;
use crate::publisher::{Publisher, UploadRequest};

/// Largest JSON body (an upload request lists every piece hash: 65 bytes each).
const BODY_BYTES_MAX: u64 = 8 << 20;

pub type State = web::Data<Arc<Publisher>>;

pub fn routes(cfg: &mut web::ServiceConfig, publisher: Arc<Publisher>) {
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
        .default_service(web::to(|| async {
            HttpResponse::NotFound().json(ErrorBody::new("not_found", "no such endpoint"))
        }));
}

async fn body(req: &HttpRequest, payload: web::Payload, limit: u64) -> Result<bytes::Bytes, Error> {
    node::http::read_body(req, payload, limit)
        .await
        .map_err(|e| Error::InvalidRequest(e.to_string()))
}

async fn auth(
    req: &HttpRequest,
    body: bytes::Bytes,
    p: &Publisher,
) -> Result<VerifiedRequest, Error> {
    Ok(
        node::http::authenticate_body(req, body, p.key.entity().as_str(), RequestKind::Command)
            .await?,
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::InvalidRequest(e.to_string()))
}

fn only_publisher(v: &VerifiedRequest, p: &Publisher) -> Result<(), Error> {
    if &v.entity == p.key.entity() {
        Ok(())
    } else {
        Err(Error::Forbidden)
    }
}

/// A command's outcome, success or refusal, signed for the sender.
fn signed(
    p: &Publisher,
    v: &VerifiedRequest,
    result: Result<serde_json::Value, Error>,
) -> HttpResponse {
    let (status, body) = match result {
        Ok(value) => (200, value.to_string()),
        Err(e) => {
            if matches!(e, Error::Db(_) | Error::Upstream(_)) {
                tracing::error!(error = %e, "command failed");
            }
            (
                e.status().as_u16(),
                serde_json::to_string(&e.body()).unwrap_or_default(),
            )
        }
    };
    node::http::signed_response(&p.key, v, status, body)
}

fn to_json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, Error> {
    serde_json::to_value(v).map_err(|e| Error::InvalidRequest(e.to_string()))
}

async fn descriptor(p: State) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "protocol": "lcp/1",
        "role": "cdn",
        "entity": p.key.entity(),
        "currency": p.currency,
        "issuer_url": p.issuer_url,
    }))
}

async fn metrics(p: State) -> Result<HttpResponse, Error> {
    let status = p.status().await?;
    let contents = status["contents"].as_array().cloned().unwrap_or_default();
    let views: i64 = contents.iter().filter_map(|c| c["views"].as_i64()).sum();
    let income: i64 = contents.iter().filter_map(|c| c["income"].as_i64()).sum();
    let out = format!(
        "# TYPE cdn_contents gauge\ncdn_contents {}\n\
         # TYPE cdn_views_total counter\ncdn_views_total {views}\n\
         # TYPE cdn_income_total counter\ncdn_income_total {income}\n\
         # TYPE cdn_contracts gauge\ncdn_contracts {}\n\
         # TYPE cdn_replication_bytes_total counter\ncdn_replication_bytes_total {}\n",
        contents.len(),
        status["contracts"].as_array().map(Vec::len).unwrap_or(0),
        status["replication_bytes"].as_u64().unwrap_or(0),
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out))
}

async fn status(p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.status().await?))
}

async fn catalog(p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "contents": p.catalog().await?,
        "currency_units": p.currency_units().await,
    })))
}

async fn manifest(path: web::Path<String>, p: State) -> Result<HttpResponse, Error> {
    Ok(HttpResponse::Ok().json(p.manifest(&path).await?))
}

async fn create_upload(
    req: HttpRequest,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, bytes.clone(), &p).await?;
    let result = async {
        only_publisher(&v, &p)?;
        let upload: UploadRequest = parse_json(&bytes)?;
        to_json(p.create_upload(upload).await?)
    }
    .await;
    Ok(signed(&p, &v, result))
}

async fn put_piece(
    req: HttpRequest,
    path: web::Path<(String, u64)>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, crate::manifest::PIECE_BYTES_MAX).await?;
    let v = auth(&req, bytes.clone(), &p).await?;
    let (content, i) = path.into_inner();
    let result = async {
        only_publisher(&v, &p)?;
        let replicas = p.put_piece(&content, i, bytes).await?;
        Ok(serde_json::json!({"content": content, "piece": i, "replicas": replicas}))
    }
    .await;
    Ok(signed(&p, &v, result))
}

async fn publish(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, bytes, &p).await?;
    let result = async {
        only_publisher(&v, &p)?;
        p.publish(&path).await
    }
    .await;
    Ok(signed(&p, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuyView {
    content: String,
    view: String,
}

async fn buy_view(
    req: HttpRequest,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, bytes.clone(), &p).await?;
    let result = async {
        let b: BuyView = parse_json(&bytes)?;
        to_json(p.buy_view(&v.entity, &b.content, &b.view).await?)
    }
    .await;
    Ok(signed(&p, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    from: u64,
    count: u64,
}

async fn instructions(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, bytes.clone(), &p).await?;
    let result = async {
        let w: Window = parse_json(&bytes)?;
        let pieces = p.instructions(&v.entity, &path, w.from, w.count).await?;
        Ok(serde_json::json!({"pieces": pieces}))
    }
    .await;
    Ok(signed(&p, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BadPiece {
    piece: u64,
    agent: String,
}

async fn report(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    p: State,
) -> Result<HttpResponse, Error> {
    let bytes = body(&req, payload, BODY_BYTES_MAX).await?;
    let v = auth(&req, bytes.clone(), &p).await?;
    let result = async {
        let b: BadPiece = parse_json(&bytes)?;
        let bad = p
            .report_bad_piece(&v.entity, &path, b.piece, &b.agent)
            .await?;
        Ok(serde_json::json!({"piece": b.piece, "confirmed": bad}))
    }
    .await;
    Ok(signed(&p, &v, result))
}

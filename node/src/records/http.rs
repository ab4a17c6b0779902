//! The records endpoints every server answers (DESIGN section 11):
//! - `POST /v1/records` (a signed command by the proposer): the body is the proposal
//!   half-block; the answer (signed) is our agreement half-block;
//! - `GET /v1/records?public_key=X&from=S`: the blocks of X held here (`RecordsPage`);
//! - `GET /v1/frauds?after=S`: the fork proofs kept here (`RecordFraudsPage`).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use protocol::record::HalfBlock;
use serde::Deserialize;

use super::{RecordBook, RecordsError};
use crate::service::{self, error_response};

/// Largest proposal body: a half-block with its 4 KiB transaction, and room.
pub const RECORD_BODY_BYTES_MAX: u64 = 16 * 1024;

/// Add the records routes, answered from `book`.
pub fn routes(cfg: &mut web::ServiceConfig, book: Arc<RecordBook>) {
    cfg.app_data(web::Data::new(book))
        .route("/v1/records", web::post().to(post_record))
        .route("/v1/records", web::get().to(get_records))
        .route("/v1/frauds", web::get().to(get_frauds));
}

type Book = web::Data<Arc<RecordBook>>;

async fn post_record(req: HttpRequest, payload: web::Payload, book: Book) -> HttpResponse {
    let (bytes, verified) = match service::signed_command::<RecordsError>(
        &req,
        payload,
        RECORD_BODY_BYTES_MAX,
        &book.key,
    )
    .await
    {
        Ok(v) => v,
        Err(response) => return response,
    };
    let result = async {
        let proposal: HalfBlock = service::parse_json::<_, RecordsError>(&bytes)?;
        if proposal.public_key != verified.entity.as_str() {
            return Err(RecordsError::Refused(
                "the request must be signed by the proposal's public_key".into(),
            ));
        }
        let agreement = book.agree(proposal).await?;
        serde_json::to_string(&agreement)
            .map(|body| (200, body))
            .map_err(|e| RecordsError::InvalidJson(e.to_string()))
    }
    .await;
    service::signed_result(&book.key, &verified, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordsQuery {
    public_key: Option<String>,
    from: Option<u64>,
}

async fn get_records(query: web::Query<RecordsQuery>, book: Book) -> HttpResponse {
    let Some(public_key) = query.public_key.clone() else {
        return error_response(&RecordsError::Query("public_key is required".into()));
    };
    if protocol::EntityId::parse(&public_key).is_err() {
        return error_response(&RecordsError::Query(
            "public_key must be an entity id (ed25519:<64 hex>)".into(),
        ));
    }
    match book.page(public_key, query.from.unwrap_or(1)).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FraudsQuery {
    after: Option<u64>,
}

async fn get_frauds(query: web::Query<FraudsQuery>, book: Book) -> HttpResponse {
    match book.frauds(query.after.unwrap_or(0)).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(e) => error_response(&e),
    }
}

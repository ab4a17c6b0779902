//! The credit-line endpoints every server answers (DESIGN 12):
//! - `POST /v1/credit/lines` (a signed command by the line's other party): the body is
//!   `{"update": LineUpdate}` (a line given to this node, or this node's proposal sent back
//!   countersigned; answered `201` with the update in force) or `{"ask": {"currency",
//!   "limit"}}` (answered `200` with this node's signed proposal, or `409 line_refused`);
//! - `GET /v1/credit/lines[?party=X]`: this node's lines (`LinesPage`).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use protocol::credit::LineUpdate;
use serde::Deserialize;

use super::{CreditBook, CreditNodeError};
use crate::service::{self, error_response};

/// Largest line command body.
pub const LINE_BODY_BYTES_MAX: u64 = 8 * 1024;

/// Add the credit routes, answered from `book`.
pub fn routes(cfg: &mut web::ServiceConfig, book: Arc<CreditBook>) {
    cfg.app_data(web::Data::new(book))
        .route("/v1/credit/lines", web::post().to(post_line))
        .route("/v1/credit/lines", web::get().to(get_lines));
}

type Book = web::Data<Arc<CreditBook>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    currency: String,
    limit: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum LineCommand {
    Update(LineUpdate),
    Ask(Ask),
}

async fn post_line(req: HttpRequest, payload: web::Payload, book: Book) -> HttpResponse {
    let (bytes, verified) = match service::signed_command::<CreditNodeError>(
        &req,
        payload,
        LINE_BODY_BYTES_MAX,
        &book.key,
    )
    .await
    {
        Ok(v) => v,
        Err(response) => return response,
    };
    let result = async {
        let command: LineCommand = service::parse_json::<_, CreditNodeError>(&bytes)?;
        let (status, answer) = match command {
            LineCommand::Update(update) => (201, book.accept(&verified.entity, update).await?),
            LineCommand::Ask(ask) => {
                if protocol::EntityId::parse(&ask.currency).is_err() {
                    return Err(CreditNodeError::Query(
                        "currency must be an issuer id".into(),
                    ));
                }
                (200, book.ask(&verified.entity, &ask.currency, ask.limit)?)
            }
        };
        serde_json::to_string(&answer)
            .map(|body| (status, body))
            .map_err(|e| CreditNodeError::InvalidJson(e.to_string()))
    }
    .await;
    service::signed_result(&book.key, &verified, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinesQuery {
    party: Option<String>,
}

async fn get_lines(query: web::Query<LinesQuery>, book: Book) -> HttpResponse {
    if let Some(p) = &query.party {
        if protocol::EntityId::parse(p).is_err() {
            return error_response(&CreditNodeError::Query(
                "party must be an entity id (ed25519:<64 hex>)".into(),
            ));
        }
    }
    match book.lines(query.party.clone()).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(e) => error_response(&e),
    }
}

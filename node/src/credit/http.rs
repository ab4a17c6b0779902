//! The credit-line endpoints every server answers (DESIGN 12):
//! - `POST /v1/credit/lines` (a signed command by the line's other party): the body is
//!   `{"update": LineUpdate}` (a line given to this node, or this node's proposal sent back
//!   countersigned; answered `201` with the update in force) or `{"ask": {"currency",
//!   "limit"}}` (answered `200` with this node's signed proposal, or `409 line_refused`);
//! - `GET /v1/credit/lines[?party=X]`: this node's lines (`LinesPage`);
//! - `GET /v1/credit/paths?to=X&currency=C[&hops_left=H][&seen=A,B]`: capacities toward X
//!   (`PathsAnswer`); `GET /v1/credit/trust?to=X[&hops_left=H]` (`TrustAnswer`);
//! - `POST /v1/credit/prepare` (`Prepare`, signed by the hop before this node; answered `200`
//!   `Fulfilled` or an error), `POST /v1/credit/fulfill` (`Fulfill`, signed by the peer this
//!   node paid), `POST /v1/credit/reject` (`Reject`, signed by the payer or the hop before);
//! - `GET /v1/credit/payments/{payment}` (a signed query): the asker's holds of a payment
//!   here and the secret once committed (`PaymentStatus`).

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use protocol::credit::{Fulfill, LineUpdate, Prepare, Reject};
use serde::Deserialize;

use super::paths::GraphQuery;
use super::{CreditBook, CreditNodeError};
use crate::service::{self, error_response};

/// Largest line command body.
pub const LINE_BODY_BYTES_MAX: u64 = 8 * 1024;

/// Add the credit routes, answered from `book`.
pub fn routes(cfg: &mut web::ServiceConfig, book: Arc<CreditBook>) {
    cfg.app_data(web::Data::new(book))
        .route("/v1/credit/lines", web::post().to(post_line))
        .route("/v1/credit/lines", web::get().to(get_lines))
        .route("/v1/credit/paths", web::get().to(get_paths))
        .route("/v1/credit/trust", web::get().to(get_trust))
        .route("/v1/credit/prepare", web::post().to(post_prepare))
        .route("/v1/credit/fulfill", web::post().to(post_fulfill))
        .route("/v1/credit/reject", web::post().to(post_reject))
        .route("/v1/credit/payments/{payment}", web::get().to(get_payment));
}

/// Largest prepare, fulfil or reject body.
pub const PAYMENT_BODY_BYTES_MAX: u64 = 16 * 1024;

#[derive(Clone, Copy)]
enum PaymentCommand {
    Prepare,
    Fulfill,
    Reject,
}

async fn payment_command(
    req: HttpRequest,
    payload: web::Payload,
    book: Book,
    which: PaymentCommand,
) -> HttpResponse {
    let (bytes, verified) = match service::signed_command::<CreditNodeError>(
        &req,
        payload,
        PAYMENT_BODY_BYTES_MAX,
        &book.key,
    )
    .await
    {
        Ok(v) => v,
        Err(response) => return response,
    };
    let book = book.get_ref().clone();
    let sender = verified.entity.clone();
    let result = async {
        let answer = match which {
            PaymentCommand::Prepare => {
                let p: Prepare = service::parse_json::<_, CreditNodeError>(&bytes)?;
                serde_json::to_value(book.prepare(&sender, p).await?)
            }
            PaymentCommand::Fulfill => {
                let f: Fulfill = service::parse_json::<_, CreditNodeError>(&bytes)?;
                Ok(book.fulfill(&sender, f).await?)
            }
            PaymentCommand::Reject => {
                let r: Reject = service::parse_json::<_, CreditNodeError>(&bytes)?;
                Ok(book.reject(&sender, r).await?)
            }
        };
        answer
            .map(|v| (200, v.to_string()))
            .map_err(|e| CreditNodeError::InvalidJson(e.to_string()))
    }
    .await;
    service::signed_result(&book.key, &verified, result)
}

async fn post_prepare(req: HttpRequest, payload: web::Payload, book: Book) -> HttpResponse {
    payment_command(req, payload, book, PaymentCommand::Prepare).await
}

async fn post_fulfill(req: HttpRequest, payload: web::Payload, book: Book) -> HttpResponse {
    payment_command(req, payload, book, PaymentCommand::Fulfill).await
}

async fn post_reject(req: HttpRequest, payload: web::Payload, book: Book) -> HttpResponse {
    payment_command(req, payload, book, PaymentCommand::Reject).await
}

async fn get_paths(query: web::Query<GraphQuery>, book: Book) -> HttpResponse {
    match book.get_ref().clone().paths(query.into_inner()).await {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(e) => error_response(&e),
    }
}

async fn get_trust(query: web::Query<GraphQuery>, book: Book) -> HttpResponse {
    match book.get_ref().clone().trust(query.into_inner()).await {
        Ok(answer) => HttpResponse::Ok().json(answer),
        Err(e) => error_response(&e),
    }
}

async fn get_payment(req: HttpRequest, path: web::Path<String>, book: Book) -> HttpResponse {
    let verified = match service::authenticate::<CreditNodeError>(
        &req,
        &[],
        &book.key,
        protocol::RequestKind::Query,
    ) {
        Ok(v) => v,
        Err(e) => return error_response(&e),
    };
    match book.payment_status(&verified.entity, &path).await {
        Ok(status) => HttpResponse::Ok().json(status),
        Err(e) => error_response(&e),
    }
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

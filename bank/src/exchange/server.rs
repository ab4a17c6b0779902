//! The exchange's HTTP API (`bank serve --exchange`). Traders sign their commands with their
//! own keys (DESIGN 3); reads are public.
//!
//! | call | who | what |
//! |---|---|---|
//! | `POST /v1/exchange/orders` | trader (signed) | [`NewOrder`] -> [`store::Placed`]: matched at once, the rest rests |
//! | `POST /v1/exchange/orders/{id}/cancel` | its trader (signed) | the order as it then stands |
//! | `GET /v1/exchange/book?a=ISSUER&b=ISSUER` | anyone | `{"orders": [...]}` open in the pair, both directions |
//! | `GET /v1/exchange/trades?trader=ID` | anyone | `{"trades": [...]}` with whose turn it is |
//! | `GET /v1/exchange/trades/{id}` | anyone | one trade |
//! | `POST /v1/exchange/trades/{id}/claim` | the half's payer (signed) | `{"half"}`: I paid this slice |
//! | `POST /v1/exchange/trades/{id}/confirm` | the half's receiver (signed) | `{"half"}`: I received it |
//! | `GET /v1/exchange/traders/{id}` | anyone | `{"completed", "defaults", "disputes"}` |

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use node::service;
use serde::Deserialize;

use super::store::{self, NewOrder};
use crate::error::Error;
use crate::serve::Bank;

/// Largest command body.
const BODY_BYTES_MAX: u64 = 4 * 1024;
/// Longest order id.
const ORDER_ID_CHARS_MAX: usize = 64;
/// How often late turns are looked for (also before every claim and confirmation).
pub const EXPIRE_INTERVAL_MS: u64 = 1_000;

type State = web::Data<Arc<Bank>>;

/// How the exchange settles trades.
#[derive(Debug, Clone)]
pub struct ExchangeConfig {
    pub steps: u32,
    pub step_timeout_ms: u64,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/exchange/orders", web::post().to(place))
        .route("/v1/exchange/orders/{id}/cancel", web::post().to(cancel))
        .route("/v1/exchange/book", web::get().to(book))
        .route("/v1/exchange/trades", web::get().to(trades))
        .route("/v1/exchange/trades/{id}", web::get().to(trade))
        .route("/v1/exchange/trades/{id}/claim", web::post().to(claim))
        .route("/v1/exchange/trades/{id}/confirm", web::post().to(confirm))
        .route("/v1/exchange/traders/{id}", web::get().to(trader));
}

fn config(bank: &Bank) -> Result<&ExchangeConfig, Error> {
    bank.exchange.as_ref().ok_or(Error::NoExchange)
}

/// The platform's signed command (body bounded, signature checked), once the exchange is
/// known to run; `Err` is the answer to send as it is.
macro_rules! command {
    ($req:expr, $payload:expr, $bank:expr) => {{
        config(&$bank)?;
        match service::signed_command::<Error>(&$req, $payload, BODY_BYTES_MAX, &$bank.key).await {
            Ok(signed) => signed,
            Err(answer) => return Ok(answer),
        }
    }};
}

fn answer<T: serde::Serialize>(v: &T) -> Result<(u16, String), Error> {
    serde_json::to_string(v)
        .map(|body| (200, body))
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Stop the trades whose turn is late (run before a claim or a confirmation, so none is taken
/// past its time, and every [`EXPIRE_INTERVAL_MS`]; reads do not take the write lock for it).
pub async fn expire(bank: &Bank) -> Result<(), Error> {
    let timeout = config(bank)?.step_timeout_ms;
    let marked = bank
        .db
        .run(move |conn| store::expire(conn, node::now_ms(), timeout))
        .await?;
    for (trade, what) in marked {
        tracing::warn!(
            trade,
            what,
            "a trader did not take its turn: the trade stopped"
        );
    }
    Ok(())
}

/// Mark late turns forever.
pub async fn expire_forever(bank: Arc<Bank>) {
    loop {
        tokio::time::sleep(Duration::from_millis(EXPIRE_INTERVAL_MS)).await;
        if let Err(e) = expire(&bank).await {
            tracing::warn!(error = %e, "exchange: marking late turns");
        }
    }
}

fn check_order(bank: &Bank, o: &NewOrder) -> Result<(), Error> {
    if o.id.is_empty()
        || o.id.len() > ORDER_ID_CHARS_MAX
        || !o.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(Error::InvalidQuery(format!(
            "an order id is 1 to {ORDER_ID_CHARS_MAX} letters, digits and '-'"
        )));
    }
    if o.sell_issuer == o.buy_issuer {
        return Err(Error::InvalidQuery(
            "an order sells one currency for another".into(),
        ));
    }
    for (issuer, amount) in [
        (&o.sell_issuer, o.sell_amount),
        (&o.buy_issuer, o.buy_amount),
    ] {
        let c = bank
            .currency(issuer)
            .ok_or_else(|| Error::UnknownCurrency(issuer.clone()))?;
        if amount == 0 || amount > c.max_amount || i64::try_from(amount).is_err() {
            return Err(Error::InvalidAmount {
                max: c.max_amount.min(i64::MAX as u64),
            });
        }
    }
    Ok(())
}

async fn place(
    req: HttpRequest,
    payload: web::Payload,
    bank: State,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command!(req, payload, bank);
    let result = async {
        let order: NewOrder = service::parse_json::<_, Error>(&bytes)?;
        check_order(&bank, &order)?;
        let steps = config(&bank)?.steps;
        let trader = v.entity.to_string();
        let placed = bank
            .db
            .run(move |conn| store::place(conn, &trader, &order, steps, node::now_ms()))
            .await?;
        answer(&placed)
    }
    .await;
    Ok(service::signed_result(&bank.key, &v, result))
}

async fn cancel(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    bank: State,
) -> Result<HttpResponse, Error> {
    let (_, v) = command!(req, payload, bank);
    let (id, trader) = (path.into_inner(), v.entity.to_string());
    let result = async {
        let order = bank
            .db
            .run(move |conn| store::cancel(conn, &trader, &id))
            .await?;
        answer(&order)
    }
    .await;
    Ok(service::signed_result(&bank.key, &v, result))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PairQuery {
    a: String,
    b: String,
}

async fn book(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    config(&bank)?;
    let q = web::Query::<PairQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidQuery(e.to_string()))?
        .into_inner();
    let orders = bank
        .db
        .run(move |conn| store::book(conn, &q.a, &q.b))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": orders })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraderQuery {
    trader: String,
}

async fn trades(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    let timeout = config(&bank)?.step_timeout_ms;
    let q = web::Query::<TraderQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidQuery(e.to_string()))?
        .into_inner();
    let trades = bank
        .db
        .run(move |conn| store::trades_of(conn, &q.trader, timeout))
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "trades": trades })))
}

async fn trade(path: web::Path<String>, bank: State) -> Result<HttpResponse, Error> {
    let timeout = config(&bank)?.step_timeout_ms;
    let id = path.into_inner();
    let t = bank
        .db
        .run(move |conn| store::trade(conn, &id, timeout))
        .await?;
    Ok(HttpResponse::Ok().json(t))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HalfBody {
    half: u32,
}

async fn claim(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    bank: State,
) -> Result<HttpResponse, Error> {
    turn(req, path, payload, bank, true).await
}

async fn confirm(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    bank: State,
) -> Result<HttpResponse, Error> {
    turn(req, path, payload, bank, false).await
}

/// A claim (`paid`) or a confirmation of one half of a trade.
async fn turn(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    bank: State,
    paid: bool,
) -> Result<HttpResponse, Error> {
    let (bytes, v) = command!(req, payload, bank);
    let result = async {
        expire(&bank).await?;
        let timeout = config(&bank)?.step_timeout_ms;
        let body: HalfBody = service::parse_json::<_, Error>(&bytes)?;
        let (id, who) = (path.into_inner(), v.entity.to_string());
        let t = bank
            .db
            .run(move |conn| {
                let now = node::now_ms();
                if paid {
                    store::claim(conn, &id, body.half, &who, now, timeout)
                } else {
                    store::confirm(conn, &id, body.half, &who, now, timeout)
                }
            })
            .await?;
        answer(&t)
    }
    .await;
    Ok(service::signed_result(&bank.key, &v, result))
}

async fn trader(path: web::Path<String>, bank: State) -> Result<HttpResponse, Error> {
    config(&bank)?;
    let id = path.into_inner();
    let standing = bank.db.run(move |conn| store::standing(conn, &id)).await?;
    Ok(HttpResponse::Ok().json(standing))
}

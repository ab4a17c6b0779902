//! The bank's HTTP API (DESIGN 14). Apps use the issuer's own calls here, authorised by
//! `Authorization: Bearer <app token>` instead of a signature; answers have the issuer's
//! shapes and codes, restricted to the token's customer and currency.
//!
//! | call | who | what |
//! |---|---|---|
//! | `GET /.well-known/lcp` | anyone | descriptor, role `bank`: entity, currencies, names host |
//! | `GET /.well-known/lcp-names?name=bob` | anyone | `{entity, userid, currencies}`: pay `entity` naming `userid` |
//! | `GET /lcp/v1/account` | app token | [`protocol::name::AccountAnswer`]: the customer's name, the bank's entity, the currency, the allowance left |
//! | `GET /lcp/v1/balance` | app token | `{balance, currency}` of the customer |
//! | `GET /lcp/v1/deposits?after=S&wait_ms=W[&transaction_id=T]` | app token | the customer's deposits (long poll) |
//! | `POST /lcp/v1/transfers` | app token | `{recipient (id or name), amount, transaction_id?, userid?}` -> `{result, seq, fee, balance}` |
//! | `GET /metrics` | anyone | Prometheus text |
//! | `/v1/exchange/*` | traders | the exchange ([`crate::exchange::server`]) |
//! | `POST /v1/records`, `GET /v1/records`, `GET /v1/frauds` | traders, anyone | `trade` records (DESIGN 11, [`crate::exchange::records`]) |
//! | `GET /`, `/login`, `/signup`; `POST /login`, `/signup`, `/logout`, `/transfer`, `/tokens`, `/tokens/{id}/revoke` | a customer's browser | the web page ([`crate::page`]) |

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use node::service::{self, Metrics};
use serde::Deserialize;

use crate::custody::{self, Custody};
use crate::error::Error;
use crate::page;
use crate::serve::Bank;
use crate::store::{self, Token};

/// Largest transfer body.
const BODY_BYTES_MAX: u64 = 4 * 1024;
/// Longest long poll of an app's deposits.
pub const WAIT_MS_MAX: u64 = 30_000;
/// Longest transaction id (the issuer's bound).
const TRANSACTION_ID_CHARS_MAX: usize = 128;

type State = web::Data<Arc<Bank>>;

pub fn routes(cfg: &mut web::ServiceConfig, bank: Arc<Bank>) {
    let bank_records = bank.records.clone();
    cfg.app_data(web::Data::new(bank))
        .route("/", web::get().to(page::account))
        .route("/login", web::get().to(page::login_page))
        .route("/login", web::post().to(page::login))
        .route("/signup", web::get().to(page::signup_page))
        .route("/signup", web::post().to(page::signup))
        .route("/logout", web::post().to(page::logout))
        .route("/transfer", web::post().to(page::transfer))
        .route("/tokens", web::post().to(page::grant))
        .route("/tokens/{id}/revoke", web::post().to(page::revoke))
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/.well-known/lcp-names", web::get().to(names))
        .route("/lcp/v1/account", web::get().to(account))
        .route("/lcp/v1/balance", web::get().to(balance))
        .route("/lcp/v1/deposits", web::get().to(deposits))
        .route("/lcp/v1/transfers", web::post().to(transfer))
        .route("/metrics", web::get().to(metrics))
        .configure(crate::exchange::server::routes)
        .configure(|cfg| node::records::routes(cfg, bank_records))
        .default_service(web::to(service::not_found_route));
}

async fn descriptor(bank: State) -> HttpResponse {
    let currencies: Vec<_> = bank
        .currencies
        .iter()
        .map(|c| serde_json::json!({"issuer": c.issuer, "url": c.url, "code": c.code}))
        .collect();
    service::descriptor(
        "bank",
        bank.key.entity(),
        serde_json::json!({
            "currencies": currencies,
            "names_host": bank.name_host(),
            "exchange": bank.exchange.as_ref().map(|e| serde_json::json!({
                "steps": e.steps,
                "step_timeout_ms": e.step_timeout_ms,
            })),
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameQuery {
    name: String,
}

async fn names(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    let q = web::Query::<NameQuery>::from_query(req.query_string()).map_err(|_| {
        Error::InvalidQuery("ask for one name: /.well-known/lcp-names?name=bob".into())
    })?;
    // `bob`, or `bob@this-host`: a name at another host is not this bank's to answer.
    let (user, host) = match q.name.split_once('@') {
        Some((u, h)) => (u.to_owned(), Some(h.to_ascii_lowercase())),
        None => (q.name.clone(), None),
    };
    if host.is_some_and(|h| h != bank.name_host().to_ascii_lowercase()) {
        return Err(Error::InvalidName(format!(
            "{:?} is not a name at this bank: its names end in @{}",
            q.name,
            bank.name_host()
        )));
    }
    if !protocol::name::is_userid(&user) {
        return Err(Error::InvalidName(format!(
            "{:?} is not a user name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-'",
            q.name
        )));
    }
    let lookup = user.clone();
    if !bank
        .db
        .run(move |conn| store::customer_exists(conn, &lookup))
        .await?
    {
        return Err(Error::UnknownName(user));
    }
    // Opaque: pay the bank naming the customer; transparent: pay the customer's own key.
    let custody = Custody::of(&bank, &user).await?;
    let (entity, own) = custody.entity(&bank);
    Ok(HttpResponse::Ok().json(protocol::name::NameAnswer {
        entity: entity.to_string(),
        userid: user,
        transparent: own,
        currencies: bank.currencies.iter().map(|c| c.url.clone()).collect(),
    }))
}

/// The live app token of `Authorization: Bearer <token>`.
async fn app_token(req: &HttpRequest, bank: &Bank) -> Result<Token, Error> {
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned())
        .ok_or(Error::MissingToken)?;
    bank.db
        .run(move |conn| store::token_for_bearer(conn, &bearer))
        .await
}

async fn balance(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    let token = app_token(&req, &bank).await?;
    let code = bank
        .currency(&token.issuer)
        .map(|c| c.code.clone())
        .unwrap_or_default();
    let custody = Custody::of(&bank, &token.customer).await?;
    let balance = custody::balance(&bank, &custody, &token.customer, &token.issuer).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"balance": balance, "currency": code})))
}

/// Whose token this is: what an app needs to be paid into the account (a storage agent's
/// `pay_to`) and to know what it may still spend.
async fn account(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    let token = app_token(&req, &bank).await?;
    let currency = bank
        .currency(&token.issuer)
        .ok_or_else(|| Error::UnknownCurrency(token.issuer.clone()))?;
    let custody = Custody::of(&bank, &token.customer).await?;
    let balance = custody::balance(&bank, &custody, &token.customer, &token.issuer).await?;
    let (entity, _) = custody.entity(&bank);
    Ok(HttpResponse::Ok().json(protocol::name::AccountAnswer {
        name: format!("{}@{}", token.customer, bank.name_host()),
        userid: token.customer.clone(),
        bank: entity.to_string(),
        issuer: token.issuer.clone(),
        issuer_url: currency.url.clone(),
        balance,
        allowance: token
            .spend_limit
            .saturating_sub(token.spent)
            .max(0)
            .unsigned_abs(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositsQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
    #[serde(default)]
    transaction_id: Option<String>,
}

/// The token's customer's deposits in the token's currency; with `wait_ms`, held until one
/// is credited or the wait ends.
async fn deposits(req: HttpRequest, bank: State) -> Result<HttpResponse, Error> {
    let token = app_token(&req, &bank).await?;
    let q = web::Query::<DepositsQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidQuery(e.to_string()))?
        .into_inner();
    let wait_ms = q.wait_ms.min(WAIT_MS_MAX);
    let custody = Custody::of(&bank, &token.customer).await?;
    if let Some(page) = custody::own_deposits(
        &bank,
        &custody,
        &token.issuer,
        q.after,
        wait_ms,
        q.transaction_id.as_deref(),
    )
    .await?
    {
        return Ok(HttpResponse::Ok().json(page));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(WAIT_MS_MAX));
    let mut credited = bank.credited.subscribe();
    loop {
        credited.borrow_and_update();
        let (customer, issuer, txid) = (
            token.customer.clone(),
            token.issuer.clone(),
            q.transaction_id.clone(),
        );
        let page = bank
            .db
            .run(move |conn| {
                store::deposits_page(conn, &customer, &issuer, q.after, txid.as_deref())
            })
            .await?;
        if !page.deposits.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(HttpResponse::Ok().json(page));
        }
        // Woken by a credit or by the deadline; either way the page is read again.
        let _ = tokio::time::timeout_at(deadline, credited.changed()).await;
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    recipient: String,
    amount: serde_json::Number,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    userid: Option<String>,
    /// The app's own id for this payment (1 to 64 printable ASCII characters): the same id
    /// again through the same token answers the payment made and pays nothing more.
    #[serde(default)]
    request_id: Option<String>,
}

/// Longest `request_id`.
const REQUEST_ID_CHARS_MAX: usize = 64;

async fn transfer(
    req: HttpRequest,
    payload: web::Payload,
    bank: State,
) -> Result<HttpResponse, Error> {
    let token = app_token(&req, &bank).await?;
    let body = service::body::<Error>(&req, payload, BODY_BYTES_MAX).await?;
    let parsed: TransferBody = service::parse_json::<_, Error>(&body)?;
    let amount = parsed
        .amount
        .as_u64()
        .filter(|a| *a > 0)
        .ok_or(Error::InvalidAmount {
            max: i64::MAX as u64,
        })?;
    if let Some(t) = &parsed.transaction_id {
        if t.is_empty()
            || t.len() > TRANSACTION_ID_CHARS_MAX
            || !t.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::InvalidTransactionId);
        }
    }
    if let Some(r) = &parsed.request_id {
        if r.is_empty()
            || r.len() > REQUEST_ID_CHARS_MAX
            || !r.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::InvalidQuery(format!(
                "request_id must be 1 to {REQUEST_ID_CHARS_MAX} printable ASCII characters"
            )));
        }
    }
    let mut payee = clients::names::resolve_with(&parsed.recipient, &bank.http)
        .await
        .map_err(|e| Error::InvalidRecipient(e.to_string()))?;
    if let Some(u) = parsed.userid {
        if !protocol::name::is_userid(&u) {
            return Err(Error::InvalidName(format!("{u:?} is not a userid")));
        }
        payee.userid = Some(u);
    }
    let paid = crate::pay::pay(
        &bank,
        &(&token).into(),
        crate::pay::Order {
            payee,
            amount,
            transaction_id: parsed.transaction_id,
            request_id: parsed.request_id,
        },
    )
    .await?;
    Ok(HttpResponse::Ok().json(paid))
}

async fn metrics(bank: State) -> Result<HttpResponse, Error> {
    let customers = bank.db.run(store::customer_names).await?.len();
    Ok(Metrics::default()
        .gauge("bank_customers", customers)
        .gauge("bank_currencies", bank.currencies.len())
        .response())
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/bank.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/bank.json"),
            concat!(
                include_str!("server.rs"),
                include_str!("exchange/server.rs")
            ),
        );
    }
}

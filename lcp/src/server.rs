//! The issuer's HTTP API. Handlers stay thin: read the body within its limit, authenticate,
//! parse, call the ledger, map the result. Every command's answer is signed (the receipt).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use protocol::{EntityId, KeyPair, RequestKind, VerifiedRequest};
use serde::Deserialize;

use crate::config::{IssuerConfig, TRANSACTION_ID_CHARS_MAX};
use crate::error::Error;
use crate::ledger::{Ledger, Order, StoredAnswer, TransferOrder};
use crate::metrics::Metrics;

/// Counters are stored as signed 64-bit integers.
pub const COUNTER_MAX: u64 = i64::MAX as u64;
/// A redemptions command's body at most: `REDEMPTIONS_MAX` items of about 300 bytes each.
pub const REDEMPTIONS_BODY_BYTES_MAX: u64 = 128 * 1024;

/// Everything `lcp issuer serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    /// PostgreSQL URL; SQLite under `data_dir` when `None`.
    pub database: Option<String>,
    pub config: IssuerConfig,
    pub tls: Option<TlsFiles>,
}

pub use node::http::TlsFiles;

struct AppState {
    key: KeyPair,
    broker: crate::broker::Broker,
    entity: String,
    ledger: Ledger,
    config: IssuerConfig,
    metrics: Arc<Metrics>,
    /// The identity's credit key (DESIGN 12), shown in the descriptor.
    credit_key: String,
    credit_key_signature: String,
    /// Checks commands' signatures in batches (issue 21).
    verifier: node::verifier::Verifier,
}

/// A running issuer. Dropping it stops the server.
pub struct RunningIssuer {
    pub url: String,
    pub entity: EntityId,
    pub addr: SocketAddr,
    pub ledger: Ledger,
    pub http: node::http::HttpHandle,
    _dir_lock: node::datadir::DirLock,
}

impl RunningIssuer {
    /// Block until the server stops (on SIGINT/SIGTERM).
    pub fn wait(self) -> std::io::Result<()> {
        self.http.wait()
    }
}

/// Open the database, start the ledger writer and the HTTP server on their own threads.
pub fn start(options: ServeOptions) -> anyhow::Result<RunningIssuer> {
    use anyhow::Context;
    options.config.validate()?;
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            options.data_dir.display()
        )
    })?;
    let dir_lock = node::datadir::lock(&options.data_dir, "issuer")?;
    let key = node::keyfile::load_or_create(&options.data_dir.join("identity.key"))?;
    let location = match &options.database {
        Some(url) => db::Location::parse(url),
        None => db::Location::sqlite_in(&options.data_dir, "issuer.sqlite"),
    }
    .with_sqlite_page_bytes(db::LEDGER_SQLITE_PAGE_BYTES);
    tracing::info!(database = %location.redacted(), entity = %key.entity(), "starting issuer");
    let database = db::Database::open(location, crate::migrations())?;
    let metrics = Arc::new(Metrics::default());
    let ledger = Ledger::start(
        database,
        key.entity().clone(),
        options.config.clone(),
        metrics.clone(),
    )?;
    let entity = key.entity().clone();
    // Records (DESIGN 11): the vendors' redemptions, agreed (`crate::records`).
    let identity = Arc::new(node::keyfile::load(&options.data_dir.join("identity.key"))?);
    let records = crate::records::book(ledger.db().clone(), identity.clone());
    // Credit lines (DESIGN 12): lines given to the issuer are kept; what it extends when asked
    // and its neighbours come from `[credit]` in its config (none by default).
    let credit =
        node::credit::CreditBook::new(ledger.db().clone(), identity, options.config.credit.clone());
    let state = web::Data::new(AppState {
        credit_key: credit.credit_key_hex(),
        credit_key_signature: credit.credit_key_signature(),
        entity: key.entity().to_string(),
        key,
        broker: crate::broker::Broker::default(),
        ledger: ledger.clone(),
        config: options.config.clone(),
        metrics,
        verifier: node::verifier::Verifier::start("issuer-verifier"),
    });
    let credit_for_tasks = credit.clone();
    let sweeper = (
        ledger.clone(),
        options.config.redeem_grace_s,
        std::time::Duration::from_millis(options.config.escrow_sweep_interval_ms),
    );
    let http = node::http::spawn(
        "issuer",
        &options.listen,
        options.tls.as_ref(),
        options.config.workers,
        move |cfg| {
            node::records::routes(cfg, records.clone());
            node::credit::http::routes(cfg, credit.clone());
            routes(cfg, state.clone())
        },
        move || {
            let (ledger, grace_s, interval) = sweeper;
            credit_for_tasks.start();
            actix_web::rt::spawn(crate::broker::sweep_expired(ledger, grace_s, interval));
        },
    )?;
    Ok(RunningIssuer {
        url: http.url.clone(),
        entity,
        addr: http.addr,
        ledger,
        http,
        _dir_lock: dir_lock,
    })
}

fn routes(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        .route("/.well-known/lcp", web::get().to(descriptor))
        .route("/lcp/v1/transfers", web::post().to(transfer))
        .route("/lcp/v1/transfers/batch", web::post().to(transfer_batch))
        .route("/lcp/v1/deposits", web::get().to(deposits))
        .route("/lcp/v1/balance", web::get().to(balance))
        .route("/lcp/v1/chains", web::post().to(buy_chain))
        .route("/lcp/v1/chains/{chain}", web::get().to(chain_status))
        .route("/lcp/v1/redemptions", web::post().to(redeem))
        .route("/lcp/v1/frauds", web::get().to(frauds))
        .route("/metrics", web::get().to(metrics))
        .default_service(web::to(not_found));
}

async fn not_found(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    node::service::not_found()
}

async fn descriptor(state: web::Data<AppState>) -> HttpResponse {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let c = &state.config;
    node::service::descriptor(
        "issuer",
        state.key.entity(),
        serde_json::json!({
        "currency": {"code": c.currency_code, "name": c.currency_name, "decimals": c.decimals},
        "fees": {"transfer_flat": c.fee_flat, "transfer_bps": c.fee_bps},
        "limits": {
            "max_amount": c.max_amount,
            "wait_ms_max": c.wait_ms_max,
            "max_body_bytes": c.max_body_bytes,
            "supply_cap": c.supply_cap,
        },
        "paywords": crate::broker::limits(c.redeem_grace_s),
        "credit_key": state.credit_key,
        "credit_key_signature": state.credit_key_signature,
        }),
    )
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(
            state.metrics.render()
                + &verifier_metrics(&state.verifier)
                + &node::service::process_gauges(),
        )
}

/// How many signatures the batch verifier checked, in how many batches.
fn verifier_metrics(verifier: &node::verifier::Verifier) -> String {
    let stats = verifier.stats();
    format!(
        "# HELP lcp_signatures_verified_total command signatures checked by the batch verifier\n\
         # TYPE lcp_signatures_verified_total counter\nlcp_signatures_verified_total {}\n\
         # HELP lcp_signature_batches_total batches those signatures were checked in\n\
         # TYPE lcp_signature_batches_total counter\nlcp_signature_batches_total {}\n",
        stats.signatures.load(Ordering::Relaxed),
        stats.batches.load(Ordering::Relaxed)
    )
}

/// The wire form of a transfer. `amount` is a raw JSON number so that negative or fractional
/// amounts get `invalid_amount`, not a generic JSON error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    recipient: String,
    amount: serde_json::Number,
    #[serde(default)]
    transaction_id: Option<String>,
    /// The recipient's customer (DESIGN 14).
    #[serde(default)]
    userid: Option<String>,
    /// The payer by name, when a bank pays for its customer (DESIGN 14).
    #[serde(default)]
    from_name: Option<String>,
}

fn parse_transfer(
    body: &[u8],
    verified: &VerifiedRequest,
    request_key: String,
    max_amount: u64,
) -> Result<TransferOrder, Error> {
    let parsed: TransferBody = node::service::parse_json::<_, Error>(body)?;
    let item = check_item(parsed, verified, max_amount)?;
    let counter = verified
        .counter
        .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
    if counter > COUNTER_MAX {
        return Err(Error::CounterTooLarge { max: COUNTER_MAX });
    }
    Ok(TransferOrder {
        sender: verified.entity.clone(),
        counter,
        body_sha256: request_key,
        recipient: item.recipient,
        amount: item.amount,
        transaction_id: item.transaction_id,
        userid: item.userid,
        from_name: item.from_name,
    })
}

/// One transfer's fields, checked: what a single transfer and each item of a batch refuse.
fn check_item(
    parsed: TransferBody,
    verified: &VerifiedRequest,
    max_amount: u64,
) -> Result<crate::ledger::BatchTransfer, Error> {
    let amount = parsed
        .amount
        .as_u64()
        .filter(|a| (1..=max_amount).contains(a))
        .ok_or(Error::InvalidAmount { max: max_amount })?;
    let recipient = EntityId::parse(&parsed.recipient).map_err(|_| {
        Error::InvalidRecipient("recipient must be an entity id (ed25519:<64 hex>)".into())
    })?;
    if recipient == verified.entity {
        return Err(Error::InvalidRecipient(
            "an account cannot pay itself".into(),
        ));
    }
    let transaction_id = match parsed.transaction_id {
        Some(t)
            if t.is_empty()
                || t.len() > TRANSACTION_ID_CHARS_MAX
                || !t.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            return Err(Error::InvalidTransactionId {
                max: TRANSACTION_ID_CHARS_MAX,
            });
        }
        other => other,
    };
    if let Some(u) = &parsed.userid {
        if !protocol::name::is_userid(u) {
            return Err(Error::InvalidUserid);
        }
    }
    if let Some(n) = &parsed.from_name {
        protocol::name::Name::parse(n).map_err(|e| Error::InvalidName(e.to_string()))?;
    }
    Ok(crate::ledger::BatchTransfer {
        recipient,
        amount,
        transaction_id,
        userid: parsed.userid,
        from_name: parsed.from_name,
    })
}

/// The wire form of a batch: items parsed one by one, so a bad item is answered on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    transfers: Vec<serde_json::Value>,
}

/// Largest batch body: [`protocol::ledger::BATCH_TRANSFERS_MAX`] items of up to about 300
/// bytes each.
const BATCH_BODY_BYTES_MAX: u64 = 512 * 1024;

fn parse_batch(
    body: &[u8],
    verified: &VerifiedRequest,
    request_key: String,
    max_amount: u64,
) -> Result<crate::ledger::BatchOrder, Error> {
    let parsed: BatchBody = node::service::parse_json::<_, Error>(body)?;
    let max = protocol::ledger::BATCH_TRANSFERS_MAX;
    if parsed.transfers.is_empty() || parsed.transfers.len() > max {
        return Err(Error::InvalidBatch(format!(
            "a batch holds 1 to {max} transfers, not {}",
            parsed.transfers.len()
        )));
    }
    let counter = verified
        .counter
        .ok_or(Error::Auth(protocol::AuthError::MissingCounter))?;
    let items = parsed
        .transfers
        .into_iter()
        .map(|v| {
            let item: TransferBody =
                serde_json::from_value(v).map_err(|e| Error::InvalidJson(e.to_string()))?;
            check_item(item, verified, max_amount)
        })
        .collect();
    Ok(crate::ledger::BatchOrder {
        sender: verified.entity.clone(),
        counter,
        body_sha256: request_key,
        items,
    })
}

/// `POST /lcp/v1/transfers/batch`: many transfers from the signer under one counter, each
/// answered on its own; the whole answer is the command's stored receipt.
async fn transfer_batch(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let (body, verified, key) = command(&req, payload, &state, BATCH_BODY_BYTES_MAX).await?;
    let answer = match parse_batch(&body, &verified, key, state.config.max_amount) {
        Ok(order) => state.ledger.execute(Order::Batch(order)).await,
        Err(e) => Err(e),
    };
    Ok(signed_answer(&state, &verified, answer))
}

async fn transfer(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let (body, verified, key) =
        command(&req, payload, &state, state.config.max_body_bytes as u64).await?;
    let answer = match parse_transfer(&body, &verified, key, state.config.max_amount) {
        Ok(order) => state.ledger.transfer(order).await,
        Err(e) => Err(e),
    };
    Ok(signed_answer(&state, &verified, answer))
}

/// The verified command of a POST whose body is at most `body_max` bytes, and its request key.
async fn command(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    body_max: u64,
) -> Result<(bytes::Bytes, VerifiedRequest, String), Error> {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let body: bytes::Bytes = node::service::body::<Error>(req, payload, body_max).await?;
    let verified: VerifiedRequest = node::service::authenticate_batched::<Error>(
        req,
        &body,
        &state.key,
        RequestKind::Command,
        &state.verifier,
    )
    .await?;
    if verified.counter.is_some_and(|c| c > COUNTER_MAX) {
        return Err(Error::CounterTooLarge { max: COUNTER_MAX });
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let key = protocol::request_key(req.method().as_str(), path, &verified.body_sha256);
    Ok((body, verified, key))
}

/// `POST /lcp/v1/chains`: buy a payword chain; its `length x unit` goes into escrow.
async fn buy_chain(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let (body, verified, key) =
        command(&req, payload, &state, state.config.max_body_bytes as u64).await?;
    let answer = match state.broker.chain_order(&state.key, &verified, key, &body) {
        Ok(order) => state.ledger.execute(Order::BuyChain(order)).await,
        Err(e) => Err(e),
    };
    Ok(signed_answer(&state, &verified, answer))
}

/// `POST /lcp/v1/redemptions`: a vendor cashes the paywords it holds, each item answered.
async fn redeem(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    let body_max = (state.config.max_body_bytes as u64).max(REDEMPTIONS_BODY_BYTES_MAX);
    let (body, verified, key) = command(&req, payload, &state, body_max).await?;
    let answer = match state
        .broker
        .redeem_order(&state.ledger, &verified, key, &body)
        .await
    {
        Ok(order) => state.ledger.execute(Order::Redeem(order)).await,
        Err(e) => Err(e),
    };
    Ok(signed_answer(&state, &verified, answer))
}

/// `GET /lcp/v1/chains/{chain}` (public): the touchstone and the ranges redeemed so far.
async fn chain_status(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, Error> {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let status = crate::broker::chain_status(&state.ledger, path.into_inner()).await?;
    Ok(HttpResponse::Ok().json(status))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FraudsQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /lcp/v1/frauds?after=S` (public): double-spend proofs after a cursor.
async fn frauds(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let q = web::Query::<FraudsQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidQuery(e.to_string()))?;
    let page = crate::broker::frauds_page(&state.ledger, q.after).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// Attach the receipt: the server's signature over sender, counter, status and body. An
/// error is answered (and signed) like a success, so the sender holds a receipt of either.
fn signed_answer(
    state: &AppState,
    verified: &VerifiedRequest,
    answer: Result<StoredAnswer, Error>,
) -> HttpResponse {
    let answer = answer.unwrap_or_else(|e| {
        if matches!(e, Error::Storage(_) | Error::Db(_)) {
            tracing::error!(error = %e, "command failed on storage");
        }
        StoredAnswer {
            status: e.status().as_u16(),
            body: serde_json::to_string(
                &e.body_in(state.config.decimals, &state.config.currency_code),
            )
            .unwrap_or_default(),
        }
    });
    node::http::signed_response(&state.key, verified, answer.status, answer.body)
}

/// Verify a signed query (a balance, a deposits page), its signature checked in a batch.
async fn query(req: &HttpRequest, state: &AppState) -> Result<VerifiedRequest, Error> {
    Ok(node::http::authenticate_batched(
        req,
        b"",
        &state.entity,
        RequestKind::Query,
        &state.verifier,
    )
    .await?)
}

async fn balance(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let verified = query(&req, &state).await?;
    let balance = state.ledger.balance(&verified.entity).await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"balance": balance, "currency": state.config.currency_code})))
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
    /// Only the deposits naming this customer (a bank's page for one customer).
    #[serde(default)]
    userid: Option<String>,
}

async fn deposits(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    state.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let verified = query(&req, &state).await?;
    let q = web::Query::<DepositsQuery>::from_query(req.query_string())
        .map_err(|e| Error::InvalidQuery(e.to_string()))?;
    let page = state
        .ledger
        .deposits(
            &verified.entity,
            q.after,
            q.wait_ms,
            crate::ledger::DepositFilter {
                transaction_id: q.transaction_id.clone(),
                userid: q.userid.clone(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[cfg(test)]
mod openapi_tests {
    /// docs/openapi/issuer.json describes every route this server registers, and no other.
    #[test]
    fn every_route_is_described() {
        node::testing::assert_routes_described(
            include_str!("../../docs/openapi/issuer.json"),
            include_str!("server.rs"),
        );
    }
}

//! Credit lines for every server (DESIGN 12, issue 17, second step): a node's lines with its
//! neighbours, kept in `credit_lines` (each service's migrations create it), opened and
//! changed only by updates both parties signed (`protocol::credit`).
//!
//! - Given: a neighbour (the creditor) signs a line extending this node credit and sends it;
//!   the node countersigns (owing nothing yet costs nothing).
//! - Asked: a neighbour asks this node for a line; the node answers its signed proposal when
//!   the operator's policy allows it ([`CreditPolicy::give_max`]), and stores the line once
//!   the neighbour sends it back countersigned.
//! - A later update of a line (a new limit) must be newer (`seq`) and signed by both; it
//!   changes the limit only, and `owed` stays as this node has it: balances move by
//!   payments, not by updates. An update must state the balance the node has, except the
//!   limit proposal the node's upkeep just made, come back countersigned after a payment
//!   moved the balance (so the two parties never loop on it).
//!
//! Invariants: a stored line always carries both parties' valid signatures over its stored
//! state; `owed + held <= limit`; `seq` only grows.

use std::collections::HashMap;
use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use protocol::credit::{CreditError, Line, LineState, LineUpdate};
pub use protocol::credit::{LineView, LinesPage};
use protocol::{EntityId, KeyPair};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub mod holds;
pub mod http;
pub mod neighbors;
pub mod paths;
mod pay;
mod sweep;

pub use neighbors::NeighborConfig;

diesel::table! {
    credit_lines (id) {
        id -> Text,
        creditor -> Text,
        debtor -> Text,
        currency -> Text,
        credit_limit -> BigInt,
        owed -> BigInt,
        held -> BigInt,
        seq -> BigInt,
        creditor_signature -> Text,
        debtor_signature -> Text,
        updated_ms -> BigInt,
        repaying -> BigInt,
        settle_threshold -> Nullable<BigInt>,
        settled_ms -> Nullable<BigInt>,
    }
}

/// Lines one listing answers at most.
pub const LINES_PAGE_MAX: i64 = 1_000;

/// The creditor's half of the latest state of `debtor`'s tab with `creditor` (in `currency`,
/// or the most recently changed one of any currency), for the `LCP-Line` header of the answers
/// to charged requests (the storage agent's and a peer's).
pub fn tab_half(
    conn: &mut AnyConnection,
    creditor: &str,
    debtor: &str,
    currency: Option<&str>,
) -> diesel::QueryResult<Option<protocol::credit::LineHalf>> {
    let mut query = credit_lines::table
        .filter(credit_lines::creditor.eq(creditor))
        .filter(credit_lines::debtor.eq(debtor))
        .filter(credit_lines::settle_threshold.is_not_null())
        .into_boxed();
    if let Some(c) = currency {
        query = query.filter(credit_lines::currency.eq(c));
    }
    let row: Option<(String, i64, i64, String)> = query
        .order(credit_lines::updated_ms.desc())
        .select((
            credit_lines::id,
            credit_lines::seq,
            credit_lines::owed,
            credit_lines::creditor_signature,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.map(|(id, seq, owed, signature)| protocol::credit::LineHalf {
            id,
            // Stored from u64s by their writers: never negative.
            seq: seq.unsigned_abs(),
            owed: owed.unsigned_abs(),
            signature,
        }),
    )
}

/// What the node's operator allows and names (the `[credit]` section of a config file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreditPolicy {
    /// The largest line this node extends to a neighbour who asks (minor units); 0 refuses
    /// every ask.
    #[serde(default)]
    pub give_max: u64,
    /// The longest a payment may hold on this node's lines (ms).
    #[serde(default = "hold_ms_max_default")]
    pub hold_ms_max: u64,
    /// The servers this node deals with: where they answer, trust, lines given.
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
}

/// The file in a market's or publisher's data directory that holds its `[credit]` section
/// (agents and issuers keep the section in their own config file).
pub const CREDIT_FILE: &str = "credit.toml";

/// The `[credit]` section of `dir/credit.toml`, checked; the default policy when the file is
/// not there. A one-line reason otherwise.
pub fn load_policy(dir: &std::path::Path) -> Result<CreditPolicy, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        credit: CreditPolicy,
    }
    let path = dir.join(CREDIT_FILE);
    if !path.exists() {
        return Ok(CreditPolicy::default());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File =
        toml::from_str(&text).map_err(|e| format!("invalid {}: {e}", path.display()))?;
    file.credit
        .check()
        .map_err(|e| format!("{}: [credit]: {e}", path.display()))?;
    Ok(file.credit)
}

fn hold_ms_max_default() -> u64 {
    60_000
}

impl Default for CreditPolicy {
    fn default() -> Self {
        CreditPolicy {
            give_max: 0,
            hold_ms_max: hold_ms_max_default(),
            neighbors: Vec::new(),
        }
    }
}

impl CreditPolicy {
    /// A one-line reason when the section cannot be used.
    pub fn check(&self) -> Result<(), String> {
        if self.hold_ms_max < 4 * protocol::credit::HOP_EXPIRY_MARGIN_MS {
            return Err(format!(
                "credit.hold_ms_max must be at least {} (four hops' margins)",
                4 * protocol::credit::HOP_EXPIRY_MARGIN_MS
            ));
        }
        if self.neighbors.len() > neighbors::NEIGHBORS_MAX {
            return Err(format!(
                "at most {} credit neighbours",
                neighbors::NEIGHBORS_MAX
            ));
        }
        self.neighbors.iter().try_for_each(NeighborConfig::check)
    }
}

/// A payment arriving at this node as its target, shown to the service's [`CommitHook`].
#[derive(Debug, Clone)]
pub struct Arrived<'a> {
    pub payment: &'a str,
    pub payer: &'a str,
    pub currency: &'a str,
    /// The whole payment, over all its paths.
    pub total: u64,
    pub transaction_id: Option<&'a str>,
}

/// A service's say in payments it is the target of, run inside the target's transaction:
/// with `complete` false when a path arrives (check only: refusing refuses that path, and so
/// the payment), with `complete` true when the total is in (write what the payment buys, in
/// the transaction that commits it; refusing rolls the commit back). The agent's credits a
/// contract named by `transaction_id`, as an LCP deposit does.
pub type CommitHook =
    Arc<dyn Fn(&mut AnyConnection, &Arrived<'_>, bool) -> Result<(), String> + Send + Sync>;

/// How a payment ended at its target, for the prepares still waiting.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Fulfilled(String),
    Rejected,
}

#[derive(Debug, thiserror::Error)]
pub enum CreditNodeError {
    #[error(transparent)]
    Credit(#[from] CreditError),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Query(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error(transparent)]
    Body(#[from] crate::http::BodyError),
    #[error(transparent)]
    Auth(#[from] protocol::AuthError),
    #[error("database: {0}")]
    Db(#[from] db::DbError),
    #[error("this payment was already prepared here on this path")]
    Duplicate,
    #[error("the payment did not arrive whole before its holds lapsed")]
    Incomplete,
    #[error("no route: {0}")]
    NoRoute(String),
    #[error("the target refuses the payment: {0}")]
    PaymentRefused(String),
    #[error("the next hop did not answer: {0}")]
    Unreachable(String),
    /// A hop after this one refused: its message, passed on as it was.
    #[error("{message}")]
    Downstream {
        status: u16,
        code: String,
        message: String,
    },
}

/// The codes a hop passes on from the hops after it; any other becomes
/// `downstream_refused`.
const PASSED_ON_CODES: [&str; 15] = [
    "payment_refused",
    "invalid_line",
    "invalid_line_signature",
    "stale_update",
    "over_limit",
    "invalid_amount",
    "invalid_expiry",
    "wrong_secret",
    "unknown_payment",
    "payment_settled",
    "line_refused",
    "duplicate_prepare",
    "payment_incomplete",
    "no_route",
    "hop_unreachable",
];

impl From<crate::service::InvalidJson> for CreditNodeError {
    fn from(e: crate::service::InvalidJson) -> Self {
        CreditNodeError::InvalidJson(e.0)
    }
}

impl From<diesel::result::Error> for CreditNodeError {
    fn from(e: diesel::result::Error) -> Self {
        CreditNodeError::Db(db::DbError::Query(e))
    }
}

impl crate::service::ServiceError for CreditNodeError {
    fn status(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            CreditNodeError::Credit(CreditError::UnknownPayment(_)) => StatusCode::NOT_FOUND,
            CreditNodeError::Credit(
                CreditError::Stale { .. } | CreditError::OverLimit { .. } | CreditError::Settled,
            )
            | CreditNodeError::Refused(_)
            | CreditNodeError::Duplicate
            | CreditNodeError::Incomplete
            | CreditNodeError::NoRoute(_)
            | CreditNodeError::PaymentRefused(_) => StatusCode::CONFLICT,
            CreditNodeError::Credit(_)
            | CreditNodeError::Query(_)
            | CreditNodeError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            CreditNodeError::Body(e) => e.status(),
            CreditNodeError::Auth(protocol::AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            CreditNodeError::Auth(_) => StatusCode::UNAUTHORIZED,
            CreditNodeError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
            CreditNodeError::Unreachable(_) => StatusCode::GATEWAY_TIMEOUT,
            CreditNodeError::Downstream { status, .. } => StatusCode::from_u16(*status)
                .ok()
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            CreditNodeError::Credit(e) => e.code(),
            CreditNodeError::Refused(_) => "line_refused",
            CreditNodeError::Query(_) => "invalid_query",
            CreditNodeError::InvalidJson(_) => "invalid_json",
            CreditNodeError::Body(e) => e.code(),
            CreditNodeError::Auth(e) => e.code(),
            CreditNodeError::Db(_) => "unavailable",
            CreditNodeError::Duplicate => "duplicate_prepare",
            CreditNodeError::Incomplete => "payment_incomplete",
            CreditNodeError::NoRoute(_) => "no_route",
            CreditNodeError::PaymentRefused(_) => "payment_refused",
            CreditNodeError::Unreachable(_) => "hop_unreachable",
            CreditNodeError::Downstream { code, .. } => PASSED_ON_CODES
                .iter()
                .find(|c| **c == code.as_str())
                .copied()
                .unwrap_or("downstream_refused"),
        }
    }
}

type Row = (
    (String, String, String, String, i64, i64, i64, i64, i64, i64),
    (Option<i64>, Option<i64>, String, String),
);

fn view_of(
    (
        (id, creditor, debtor, currency, limit, owed, held, repaying, seq, updated_ms),
        (threshold, settled_ms, creditor_signature, debtor_signature),
    ): Row,
) -> LineView {
    LineView {
        id,
        creditor,
        debtor,
        currency,
        limit: limit.unsigned_abs(),
        owed: owed.unsigned_abs(),
        held: held.unsigned_abs(),
        repaying: repaying.unsigned_abs(),
        seq: seq.unsigned_abs(),
        updated_ms: updated_ms.unsigned_abs(),
        settle_threshold: threshold.map(i64::unsigned_abs),
        settled_ms: settled_ms.map(i64::unsigned_abs),
        creditor_signature,
        debtor_signature,
    }
}

/// The columns of a [`Row`].
type RowColumns = (
    (
        credit_lines::id,
        credit_lines::creditor,
        credit_lines::debtor,
        credit_lines::currency,
        credit_lines::credit_limit,
        credit_lines::owed,
        credit_lines::held,
        credit_lines::repaying,
        credit_lines::seq,
        credit_lines::updated_ms,
    ),
    (
        credit_lines::settle_threshold,
        credit_lines::settled_ms,
        credit_lines::creditor_signature,
        credit_lines::debtor_signature,
    ),
);

const ROW_COLUMNS: RowColumns = (
    (
        credit_lines::id,
        credit_lines::creditor,
        credit_lines::debtor,
        credit_lines::currency,
        credit_lines::credit_limit,
        credit_lines::owed,
        credit_lines::held,
        credit_lines::repaying,
        credit_lines::seq,
        credit_lines::updated_ms,
    ),
    (
        credit_lines::settle_threshold,
        credit_lines::settled_ms,
        credit_lines::creditor_signature,
        credit_lines::debtor_signature,
    ),
);

fn to_i64(n: u64) -> Result<i64, CreditNodeError> {
    i64::try_from(n).map_err(|_| CreditNodeError::Credit(CreditError::Range("above 2^63")))
}

/// A server's credit node: its lines (in its database), its key, its operator's policy and
/// neighbours, and the payments waiting at it as their target.
pub struct CreditBook {
    pub db: db::Database,
    pub key: Arc<KeyPair>,
    pub policy: CreditPolicy,
    credit_key: protocol::credit::seal::CreditKey,
    http: reqwest::Client,
    counter: crate::client::ClockCounter,
    neighbors: neighbors::Neighbors,
    /// Payments this node is the target of that wait for the rest of their total.
    waiters: std::sync::Mutex<HashMap<String, watch::Sender<Option<Outcome>>>>,
    /// One target step (hold, sum, maybe commit) at a time.
    target_step: tokio::sync::Mutex<()>,
    started: std::sync::atomic::AtomicBool,
    on_commit: Option<CommitHook>,
    /// Peers that did not answer the sweep, resting.
    resting: sweep::Resting,
    /// Questions to neighbours under way (`paths::ASKS_IN_FLIGHT_MAX`).
    asks: Arc<tokio::sync::Semaphore>,
}

impl CreditBook {
    pub fn new(db: db::Database, key: Arc<KeyPair>, policy: CreditPolicy) -> Arc<CreditBook> {
        CreditBook::with_hook(db, key, policy, None)
    }

    /// [`CreditBook::new`] with the service's say in payments to it ([`CommitHook`]).
    pub fn with_hook(
        db: db::Database,
        key: Arc<KeyPair>,
        policy: CreditPolicy,
        on_commit: Option<CommitHook>,
    ) -> Arc<CreditBook> {
        let options = crate::client::ClientOptions {
            ca_cert: None,
            read_ms_max: None,
        };
        // Building a client without TLS files fails only without a TLS backend, which this
        // build always has; the default client is then as good.
        let http = crate::client::http_client(&options).unwrap_or_default();
        Arc::new(CreditBook {
            credit_key: protocol::credit::seal::CreditKey::of(&key),
            db,
            key,
            policy,
            http,
            counter: crate::client::ClockCounter::default(),
            neighbors: neighbors::Neighbors::default(),
            waiters: std::sync::Mutex::new(HashMap::new()),
            target_step: tokio::sync::Mutex::new(()),
            started: std::sync::atomic::AtomicBool::new(false),
            on_commit,
            resting: sweep::Resting::default(),
            asks: Arc::new(tokio::sync::Semaphore::new(paths::ASKS_IN_FLIGHT_MAX)),
        })
    }

    /// This node's credit key (64 hex), shown as `credit_key` in its descriptor.
    pub fn credit_key_hex(&self) -> String {
        self.credit_key.public_hex()
    }

    /// This node's signature over its credit key, shown as `credit_key_signature` in its
    /// descriptor: payers check it before sealing to the key.
    pub fn credit_key_signature(&self) -> String {
        self.credit_key.signature(&self.key)
    }

    /// A receiver for `payment`'s outcome (the channel made if none is there).
    fn waiter(&self, payment: &str) -> watch::Receiver<Option<Outcome>> {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(payment.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    fn is_waiting(&self, payment: &str) -> bool {
        let w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        w.contains_key(payment)
    }

    /// Drop `payment`'s channel when no prepare waits on it (a refused first path), so
    /// refused payments leave nothing behind.
    fn forget_unwatched(&self, payment: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if w.get(payment).is_some_and(|tx| tx.receiver_count() == 0) {
            w.remove(payment);
        }
    }

    /// Tell the prepares waiting for `payment` how it ended.
    fn resolve(&self, payment: &str, outcome: Outcome) {
        let mut w = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = w.remove(payment) {
            tx.send_replace(Some(outcome));
        }
    }

    /// `asker` asks for a line of `limit` in `currency`: this node's signed proposal (not
    /// stored until it comes back countersigned), or a refusal.
    pub fn ask(
        &self,
        asker: &EntityId,
        currency: &str,
        limit: u64,
    ) -> Result<LineUpdate, CreditNodeError> {
        if limit == 0 {
            return Err(CreditError::Range("a line's limit is at least 1").into());
        }
        if self.policy.give_max == 0 || limit > self.policy.give_max {
            return Err(CreditNodeError::Refused(format!(
                "this node extends lines of at most {} to neighbours who ask",
                self.policy.give_max
            )));
        }
        let state = LineState {
            id: uuid::Uuid::new_v4().to_string(),
            creditor: self.key.entity().to_string(),
            debtor: asker.to_string(),
            currency: currency.to_owned(),
            limit,
            owed: 0,
            seq: 1,
        };
        Ok(LineUpdate::sign(state, &self.key)?)
    }

    /// Take an update sent by `sender` (one of its parties): countersign it when this node
    /// has not signed yet and may (it is the debtor, or the creditor within the policy), and
    /// store it when it is newer than the line held. Answers the update in force.
    pub async fn accept(
        &self,
        sender: &EntityId,
        mut update: LineUpdate,
    ) -> Result<LineUpdate, CreditNodeError> {
        update.verify()?;
        let me = self.key.entity().to_string();
        let s = &update.state;
        let (mine, theirs) = if s.creditor == me {
            (&update.creditor_signature, &s.debtor)
        } else if s.debtor == me {
            (&update.debtor_signature, &s.creditor)
        } else {
            return Err(CreditNodeError::Refused(
                "this node is not a party to the line".into(),
            ));
        };
        if theirs != sender.as_str() {
            return Err(CreditNodeError::Refused(
                "the request must be signed by the line's other party".into(),
            ));
        }
        if mine.is_none() {
            if s.creditor == me && s.limit > self.policy.give_max {
                return Err(CreditNodeError::Refused(format!(
                    "this node extends lines of at most {}",
                    self.policy.give_max
                )));
            }
            update.countersign(&self.key)?;
        }
        // The other party's signature was verified above; ours was just made.
        if update.creditor_signature.is_none() || update.debtor_signature.is_none() {
            return Err(CreditNodeError::Refused(
                "a line in force carries both parties' signatures".into(),
            ));
        }
        // Whoever sends it, an update here must state the balance this node has: an old
        // proposal of this node's cannot be redeemed later (only `keep_line`, with the
        // proposal it just made, takes a balance moved meanwhile).
        self.store(update.clone(), false).await?;
        Ok(update)
    }

    /// Keep `update` (both signatures verified): a new line, or a newer state of the line
    /// held under its id, between the same parties in the same currency (its limit only).
    /// Checked and written in one transaction, so of two updates racing the newer is kept.
    ///
    /// `ours`: the update is the proposal this node just made, come back countersigned
    /// (`keep_line`), so the `owed` it states may be older than the balance here, moved by
    /// payments since; the limit is taken and the balance kept. Otherwise an update stating
    /// another balance is refused: the node never signs a debt it does not have, and an old
    /// proposal of its own cannot be redeemed later.
    pub(crate) async fn store(
        &self,
        update: LineUpdate,
        ours: bool,
    ) -> Result<(), CreditNodeError> {
        let s = update.state;
        let (limit, owed, seq) = (to_i64(s.limit)?, to_i64(s.owed)?, to_i64(s.seq)?);
        let (cs, ds) = (
            update.creditor_signature.unwrap_or_default(),
            update.debtor_signature.unwrap_or_default(),
        );
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<(), CreditNodeError> {
                    type Held = (
                        (String, String, String, i64, i64, i64),
                        (i64, String, Option<i64>),
                    );
                    // A write that changes nothing takes the line's row lock before it is
                    // read (PostgreSQL; SQLite's write transactions run alone): of two updates
                    // racing, the second then reads the first's seq and a payment's new hold,
                    // rather than writing an older seq or a limit below what is held.
                    if matches!(conn, AnyConnection::Postgresql(_)) {
                        diesel::update(credit_lines::table.find(&s.id))
                            .set(credit_lines::seq.eq(credit_lines::seq))
                            .execute(conn)?;
                    }
                    let held: Option<Held> = credit_lines::table
                        .find(&s.id)
                        .select((
                            (
                                credit_lines::creditor,
                                credit_lines::debtor,
                                credit_lines::currency,
                                credit_lines::owed,
                                credit_lines::held,
                                credit_lines::seq,
                            ),
                            (
                                credit_lines::credit_limit,
                                credit_lines::debtor_signature,
                                credit_lines::settle_threshold,
                            ),
                        ))
                        .first(conn)
                        .optional()?;
                    let now = i64::try_from(crate::now_ms()).unwrap_or(i64::MAX);
                    let Some((
                        (creditor, debtor, currency, held_owed, held_amount, held_seq),
                        (limit_now, ds_now, threshold),
                    )) = held
                    else {
                        // A line starts owing nothing: a debt appears only through payments
                        // this node took part in (else anyone could have it sign a debt).
                        if owed != 0 {
                            return Err(CreditNodeError::Refused(
                                "a new line starts with nothing owed".into(),
                            ));
                        }
                        diesel::insert_into(credit_lines::table)
                            .values((
                                credit_lines::id.eq(&s.id),
                                credit_lines::creditor.eq(&s.creditor),
                                credit_lines::debtor.eq(&s.debtor),
                                credit_lines::currency.eq(&s.currency),
                                credit_lines::credit_limit.eq(limit),
                                credit_lines::owed.eq(owed),
                                credit_lines::held.eq(0i64),
                                credit_lines::seq.eq(seq),
                                credit_lines::creditor_signature.eq(&cs),
                                credit_lines::debtor_signature.eq(&ds),
                                credit_lines::updated_ms.eq(now),
                            ))
                            .execute(conn)?;
                        return Ok(());
                    };
                    if (creditor, debtor, currency) != (s.creditor, s.debtor, s.currency) {
                        return Err(CreditNodeError::Refused(
                            "this id is another line's (other parties or currency)".into(),
                        ));
                    }
                    let is_tab = threshold.is_some();
                    if held_seq == seq && held_owed == owed {
                        // A tab's debtor countersigning the state in force (the lower balance
                        // after a settlement): only a missing signature is added.
                        if limit_now == limit && ds_now.is_empty() && !ds.is_empty() {
                            diesel::update(credit_lines::table.find(&s.id))
                                .set(credit_lines::debtor_signature.eq(&ds))
                                .execute(conn)?;
                            return Ok(());
                        }
                    }
                    if is_tab {
                        return Err(CreditNodeError::Refused(
                            "a tab changes by charges and settlements; its debtor only \
                             countersigns the state in force"
                                .into(),
                        ));
                    }
                    if held_seq >= seq {
                        return Err(CreditError::Stale {
                            held: held_seq.unsigned_abs(),
                            got: s.seq,
                        }
                        .into());
                    }
                    if held_owed != owed && !ours {
                        return Err(CreditNodeError::Refused(format!(
                            "the line's balance is {held_owed} here: an update changes its \
                             limit, payments change what is owed"
                        )));
                    }
                    // An update changes the limit; payments change what is owed, so the
                    // balance stays as this node has it. The new limit must still cover it.
                    let mut line = Line {
                        limit: 0,
                        owed: held_owed.unsigned_abs(),
                        held: held_amount.unsigned_abs(),
                        repaying: 0,
                    };
                    line.set_limit(s.limit)?;
                    diesel::update(credit_lines::table.find(&s.id))
                        .set((
                            credit_lines::credit_limit.eq(limit),
                            credit_lines::seq.eq(seq),
                            credit_lines::creditor_signature.eq(&cs),
                            credit_lines::debtor_signature.eq(&ds),
                            credit_lines::updated_ms.eq(now),
                        ))
                        .execute(conn)?;
                    Ok(())
                })
            })
            .await
    }

    /// This node's lines, with `party` among their parties when given.
    pub async fn lines(&self, party: Option<String>) -> Result<LinesPage, CreditNodeError> {
        self.db
            .run(move |conn: &mut AnyConnection| {
                let mut q = credit_lines::table
                    .select(ROW_COLUMNS)
                    .order(credit_lines::id)
                    .limit(LINES_PAGE_MAX)
                    .into_boxed();
                if let Some(p) = party {
                    q = q.filter(
                        credit_lines::creditor
                            .eq(p.clone())
                            .or(credit_lines::debtor.eq(p)),
                    );
                }
                let rows: Vec<Row> = q.load(conn)?;
                Ok(LinesPage {
                    lines: rows.into_iter().map(view_of).collect(),
                })
            })
            .await
    }
}

/// The credit lines of a node's owner page (agent, market, publisher): `<h2>` and a table
/// with `id="credit-lines"` of each line's way, limit, owed, held, settlement (a tab's
/// threshold and last settlement), update and id. `show` writes an amount of a currency.
pub fn lines_html(lines: &[LineView], me: &str, show: &dyn Fn(&str, u64) -> String) -> String {
    use crate::html::escape as esc;
    let rows: String = if lines.is_empty() {
        "<tr><td colspan=7>No credit lines yet.</td></tr>".into()
    } else {
        lines
            .iter()
            .map(|l| {
                let (way, other) = match (l.creditor == me, l.settle_threshold) {
                    (true, Some(_)) => ("tab of buyer", &l.debtor),
                    (true, None) => ("extended by this node to", &l.debtor),
                    (false, _) => ("extended to this node by", &l.creditor),
                };
                let settled = match (l.settle_threshold, l.settled_ms) {
                    (Some(t), Some(ms)) => format!(
                        "at {}, {}",
                        esc(&show(&l.currency, t)),
                        esc(&protocol::market::format_rfc3339(
                            i64::try_from(ms / 1000).unwrap_or(i64::MAX)
                        ))
                    ),
                    (Some(t), None) => format!("at {}, not yet", esc(&show(&l.currency, t))),
                    (None, _) => "-".into(),
                };
                format!(
                    "<tr><td>{way} <code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{settled}</td><td>{}</td><td>{}</td></tr>",
                    esc(other),
                    esc(&show(&l.currency, l.limit)),
                    esc(&show(&l.currency, l.owed)),
                    esc(&show(&l.currency, l.held.saturating_add(l.repaying))),
                    l.seq,
                    esc(&l.id)
                )
            })
            .collect()
    };
    format!(
        "<h2>Credit lines</h2><p>Lines of credit with neighbours and buyers' tabs (DESIGN 12): \
         the limit, what the debtor owes, what payments under way hold, a tab's settlement \
         threshold and last settlement, and the update number both sides signed.</p>\
         <table id=\"credit-lines\"><tr><th>line</th><th>limit</th><th>owed</th><th>held</th>\
         <th>settlement</th><th>update</th><th>id</th></tr>{rows}</table>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credit_file_is_read_checked_or_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load_policy(dir.path()), Ok(CreditPolicy::default()));
        let currency = KeyPair::generate().expect("key").entity().to_string();
        let write =
            |text: String| std::fs::write(dir.path().join(CREDIT_FILE), text).expect("write");
        write(format!(
            "[credit]\ngive_max = 500\n[[credit.neighbors]]\nurl = \"http://127.0.0.1:7001\"\n\
             trust = 0.75\ngive = 40\ncurrency = \"{currency}\"\n"
        ));
        let policy = load_policy(dir.path()).expect("valid");
        assert_eq!(policy.give_max, 500);
        assert_eq!(policy.neighbors.len(), 1);
        assert_eq!(policy.neighbors[0].give, 40);
        for (bad, why) in [
            (
                "[credit]\n[[credit.neighbors]]\nurl = \"http://x\"\ntrust = 1.5\n".to_owned(),
                "trust",
            ),
            (
                "[credit]\n[[credit.neighbors]]\nurl = \"x:1\"\n".to_owned(),
                "URL",
            ),
            (
                "[credit]\n[[credit.neighbors]]\nurl = \"http://x\"\ngive = 5\n".to_owned(),
                "currency",
            ),
            ("[credit]\ngive_maxx = 1\n".to_owned(), "unknown field"),
            ("[credit]\nhold_ms_max = 10\n".to_owned(), "hold_ms_max"),
        ] {
            write(bad);
            let e = load_policy(dir.path()).expect_err(why);
            assert!(e.contains(why) || e.contains("credit"), "{why}: {e}");
        }
    }
}

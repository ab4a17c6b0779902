//! The market's one error enum, each variant mapped to an HTTP status and a stable code.

use actix_web::http::StatusCode;
use node::http::BodyError;
use node::service::{InvalidJson, ServiceError};
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The body policy (`node::service`): `413 body_too_large`, `408`/`400 body_incomplete`.
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("the request body is not valid for this call: {0}")]
    InvalidJson(String),
    #[error("the offer's signature does not verify, or it is not the sender's: {0}")]
    BadOfferSignature(String),
    #[error("the offer expired at {0}")]
    OfferExpired(String),
    #[error("the offer is not acceptable: {0}")]
    InvalidOffer(String),
    #[error("the agent's endpoint does not answer /.well-known/lcp: {0}")]
    EndpointUnreachable(String),
    #[error("the agent's endpoint answers as another entity ({0})")]
    EndpointMismatch(String),
    #[error("invalid match request: {0}")]
    InvalidMatch(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("{}", unknown_currency_message(.0))]
    UnknownCurrency(String),
    #[error("{}{}", cannot_meet_message(*target, *best), left_out)]
    CannotMeetTarget {
        /// The `max_failure_probability` asked for.
        target: f64,
        /// The lowest failure probability any choice reaches (`None`: too few agents).
        best: Option<f64>,
        /// Why agents offering the currency were left out (`; ...` clauses, or empty): the
        /// real cause when it is a block size or duration no agent sells.
        left_out: String,
        details: serde_json::Value,
    },
    #[error("the contract is not acceptable: {0}")]
    InvalidContract(String),
    #[error("the contract's signatures do not verify: {0}")]
    BadContractSignature(String),
    #[error("the market is not among the contract's auditors, so it could not audit it")]
    MarketNotAuditor,
    #[error("the market does not know agent {0}; its offer must be in the book")]
    UnknownAgent(String),
    #[error("no such registered contract")]
    UnknownContract,
    #[error("only the contract's buyer may do this")]
    NotYourContract,
    #[error("an issuer published a double-spend proof against this buyer: the market takes no registration or report from it")]
    PayerFraud,
    #[error(
        "the market holds no verified object of this contract: a report counts only for a \
         contract shown to be paid and used (register it with its objects first)"
    )]
    ReportUnverified,
    #[error(
        "contract {contract} already has a counted {kind} report: one good and one bad report \
         per contract count"
    )]
    AlreadyReported {
        contract: String,
        kind: &'static str,
    },
    #[error(
        "object {name} is already registered with another Merkle root; a registered root is \
         never replaced"
    )]
    RootConflict { name: String },
    #[error(
        "the agent's audit of object {name} does not verify against the registered Merkle \
         root: {why}"
    )]
    RootUnverified { name: String, why: String },
    #[error("the agent is rate limiting the market's audits; register again in a minute ({0})")]
    AgentBusy(String),
    #[error("counter {counter} was already used with a different body")]
    CounterReused { counter: u64 },
    #[error("the market is busy ({0}); try again in a moment")]
    Busy(String),
    #[error("database: {0}")]
    Db(#[from] db::DbError),
}

/// The message of `409 cannot_meet_target`: the target and the best achievable, in words, so
/// every client shows the value (the figures are also in `details`).
/// Why a currency is unknown: not an entity id at all (an issuer's URL, say), or one no live
/// offer accepts.
fn unknown_currency_message(currency: &str) -> String {
    if protocol::EntityId::parse(currency).is_err() {
        format!(
            "currency must be the issuer's entity id (ed25519:<64 hex>, as `market offers` \
             lists it), not {currency:?}"
        )
    } else {
        format!("no live offer accepts currency {currency}")
    }
}

pub fn cannot_meet_message(target: f64, best: Option<f64>) -> String {
    match best {
        Some(best) => format!(
            "no set of agents meets the durability target {target:.3e}: the best achievable \
             failure probability is {best:.3e} (the answer's error.details.best, or `market match --json`, has that choice)"
        ),
        None => format!(
            "no set of agents meets the durability target {target:.3e}: too few agents can \
             take this request to choose any"
        ),
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::Db(db::DbError::Query(e))
    }
}

impl From<InvalidJson> for Error {
    fn from(e: InvalidJson) -> Self {
        Error::InvalidJson(e.0)
    }
}

impl ServiceError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Body(e) => e.status(),
            Error::Auth(AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            Error::Auth(_) | Error::BadOfferSignature(_) | Error::BadContractSignature(_) => {
                StatusCode::UNAUTHORIZED
            }
            Error::InvalidJson(_)
            | Error::OfferExpired(_)
            | Error::InvalidOffer(_)
            | Error::InvalidMatch(_)
            | Error::InvalidQuery(_)
            | Error::UnknownCurrency(_)
            | Error::InvalidContract(_)
            | Error::MarketNotAuditor => StatusCode::BAD_REQUEST,
            Error::EndpointUnreachable(_) | Error::EndpointMismatch(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Error::NotYourContract | Error::PayerFraud => StatusCode::FORBIDDEN,
            Error::UnknownAgent(_) | Error::UnknownContract => StatusCode::NOT_FOUND,
            Error::CannotMeetTarget { .. }
            | Error::CounterReused { .. }
            | Error::AlreadyReported { .. }
            | Error::ReportUnverified
            | Error::RootConflict { .. }
            | Error::RootUnverified { .. } => StatusCode::CONFLICT,
            Error::AgentBusy(_) | Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Body(e) => e.code(),
            Error::Auth(e) => e.code(),
            Error::InvalidJson(_) => "invalid_json",
            Error::BadOfferSignature(_) => "invalid_offer_signature",
            Error::OfferExpired(_) => "offer_expired",
            Error::InvalidOffer(_) => "invalid_offer",
            Error::EndpointUnreachable(_) => "endpoint_unreachable",
            Error::EndpointMismatch(_) => "endpoint_mismatch",
            Error::InvalidMatch(_) => "invalid_match",
            Error::InvalidQuery(_) => "invalid_query",
            Error::UnknownCurrency(_) => "unknown_currency",
            Error::CannotMeetTarget { .. } => "cannot_meet_target",
            Error::InvalidContract(_) => "invalid_contract",
            Error::BadContractSignature(_) => "invalid_contract_signature",
            Error::MarketNotAuditor => "market_not_auditor",
            Error::UnknownAgent(_) => "unknown_agent",
            Error::UnknownContract => "unknown_contract",
            Error::NotYourContract => "forbidden",
            Error::PayerFraud => "payer_fraud",
            Error::CounterReused { .. } => "counter_reused",
            Error::AlreadyReported { .. } => "already_reported",
            Error::ReportUnverified => "report_unverified",
            Error::RootConflict { .. } => "root_conflict",
            Error::RootUnverified { .. } => "root_unverified",
            Error::AgentBusy(_) => "agent_busy",
            Error::Busy(_) => "busy",
            Error::Db(_) => "unavailable",
        }
    }

    /// Only the database is the market's own failure (an agent that is busy is not).
    fn internal(&self) -> bool {
        matches!(self, Error::Db(_))
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Db(_) => "the market's database is temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(self.code(), message);
        if let Error::CannotMeetTarget { details, .. } = self {
            body.error.details = Some(details.clone());
        }
        body
    }
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        ServiceError::status(self)
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        node::service::error_response(self)
    }
}

impl From<node::commands::ReplayError> for Error {
    fn from(e: node::commands::ReplayError) -> Self {
        use node::commands::ReplayError;
        match e {
            ReplayError::CounterReused(counter) => Error::CounterReused { counter },
            ReplayError::CounterTooLarge(e) => Error::InvalidJson(e.to_string()),
            ReplayError::Db(e) => Error::Db(e),
        }
    }
}

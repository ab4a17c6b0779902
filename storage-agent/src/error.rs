//! The agent's one error enum, each variant mapped to an HTTP status and a stable code
//! ([`node::service::ServiceError`]).

use actix_web::http::StatusCode;
use node::http::BodyError;
use node::service::{InvalidJson, ServiceError};
use protocol::market::ContractRefusal;
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Refused(#[from] ContractRefusal),
    #[error("the request body is not valid for this call: {0}")]
    InvalidJson(String),
    #[error("the contract envelope's signature does not verify: {0}")]
    BadContractSignature(String),
    #[error("object names are 1 to 128 of A-Z a-z 0-9 . _ - and do not start with a dot")]
    InvalidName,
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("the range does not overlap the object's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("no such contract")]
    UnknownContract,
    #[error("no such object")]
    UnknownObject,
    #[error("no such retrieval token, or it is used up or expired")]
    UnknownToken,
    #[error("only the contract's buyer{} may do this", if *.auditors { " or a listed auditor" } else { "" })]
    NotYourContract { auditors: bool },
    #[error("the contract is not active now (outside its window)")]
    ContractNotActive,
    #[error("payment required: {amount_due} more is due")]
    PaymentRequired { amount_due: u64 },
    /// The buyer consumed more than it contributed, by more than the free-rider threshold:
    /// no tab, so it pays ahead (`amount_due`).
    #[error("the records show this buyer consumed more than it contributed (free-rider threshold): pay {amount_due} ahead")]
    FreeRider { amount_due: u64 },
    #[error("the object would overflow the block of {block_bytes} bytes")]
    BlockFull { block_bytes: u64 },
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("counter {counter} was already used with a different body")]
    CounterReused { counter: u64 },
    #[error("too many uploads in progress; retry shortly")]
    Overloaded,
    #[error("too many audits of this contract; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    /// A body that trickled in too slowly (`408`) or was cut off (`400`): `body_incomplete`,
    /// the body policy of [`node::service`]. An oversized one is [`Error::BodyTooLarge`].
    #[error("{0}")]
    Body(BodyError),
    #[error("the dashboard is for the agent's owner: open it from this machine, or add ?token= with the token in the data directory's owner.token")]
    OwnerOnly,
    #[error("unpaid contracts already hold the share of space they may; pay pending contracts or retry within {retry_after_s} s")]
    TooManyPending { retry_after_s: u64 },
    #[error("{0}")]
    Payword(#[from] node::paywords::Refusal),
    #[error("the issuer published a double-spend proof against this buyer: no contracts or paywords are taken from it")]
    PayerFraud,
    #[error("object storage failed")]
    Store(String),
    #[error("database: {0}")]
    Db(#[from] db::DbError),
}

impl From<protocol::range::RangeError> for Error {
    fn from(e: protocol::range::RangeError) -> Self {
        match e {
            protocol::range::RangeError::Invalid(m) => Error::InvalidRange(m),
            protocol::range::RangeError::NotSatisfiable { size } => {
                Error::RangeNotSatisfiable { size }
            }
        }
    }
}

impl From<BodyError> for Error {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge { limit } => Error::BodyTooLarge { limit },
            other => Error::Body(other),
        }
    }
}

impl From<InvalidJson> for Error {
    fn from(e: InvalidJson) -> Self {
        Error::InvalidJson(e.0)
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::Db(db::DbError::Query(e))
    }
}

impl ServiceError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Auth(AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            Error::Auth(_) | Error::BadContractSignature(_) => StatusCode::UNAUTHORIZED,
            Error::NotYourContract { .. } => StatusCode::FORBIDDEN,
            Error::Refused(ContractRefusal::InsufficientSpace { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            Error::Refused(_)
            | Error::InvalidJson(_)
            | Error::InvalidName
            | Error::InvalidRange(_)
            | Error::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Body(e) => e.status(),
            Error::OwnerOnly => StatusCode::FORBIDDEN,
            Error::UnknownContract | Error::UnknownObject | Error::UnknownToken => {
                StatusCode::NOT_FOUND
            }
            Error::ContractNotActive | Error::CounterReused { .. } => StatusCode::CONFLICT,
            Error::PaymentRequired { .. } | Error::FreeRider { .. } | Error::Payword(_) => {
                StatusCode::PAYMENT_REQUIRED
            }
            Error::PayerFraud => StatusCode::FORBIDDEN,
            Error::BlockFull { .. } | Error::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Store(_) | Error::Db(_) | Error::Overloaded | Error::TooManyPending { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Auth(e) => e.code(),
            Error::Refused(r) => r.code(),
            Error::InvalidJson(_) => "invalid_json",
            Error::BadContractSignature(_) => "invalid_contract_signature",
            Error::InvalidName => "invalid_name",
            Error::InvalidRange(_) => "invalid_range",
            Error::InvalidQuery(_) => "invalid_query",
            Error::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Error::UnknownContract => "unknown_contract",
            Error::UnknownObject => "unknown_object",
            Error::UnknownToken => "unknown_token",
            Error::NotYourContract { .. } => "forbidden",
            Error::ContractNotActive => "contract_not_active",
            Error::PaymentRequired { .. } => "payment_required",
            Error::FreeRider { .. } => "free_rider",
            Error::Payword(r) => r.code(),
            Error::PayerFraud => "payer_fraud",
            Error::BlockFull { .. } => "block_full",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::CounterReused { .. } => "counter_reused",
            Error::Overloaded => "overloaded",
            Error::RateLimited { .. } => "rate_limited",
            Error::Body(e) => e.code(),
            Error::OwnerOnly => "owner_only",
            Error::TooManyPending { .. } => "too_many_pending",
            Error::Store(_) | Error::Db(_) => "unavailable",
        }
    }

    /// Storage and database failures: logged (and shown on the dashboard for commands); the
    /// other 503s (`overloaded`, `too_many_pending`) are the client's to retry.
    fn internal(&self) -> bool {
        matches!(self, Error::Store(_) | Error::Db(_))
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Store(_) | Error::Db(_) => {
                "the agent's storage is temporarily unavailable".to_owned()
            }
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(self.code(), message);
        if let Error::PaymentRequired { amount_due } | Error::FreeRider { amount_due } = self {
            body.error.details = Some(serde_json::json!({ "amount_due": amount_due }));
        }
        if let Error::RateLimited { retry_after_s } = self {
            body.error.details = Some(serde_json::json!({ "retry_after_s": retry_after_s }));
        }
        body
    }
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
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

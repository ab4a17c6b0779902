//! The one error enum of the `lcp` crate, each variant mapped to an HTTP status and a stable code.

use actix_web::http::StatusCode;
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("the request body is not valid JSON for this call: {0}")]
    InvalidJson(String),
    #[error("the query string is invalid: {0}")]
    InvalidQuery(String),
    /// The body policy of every service (`node::service`): 413, 408 or 400.
    #[error("{0}")]
    Body(#[from] node::http::BodyError),
    #[error("amount must be a whole number of minor units from 1 to {max}")]
    InvalidAmount { max: u64 },
    #[error("invalid recipient: {0}")]
    InvalidRecipient(String),
    #[error("transaction_id must be 1 to {max} printable ASCII characters")]
    InvalidTransactionId { max: usize },
    #[error("userid must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-'")]
    InvalidUserid,
    #[error("from_name: {0}")]
    InvalidName(String),
    #[error("{0}")]
    InvalidChain(String),
    #[error("{0}")]
    InvalidBatch(String),
    #[error("insufficient funds: balance {balance}, needed {needed}")]
    InsufficientFunds { balance: i64, needed: u64 },
    #[error("the supply cap of {cap} would be exceeded")]
    SupplyCapReached { cap: u64 },
    #[error("counter {counter} was already used with a different body")]
    CounterReused { counter: u64 },
    #[error("counter must be at most {max}")]
    CounterTooLarge { max: u64 },
    #[error("the ledger queue is full; retry shortly")]
    Overloaded,
    #[error("not found")]
    NotFound,
    #[error("storage failure")]
    Storage(String),
    #[error("database: {0}")]
    Db(#[from] db::DbError),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Auth(AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            Error::Auth(_) => StatusCode::UNAUTHORIZED,
            Error::InvalidJson(_)
            | Error::InvalidQuery(_)
            | Error::InvalidAmount { .. }
            | Error::InvalidRecipient(_)
            | Error::InvalidTransactionId { .. }
            | Error::InvalidUserid
            | Error::InvalidName(_)
            | Error::InvalidChain(_)
            | Error::InvalidBatch(_)
            | Error::CounterTooLarge { .. } => StatusCode::BAD_REQUEST,
            Error::Body(e) => e.status(),
            Error::InsufficientFunds { .. } | Error::SupplyCapReached { .. } => {
                StatusCode::PAYMENT_REQUIRED
            }
            Error::CounterReused { .. } => StatusCode::CONFLICT,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Overloaded | Error::Storage(_) | Error::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::Auth(e) => e.code(),
            Error::InvalidJson(_) => "invalid_json",
            Error::InvalidQuery(_) => "invalid_query",
            Error::Body(e) => e.code(),
            Error::InvalidAmount { .. } => "invalid_amount",
            Error::InvalidRecipient(_) => "invalid_recipient",
            Error::InvalidTransactionId { .. } => "invalid_transaction_id",
            Error::InvalidUserid => "invalid_userid",
            Error::InvalidName(_) => "invalid_name",
            Error::InvalidChain(_) => "invalid_chain",
            Error::InvalidBatch(_) => "invalid_batch",
            Error::InsufficientFunds { .. } => "insufficient_funds",
            Error::SupplyCapReached { .. } => "supply_cap_reached",
            Error::CounterReused { .. } => "counter_reused",
            Error::CounterTooLarge { .. } => "invalid_header",
            Error::Overloaded => "overloaded",
            Error::NotFound => "not_found",
            Error::Storage(_) | Error::Db(_) => "unavailable",
        }
    }

    /// The JSON body clients see. Internal causes stay in the log.
    pub fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Storage(_) | Error::Db(_) => "the ledger is temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        ErrorBody::new(self.code(), message)
    }

    /// [`Error::body`] with amounts in the issuer's currency for people (`balance 7.50 LCU`);
    /// `details` keeps them in minor units.
    pub fn body_in(&self, decimals: u8, code: &str) -> ErrorBody {
        match self {
            Error::InsufficientFunds { balance, needed } => {
                let show = |v: i128| protocol::format_amount(v, u32::from(decimals), code);
                let mut body = ErrorBody::new(
                    self.code(),
                    format!(
                        "insufficient funds: balance {}, needed {}",
                        show(i128::from(*balance)),
                        show(i128::from(*needed))
                    ),
                );
                body.error.details =
                    Some(serde_json::json!({"balance": balance, "needed": needed}));
                body
            }
            other => other.body(),
        }
    }
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        if matches!(self, Error::Storage(_) | Error::Db(_)) {
            tracing::error!(error = %self, "request failed on storage");
        }
        let mut resp = actix_web::HttpResponse::build(self.status());
        if matches!(self, Error::Overloaded) {
            resp.insert_header(("Retry-After", "1"));
        }
        resp.json(self.body())
    }
}

impl node::service::ServiceError for Error {
    fn status(&self) -> StatusCode {
        Error::status(self)
    }

    fn code(&self) -> &'static str {
        Error::code(self)
    }

    fn internal(&self) -> bool {
        matches!(self, Error::Storage(_) | Error::Db(_))
    }

    fn body(&self) -> ErrorBody {
        Error::body(self)
    }
}

impl From<node::service::InvalidJson> for Error {
    fn from(e: node::service::InvalidJson) -> Self {
        Error::InvalidJson(e.0)
    }
}

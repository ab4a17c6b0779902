//! The bank's one error enum, each variant mapped to an HTTP status and a stable code. App
//! calls answer with the issuer's codes where the issuer has one (`insufficient_funds`,
//! `invalid_amount`, `invalid_recipient`), so an app cannot tell a bank from an issuer by
//! its errors.

use actix_web::http::StatusCode;
use node::http::BodyError;
use node::service::{InvalidJson, ServiceError};
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("this bank runs no exchange (start it with --exchange)")]
    NoExchange,
    #[error("no order {0:?} of yours")]
    UnknownOrder(String),
    #[error("no trade {0:?}")]
    UnknownTrade(String),
    #[error("{0}")]
    NotYourTurn(String),
    #[error("trader {0} defaulted on a trade: the exchange takes no more orders from it")]
    TraderDefaulted(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("amount must be a whole number of minor units from 1 to {max}")]
    InvalidAmount { max: u64 },
    #[error("{0}")]
    InvalidRecipient(String),
    #[error("transaction_id must be 1 to 128 printable ASCII characters")]
    InvalidTransactionId,
    #[error("{0}")]
    InvalidName(String),
    #[error("no customer {0:?} at this bank")]
    UnknownName(String),
    #[error("a customer named {0:?} exists already")]
    NameTaken(String),
    #[error("{0}")]
    Password(#[from] crate::password::PasswordError),
    #[error("this call needs `Authorization: Bearer <app token>`")]
    MissingToken,
    #[error("the app token is unknown or revoked")]
    InvalidToken,
    #[error(
        "the token's spending limit is reached: {spent} of {limit} spent, {needed} more asked"
    )]
    LimitReached { limit: u64, spent: u64, needed: u64 },
    #[error("insufficient funds: balance {balance}, needed {needed}")]
    InsufficientFunds { balance: i64, needed: u64 },
    #[error("this bank does not take the currency of {0}")]
    UnknownCurrency(String),
    #[error("the issuer did not answer: {0}")]
    Upstream(String),
    #[error("database: {0}")]
    Db(#[from] db::DbError),
    #[error("internal: {0}")]
    Internal(String),
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
            Error::Auth(_) => StatusCode::UNAUTHORIZED,
            Error::NoExchange | Error::UnknownOrder(_) | Error::UnknownTrade(_) => {
                StatusCode::NOT_FOUND
            }
            Error::NotYourTurn(_) => StatusCode::CONFLICT,
            Error::TraderDefaulted(_) => StatusCode::FORBIDDEN,
            Error::InvalidJson(_)
            | Error::InvalidQuery(_)
            | Error::InvalidAmount { .. }
            | Error::InvalidRecipient(_)
            | Error::InvalidTransactionId
            | Error::InvalidName(_)
            | Error::Password(crate::password::PasswordError::BadLength)
            | Error::UnknownCurrency(_) => StatusCode::BAD_REQUEST,
            Error::UnknownName(_) => StatusCode::NOT_FOUND,
            Error::NameTaken(_) => StatusCode::CONFLICT,
            Error::MissingToken | Error::InvalidToken => StatusCode::UNAUTHORIZED,
            Error::LimitReached { .. } => StatusCode::FORBIDDEN,
            Error::InsufficientFunds { .. } => StatusCode::PAYMENT_REQUIRED,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Password(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Body(e) => e.code(),
            Error::Auth(e) => e.code(),
            Error::NoExchange => "no_exchange",
            Error::UnknownOrder(_) => "unknown_order",
            Error::UnknownTrade(_) => "unknown_trade",
            Error::NotYourTurn(_) => "not_your_turn",
            Error::TraderDefaulted(_) => "trader_defaulted",
            Error::InvalidJson(_) => "invalid_json",
            Error::InvalidQuery(_) => "invalid_query",
            Error::InvalidAmount { .. } => "invalid_amount",
            Error::InvalidRecipient(_) => "invalid_recipient",
            Error::InvalidTransactionId => "invalid_transaction_id",
            Error::InvalidName(_) => "invalid_name",
            Error::UnknownName(_) => "unknown_name",
            Error::NameTaken(_) => "name_taken",
            Error::Password(crate::password::PasswordError::BadLength) => "invalid_password",
            Error::MissingToken => "missing_token",
            Error::InvalidToken => "invalid_token",
            Error::LimitReached { .. } => "limit_reached",
            Error::InsufficientFunds { .. } => "insufficient_funds",
            Error::UnknownCurrency(_) => "unknown_currency",
            Error::Upstream(_) => "upstream_failed",
            Error::Db(_) => "unavailable",
            Error::Password(_) | Error::Internal(_) => "internal",
        }
    }

    fn internal(&self) -> bool {
        matches!(
            self,
            Error::Db(_) | Error::Upstream(_) | Error::Internal(_) | Error::Password(_)
        )
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Db(_) => "the database is temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        ErrorBody::new(self.code(), message)
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

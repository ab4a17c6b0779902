//! The cdn's one error enum, each variant mapped to an HTTP status and a stable code.

use actix_web::http::StatusCode;
use node::http::BodyError;
use node::service::{InvalidJson, ServiceError};
use protocol::range::RangeError;
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The body policy (`node::service`): too large, too slow or cut off.
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("the request is not valid for this call: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidRange(String),
    #[error("only the publisher may do this")]
    Forbidden,
    #[error("no such content: {0}")]
    UnknownContent(String),
    #[error("no such view: {0}")]
    UnknownView(String),
    #[error("the view has expired; buy another")]
    ViewExpired,
    #[error("{0}")]
    Payword(#[from] node::paywords::Refusal),
    #[error("piece {piece} does not match its declared SHA-256")]
    PieceMismatch { piece: u64 },
    #[error("the content is not completely uploaded yet: {missing} pieces missing")]
    Incomplete { missing: usize },
    #[error("the view is not paid: transfer {amount_due} to {pay_to} with transaction id {transaction_id}")]
    PaymentRequired {
        amount_due: u64,
        pay_to: String,
        issuer_url: String,
        transaction_id: String,
    },
    /// A free view asked of a free rider (DESIGN 11): it pays the view's read cost ahead.
    #[error("the records show this viewer consumed more than it contributed (free-rider threshold): transfer {amount_due} to {pay_to} with transaction id {transaction_id}")]
    FreeRider {
        amount_due: u64,
        pay_to: String,
        issuer_url: String,
        transaction_id: String,
    },
    /// `price` in minor units; `shown` the same for people (`1.00 LCU`).
    #[error("this viewer cannot pay the view's price of {shown}: {reason}")]
    CannotPay {
        price: u64,
        shown: String,
        reason: String,
    },
    #[error("piece {piece} was already asked for {times} times in this view")]
    TooManyRequests { piece: u64, times: u32 },
    #[error("the publisher has no storage for this: {0}")]
    NoStorage(String),
    #[error("a storage agent or the issuer failed: {0}")]
    Upstream(String),
    #[error("the requested range is not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("database: {0}")]
    Db(#[from] db::DbError),
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::Db(db::DbError::Query(e))
    }
}

impl From<InvalidJson> for Error {
    fn from(e: InvalidJson) -> Self {
        Error::InvalidRequest(e.0)
    }
}

impl From<RangeError> for Error {
    fn from(e: RangeError) -> Self {
        match e {
            RangeError::Invalid(m) => Error::InvalidRange(m),
            RangeError::NotSatisfiable { size } => Error::RangeNotSatisfiable { size },
        }
    }
}

impl ServiceError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Auth(AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            Error::Auth(_) => StatusCode::UNAUTHORIZED,
            Error::Body(e) => e.status(),
            Error::InvalidRequest(_) | Error::InvalidRange(_) | Error::PieceMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            Error::Forbidden => StatusCode::FORBIDDEN,
            Error::UnknownContent(_) | Error::UnknownView(_) => StatusCode::NOT_FOUND,
            Error::ViewExpired => StatusCode::GONE,
            Error::Incomplete { .. } => StatusCode::CONFLICT,
            Error::PaymentRequired { .. }
            | Error::FreeRider { .. }
            | Error::CannotPay { .. }
            | Error::Payword(_) => StatusCode::PAYMENT_REQUIRED,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::NoStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Auth(e) => e.code(),
            Error::Body(e) => e.code(),
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidRange(_) => "invalid_range",
            Error::Forbidden => "forbidden",
            Error::UnknownContent(_) => "unknown_content",
            Error::UnknownView(_) => "unknown_view",
            Error::ViewExpired => "view_expired",
            Error::PieceMismatch { .. } => "piece_mismatch",
            Error::Incomplete { .. } => "incomplete",
            Error::PaymentRequired { .. } => "payment_required",
            Error::FreeRider { .. } => "free_rider",
            Error::Payword(r) => r.code(),
            Error::CannotPay { .. } => "cannot_pay",
            Error::TooManyRequests { .. } => "too_many_requests",
            Error::NoStorage(_) => "no_storage",
            Error::Upstream(_) => "upstream_failed",
            Error::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Error::Db(_) => "unavailable",
        }
    }

    /// Logged: the database and the agents or issuer behind a request.
    fn internal(&self) -> bool {
        matches!(self, Error::Db(_) | Error::Upstream(_))
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Db(_) => "the database is temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(self.code(), message);
        if let Error::PaymentRequired {
            amount_due,
            pay_to,
            issuer_url,
            transaction_id,
        }
        | Error::FreeRider {
            amount_due,
            pay_to,
            issuer_url,
            transaction_id,
        } = self
        {
            body.error.details = Some(serde_json::json!({
                "amount_due": amount_due,
                "pay_to": pay_to,
                "issuer_url": issuer_url,
                "transaction_id": transaction_id,
            }));
        }
        body
    }
}

impl actix_web::ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        ServiceError::status(self)
    }

    fn error_response(&self) -> actix_web::HttpResponse {
        let mut resp = node::service::error_response(self);
        if let Error::RangeNotSatisfiable { size } = self {
            if let Ok(v) = format!("bytes */{size}").parse() {
                resp.headers_mut()
                    .insert(actix_web::http::header::CONTENT_RANGE, v);
            }
        }
        resp
    }
}

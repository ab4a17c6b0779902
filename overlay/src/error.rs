//! The peer's one error enum, each variant mapped to an HTTP status and a stable code.

use actix_web::http::StatusCode;
use node::http::BodyError;
use node::service::{InvalidJson, ServiceError};
use protocol::overlay::CurrencyOffer;
use protocol::{AuthError, ErrorBody};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("the request is not valid for this call: {0}")]
    InvalidRequest(String),
    #[error("this peer does not take that currency; it takes the ones listed")]
    CurrencyNotAccepted { currencies: Vec<CurrencyOffer> },
    /// The buyer's tab is full or it has no tab, and what it paid ahead does not cover this.
    #[error(
        "payment required: {amount_due} more is due; transfer it to {pay_to} (or settle the tab)"
    )]
    PaymentRequired {
        amount_due: u64,
        pay_to: String,
        issuer_url: String,
    },
    #[error("{0}")]
    Payword(#[from] node::paywords::Refusal),
    #[error("this peer does not deal with you (marked undesirable)")]
    Undesirable,
    #[error("no such bid: {0}")]
    UnknownBid(String),
    #[error("the bid has expired; solicit again")]
    BidExpired,
    #[error("the bid was accepted already, or is not yours")]
    BidTaken,
    #[error("the bid was not accepted by you")]
    NotAccepted,
    #[error("the deal is still being delivered; contest once its instructions arrive")]
    NotDelivered,
    #[error("too late to contest this deal")]
    ContestTooLate,
    #[error("the document was retrieved with this deal's token; not refunded")]
    AlreadyRetrieved,
    #[error("no such retrieval token")]
    UnknownToken,
    #[error("the retrieval token was used already")]
    TokenUsed,
    #[error("the retrieval token has expired")]
    TokenExpired,
    #[error("the retrieval token was made for another buyer")]
    WrongBuyer,
    #[error("this peer no longer holds the document")]
    DocumentGone,
    #[error("a peer downstream failed: {0}")]
    Upstream(String),
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

impl ServiceError for Error {
    fn status(&self) -> StatusCode {
        match self {
            Error::Auth(AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            Error::Auth(_) => StatusCode::UNAUTHORIZED,
            Error::Body(e) => e.status(),
            Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Error::CurrencyNotAccepted { .. }
            | Error::BidTaken
            | Error::NotDelivered
            | Error::AlreadyRetrieved => StatusCode::CONFLICT,
            Error::PaymentRequired { .. } | Error::Payword(_) => StatusCode::PAYMENT_REQUIRED,
            Error::Undesirable | Error::WrongBuyer | Error::NotAccepted => StatusCode::FORBIDDEN,
            Error::UnknownBid(_) | Error::UnknownToken => StatusCode::NOT_FOUND,
            Error::BidExpired
            | Error::TokenUsed
            | Error::TokenExpired
            | Error::DocumentGone
            | Error::ContestTooLate => StatusCode::GONE,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Auth(e) => e.code(),
            Error::Body(e) => e.code(),
            Error::InvalidRequest(_) => "invalid_request",
            Error::CurrencyNotAccepted { .. } => "currency_not_accepted",
            Error::PaymentRequired { .. } => "payment_required",
            Error::Payword(r) => r.code(),
            Error::Undesirable => "undesirable",
            Error::UnknownBid(_) => "unknown_bid",
            Error::BidExpired => "bid_expired",
            Error::BidTaken => "bid_taken",
            Error::NotAccepted => "not_accepted",
            Error::NotDelivered => "not_delivered",
            Error::ContestTooLate => "contest_too_late",
            Error::AlreadyRetrieved => "already_retrieved",
            Error::UnknownToken => "unknown_token",
            Error::TokenUsed => "token_used",
            Error::TokenExpired => "token_expired",
            Error::WrongBuyer => "wrong_buyer",
            Error::DocumentGone => "document_gone",
            Error::Upstream(_) => "upstream_failed",
            Error::Db(_) => "unavailable",
        }
    }

    fn internal(&self) -> bool {
        matches!(self, Error::Db(_) | Error::Upstream(_))
    }

    fn body(&self) -> ErrorBody {
        let message = match self {
            Error::Db(_) => "the database is temporarily unavailable".to_owned(),
            other => other.to_string(),
        };
        let mut body = ErrorBody::new(self.code(), message);
        match self {
            Error::PaymentRequired {
                amount_due,
                pay_to,
                issuer_url,
            } => {
                body.error.details = Some(serde_json::json!({
                    "amount_due": amount_due,
                    "pay_to": pay_to,
                    "issuer_url": issuer_url,
                }));
            }
            Error::CurrencyNotAccepted { currencies } => {
                body.error.details = Some(serde_json::json!({ "currencies": currencies }));
            }
            _ => {}
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

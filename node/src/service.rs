//! What every service's HTTP side shares, written once: the error trait each crate's one error
//! enum implements, the body policy, request authentication and parsing, signed answers, the
//! descriptor and the 404 route, and Prometheus text.
//!
//! The body policy, the same at every service: a body over the endpoint's limit is
//! `413 body_too_large` (refused from `Content-Length` before it is buffered); a body that
//! trickles in slower than [`crate::http::BODY_RATE_MIN_BYTES_PER_S`] after the grace period is
//! `408 body_incomplete`; a body cut off mid-way is `400 body_incomplete`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::{AuthError, EntityId, ErrorBody, KeyPair, RequestKind, VerifiedRequest};

use crate::http::BodyError;

/// A service's error enum: an HTTP status, a stable snake_case code and a message for people.
/// Implement it once per crate; [`error_response`] and [`signed_result`] do the rest.
pub trait ServiceError: std::fmt::Display {
    fn status(&self) -> StatusCode;
    /// The stable code clients match on.
    fn code(&self) -> &'static str;
    /// A failure of this server (storage, database), not of the request: logged, and its
    /// details kept out of the answer by [`ServiceError::body`] implementations.
    fn internal(&self) -> bool {
        self.status().is_server_error()
    }
    /// The JSON error body (DESIGN section 3). Override to add `details` or hide internals.
    fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}

impl BodyError {
    /// The status of the body policy (see the module documentation).
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TooSlow => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The stable code of the body policy.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "body_too_large",
            BodyError::TooSlow | BodyError::Read(_) => "body_incomplete",
        }
    }
}

/// A body that is not the JSON an endpoint takes. Each crate maps it to its own code
/// (`invalid_json`, or `invalid_request` at the cdn).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidJson(pub String);

/// The error as a JSON response; internal errors are logged.
pub fn error_response<E: ServiceError>(e: &E) -> HttpResponse {
    if e.internal() {
        tracing::error!(error = %e, code = e.code(), "request failed");
    }
    HttpResponse::build(e.status()).json(e.body())
}

/// Read a request body under the body policy.
pub async fn body<E: From<BodyError>>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: u64,
) -> Result<bytes::Bytes, E> {
    Ok(crate::http::read_body(req, payload, limit).await?)
}

/// A signed command's body, read within `limit` and authenticated for `key`'s server; the
/// error response to send otherwise (the shape of every small command endpoint in this
/// crate: records, credit lines).
pub async fn signed_command<E>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: u64,
    key: &KeyPair,
) -> Result<(bytes::Bytes, VerifiedRequest), actix_web::HttpResponse>
where
    E: ServiceError + From<BodyError> + From<AuthError>,
{
    let bytes = body::<E>(req, payload, limit)
        .await
        .map_err(|e| error_response(&e))?;
    let verified = authenticate::<E>(req, &bytes, key, RequestKind::Command)
        .map_err(|e| error_response(&e))?;
    Ok((bytes, verified))
}

/// Parse a JSON body.
pub fn parse_json<T: serde::de::DeserializeOwned, E: From<InvalidJson>>(
    bytes: &[u8],
) -> Result<T, E> {
    serde_json::from_slice(bytes).map_err(|e| E::from(InvalidJson(e.to_string())))
}

/// Verify a signed request addressed to `key`'s entity (DESIGN section 3).
pub fn authenticate<E: From<AuthError>>(
    req: &HttpRequest,
    body: &[u8],
    key: &KeyPair,
    kind: RequestKind,
) -> Result<VerifiedRequest, E> {
    Ok(crate::http::authenticate(
        req,
        body,
        key.entity().as_str(),
        kind,
    )?)
}

/// [`authenticate`] with the signature checked in a batch by `verifier` (issue 21).
pub async fn authenticate_batched<E: From<AuthError>>(
    req: &HttpRequest,
    body: &[u8],
    key: &KeyPair,
    kind: RequestKind,
    verifier: &crate::verifier::Verifier,
) -> Result<VerifiedRequest, E> {
    Ok(crate::http::authenticate_batched(req, body, key.entity().as_str(), kind, verifier).await?)
}

/// [`authenticate`] for bodies that may be large (uploads): the body is hashed off the async
/// workers when it is over [`crate::http::BODY_HASH_INLINE_BYTES_MAX`].
pub async fn authenticate_body<E: From<AuthError>>(
    req: &HttpRequest,
    body: bytes::Bytes,
    key: &KeyPair,
    kind: RequestKind,
) -> Result<VerifiedRequest, E> {
    Ok(crate::http::authenticate_body(req, body, key.entity().as_str(), kind).await?)
}

/// A command's outcome as (status, JSON body): the answer, or the error's body. Internal
/// errors are logged.
pub fn outcome<E: ServiceError>(result: Result<(u16, String), E>) -> (u16, String) {
    match result {
        Ok(answer) => answer,
        Err(e) => {
            if e.internal() {
                tracing::error!(error = %e, code = e.code(), "command failed");
            }
            (
                e.status().as_u16(),
                serde_json::to_string(&e.body()).unwrap_or_default(),
            )
        }
    }
}

/// A command's outcome, success or refusal, signed for its sender (the receipt).
pub fn signed_result<E: ServiceError>(
    key: &KeyPair,
    verified: &VerifiedRequest,
    result: Result<(u16, String), E>,
) -> HttpResponse {
    let (status, body) = outcome(result);
    crate::http::signed_response(key, verified, status, body)
}

/// `GET /.well-known/lcp`: `{"protocol": "lcp/1", "role", "entity"}` and the service's own
/// fields from `extra` (an object).
pub fn descriptor(role: &str, entity: &EntityId, extra: serde_json::Value) -> HttpResponse {
    let mut d = serde_json::json!({"protocol": "lcp/1", "role": role, "entity": entity});
    if let (Some(d), serde_json::Value::Object(extra)) = (d.as_object_mut(), extra) {
        d.extend(extra);
    }
    HttpResponse::Ok().json(d)
}

/// The answer for a path no route takes: `404 not_found`.
pub fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(ErrorBody::new("not_found", "no such endpoint"))
}

/// The default service of every server: [`not_found`].
pub async fn not_found_route() -> HttpResponse {
    not_found()
}

/// Prometheus text exposition (format 0.0.4), written line by line.
#[derive(Debug, Default)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    pub fn gauge(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.push(name, "gauge", value);
        self
    }

    pub fn counter(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.push(name, "counter", value);
        self
    }

    /// One metric with a sample per label value (`name{label="value"} n`), under one TYPE
    /// line. Label values are escaped as the exposition format requires.
    pub fn labelled<V: std::fmt::Display>(
        mut self,
        name: &str,
        kind: &str,
        label: &str,
        samples: impl IntoIterator<Item = (String, V)>,
    ) -> Self {
        use std::fmt::Write;
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (value_of_label, value) in samples {
            let escaped = value_of_label
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            // Writing to a String cannot fail.
            let _ = writeln!(self.text, "{name}{{{label}=\"{escaped}\"}} {value}");
        }
        self
    }

    fn push(&mut self, name: &str, kind: &str, value: impl std::fmt::Display) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(self.text, "# TYPE {name} {kind}\n{name} {value}\n");
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The exposition, with the process's own gauges every service serves appended
    /// ([`process_gauges`]).
    pub fn response(self) -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(self.text + &process_gauges())
    }
}

/// `process_resident_memory_bytes` (VmRSS) and `process_cpu_seconds_total` (user + system
/// CPU of every thread), as Prometheus' own process collector names them, as exposition
/// text: every service serves them, so memory and CPU per request can be watched from
/// outside (`lcp bench` divides the issuer's CPU by the transfers it made).
pub fn process_gauges() -> String {
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let cpu_s = process_cpu_s(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    format!(
        "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu_s:.2}\n",
        rss_kib.saturating_mul(1024)
    )
}

/// Linux's USER_HZ, the unit of `/proc/*/stat` CPU times: 100 on every architecture Linux
/// exposes to user space (the kernel converts from its own tick rate).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds from a `/proc/PID/stat` line (fields 14 and 15, counted after
/// the command name, which may itself hold spaces and parentheses); 0 when unreadable.
pub fn process_cpu_s(stat: &str) -> f64 {
    let Some(after_name) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    // After the name: state (field 3) ... utime is field 14, stime field 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11).saturating_add(ticks(12)) as f64 / USER_HZ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_prometheus_text() {
        let m = Metrics::default()
            .gauge("a_things", 3)
            .counter("b_total", 7);
        assert_eq!(
            m.text(),
            "# TYPE a_things gauge\na_things 3\n# TYPE b_total counter\nb_total 7\n"
        );
    }

    #[test]
    fn labelled_samples_share_one_type_line_and_escape_values() {
        let m = Metrics::default().labelled(
            "x_total",
            "counter",
            "issuer",
            [("a\"b".to_owned(), 1u64), ("c".to_owned(), 2)],
        );
        assert_eq!(
            m.text(),
            "# TYPE x_total counter\nx_total{issuer=\"a\\\"b\"} 1\nx_total{issuer=\"c\"} 2\n"
        );
    }

    #[test]
    fn cpu_seconds_come_from_fields_14_and_15() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3";
        assert_eq!(process_cpu_s(stat), 3.25);
        assert_eq!(process_cpu_s("garbage"), 0.0);
        let own = process_cpu_s(&std::fs::read_to_string("/proc/self/stat").expect("stat"));
        assert!(own >= 0.0);
        assert!(process_gauges().contains("process_cpu_seconds_total "));
    }

    #[test]
    fn the_body_policy_is_one_table() {
        let big = BodyError::TooLarge { limit: 10 };
        assert_eq!((big.status().as_u16(), big.code()), (413, "body_too_large"));
        assert_eq!(BodyError::TooSlow.status().as_u16(), 408);
        assert_eq!(BodyError::Read("cut".into()).code(), "body_incomplete");
    }
}

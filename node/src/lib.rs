//! What every participant shares, server or CLI (DESIGN section 2).
//!
//! Code map:
//! - [`client`]: the signed HTTP client every typed client builds on, counters
//!   ([`client::ClockCounter`], [`client::CounterStore`]), URL checks.
//! - [`keyfile`]: key files (0600, refused when readable by others).
//! - [`datadir`]: one process per data directory (a lock file holding the pid).
//! - [`cli`]: logging, error exits, `outln!`, byte and amount parsing, the help check.
//! - [`process`]: starting a server binary and reading the URL it prints.
//! - [`html`]: escaping for the services' pages.
//! - `http` (feature `server`): running an actix-web server, reading bodies, verifying signed
//!   requests, signing answers.
//! - `service` (feature `server`): the error trait every service's error enum implements, the
//!   one body policy, JSON parsing, signed results, the descriptor and 404 routes, Prometheus
//!   text.
//! - `commands` (feature `server`): the idempotent command log, written inside the caller's
//!   transaction.
//! - `paywords` (feature `server`): the vendor's side of paywords: accept words inside the
//!   caller's transaction, redeem in batches, follow the issuers' fraud proofs.
//! - `records` (feature `server`): records (TrustChain half-blocks): the server's own chain,
//!   others' blocks, fork proofs, agreeing to proposals, and the `/v1/records` routes.
//! - `verifier` (feature `server`): request signatures checked in batches on a thread of
//!   their own ([`protocol::ed25519::verify_batch`]).
//! - `testing` (feature `testing`): headless Chromium and bounded waits for tests.
//!
//! Invariant: without the `server` feature this crate pulls in no server stack (no actix-web,
//! no database), so a CLI that only talks to services stays small.

pub mod cli;
pub mod client;
#[cfg(feature = "server")]
pub mod commands;
#[cfg(feature = "server")]
pub mod credit;
pub mod datadir;
pub mod html;
#[cfg(feature = "server")]
pub mod http;
pub mod keyfile;
#[cfg(feature = "server")]
pub mod paywords;
pub mod process;
#[cfg(feature = "server")]
pub mod records;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "server")]
pub mod verifier;

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The wall clock in Unix seconds (0 if the clock is before 1970). Signed because the
/// databases store times as BIGINT and expiries are compared with it.
pub fn now_s() -> i64 {
    i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX)
}

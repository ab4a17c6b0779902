//! Lightweight Currency Protocol (DESIGN section 4): the issuer service and its ledger, the
//! wallet client, and the pieces of the `lcp` binary.
//!
//! Code map:
//! - [`server`]: the issuer's HTTP API (thin handlers: parse, authenticate, call [`ledger`]).
//! - [`ledger`]: the one ledger writer (group commit) and the read queries.
//! - [`client`]: the generic signed HTTP client (every service's clients build on it), the issuer
//!   client and the wallet's persisted counters.
//! - [`http`]: running any service's actix-web server (thread, bind, TLS, stop on drop).
//! - [`keyfile`]: key files (0600, refused when readable by others).
//! - [`bench`], [`demo`]: the load generator and the README's walk-through.

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod datadir;
pub mod demo;
pub mod error;
pub mod http;
pub mod keyfile;
pub mod ledger;
pub mod metrics;
pub mod process;
pub mod schema;
pub mod server;
pub mod testing;

pub use error::Error;

/// The wall clock in Unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The issuer's migrations, embedded at build time.
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/lcp/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/lcp/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

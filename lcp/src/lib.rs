//! Lightweight Currency Protocol (DESIGN section 4): the issuer service and its ledger, the
//! wallet CLI, and the pieces of the `lcp` binary.
//!
//! Code map:
//! - [`server`]: the issuer's HTTP API (thin handlers: parse, authenticate, call [`ledger`]).
//! - [`ledger`]: the one ledger writer (group commit) and the read queries.
//! - [`broker`]: paywords (DESIGN 10): chains sold into escrow, redemptions checked before
//!   the writer pays them (`ledger::broker`), chain and fraud pages, the escrow sweeper.
//! - [`metrics`]: the issuer's counters at `GET /metrics`.
//! - `testing` (feature `testing`): start an issuer and mint funds in other crates' tests.
//! - [`bench`], [`demo`]: the load generator and the README's walk-through.
//!
//! The wallet's client is `clients::issuer`; key files, the HTTP runner and the signed client
//! are in `node`.

pub mod bench;
pub mod broker;
pub mod config;
pub mod demo;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod records;
pub mod schema;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;

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

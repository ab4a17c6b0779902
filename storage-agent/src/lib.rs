//! The storage agent: a peer daemon that sells disk as signed, paid, audited storage contracts
//! (DESIGN section 5).
//!
//! Code map: [`agent`] is the domain (contracts, charging, objects, retrievals, audits, payments,
//! expiry); [`server`] the thin HTTP layer; [`tasks`] the background loops (payment watcher,
//! reaper, market heartbeat); [`store`] object bytes through object_store; [`client`] the
//! buyer's library; [`config`] `DIR/config.toml`.

pub mod agent;
pub mod charts;
pub mod config;
pub mod dashboard;
pub mod error;
pub mod history_page;
pub mod owner;
pub mod schema;
pub mod serve;
pub mod server;
pub mod store;
pub mod tasks;

pub use error::Error;

/// The agent's migrations, embedded at build time.
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/storage-agent/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/storage-agent/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

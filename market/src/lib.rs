//! The market (DESIGN section 6): an offer book fed by agents' signed heartbeats, a reliability
//! model fed by audits, probes and buyers' reports, and selection of agents for k-of-n storage
//! at the lowest price that meets a durability target.
//!
//! Code map: [`select`] and [`reliability`] are pure (no IO); [`book`] is the domain over the
//! database (offers, matches, registered contracts, reports, reputations); [`auditor`] the
//! background loops (audits and uptime probes); [`server`] the thin HTTP layer and [`page`] the
//! web page; [`serve`] wires it all up. Buyers talk to it through `clients::market` and the
//! `protocol::book` wire types.

pub mod auditor;
pub mod bench;
pub mod book;
pub mod error;
pub mod page;
pub mod ranking;
pub mod reliability;
pub mod schema;
pub mod select;
pub mod serve;
pub mod server;
pub mod tools;

pub use error::Error;

/// The market's migrations, embedded at build time.
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/market/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/market/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

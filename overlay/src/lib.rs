//! The bid-solicitation overlay of seed 001 (DESIGN 13): peers that trade documents (files
//! named by their SHA-256) through paid bid solicitations, with commissions for the peers on
//! the way, referral or concealment of sources, node discovery and three trust policies.
//!
//! Code map: the wire types are [`protocol::overlay`]; the client is [`clients::peer`].
//! [`peer`] is the domain over the peer's database (its children: documents, neighbours,
//! money, solicit, deals, status); [`server`] the thin HTTP layer; [`serve`] the wiring;
//! [`page`] the status page; [`buyer`] what `peer find` and `peer get` do; [`decide`] the
//! peer's decisions, pure, which [`sim`] runs on a simulated network of many peers.

pub mod buyer;
pub mod decide;
pub mod error;
pub mod page;
pub mod peer;
pub mod schema;
pub mod serve;
pub mod server;
pub mod sim;

pub use error::Error;

/// The peer's migrations, embedded at build time.
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/peer/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/peer/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

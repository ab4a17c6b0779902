//! Video distribution (DESIGN section 8): the publisher service sells views and hands out
//! retrieval instructions, `cdn publish` cuts a file into verified pieces stored on several
//! agents, and the viewer's gateway streams a content with `Range` support from the agents,
//! verifying every piece and failing over between replicas.
//!
//! Code map: the wire types (manifest, uploads, catalog, views, instructions) are
//! [`protocol::cdn`]; [`manifest`] re-exports the manifest and its piece arithmetic. Pure.
//! [`publisher`] is the publisher's domain over its database (its children: buying contracts,
//! placement, credit, selling views, scaling, status); [`server`] its thin HTTP layer and
//! [`serve`] the wiring; [`gateway`] the viewer's side (its child `gateway::http` the routes);
//! [`publish`] the publishing client; [`page`] the HTML pages.

pub mod error;
pub mod gateway;
pub mod manifest;
pub mod page;
pub mod publish;
pub mod publisher;
pub mod schema;
pub mod serve;
pub mod server;

pub use error::Error;

/// The publisher's migrations, embedded at build time.
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/cdn/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/cdn/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

//! Typed clients of every service (DESIGN section 2). Anything that talks to a service uses
//! these and `protocol` types; no client reaches into a server crate.
//!
//! Code map:
//! - [`issuer`]: a wallet's view of one issuer (transfers, balance, deposits, currency).
//! - [`agent`]: a buyer's view of one storage agent (offer, contracts, objects, retrievals,
//!   audits checked against the Merkle root).
//! - [`market`]: the offer book, matches, registrations and reports.
//!
//! Invariant: this crate compiles no server or database stack (`cargo tree -p clients`
//! shows no actix-web, diesel or object_store), so the CLIs that use it stay small.

pub mod agent;
pub mod issuer;
pub mod market;

pub use node::client::{ClientError, ClientOptions};

//! Typed clients of every service (DESIGN section 2). Anything that talks to a service uses
//! these and `protocol` types; no client reaches into a server crate.
//!
//! Code map:
//! - [`bank`]: an app's view of its customer's account at a bank (`Authorization: Bearer`),
//!   which an [`issuer::IssuerClient`] pays through when made with `through_bank`.
//! - [`free_riders`]: a vendor's check, by the market's records, that an entity does not
//!   consume far more than it contributes (DESIGN 11).
//! - [`issuer`]: a wallet's view of one issuer (transfers, balance, deposits, currency).
//! - [`agent`]: a buyer's view of one storage agent (offer, contracts, objects, retrievals,
//!   audits checked against the Merkle root).
//! - [`market`]: the offer book, matches, registrations and reports.
//! - [`names`]: payees by entity id or by name (`bob@bank.example`, DESIGN 14).
//! - [`procure`]: buying a contract, once: a matched agent's offer -> terms -> pay -> propose
//!   -> register with the market (backup, cdn, devnet).
//! - [`pay`]: paying for a charged request, once: `402` -> pay -> retry within one bounded
//!   wait.
//! - [`peer`]: the overlay's peers (DESIGN 13): terms, solicit, accept, contest, retrieve.
//! - [`paywords`]: paying a charged request with the words for its charge (a chain bought
//!   when none is left).
//! - [`records`]: a CLI's own record chain beside its key (propose, send, keep agreements).
//! - [`wallet`]: the payer's payword chains beside its key (buy, blocks per vendor, words).
//!
//! Invariant: this crate compiles no server or database stack (`cargo tree -p clients`
//! shows no actix-web, diesel or object_store), so the CLIs that use it stay small.

pub mod agent;
pub mod bank;
pub mod credit;
pub mod free_riders;
pub mod issuer;
pub mod market;
pub mod names;
pub mod pay;
pub mod paywords;
pub mod peer;
pub mod procure;
pub mod records;
pub mod wallet;

pub use node::client::{ClientError, ClientOptions};

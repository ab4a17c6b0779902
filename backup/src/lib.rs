//! Archival backup (DESIGN section 7): restic's model spread across the market. Files are cut
//! by content-defined chunking, deduplicated by keyed hash, compressed, encrypted, gathered into
//! packs, and every pack is erasure-coded into k data + m parity shards, each on a different
//! agent, under contracts bought through the market and paid through LCP.
//!
//! Code map: [`chunker`] content-defined chunking; [`filter`] --exclude/--include patterns; [`crypto`] keys and sealing; [`erasure`] Reed-Solomon; [`pack`] chunks to packs;
//! [`tree`] what a snapshot records; [`repo`] the repository, the local cache and recovery
//! through the market (`repo/shards.rs` objects as shards on the agents, paying on `402`;
//! `repo/slots.rs` buying and replacing slots' contracts; `repo/locks.rs` locks); [`commands`] init, create, snapshots, restore; [`maintain`]
//! check, repair, forget, prune, stats; [`purchases`] the journal of contracts bought, recorded
//! before they are paid.

pub mod chunker;
pub mod commands;
pub mod crypto;
pub mod erasure;
pub mod error;
pub mod filter;
pub mod maintain;
pub mod pack;
pub mod progress;
pub mod purchases;
pub mod records;
pub mod repo;
pub mod tree;

pub use error::Error;

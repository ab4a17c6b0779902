//! Synthetic agents (keys, prices, limits, networks) and the match shapes the bench asks for.

use std::sync::Arc;

use protocol::market::{self, Offer, OfferCurrency};
use protocol::{EntityId, Envelope, KeyPair};
use serde::Serialize;

use super::BenchError;
use crate::book::MatchRequest;

/// How long a synthetic offer is valid after it is issued: a storage agent's own
/// (`storage_agent::config::OFFER_TTL_S`), so heartbeats look like a real agent's.
pub const OFFER_VALIDITY_S: i64 = 600;
const MIB: u64 = 1 << 20;
const DAY_S: u64 = 86_400;
/// Largest blocks the agents sell: every match shape's shard fits the smallest, so limits
/// leave agents out only through durations (and through prices, which vary).
const BLOCK_BYTES_CHOICES: [u64; 5] = [16 * MIB, 64 * MIB, 256 * MIB, 1 << 30, 4 << 30];
/// Longest contracts the agents sell: a quarter of them sell no 30-day contract.
const DURATION_S_CHOICES: [u64; 4] = [7 * DAY_S, 30 * DAY_S, 90 * DAY_S, 365 * DAY_S];

/// splitmix64: a small seeded generator, so a seed gives the same book every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> Option<T> {
        if choices.is_empty() {
            return None;
        }
        let i = usize::try_from(self.next_u64() % choices.len() as u64).ok()?;
        choices.get(i).copied()
    }
}

/// One synthetic agent: its key and what its offer says.
#[derive(Debug)]
pub struct Agent {
    pub key: Arc<KeyPair>,
    pub network: usize,
    pub endpoint: String,
    pub free_bytes: u64,
    pub block_bytes_max: u64,
    pub duration_s_max: u64,
    pub storage_per_gib_day: u64,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    pub contract_min: u64,
}

/// The currency every synthetic offer is priced in.
#[derive(Debug, Clone)]
pub struct Currency {
    pub issuer: EntityId,
    pub issuer_url: String,
}

impl Agent {
    /// `count` agents' keys and terms (endpoints empty until the stand-in has bound).
    /// Agent `i` is on network `i % networks`.
    pub fn generate(count: usize, networks: usize, seed: u64) -> Result<Vec<Agent>, BenchError> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let key = Arc::new(KeyPair::generate().map_err(|e| BenchError::Key(e.to_string()))?);
            let block_bytes_max = rng.pick(&BLOCK_BYTES_CHOICES).unwrap_or(64 * MIB);
            out.push(Agent {
                key,
                network: i % networks.max(1),
                endpoint: String::new(),
                free_bytes: block_bytes_max.saturating_mul(rng.between(1, 64)),
                block_bytes_max,
                duration_s_max: rng.pick(&DURATION_S_CHOICES).unwrap_or(30 * DAY_S),
                // Minor units: a factor of 25 between the cheapest and the dearest storage.
                storage_per_gib_day: rng.between(20, 500),
                write_per_kib: rng.between(0, 2),
                read_per_kib: rng.between(0, 2),
                contract_min: rng.between(1, 50),
            });
        }
        Ok(out)
    }

    /// The offer as the agent issues it at `now` (Unix seconds), signed by the agent.
    pub fn signed_offer(&self, currency: &Currency, now: i64) -> Result<Envelope, BenchError> {
        let offer = Offer {
            agent: self.key.entity().clone(),
            endpoint: self.endpoint.clone(),
            issued_at: market::format_rfc3339(now),
            expires_at: market::format_rfc3339(now + OFFER_VALIDITY_S),
            free_bytes: self.free_bytes,
            block_bytes_max: self.block_bytes_max,
            duration_s_max: self.duration_s_max,
            currencies: vec![OfferCurrency {
                issuer: currency.issuer.clone(),
                issuer_url: currency.issuer_url.clone(),
                storage_per_gib_day: self.storage_per_gib_day,
                write_per_kib: self.write_per_kib,
                read_per_kib: self.read_per_kib,
                contract_min: self.contract_min,
                pay_to: None,
            }],
        };
        Envelope::sign_json(&self.key, market::OFFER_TYPE, &offer)
            .map_err(|e| BenchError::Sign(e.to_string()))
    }
}

/// One kind of match the bench asks for.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Shape {
    pub name: String,
    pub data_shards: u64,
    /// `None`: the market chooses n.
    pub total_shards: Option<u64>,
    pub max_failure_probability: f64,
    pub duration_s: u64,
    pub shard_bytes: u64,
}

impl Shape {
    fn new(k: u64, n: Option<u64>, target: f64, days: u64, shard_mib: u64) -> Shape {
        let n_text = n.map_or("auto".to_owned(), |n| n.to_string());
        Shape {
            name: format!("k{k} n{n_text} {target:.0e} {days}d {shard_mib}MiB"),
            data_shards: k,
            total_shards: n,
            max_failure_probability: target,
            duration_s: days * DAY_S,
            shard_bytes: shard_mib * MIB,
        }
    }

    /// The shapes, in the order matches cycle through them, with k at most `k_max`. Each is
    /// feasible for a book of unvetted agents at the prior p_fail (0.1 over 30 days) with
    /// enough agents on distinct networks: n = 8, 20, 18 (20 given), 24, 34 (36 given) and 41
    /// at the prior. `k10 nauto 1e-6` is the target shape.
    pub fn all(k_max: u64) -> Vec<Shape> {
        [
            Shape::new(4, None, 1e-3, 30, 4),
            Shape::new(10, None, 1e-6, 30, 16),
            Shape::new(6, Some(20), 1e-9, 30, 1),
            Shape::new(16, None, 1e-3, 30, 8),
            Shape::new(20, Some(36), 1e-6, 30, 4),
            // At 30 days no n up to k + 16 reaches 1e-9 at the prior; a week does (n = 41).
            Shape::new(30, None, 1e-9, 7, 2),
        ]
        .into_iter()
        .filter(|s| s.data_shards <= k_max)
        .collect()
    }

    pub fn request(&self, currency: &EntityId) -> MatchRequest {
        MatchRequest {
            currency: currency.to_string(),
            shard_bytes: self.shard_bytes,
            data_shards: self.data_shards,
            total_shards: self.total_shards,
            duration_s: self.duration_s,
            // Each shard read back once over the contract.
            expected_read_bytes: self.shard_bytes,
            max_failure_probability: self.max_failure_probability,
            exclude: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_meet_their_targets_at_the_prior() {
        // The prior p30 = 0.1 scaled to each shape's duration, as reliability::p_fail does.
        for s in Shape::all(u64::MAX) {
            let p = 1.0 - 0.9f64.powf(s.duration_s as f64 / (30 * DAY_S) as f64);
            let k = s.data_shards as usize;
            let n = s
                .total_shards
                .map_or(k + crate::select::EXTRA_SHARDS_MAX, |n| n as usize);
            let loss = crate::select::loss_probability(&vec![p; n], k);
            assert!(
                loss <= s.max_failure_probability,
                "{}: loss {loss} at n = {n}",
                s.name
            );
        }
        assert!(Shape::all(10).iter().all(|s| s.data_shards <= 10));
    }

    #[test]
    fn a_seed_gives_the_same_terms() {
        let a = Agent::generate(5, 2, 3).expect("agents");
        let b = Agent::generate(5, 2, 3).expect("agents");
        let terms = |v: &[Agent]| -> Vec<(u64, u64, u64, usize)> {
            v.iter()
                .map(|a| {
                    (
                        a.storage_per_gib_day,
                        a.block_bytes_max,
                        a.duration_s_max,
                        a.network,
                    )
                })
                .collect()
        };
        assert_eq!(terms(&a), terms(&b));
        assert_eq!(a[3].network, 1);
    }
}

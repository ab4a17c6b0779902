//! Free riders (DESIGN 11, seed 004): a vendor (an agent giving tabs, a publisher giving free
//! views) asks the market whether an entity consumed more than it contributed in the agreed
//! records, by more than the vendor's threshold, and keeps the answer a while.
//!
//! A market that cannot be asked, or does not answer within [`FREE_RIDER_WAIT_MS_MAX`], gives
//! no verdict: the entity is served as usual (the vendor's other limits still bound the risk).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verdict is kept before the market is asked again.
pub const FREE_RIDER_CACHE_S: u64 = 300;
/// Entities whose verdict is kept; past it the memory starts over.
const FREE_RIDERS_KEPT_MAX: usize = 65_536;
/// Longest wait for the market's answer.
pub const FREE_RIDER_WAIT_MS_MAX: u64 = 2_000;

/// A vendor's free-rider check: its threshold (minor units; 0 turns the check off) and the
/// verdicts it keeps.
pub struct FreeRiders {
    threshold: u64,
    verdicts: Mutex<HashMap<String, (Instant, bool)>>,
}

impl FreeRiders {
    pub fn new(threshold: u64) -> FreeRiders {
        FreeRiders {
            threshold,
            verdicts: Mutex::new(HashMap::new()),
        }
    }

    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Whether `entity`'s recorded consumption exceeds its contribution by more than the
    /// threshold, by the market at `market_url` (`GET /v1/reputation`). False when the check
    /// is off, there is no market, or it does not answer.
    pub async fn is_free_rider(
        &self,
        http: &reqwest::Client,
        market_url: Option<&str>,
        entity: &str,
    ) -> bool {
        let Some(market) = market_url.filter(|_| self.threshold > 0) else {
            return false;
        };
        let kept = self
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(entity)
            .copied();
        if let Some((at, verdict)) = kept {
            if at.elapsed() < Duration::from_secs(FREE_RIDER_CACHE_S) {
                return verdict;
            }
        }
        let url = format!(
            "{}/v1/reputation?entity={}",
            market.trim_end_matches('/'),
            node::client::encode_query_value(entity)
        );
        let asked = async {
            let resp = http
                .get(&url)
                .timeout(Duration::from_millis(FREE_RIDER_WAIT_MS_MAX))
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?;
            resp.json::<protocol::book::EntityReputation>().await.ok()
        };
        let Some(rep) = asked.await else {
            return false;
        };
        let verdict = rep.consumed - rep.contributed > self.threshold as f64;
        let mut map = self
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= FREE_RIDERS_KEPT_MAX {
            map.clear();
        }
        map.insert(entity.to_owned(), (Instant::now(), verdict));
        verdict
    }
}

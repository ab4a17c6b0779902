//! The agent's in-memory guards: signed reads already served ([`SeenReads`]), the read cache
//! ([`ReadCache`]) and one lock per contract ([`ContractLocks`]).

use super::*;

/// Signed reads seen within the freshness window, by (buyer, counter): a read is charged, so a
/// captured one must not be served (and charged) again. The set lives in memory, so reads signed
/// before this process started are refused: they could be replays the set no longer knows.
/// A buyer is kept as a keyed 64-bit hash of its entity id (the key random per process, so
/// no one can make two entities collide on purpose): an entry is then 24 bytes, not an owned
/// string, and the set holds ten times the reads in the same memory.
pub(super) struct SeenReads {
    started_ms: u64,
    /// (buyer's hash, counter) -> the read's signing time (ms).
    seen: Mutex<HashMap<(u64, u64), u64>>,
    buyer_hash: std::collections::hash_map::RandomState,
    /// Reads admitted since the last sweep of aged entries.
    since_sweep: std::sync::atomic::AtomicU32,
}

/// Signed reads remembered at once; past it, new reads wait for old ones to age out (503).
/// An entry is remembered for the freshness window and a margin (360 s), so this bounds the
/// sustained rate of signed reads to about 2,000,000 / 360 = 5,500 a second, in at most
/// about 100 MiB (24 bytes an entry and the table's spare room). At 200,000 owned-string entries
/// it was 555 a second, below what one agent serves by payword.
const SEEN_READS_MAX: usize = 2_000_000;
/// Aged entries are swept every this many reads, so the set holds about one freshness
/// window of reads instead of growing to [`SEEN_READS_MAX`] (tens of MiB) before anything
/// leaves.
const SEEN_READS_SWEEP_EVERY: u32 = 4_096;
/// Kept past the freshness window, for a clock that stepped back.
const SEEN_READS_MARGIN_MS: u64 = 60_000;

impl SeenReads {
    pub(super) fn new() -> SeenReads {
        SeenReads {
            started_ms: node::now_ms(),
            seen: Mutex::new(HashMap::new()),
            buyer_hash: std::collections::hash_map::RandomState::new(),
            since_sweep: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// Entries signed so long ago that verification refuses them now: a replay of one can
    /// no longer get here, so it need not be remembered.
    fn horizon_ms(now_ms: u64) -> u64 {
        now_ms.saturating_sub(protocol::request::FRESHNESS_MS_MAX + SEEN_READS_MARGIN_MS)
    }

    pub(super) fn admit(&self, who: &EntityId, counter: u64, time_ms: u64) -> Result<(), Error> {
        if time_ms < self.started_ms {
            return Err(Error::Auth(protocol::AuthError::StaleTime));
        }
        let now = node::now_ms();
        let buyer = std::hash::BuildHasher::hash_one(&self.buyer_hash, who.as_str());
        // The map stays usable after a panic elsewhere: entries are independent.
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let sweep_due = self
            .since_sweep
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            >= SEEN_READS_SWEEP_EVERY;
        if sweep_due || seen.len() >= SEEN_READS_MAX {
            self.since_sweep
                .store(0, std::sync::atomic::Ordering::Relaxed);
            let horizon = Self::horizon_ms(now);
            seen.retain(|_, t| *t >= horizon);
            if seen.len() >= SEEN_READS_MAX {
                return Err(Error::Overloaded);
            }
        }
        match seen.entry((buyer, counter)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(Error::CounterReused { counter }),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(time_ms);
                Ok(())
            }
        }
    }
}

/// Recently read whole objects, by store key. A key names one immutable version of an object
/// (every PUT writes a new key), so an entry is never stale; it is only evicted, oldest
/// first, to stay within `bytes_max`. Audits never use it: they answer from the disk.
pub(super) struct ReadCache {
    pub(super) bytes_max: u64,
    pub(super) inner: Mutex<CacheInner>,
}

#[derive(Default)]
pub(super) struct CacheInner {
    entries: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: u64,
}

/// Largest object the read cache keeps.
const READ_CACHE_OBJECT_BYTES_MAX: u64 = 4 << 20;

impl ReadCache {
    pub(super) fn get(&self, key: &str) -> Option<Bytes> {
        if self.bytes_max == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.entries.get(key).cloned()
    }

    pub(super) fn insert(&self, key: &str, bytes: &Bytes) {
        let len = bytes.len() as u64;
        if len > READ_CACHE_OBJECT_BYTES_MAX || len > self.bytes_max {
            return;
        }
        // Entries are independent; a panic elsewhere leaves the map consistent enough.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.entries.contains_key(key) {
            return;
        }
        while inner.bytes + len > self.bytes_max {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.entries.remove(&old) {
                inner.bytes -= b.len() as u64;
            }
        }
        inner.entries.insert(key.to_owned(), bytes.clone());
        inner.order.push_back(key.to_owned());
        inner.bytes += len;
    }
}

/// One async lock per contract: commands on a contract run one at a time.
#[derive(Default)]
pub(super) struct ContractLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl ContractLocks {
    pub(super) fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means another thread panicked mid-insert; the map is still usable.
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LOCKS_MAX {
            // Requests for unknown ids add entries too; drop every lock nobody holds.
            map.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        map.entry(id.to_owned()).or_default().clone()
    }

    pub(super) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_reads_refuse_a_replay_and_forget_what_aged_out() {
        let reads = SeenReads {
            started_ms: 0,
            seen: Mutex::new(HashMap::new()),
            buyer_hash: std::collections::hash_map::RandomState::new(),
            since_sweep: std::sync::atomic::AtomicU32::new(0),
        };
        let key = protocol::KeyPair::generate().expect("key");
        let who = key.entity();
        let now = node::now_ms();
        let old = now - protocol::request::FRESHNESS_MS_MAX - SEEN_READS_MARGIN_MS - 1_000;
        reads.admit(who, 1, old).expect("first");
        reads.admit(who, 2, now).expect("second");
        assert!(matches!(
            reads.admit(who, 2, now),
            Err(Error::CounterReused { counter: 2 })
        ));
        // A sweep comes within SEEN_READS_SWEEP_EVERY reads: the aged entry goes, the recent
        // one stays.
        for c in 0..u64::from(SEEN_READS_SWEEP_EVERY) + 1 {
            reads.admit(who, 1_000 + c, now).expect("fresh read");
        }
        // Another buyer's read with a counter this one used is its own.
        let other = protocol::KeyPair::generate().expect("key");
        reads
            .admit(other.entity(), 2, now)
            .expect("another buyer's counter 2");
        assert!(matches!(
            reads.admit(who, 2, now),
            Err(Error::CounterReused { counter: 2 })
        ));
        let buyer = std::hash::BuildHasher::hash_one(&reads.buyer_hash, who.as_str());
        let seen = reads.seen.lock().expect("lock");
        assert!(!seen.contains_key(&(buyer, 1)), "aged entry kept");
        assert!(seen.contains_key(&(buyer, 2)), "recent entry lost");
    }
}

//! Records (DESIGN 11): the market crawls agents' record chains and, through them, the chains
//! of the buyers and gateways they deal with; checks every block it receives; keeps fork
//! proofs; leaves a forked entity out of every match and shows it in the book.
//!
//! A round visits at most [`CRAWL_AGENTS_PER_ROUND_MAX`] live agents (round robin over the
//! book), [`CRAWL_CONCURRENT_MAX`] at a time, each bounded in pages and time. At an agent it
//! reads the agent's own chain, the chains of at most [`CRAWL_COUNTERPARTIES_MAX`] of its
//! counter-parties as the agent holds them, and the agent's own fraud proofs.
//!
//! Invariants:
//! - Every block kept was validated here (`node::records::RecordBook::keep_blocks`); a proof
//!   from an agent is kept only if it verifies here.
//! - Each (agent, chain) pair is read again from the last block read there, so a head that
//!   was rewritten since is seen (a double-sign proof), and a chain continued from a rewritten
//!   block breaks its link (a broken-chain proof).
//! - The forked set used by matches is re-read from the database after every round, so
//!   proofs kept by another market process on the same database count too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use protocol::record::{RecordFraudsPage, RecordsPage, RECORDS_PAGE_MAX};

use super::Market;
use crate::error::Error;

/// Agents visited in one round.
pub const CRAWL_AGENTS_PER_ROUND_MAX: usize = 64;
/// Agents visited at once.
pub const CRAWL_CONCURRENT_MAX: usize = 8;
/// Counter-parties' chains read at one agent per visit.
pub const CRAWL_COUNTERPARTIES_MAX: usize = 32;
/// Pages of one chain read per visit (each at most `RECORDS_PAGE_MAX` blocks).
pub const CRAWL_PAGES_PER_CHAIN_MAX: usize = 4;
/// Longest wait for one answer of an agent.
pub const CRAWL_WAIT_MS_MAX: u64 = 3_000;
/// Default time between rounds (`market serve --crawl-interval-s`).
pub const CRAWL_INTERVAL_S_DEFAULT: u64 = 60;
/// (agent, chain) read positions remembered; past it the memory starts over (a chain is then
/// read again from its start at that agent: more work, nothing missed).
const CRAWL_CURSORS_MAX: usize = 1_000_000;

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CrawlReport {
    pub agents: usize,
    pub blocks_new: usize,
    pub proofs_new: usize,
    pub unreachable: usize,
    /// Agents whose vouch the ranking after the round changed.
    pub ranked: usize,
}

/// Where the crawl stands: the next agent of the round robin, and per (agent, chain) the
/// highest sequence number read there, per agent the fraud feed's cursor.
#[derive(Debug, Default)]
pub struct CrawlState {
    next_agent: std::sync::atomic::AtomicUsize,
    cursors: std::sync::Mutex<HashMap<(String, String), u64>>,
    fraud_cursors: std::sync::Mutex<HashMap<String, u64>>,
    /// Entities with a record fraud proof kept (as of the last round).
    forked: std::sync::RwLock<HashSet<String>>,
}

impl Market {
    /// One crawl round (see the module documentation).
    pub async fn crawl_round(&self) -> Result<CrawlReport, Error> {
        self.fresh_index(0).await?;
        let now = super::now_s();
        let mut live: Vec<(String, String)> = {
            let ix = self
                .index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ix.all()
                .filter(|a| a.offer_expires_s > now)
                .map(|a| (a.entity.clone(), a.endpoint.clone()))
                .collect()
        };
        live.sort();
        let mut report = CrawlReport::default();
        if !live.is_empty() {
            let take = live.len().min(CRAWL_AGENTS_PER_ROUND_MAX);
            let start = self.crawl.next_agent.fetch_add(take, Ordering::Relaxed) % live.len();
            let round: Vec<(String, String)> = (0..take)
                .map(|i| live[(start + i) % live.len()].clone())
                .collect();
            use futures_util::StreamExt;
            let visits: Vec<Result<(usize, usize), Error>> =
                futures_util::stream::iter(round.iter())
                    .map(|(agent, endpoint)| self.crawl_agent(agent, endpoint))
                    .buffer_unordered(CRAWL_CONCURRENT_MAX)
                    .collect()
                    .await;
            report.agents = round.len();
            for v in visits {
                match v {
                    Ok((blocks, proofs)) => {
                        report.blocks_new += blocks;
                        report.proofs_new += proofs;
                    }
                    Err(_) => report.unreachable += 1,
                }
            }
        }
        self.reload_forked().await?;
        report.ranked = self.rank_records().await?.agents_changed;
        Ok(report)
    }

    /// Re-read the entities with a proof kept (by any process on this database).
    pub async fn reload_forked(&self) -> Result<(), Error> {
        let forked = self
            .db
            .run(|conn| node::records::convicts(conn).map_err(records_error))
            .await?;
        *self
            .crawl
            .forked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = forked.into_iter().collect();
        Ok(())
    }

    /// Entities with a record fraud proof (as of the last crawl round).
    pub fn forked(&self) -> HashSet<String> {
        self.crawl
            .forked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether `entity` forked its chain (as of the last crawl round).
    pub fn is_forked(&self, entity: &str) -> bool {
        self.crawl
            .forked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(entity)
    }

    /// Visit one agent: its chain, its counter-parties' chains as it holds them, its proofs.
    /// Answers (blocks kept new, proofs kept new).
    async fn crawl_agent(&self, agent: &str, endpoint: &str) -> Result<(usize, usize), Error> {
        let base = endpoint.trim_end_matches('/');
        // Where each chain was read to; the cursors move only once its blocks are kept, so a
        // batch that fails to be kept is read again on the next visit.
        let mut read_to: Vec<(String, u64)> = Vec::new();
        let (own, to) = self.read_chain(agent, base, agent).await?;
        read_to.push((agent.to_owned(), to));
        let mut counterparties: Vec<String> = own
            .iter()
            .map(|b| b.link_public_key.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        counterparties.sort();
        counterparties.truncate(CRAWL_COUNTERPARTIES_MAX);
        let mut blocks = own;
        for cp in &counterparties {
            match self.read_chain(agent, base, cp).await {
                Ok((b, to)) => {
                    blocks.extend(b);
                    read_to.push((cp.clone(), to));
                }
                Err(e) => tracing::debug!(agent, chain = cp, error = %e, "not crawled"),
            }
        }
        // Conflicts among the blocks are kept as proofs by `keep_blocks` itself.
        let (new, found) = self
            .records
            .keep_blocks(blocks)
            .await
            .map_err(records_error)?;
        self.move_cursors(agent, read_to);
        let reported = self.read_proofs(agent, base).await.unwrap_or_default();
        let mut kept = found.len();
        if !reported.is_empty() {
            kept += self
                .db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| {
                        let mut kept = 0;
                        for p in &reported {
                            if node::records::note_fraud(conn, p).map_err(records_error)? {
                                kept += 1;
                            }
                        }
                        Ok::<_, Error>(kept)
                    })
                })
                .await?;
        }
        Ok((new, kept))
    }

    /// The blocks of `chain` that the agent at `base` holds, from the last one read there on
    /// (at most [`CRAWL_PAGES_PER_CHAIN_MAX`] pages), and the sequence number the next visit
    /// reads from once they are kept ([`Self::move_cursors`]).
    async fn read_chain(
        &self,
        agent: &str,
        base: &str,
        chain: &str,
    ) -> Result<(Vec<protocol::record::HalfBlock>, u64), Error> {
        let key = (agent.to_owned(), chain.to_owned());
        let mut from = self
            .crawl
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .copied()
            .unwrap_or(1)
            .max(1);
        let mut out = Vec::new();
        for _ in 0..CRAWL_PAGES_PER_CHAIN_MAX {
            let page: RecordsPage = self
                .crawl_get(&format!("{base}/v1/records?public_key={chain}&from={from}"))
                .await?;
            let full = page.blocks.len() >= RECORDS_PAGE_MAX;
            // Only blocks of the chain asked for, at or after `from`: an agent cannot make
            // the market keep blocks it did not ask for.
            let blocks: Vec<_> = page
                .blocks
                .into_iter()
                .filter(|b| b.public_key == chain && b.sequence_number >= from)
                .collect();
            let Some(last) = blocks.iter().map(|b| b.sequence_number).max() else {
                break;
            };
            out.extend(blocks);
            if !full || last >= page.head {
                break;
            }
            from = last + 1;
        }
        // The next visit reads again from the last block read, so a rewritten head shows.
        let read_to = out.iter().map(|b| b.sequence_number).max().unwrap_or(from);
        Ok((out, read_to.max(1)))
    }

    /// Move `agent`'s cursors to where its chains were read to (their blocks are kept).
    fn move_cursors(&self, agent: &str, read_to: Vec<(String, u64)>) {
        let mut cursors = self
            .crawl
            .cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (chain, to) in read_to {
            if cursors.len() >= CRAWL_CURSORS_MAX {
                cursors.clear();
            }
            cursors.insert((agent.to_owned(), chain), to);
        }
    }

    /// The agent's own fraud proofs since the last read, those that verify.
    async fn read_proofs(
        &self,
        agent: &str,
        base: &str,
    ) -> Result<Vec<protocol::record::RecordFraud>, Error> {
        let after = self
            .crawl
            .fraud_cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(agent)
            .copied()
            .unwrap_or(0);
        let page: RecordFraudsPage = self
            .crawl_get(&format!("{base}/v1/frauds?after={after}"))
            .await?;
        self.crawl
            .fraud_cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent.to_owned(), page.next);
        Ok(page
            .frauds
            .into_iter()
            .filter(|p| p.verify().is_ok())
            .collect())
    }

    async fn crawl_get<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        let unreachable = |e: String| Error::EndpointUnreachable(format!("{url}: {e}"));
        let resp = self
            .http
            .get(url)
            .timeout(std::time::Duration::from_millis(CRAWL_WAIT_MS_MAX))
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unreachable(format!("HTTP {}", resp.status())));
        }
        resp.json().await.map_err(|e| unreachable(e.to_string()))
    }
}

fn records_error(e: node::records::RecordsError) -> Error {
    match e {
        node::records::RecordsError::Db(e) => Error::Db(e),
        other => Error::Db(db::DbError::Task(other.to_string())),
    }
}

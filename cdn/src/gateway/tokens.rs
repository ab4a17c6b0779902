//! The gateway's `tokens` records (DESIGN 11): bytes each agent served it through retrieval
//! tokens, proposed from the wallet's chain to that agent, which agrees when its own books say
//! the same (`storage-agent`'s `agent::records`).
//!
//! A verified piece's token is noted here ([`TokensRead::note`]); every
//! [`TOKENS_RECORD_INTERVAL_MS`] the noted tokens are proposed, up to
//! [`TOKENS_PER_RECORD_MAX`] per record and agent. Playback never waits for a record. Tokens
//! that could not be proposed (the agent unreachable, or an earlier record to it not agreed
//! yet) wait for the next round, at most [`TOKENS_PENDING_MAX`] per agent (the oldest are
//! dropped past it: they go unrecorded, the reads themselves were paid by the publisher).
//! Noted tokens live in memory: those of the last interval are lost when the gateway stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node::client::SignedClient;
use protocol::cdn::Source;
use protocol::record::{token_name, TOKENS_PER_RECORD_MAX};
use protocol::KeyPair;

/// How often noted tokens are proposed.
pub const TOKENS_RECORD_INTERVAL_MS: u64 = 5_000;
/// Tokens kept per agent while they cannot be proposed.
pub const TOKENS_PENDING_MAX: usize = 4_096;

/// Tokens read per agent and not proposed yet: `(token name, bytes received)`.
#[derive(Default)]
pub struct TokensRead {
    by_agent: Mutex<HashMap<String, Pending>>,
}

#[derive(Default)]
struct Pending {
    endpoint: String,
    tokens: Vec<(String, u64)>,
}

/// One agent's tokens to propose in one record.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Taken {
    agent: String,
    endpoint: String,
    tokens: Vec<(String, u64)>,
}

/// The agent endpoint and token of a source URL (`{endpoint}/v1/r/{token}`).
fn split_url(url: &str) -> Option<(&str, &str)> {
    let (endpoint, token) = url.rsplit_once("/v1/r/")?;
    (!endpoint.is_empty() && !token.is_empty() && !token.contains('/')).then_some((endpoint, token))
}

impl TokensRead {
    /// `bytes` were received and verified through `src`'s token.
    pub fn note(&self, src: &Source, bytes: u64) {
        let Some((endpoint, token)) = split_url(&src.url) else {
            return;
        };
        let mut map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let pending = map.entry(src.agent.clone()).or_default();
        endpoint.clone_into(&mut pending.endpoint);
        if pending.tokens.len() >= TOKENS_PENDING_MAX {
            pending.tokens.remove(0);
        }
        pending.tokens.push((token_name(token), bytes));
    }

    /// Up to [`TOKENS_PER_RECORD_MAX`] of each agent's tokens, taken out, with the agent's id
    /// and endpoint.
    fn take(&self) -> Vec<Taken> {
        let mut map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        map.retain(|agent, p| {
            let n = p.tokens.len().min(TOKENS_PER_RECORD_MAX);
            if n > 0 {
                out.push(Taken {
                    agent: agent.clone(),
                    endpoint: p.endpoint.clone(),
                    tokens: p.tokens.drain(..n).collect(),
                });
            }
            !p.tokens.is_empty()
        });
        out
    }

    /// Tokens of the agent at `endpoint` that were not proposed: back in front of the queue.
    fn put_back(&self, agent: &str, endpoint: &str, mut tokens: Vec<(String, u64)>) {
        let mut map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        let pending = map.entry(agent.to_owned()).or_default();
        if pending.endpoint.is_empty() {
            endpoint.clone_into(&mut pending.endpoint);
        }
        tokens.append(&mut pending.tokens);
        let excess = tokens.len().saturating_sub(TOKENS_PENDING_MAX);
        tokens.drain(..excess);
        pending.tokens = tokens;
    }

    /// Tokens noted and not proposed yet, over all agents.
    pub fn pending(&self) -> usize {
        let map = self.by_agent.lock().unwrap_or_else(|p| p.into_inner());
        map.values().map(|p| p.tokens.len()).sum()
    }
}

/// What proposing needs: the wallet's chain and who may write it.
#[derive(Clone)]
pub struct Recorder {
    pub read: Arc<TokensRead>,
    pub key_path: PathBuf,
    pub key: Arc<KeyPair>,
    pub http: reqwest::Client,
    /// One writer of the wallet's chain at a time (shared with the view records).
    pub turn: Arc<tokio::sync::Mutex<()>>,
}

impl Recorder {
    /// Propose what was noted, one record per agent; answers how many were agreed.
    pub async fn flush(&self) -> usize {
        let mut agreed = 0;
        for Taken {
            agent: who,
            endpoint,
            tokens,
        } in self.read.take()
        {
            let agent = SignedClient::new(self.http.clone(), &endpoint, self.key.clone());
            let _turn = self.turn.lock().await;
            let _ = clients::records::resend_unanswered(
                &self.key_path,
                self.key.clone(),
                std::slice::from_ref(&agent),
            )
            .await;
            match clients::records::record_tokens(&self.key_path, self.key.clone(), &agent, &tokens)
                .await
            {
                Ok(clients::records::Agreed::Yes(_)) => agreed += 1,
                Ok(clients::records::Agreed::Later(why)) => {
                    tracing::warn!(%endpoint, "a tokens record is not agreed yet (sent again later): {why}");
                }
                Err(why) => {
                    tracing::debug!(%endpoint, "tokens not recorded yet: {why}");
                    self.read.put_back(&who, &endpoint, tokens);
                }
            }
        }
        agreed
    }

    /// Propose every [`TOKENS_RECORD_INTERVAL_MS`], until the runtime stops.
    pub async fn run(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(TOKENS_RECORD_INTERVAL_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.flush().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(agent: &str, url: &str) -> Source {
        Source {
            agent: agent.into(),
            url: url.into(),
        }
    }

    #[test]
    fn a_source_url_names_its_endpoint_and_token() {
        assert_eq!(
            split_url("http://127.0.0.1:9/v1/r/abc-_"),
            Some(("http://127.0.0.1:9", "abc-_"))
        );
        assert_eq!(split_url("http://127.0.0.1:9/v1/objects/x"), None);
        assert_eq!(split_url("http://127.0.0.1:9/v1/r/"), None);
    }

    #[test]
    fn noted_tokens_are_taken_a_record_at_a_time_and_bounded() {
        let read = TokensRead::default();
        for i in 0..(TOKENS_PER_RECORD_MAX + 3) {
            read.note(&source("a", &format!("http://h:1/v1/r/t{i}")), 10);
        }
        read.note(&source("b", "http://h:2/v1/r/x"), 5);
        let mut taken = read.take();
        taken.sort();
        assert_eq!(taken.len(), 2);
        assert_eq!(
            (taken[0].agent.as_str(), taken[0].endpoint.as_str()),
            ("a", "http://h:1")
        );
        assert_eq!(taken[0].tokens.len(), TOKENS_PER_RECORD_MAX);
        assert_eq!(taken[0].tokens[0], (token_name("t0"), 10));
        assert_eq!(taken[1].tokens, vec![(token_name("x"), 5)]);
        assert_eq!(read.pending(), 3, "the rest waits for the next record");
        read.put_back("b", "http://h:2", taken.pop().expect("b").tokens);
        assert_eq!(read.pending(), 4);
        for i in 0..(TOKENS_PENDING_MAX + 10) {
            read.note(&source("c", &format!("http://h:3/v1/r/c{i}")), 1);
        }
        assert_eq!(read.pending(), 4 + TOKENS_PENDING_MAX, "bounded per agent");
    }
}

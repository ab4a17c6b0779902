//! A node's neighbours as its operator names them (`[[credit.neighbors]]` in the config
//! file): where each answers, how far the node trusts it, and the line the node extends it.
//! The upkeep task learns each neighbour's entity from its descriptor, opens or changes the
//! configured lines (the neighbour countersigns, DESIGN 12), and sweeps lapsed holds.
//!
//! Only servers named here are forwarded to, asked for paths and trust, and asked for their
//! word on a lapsed hold; a wallet (the `lcp` CLI) holds lines with a node but is never
//! forwarded to.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::credit::{LineState, LineUpdate};
use serde::{Deserialize, Serialize};

use super::{CreditBook, CreditNodeError};
use crate::client::SignedClient;

/// Time between two upkeep rounds.
pub const UPKEEP_MS: u64 = 250;
/// Rounds between two checks of the configured lines.
pub const LINE_CHECK_ROUNDS: u64 = 8;
/// Rounds between two deletions of old settled holds (about a minute).
pub const FORGET_ROUNDS: u64 = 240;
/// Longest wait for a neighbour's descriptor.
pub const DESCRIPTOR_WAIT_MS_MAX: u64 = 2_000;
/// Neighbours a node keeps at most.
pub const NEIGHBORS_MAX: usize = 256;

/// One neighbour in the operator's config.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    /// Where the neighbour answers (`http://host:port`).
    pub url: String,
    /// This node's trust in it, in [0, 1] (seed 003).
    #[serde(default)]
    pub trust: f64,
    /// The line this node extends it (minor units of `currency`); 0 extends none.
    #[serde(default)]
    pub give: u64,
    /// The issuer id the line is in; needed when `give` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

// `trust` is checked finite when the config is loaded ([`NeighborConfig::check`]), so
// equality is reflexive.
impl Eq for NeighborConfig {}

impl NeighborConfig {
    /// A one-line reason when the entry cannot be used.
    pub fn check(&self) -> Result<(), String> {
        crate::client::check_url(&self.url).map_err(|e| e.to_string())?;
        if !self.trust.is_finite() || !(0.0..=1.0).contains(&self.trust) {
            return Err(format!("{}: trust must be between 0 and 1", self.url));
        }
        match (&self.currency, self.give) {
            (None, g) if g > 0 => Err(format!(
                "{}: a line given (give = {g}) needs its currency (an issuer id)",
                self.url
            )),
            (Some(c), _) if protocol::EntityId::parse(c).is_err() => {
                Err(format!("{}: currency must be an issuer id", self.url))
            }
            _ => Ok(()),
        }
    }
}

/// A neighbour whose entity is known.
#[derive(Clone)]
pub struct Known {
    pub url: String,
    pub trust: f64,
    pub client: SignedClient,
    pub config: NeighborConfig,
}

/// The neighbours this node has learned, by entity id.
#[derive(Default)]
pub struct Neighbors {
    known: std::sync::RwLock<HashMap<String, Known>>,
}

impl Neighbors {
    pub fn get(&self, entity: &str) -> Option<Known> {
        self.known.read().ok()?.get(entity).cloned()
    }

    pub fn all(&self) -> Vec<(String, Known)> {
        self.known
            .read()
            .map(|k| k.iter().map(|(e, n)| (e.clone(), n.clone())).collect())
            .unwrap_or_default()
    }

    fn knows_url(&self, url: &str) -> bool {
        self.known
            .read()
            .map(|k| k.values().any(|n| n.url == url))
            .unwrap_or(false)
    }

    fn insert(&self, entity: String, known: Known) {
        if let Ok(mut k) = self.known.write() {
            if k.len() < NEIGHBORS_MAX || k.contains_key(&entity) {
                k.insert(entity, known);
            }
        }
    }
}

impl CreditBook {
    /// A signed client for the neighbour `entity`, if the node knows where it answers.
    pub fn neighbor_client(&self, entity: &str) -> Option<SignedClient> {
        self.neighbors.get(entity).map(|n| n.client)
    }

    /// Start the upkeep task once (later calls do nothing). Call from the server's runtime.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let book = self.clone();
        tokio::spawn(async move {
            let mut round: u64 = 0;
            loop {
                book.learn_neighbors().await;
                if round.is_multiple_of(LINE_CHECK_ROUNDS) {
                    book.keep_lines().await;
                }
                if let Err(e) = book.sweep().await {
                    tracing::warn!(error = %e, "credit sweep failed");
                }
                if round.is_multiple_of(FORGET_ROUNDS) {
                    if let Err(e) = book.forget_settled().await {
                        tracing::warn!(error = %e, "deleting old settled holds failed");
                    }
                }
                round = round.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(UPKEEP_MS)).await;
            }
        });
    }

    /// Learn the entity of each configured neighbour not known yet.
    async fn learn_neighbors(&self) {
        for config in &self.policy.neighbors {
            if self.neighbors.knows_url(&config.url) {
                continue;
            }
            let client = SignedClient::new(self.http.clone(), &config.url, self.key.clone());
            let audience = tokio::time::timeout(
                Duration::from_millis(DESCRIPTOR_WAIT_MS_MAX),
                client.audience(),
            )
            .await;
            if let Ok(Ok(entity)) = audience {
                let entity = entity.to_string();
                self.neighbors.insert(
                    entity,
                    Known {
                        url: config.url.clone(),
                        trust: config.trust,
                        client,
                        config: config.clone(),
                    },
                );
            }
        }
    }

    /// Open each configured line not open yet, and change a limit the config changed.
    async fn keep_lines(&self) {
        for (entity, n) in self.neighbors.all() {
            let Some(currency) = n.config.currency.clone() else {
                continue;
            };
            if n.config.give == 0 {
                continue;
            }
            if let Err(e) = self.keep_line(&entity, &n, &currency).await {
                tracing::debug!(neighbor = %n.url, error = %e, "keeping the configured line");
            }
        }
    }

    async fn keep_line(
        &self,
        entity: &str,
        n: &Known,
        currency: &str,
    ) -> Result<(), CreditNodeError> {
        let me = self.key.entity().to_string();
        let page = self.lines(Some(entity.to_owned())).await?;
        let held = page
            .lines
            .iter()
            .find(|l| l.creditor == me && l.debtor == entity && l.currency == currency);
        let state = match held {
            None => LineState {
                id: uuid::Uuid::new_v4().to_string(),
                creditor: me,
                debtor: entity.to_owned(),
                currency: currency.to_owned(),
                limit: n.config.give,
                owed: 0,
                seq: 1,
            },
            Some(l) if l.limit != n.config.give && n.config.give >= l.owed + l.held => LineState {
                id: l.id.clone(),
                creditor: me,
                debtor: entity.to_owned(),
                currency: currency.to_owned(),
                limit: n.config.give,
                owed: l.owed,
                seq: l.seq + 1,
            },
            Some(_) => return Ok(()),
        };
        let proposal = LineUpdate::sign(state, &self.key)?;
        let body = serde_json::to_vec(&serde_json::json!({ "update": proposal }))
            .map_err(|e| CreditNodeError::InvalidJson(e.to_string()))?;
        let answer = n
            .client
            .command::<LineUpdate>("POST", "/v1/credit/lines", body, self.counter.next())
            .await
            .map_err(|e| CreditNodeError::Unreachable(e.to_string()))?;
        let update = answer.value;
        if update.state != proposal.state || !update.verify()? {
            return Err(CreditNodeError::Refused(
                "the neighbour answered another line than proposed".into(),
            ));
        }
        // Our own proposal: a payment since may have moved the balance.
        self.store(update, true).await
    }
}

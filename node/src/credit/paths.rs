//! What a node knows of the credit graph around it (DESIGN 12): capacities toward a target
//! (`GET /v1/credit/paths`) and trust (`GET /v1/credit/trust`), from its own lines and
//! neighbours and their answers, each asked with one hop less and never back along the way
//! the question came. Bounded: [`PATH_HOPS_MAX`] hops, [`NEIGHBORS_ASKED_MAX`] neighbours
//! asked per node, [`ASK_WAIT_MS_PER_HOP`] per remaining hop, [`EDGES_MAX`] edges,
//! [`ANSWER_BYTES_MAX`] read of each answer, and [`ASKS_IN_FLIGHT_MAX`] questions a node
//! sends at once over all the questions it is answering: the endpoints are open to anyone
//! (DESIGN 12), so a flood of questions finds each node answering from its own lines alone
//! rather than multiplying.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use protocol::credit::flow::{self, Edge, PathsAnswer, ANSWER_BYTES_MAX, EDGES_MAX};
use protocol::credit::{TrustAnswer, TrustEdge, PATH_HOPS_MAX};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::{holds, CreditBook, CreditNodeError};

/// Neighbours one node asks at most per question.
pub const NEIGHBORS_ASKED_MAX: usize = 16;
/// Time a neighbour has to answer, per hop it may still go.
pub const ASK_WAIT_MS_PER_HOP: u64 = 600;
/// Questions to neighbours one node has under way at once; past it, neighbours are not asked.
pub const ASKS_IN_FLIGHT_MAX: usize = 64;
/// Entities a question's `seen` list may carry (the way it came).
const SEEN_MAX: usize = PATH_HOPS_MAX + 2;

/// `GET /v1/credit/paths` and `GET /v1/credit/trust` query strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphQuery {
    pub to: String,
    #[serde(default)]
    pub currency: Option<String>,
    /// Accepted for the payer's convenience; capacities are answered whatever it is.
    #[serde(default)]
    pub amount: Option<u64>,
    #[serde(default)]
    pub hops_left: Option<usize>,
    /// Comma-separated entity ids the question already went through.
    #[serde(default)]
    pub seen: Option<String>,
}

impl GraphQuery {
    /// The hops left (1 to `PATH_HOPS_MAX`) and the way the question came.
    pub fn checked(&self) -> Result<(usize, Vec<String>), CreditNodeError> {
        let bad = |m: &str| Err(CreditNodeError::Query(m.to_owned()));
        if protocol::EntityId::parse(&self.to).is_err() {
            return bad("to must be an entity id (ed25519:<64 hex>)");
        }
        if let Some(c) = &self.currency {
            if protocol::EntityId::parse(c).is_err() {
                return bad("currency must be an issuer id");
            }
        }
        let hops = self.hops_left.unwrap_or(PATH_HOPS_MAX);
        if !(1..=PATH_HOPS_MAX).contains(&hops) {
            return bad("hops_left is between 1 and 4");
        }
        let seen: Vec<String> = self
            .seen
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if seen.len() > SEEN_MAX || seen.iter().any(|s| protocol::EntityId::parse(s).is_err()) {
            return bad("seen lists at most 6 entity ids, comma-separated");
        }
        Ok((hops, seen))
    }
}

impl CreditBook {
    /// What this node can pay each neighbour it knows in `currency`, and what they answer
    /// of their own, toward `to`.
    pub async fn paths(self: &Arc<Self>, q: GraphQuery) -> Result<PathsAnswer, CreditNodeError> {
        let (hops, seen) = q.checked()?;
        let currency = q
            .currency
            .clone()
            .ok_or_else(|| CreditNodeError::Query("currency is required".into()))?;
        let mut edges = self.own_edges(&currency).await?;
        if hops > 1 {
            let extra = self
                .ask_neighbors::<PathsAnswer>("paths", &q, hops, &seen)
                .await;
            edges.extend(extra.into_iter().flat_map(|a| a.edges));
        }
        Ok(PathsAnswer {
            edges: dedup(edges, |e| (e.from.clone(), e.to.clone())),
        })
    }

    /// Edges from this node to each neighbour that answers somewhere: the capacity of the
    /// hop from this node to it, as this node's copies of their lines say.
    async fn own_edges(&self, currency: &str) -> Result<Vec<Edge>, CreditNodeError> {
        let me = self.key.entity().to_string();
        let peers: Vec<(String, String)> = self
            .neighbors
            .all()
            .into_iter()
            .map(|(e, n)| (e, n.url))
            .collect();
        let currency = currency.to_owned();
        self.db
            .run(move |conn| {
                let mut edges = Vec::new();
                for (peer, url) in peers {
                    // No line with the peer: both sides None, capacity 0, no edge.
                    let lines = holds::hop_lines(conn, &me, &peer, &currency)?;
                    let capacity = holds::hop_capacity(&lines);
                    if capacity > 0 {
                        edges.push(Edge {
                            from: me.clone(),
                            to: peer,
                            url,
                            capacity,
                        });
                    }
                }
                Ok::<_, CreditNodeError>(edges)
            })
            .await
    }

    /// This node's trust in `to`: the best product along the trust edges it and its
    /// neighbours know (seed 003).
    pub async fn trust(self: &Arc<Self>, q: GraphQuery) -> Result<TrustAnswer, CreditNodeError> {
        let (hops, seen) = q.checked()?;
        let me = self.key.entity().to_string();
        let mut edges: Vec<TrustEdge> = self
            .neighbors
            .all()
            .into_iter()
            .filter(|(_, n)| n.trust > 0.0)
            .map(|(e, n)| TrustEdge {
                from: me.clone(),
                to: e,
                trust: n.trust,
            })
            .collect();
        if hops > 1 {
            let extra = self
                .ask_neighbors::<TrustAnswer>("trust", &q, hops, &seen)
                .await;
            edges.extend(extra.into_iter().flat_map(|a| a.edges));
        }
        let edges = dedup(edges, |e| (e.from.clone(), e.to.clone()));
        let triples: Vec<(String, String, f64)> = edges
            .iter()
            .map(|e| (e.from.clone(), e.to.clone(), e.trust))
            .collect();
        let trust = flow::trust(&triples, &me, &q.to, hops);
        Ok(TrustAnswer {
            from: me,
            to: q.to,
            trust,
            edges,
        })
    }

    /// Ask the neighbours not on the way (and not the target) the same question with one
    /// hop less; answers that fail or come late are left out.
    async fn ask_neighbors<T: DeserializeOwned>(
        &self,
        what: &str,
        q: &GraphQuery,
        hops: usize,
        seen: &[String],
    ) -> Vec<T> {
        let me = self.key.entity().to_string();
        let mut way: Vec<String> = seen.to_vec();
        way.push(me.clone());
        let wait = Duration::from_millis(ASK_WAIT_MS_PER_HOP * (hops as u64 - 1));
        let asks = self
            .neighbors
            .all()
            .into_iter()
            .filter(|(e, _)| !way.contains(e) && *e != q.to)
            .take(NEIGHBORS_ASKED_MAX)
            .filter_map(|(_, n)| {
                let permit = self.asks.clone().try_acquire_owned().ok()?;
                let mut url = format!(
                    "{}/v1/credit/{what}?to={}&hops_left={}&seen={}",
                    n.url.trim_end_matches('/'),
                    q.to,
                    hops - 1,
                    way.join(",")
                );
                if let Some(c) = &q.currency {
                    url.push_str(&format!("&currency={c}"));
                }
                let http = self.http.clone();
                Some(async move {
                    let _permit = permit;
                    let read = async {
                        let resp = http.get(url).send().await.ok()?;
                        if !resp.status().is_success() {
                            return None;
                        }
                        let body = crate::client::body_capped(resp, ANSWER_BYTES_MAX)
                            .await
                            .ok()?;
                        serde_json::from_slice::<T>(&body).ok()
                    };
                    tokio::time::timeout(wait, read).await.ok().flatten()
                })
            });
        join_all(asks).await.into_iter().flatten().collect()
    }
}

/// Keep the first of each key, at most [`EDGES_MAX`].
fn dedup<T, K: std::hash::Hash + Eq>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen: HashMap<K, ()> = HashMap::new();
    items
        .into_iter()
        .filter(|i| seen.insert(key(i), ()).is_none())
        .take(EDGES_MAX)
        .collect()
}

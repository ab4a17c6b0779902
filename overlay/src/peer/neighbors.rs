//! Neighbours (seed 001 sections 2.3 and 4): `primary` ones are configured and trusted;
//! `secondary` ones were discovered through retrieval instructions (policies 2 and 3);
//! `undesirable` ones were involved in a contested deal under policy 3 and are never asked
//! or served again.
//!
//! Which neighbours a search asks: primaries always; secondaries for the owner's own
//! searches under policies 2 and 3, and for searches made for others under policy 3 only.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;

use super::{lock, Peer};
use crate::error::Error;
use crate::schema::peer_neighbors;

pub const PRIMARY: &str = "primary";
pub const SECONDARY: &str = "secondary";
pub const UNDESIRABLE: &str = "undesirable";

/// Longest pause between attempts to learn a configured neighbour's terms.
pub const RESOLVE_BACKOFF_MS_MAX: u64 = 5_000;
/// Secondary neighbours kept at most (the oldest are dropped first).
pub const SECONDARY_MAX: i64 = 256;

/// A neighbour as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, serde::Serialize)]
pub struct Neighbor {
    pub entity: String,
    pub url: String,
    pub kind: String,
    pub changed_ms: i64,
}

impl Peer {
    /// Every neighbour, primaries first.
    pub async fn neighbors(&self) -> Result<Vec<Neighbor>, Error> {
        self.db
            .run(|conn| {
                Ok(peer_neighbors::table
                    .order((peer_neighbors::kind, peer_neighbors::changed_ms))
                    .load::<Neighbor>(conn)?)
            })
            .await
    }

    /// The kind of `entity` here (`None`: a stranger).
    pub async fn kind_of(&self, entity: &str) -> Result<Option<String>, Error> {
        let entity = entity.to_owned();
        self.db
            .run(move |conn| {
                Ok(peer_neighbors::table
                    .find(&entity)
                    .select(peer_neighbors::kind)
                    .first::<String>(conn)
                    .optional()?)
            })
            .await
    }

    /// The neighbours a search may ask: `own` for the owner's own searches.
    pub async fn askable(&self, own: bool) -> Result<Vec<Neighbor>, Error> {
        let policy = self.options.policy;
        Ok(self
            .neighbors()
            .await?
            .into_iter()
            .filter(|n| crate::decide::may_ask(policy, own, &n.kind))
            .collect())
    }

    /// Node discovery: a peer met through retrieval instructions joins the secondary set
    /// (not under policy 1; never over a primary or undesirable one, never this peer).
    pub async fn discover(&self, entity: &str, url: &str) -> Result<(), Error> {
        if !crate::decide::adds_discovered(self.options.policy)
            || entity == self.me()
            || node::client::check_url(url).is_err()
        {
            return Ok(());
        }
        let (entity, url) = (entity.to_owned(), url.to_owned());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let known: Option<String> = peer_neighbors::table
                        .find(&entity)
                        .select(peer_neighbors::kind)
                        .first(conn)
                        .optional()?;
                    if known.is_some() {
                        return Ok(());
                    }
                    diesel::insert_into(peer_neighbors::table)
                        .values((
                            peer_neighbors::entity.eq(&entity),
                            peer_neighbors::url.eq(&url),
                            peer_neighbors::kind.eq(SECONDARY),
                            peer_neighbors::changed_ms.eq(node::now_ms() as i64),
                        ))
                        .execute(conn)?;
                    // The set is bounded: the oldest secondaries go first.
                    let extra: Vec<String> = peer_neighbors::table
                        .filter(peer_neighbors::kind.eq(SECONDARY))
                        .order(peer_neighbors::changed_ms.desc())
                        .offset(SECONDARY_MAX)
                        .select(peer_neighbors::entity)
                        .load(conn)?;
                    diesel::delete(
                        peer_neighbors::table.filter(peer_neighbors::entity.eq_any(extra)),
                    )
                    .execute(conn)?;
                    Ok::<_, Error>(())
                })
            })
            .await
    }

    /// After a contested deal: under policy 3 an untrusted (secondary) peer involved is
    /// marked undesirable; under policy 2 it only leaves the secondary set (it was added
    /// before the deal could prove itself). Primaries stay: their operator decides.
    pub async fn distrust(&self, entity: &str) -> Result<(), Error> {
        let entity = entity.to_owned();
        let policy = self.options.policy;
        self.db
            .run(move |conn| {
                let target = peer_neighbors::table
                    .filter(peer_neighbors::entity.eq(&entity))
                    .filter(peer_neighbors::kind.eq(SECONDARY));
                if policy == 3 {
                    diesel::update(target)
                        .set((
                            peer_neighbors::kind.eq(UNDESIRABLE),
                            peer_neighbors::changed_ms.eq(node::now_ms() as i64),
                        ))
                        .execute(conn)?;
                } else {
                    diesel::delete(target).execute(conn)?;
                }
                Ok(())
            })
            .await
    }

    /// The terms of `entity` at `url`: as last stated, or asked now (a discovered peer's are
    /// learned on first need) and kept when it answers as `entity`.
    pub async fn terms_at(&self, entity: &str, url: &str) -> Option<protocol::overlay::Terms> {
        if let Some(t) = self.terms_of(entity) {
            return Some(t);
        }
        let terms = self.client_of(url).terms().await.ok()?;
        if terms.peer != entity {
            return None;
        }
        lock(&self.terms_seen).insert(entity.to_owned(), terms.clone());
        Some(terms)
    }

    /// The terms `entity` last stated (learned when it was resolved or asked).
    pub fn terms_of(&self, entity: &str) -> Option<protocol::overlay::Terms> {
        lock(&self.terms_seen).get(entity).cloned()
    }

    /// Learn the terms (and so the entity) of a neighbour at `url`, and keep it as `kind`
    /// unless it is known already as a primary or undesirable.
    pub async fn learn(&self, url: &str, kind: &'static str) -> Result<String, Error> {
        let terms = self
            .client_of(url)
            .terms()
            .await
            .map_err(|e| Error::Upstream(e.to_string()))?;
        protocol::EntityId::parse(&terms.peer)
            .map_err(|_| Error::Upstream(format!("{url} states no valid peer id")))?;
        let entity = terms.peer.clone();
        lock(&self.terms_seen).insert(entity.clone(), terms);
        let (e, url) = (entity.clone(), url.to_owned());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let known: Option<String> = peer_neighbors::table
                        .find(&e)
                        .select(peer_neighbors::kind)
                        .first(conn)
                        .optional()?;
                    let now = node::now_ms() as i64;
                    match known.as_deref() {
                        None => {
                            diesel::insert_into(peer_neighbors::table)
                                .values((
                                    peer_neighbors::entity.eq(&e),
                                    peer_neighbors::url.eq(&url),
                                    peer_neighbors::kind.eq(kind),
                                    peer_neighbors::changed_ms.eq(now),
                                ))
                                .execute(conn)?;
                        }
                        // A configured neighbour is primary whatever was known of it.
                        Some(k) if kind == PRIMARY && k != PRIMARY => {
                            diesel::update(peer_neighbors::table.find(&e))
                                .set((
                                    peer_neighbors::kind.eq(PRIMARY),
                                    peer_neighbors::url.eq(&url),
                                    peer_neighbors::changed_ms.eq(now),
                                ))
                                .execute(conn)?;
                        }
                        Some(_) => {}
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
        Ok(entity)
    }
}

/// Learn every configured neighbour's entity, retrying those that do not answer yet (peers
/// start in any order), until all are known.
pub async fn resolve_primaries(peer: Arc<Peer>) {
    let mut left = peer.primary_urls.clone();
    let mut backoff_ms = 100;
    while !left.is_empty() {
        // All at once: one neighbour that hangs does not keep the others unknown.
        let tries = left.iter().map(|url| peer.learn(url, PRIMARY));
        let results = futures_util::future::join_all(tries).await;
        left = left
            .into_iter()
            .zip(results)
            .filter_map(|(url, r)| match r {
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(%url, error = %e, "neighbour not reachable yet");
                    Some(url)
                }
            })
            .collect();
        if !left.is_empty() {
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
            backoff_ms = (backoff_ms * 2).min(RESOLVE_BACKOFF_MS_MAX);
        }
    }
}

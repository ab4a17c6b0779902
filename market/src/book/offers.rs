//! The offer book: agents' signed offers (heartbeats), checked and kept, and the live book
//! as listings. Moved unchanged from `book.rs` (issue 13).

use protocol::market::{self, Offer};
use protocol::{EntityId, Envelope};

use super::{
    index::Ranked, now_s, AgentRow, Listing, Market, ENDPOINT_CHARS_MAX, ENDPOINT_RECHECK_S,
    ENDPOINT_WAIT_MS_MAX, ISSUED_SKEW_S_MAX, OFFER_BYTES_MAX, OFFER_CURRENCIES_MAX,
    OFFER_VALIDITY_S_MAX,
};
use crate::error::Error;
use crate::reliability::Reputation;

/// How old a view of the index a heartbeat works from at most (it reads the agent's last
/// endpoint check and vetting from it).
pub const HEARTBEAT_INDEX_STALE_MS_MAX: u64 = 1_000;

impl Market {
    /// Take an agent's signed offer (a heartbeat). `sender` signed the request.
    pub async fn post_offer(
        &self,
        sender: &EntityId,
        envelope: Envelope,
    ) -> Result<serde_json::Value, Error> {
        let (signer, offer): (EntityId, Offer) =
            envelope.open(market::OFFER_TYPE).map_err(|e| match e {
                protocol::EnvelopeError::InvalidPayload(m) => Error::InvalidOffer(m),
                other => Error::BadOfferSignature(other.to_string()),
            })?;
        if signer != offer.agent || &signer != sender {
            return Err(Error::BadOfferSignature(
                "the offer must be signed by its agent, who must also sign the request".into(),
            ));
        }
        let now = now_s();
        let expires_s = check_offer(&offer, now)?;
        let network = network_of(&offer.endpoint)?;
        let entity = offer.agent.to_string();
        // What the market knows of the agent, as of a refresh at most a second old: a stale
        // view costs at most one endpoint check more, or a `vetted` a second late.
        self.fresh_index(HEARTBEAT_INDEX_STALE_MS_MAX).await?;
        let known = self.indexed(&entity);
        let fresh_check = known.as_ref().is_some_and(|a| {
            a.endpoint == offer.endpoint && now - a.endpoint_checked_s < ENDPOINT_RECHECK_S
        });
        let checked_s = if fresh_check {
            known.as_ref().map_or(now, |a| a.endpoint_checked_s)
        } else {
            self.check_endpoint(&offer.endpoint, &offer.agent).await?;
            now
        };
        let offer_json =
            serde_json::to_string(&envelope).map_err(|e| Error::InvalidOffer(e.to_string()))?;
        let row = AgentRow {
            entity: entity.clone(),
            endpoint: offer.endpoint.clone(),
            network,
            offer: offer_json,
            offer_expires_s: expires_s,
            last_heartbeat_s: now,
            endpoint_checked_s: checked_s,
            alpha: Reputation::default().alpha,
            beta: Reputation::default().beta,
            audits_passed: 0,
            audits_failed: 0,
            online: 1,
            first_seen_s: now,
            changed: 0,
            vouch: 0.0,
        };
        self.write_heartbeat(row, (envelope, offer)).await?;
        let vetted = known.is_some_and(|a| a.reputation.vetted());
        Ok(serde_json::json!({
            "agent": entity,
            "expires_at": market::format_rfc3339(expires_s),
            "vetted": vetted,
        }))
    }

    /// Ask `endpoint` who it is; it must be `agent`.
    pub(super) async fn check_endpoint(
        &self,
        endpoint: &str,
        agent: &EntityId,
    ) -> Result<(), Error> {
        let url = format!("{}/.well-known/lcp", endpoint.trim_end_matches('/'));
        let resp = self
            .http
            .get(&url)
            .timeout(std::time::Duration::from_millis(ENDPOINT_WAIT_MS_MAX))
            .send()
            .await
            .map_err(|e| Error::EndpointUnreachable(format!("{url}: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::EndpointUnreachable(format!(
                "{url}: HTTP {}",
                resp.status()
            )));
        }
        let doc: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| Error::EndpointUnreachable(format!("{url}: not a descriptor: {e}")))?;
        let answered = doc.get("entity").and_then(|v| v.as_str()).unwrap_or("");
        if answered != agent.as_str() {
            return Err(Error::EndpointMismatch(if answered.is_empty() {
                "no entity".into()
            } else {
                answered.to_owned()
            }));
        }
        Ok(())
    }

    /// The book: live offers, in `currency` when given (else each offer's first currency),
    /// cheapest reliability-adjusted price first; `limit` of them from `offset` on, and how
    /// many there are in all. Only the page's listings are built (offers cloned, frauds
    /// looked up), so a page of a 100,000-agent book costs a pass over packed slots and a sort.
    /// With `agent`, that agent's listing alone.
    pub async fn offers_page(
        &self,
        currency: Option<&str>,
        agent: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<OffersPage, Error> {
        let now = now_s();
        self.fresh_index(0).await?;
        let index = self.index.clone();
        let currency = currency.map(str::to_owned);
        let agent = agent.map(str::to_owned);
        let (total, page) = tokio::task::spawn_blocking(move || {
            let mut ranked = index
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .ranked(currency.as_deref(), agent.as_deref(), now);
            // Entity last: equal prices list in the same order in every market process.
            let order = |a: &Ranked, b: &Ranked| {
                a.adjusted
                    .total_cmp(&b.adjusted)
                    .then_with(|| a.agent.entity.cmp(&b.agent.entity))
            };
            let total = ranked.len();
            let end = offset.saturating_add(limit).min(total);
            if offset < end {
                // Only the page needs its order: select it, then sort it alone.
                if end < total {
                    ranked.select_nth_unstable_by(end, order);
                    ranked.truncate(end);
                }
                if offset > 0 {
                    ranked.select_nth_unstable_by(offset, order);
                    ranked.drain(..offset);
                }
                ranked.sort_by(order);
            } else {
                ranked.clear();
            }
            (total, ranked)
        })
        .await
        .map_err(|e| Error::Db(db::DbError::Task(e.to_string())))?;
        // Entities an issuer proved double spent: few, read once per listing.
        let proven: std::collections::HashSet<String> = self
            .db
            .run(|conn| {
                use diesel::prelude::*;
                node::paywords::payword_frauds::table
                    .select(node::paywords::payword_frauds::payer)
                    .load::<String>(conn)
                    .map_err(|e| Error::Db(e.into()))
            })
            .await?
            .into_iter()
            .collect();
        let forked = self.forked();
        let offers = page
            .into_iter()
            .map(|r| {
                let rep = r.agent.reputation;
                Listing {
                    agent: r.agent.entity.clone(),
                    endpoint: r.agent.endpoint.clone(),
                    offer: r.agent.envelope.clone(),
                    currency: r.currency,
                    p_fail: r.p_fail,
                    reference_price: r.reference_price,
                    adjusted_price: r.adjusted,
                    audits_passed: rep.audits_passed,
                    audits_failed: rep.audits_failed,
                    online: rep.online,
                    vetted: rep.vetted(),
                    double_spender: proven.contains(&r.agent.entity),
                    forked: forked.contains(&r.agent.entity),
                    vouch: rep.vouch,
                }
            })
            .collect();
        Ok(OffersPage { offers, total })
    }
}

/// A page of the book ([`Market::offers_page`]).
pub struct OffersPage {
    pub offers: Vec<Listing>,
    /// Live offers in the currency asked, in all.
    pub total: usize,
}

/// Check an offer's values; answers its expiry (Unix seconds).
pub fn check_offer(offer: &Offer, now: i64) -> Result<i64, Error> {
    let expires = market::parse_rfc3339(&offer.expires_at).ok_or_else(|| {
        Error::InvalidOffer(format!("expires_at {:?} is not RFC 3339", offer.expires_at))
    })?;
    let issued = market::parse_rfc3339(&offer.issued_at).ok_or_else(|| {
        Error::InvalidOffer(format!("issued_at {:?} is not RFC 3339", offer.issued_at))
    })?;
    if expires <= now {
        return Err(Error::OfferExpired(offer.expires_at.clone()));
    }
    if issued > now + ISSUED_SKEW_S_MAX {
        return Err(Error::InvalidOffer("issued_at is in the future".into()));
    }
    if expires - issued > OFFER_VALIDITY_S_MAX || expires <= issued {
        return Err(Error::InvalidOffer(format!(
            "an offer may be valid for at most {OFFER_VALIDITY_S_MAX} s after it is issued"
        )));
    }
    let url_ok = (offer.endpoint.starts_with("http://") || offer.endpoint.starts_with("https://"))
        && offer.endpoint.len() <= ENDPOINT_CHARS_MAX
        && host_of(&offer.endpoint).is_some_and(|h| !h.is_empty());
    if !url_ok {
        return Err(Error::InvalidOffer(format!(
            "endpoint {:?} is not an http(s) URL",
            offer.endpoint
        )));
    }
    if offer.currencies.is_empty() || offer.currencies.len() > OFFER_CURRENCIES_MAX {
        return Err(Error::InvalidOffer(format!(
            "an offer lists 1 to {OFFER_CURRENCIES_MAX} currencies"
        )));
    }
    if offer.free_bytes > OFFER_BYTES_MAX || offer.block_bytes_max > OFFER_BYTES_MAX {
        return Err(Error::InvalidOffer(
            "free_bytes or block_bytes_max is absurdly large".into(),
        ));
    }
    if offer.duration_s_max == 0 || offer.block_bytes_max == 0 {
        return Err(Error::InvalidOffer(
            "duration_s_max and block_bytes_max must be positive".into(),
        ));
    }
    let price_max = i64::MAX as u64 / 1024;
    for c in &offer.currencies {
        let prices = [
            c.storage_per_gib_day,
            c.write_per_kib,
            c.read_per_kib,
            c.contract_min,
        ];
        if prices.iter().any(|p| *p > price_max) {
            return Err(Error::InvalidOffer(format!(
                "prices in {} are absurdly large",
                c.issuer
            )));
        }
        if c.storage_per_gib_day == 0 && c.contract_min == 0 {
            return Err(Error::InvalidOffer(format!(
                "storage in {} would be free: storage_per_gib_day or contract_min must be positive",
                c.issuer
            )));
        }
    }
    Ok(expires)
}

/// The host of an `http(s)://host[:port]/...` URL (brackets kept off IPv6 literals).
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h);
    }
    Some(authority.split(':').next().unwrap_or(authority))
}

/// The network an endpoint is on, for the one-agent-per-network rule: the /24 of an IPv4
/// address, the /48 of an IPv6 one, else the host name.
pub fn network_of(endpoint: &str) -> Result<String, Error> {
    let host = host_of(endpoint)
        .ok_or_else(|| Error::InvalidOffer(format!("endpoint {endpoint:?} has no host")))?;
    if let Ok(v4) = host.parse::<std::net::Ipv4Addr>() {
        let o = v4.octets();
        return Ok(format!("{}.{}.{}.0/24", o[0], o[1], o[2]));
    }
    if let Ok(v6) = host.parse::<std::net::Ipv6Addr>() {
        let s = v6.segments();
        return Ok(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_group_by_prefix() {
        assert_eq!(
            network_of("http://10.1.2.3:80/x").ok(),
            Some("10.1.2.0/24".into())
        );
        assert_eq!(
            network_of("http://10.1.2.200").ok(),
            Some("10.1.2.0/24".into())
        );
        assert_eq!(
            network_of("https://[2001:db8:1:2::1]:443").ok(),
            Some("2001:db8:1::/48".into())
        );
        assert_eq!(
            network_of("https://Agent.Example:8080").ok(),
            Some("agent.example".into())
        );
    }
}

//! What `peer find` and `peer get` do, as a buyer through one peer (`--via`).
//!
//! With the via peer's own key (`--key DIR/identity.key`) the search is that peer's own: it
//! asks its neighbours (secondaries too under policies 2 and 3), adds no commission, pays
//! through its tabs and discovers the source. With any other key the CLI is a buyer of its
//! own: the via peer is its neighbour, paid ahead by LCP transfer when it answers `402`.
//!
//! `get` checks the document's bytes against its name; a failed or wrong retrieval is
//! contested at once (the via peer refunds and contests upstream) and the command fails.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clients::issuer::IssuerClient;
use clients::paywords::PaywordPayer;
use clients::peer::PeerClient;
use node::client::{ClientError, ClockCounter, CounterStore};
use protocol::overlay::{Bid, Instructions, Solicit, Terms, SOLICIT_HOPS_MAX};
use protocol::{EntityId, KeyPair};
use serde::Serialize;

/// Longest the buyer keeps asking after paying ahead, for the peer to see the deposit.
pub const PAY_WAIT_MS_MAX: u64 = 20_000;
/// Pause between those attempts.
pub const PAY_POLL_MS: u64 = 100;
/// A peer's `402` may ask for at most this much more than the call's own cost.
pub const PAY_AHEAD_SLACK: u64 = 20;
/// A chain bought for paying peers holds about this many purchases' worth of words...
pub const CHAIN_PURCHASES: u64 = 20;
/// ...and at least this many words.
pub const CHAIN_WORDS_MIN: u64 = 256;

/// What to look for.
#[derive(Debug, Clone)]
pub struct Search {
    pub document: String,
    pub max_price: u64,
    /// The issuer's entity id to pay in (default: the via peer's first currency).
    pub currency: Option<String>,
    pub hops: u32,
    /// How long the peers may take to answer.
    pub wait_ms: u64,
}

impl Search {
    /// The error of a search nobody bid on within its maximum.
    pub fn no_bid(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "no bid for {} within the maximum price {}",
            self.document,
            self.max_price
        )
    }
}

/// The best bid and the way it came.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub document: String,
    pub bid: String,
    pub price: u64,
    pub expires_at: String,
    pub currency: String,
    /// The via peer, then (for the via peer's own searches) its neighbour the bid came by.
    pub path: Vec<String>,
    /// Bids answered in all.
    pub bids: usize,
}

/// A document bought and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Got {
    #[serde(flatten)]
    pub found: Found,
    pub out: String,
    pub bytes: usize,
    /// The entity id of the peer that served it (the source, unless one on the way conceals).
    pub served_by: String,
    pub served_from: String,
}

/// A buyer: its key, its wallet (for paying ahead), its client of the via peer.
pub struct Buyer {
    key: Arc<KeyPair>,
    key_path: std::path::PathBuf,
    http: reqwest::Client,
    via: PeerClient,
    counters: ClockCounter,
}

impl Buyer {
    pub fn new(key_path: &Path, via: &str) -> anyhow::Result<Buyer> {
        node::client::check_url(via)?;
        let key = Arc::new(node::keyfile::load(key_path)?);
        let http = node::client::http_client(&node::client::ClientOptions::default())?;
        Ok(Buyer {
            via: PeerClient::new(http.clone(), via.trim_end_matches('/'), key.clone()),
            key,
            key_path: key_path.to_path_buf(),
            http,
            counters: ClockCounter::default(),
        })
    }

    /// Send `call` paid for: by paywords when `payer` is given (words for `charge` with the
    /// first request), else, or when the peer still answers `402`, paid ahead by LCP
    /// transfer: the first `402` is paid by its `amount_due`, then the call is repeated until
    /// the peer has seen the deposit.
    ///
    /// Words and transfer together are at most `charge` plus [`PAY_AHEAD_SLACK`]; a transfer
    /// goes only to the via peer (`terms.peer`), through an issuer it stated.
    async fn paying<T, F, Fut>(
        &self,
        terms: &Terms,
        payer: Option<&PaywordPayer>,
        charge: u64,
        mut call: F,
    ) -> Result<T, ClientError>
    where
        F: FnMut(u64, Vec<(&'static str, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        // One budget for the whole call, however it is paid: words, then a transfer.
        let mut budget = charge.saturating_add(PAY_AHEAD_SLACK);
        if let (Some(payer), Ok(vendor)) = (payer, EntityId::parse(&terms.peer)) {
            match payer.pay(&vendor, charge).await {
                Ok(words) => {
                    let (value, headers) =
                        words.map(|w| (w.value, w.headers())).unwrap_or_default();
                    budget = budget.saturating_sub(value);
                    match call(self.counters.next(), headers).await {
                        Err(e) if clients::pay::payment_required(&e) => {}
                        other => return other,
                    }
                }
                // No words to give (no funds for a chain, say): the transfer below pays.
                Err(e) => tracing::info!(error = %e, "paywords unavailable; paying by transfer"),
            }
        }
        let deadline = Instant::now() + Duration::from_millis(PAY_WAIT_MS_MAX);
        let mut paid = false;
        loop {
            match call(self.counters.next(), Vec::new()).await {
                Err(e) if clients::pay::payment_required(&e) && !paid => {
                    self.pay_ahead(&e, terms, budget).await?;
                    paid = true;
                }
                Err(e) if clients::pay::payment_required(&e) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(PAY_POLL_MS)).await;
                }
                other => return other,
            }
        }
    }

    /// The payer of paywords to the via peer in `currency`, when it takes them and this is
    /// not its owner's own search (which costs nothing there); `PEER_PAYWORDS=0` pays by
    /// transfer only. Chains are bought as needed, sized for about twenty such purchases.
    fn payer(&self, terms: &Terms, currency: &str, search: &Search) -> Option<PaywordPayer> {
        if !terms.paywords
            || terms.peer == self.key.entity().as_str()
            || !clients::paywords::enabled("PEER_PAYWORDS")
        {
            return None;
        }
        let offer = terms.currencies.iter().find(|c| c.issuer == currency)?;
        let issuer = EntityId::parse(currency).ok()?;
        let wallet = IssuerClient::new(
            self.http.clone(),
            &offer.issuer_url,
            self.key.clone(),
            Some(CounterStore::beside_key(&self.key_path)),
        );
        let mut payer = PaywordPayer::new(
            self.key.clone(),
            clients::wallet::Wallet::beside_key(&self.key_path),
            wallet,
        )
        .with_issuer(issuer);
        payer.chain_words = search
            .max_price
            .saturating_add(terms.solicit_fee)
            .saturating_mul(CHAIN_PURCHASES)
            .clamp(CHAIN_WORDS_MIN, clients::paywords::AUTO_CHAIN_WORDS_DEFAULT);
        Some(payer)
    }

    async fn pay_ahead(&self, e: &ClientError, terms: &Terms, cap: u64) -> Result<(), ClientError> {
        let ClientError::Api {
            details: Some(d), ..
        } = e
        else {
            return Err(ClientError::Config(format!(
                "the peer asks for payment without saying how: {e}"
            )));
        };
        let (Some(due), Some(to), Some(issuer_url)) = (
            d["amount_due"].as_u64(),
            d["pay_to"].as_str(),
            d["issuer_url"].as_str(),
        ) else {
            return Err(ClientError::Config(format!(
                "the peer's 402 lacks amount_due, pay_to or issuer_url: {e}"
            )));
        };
        if to != terms.peer || !terms.currencies.iter().any(|c| c.issuer_url == issuer_url) {
            return Err(ClientError::Config(format!(
                "the peer asks to be paid as {to} through {issuer_url}, which its terms do not \
                 name: not paid"
            )));
        }
        if due > cap {
            return Err(ClientError::Config(format!(
                "the peer asks for {due} ahead, more than this call may cost ({cap}): not paid"
            )));
        }
        let to = EntityId::parse(to).map_err(|_| ClientError::Decode("pay_to".into()))?;
        let wallet = IssuerClient::new(
            self.http.clone(),
            issuer_url,
            self.key.clone(),
            Some(CounterStore::beside_key(&self.key_path)),
        );
        wallet.transfer(&to, due, None).await?;
        Ok(())
    }

    /// Solicit bids through the via peer; the cheapest, or `None` when nobody bid.
    pub async fn find(&self, search: &Search) -> anyhow::Result<Option<Found>> {
        Ok(self.find_with_terms(search).await?.map(|(found, _)| found))
    }

    /// [`Buyer::find`] and the via peer's terms.
    async fn find_with_terms(&self, search: &Search) -> anyhow::Result<Option<(Found, Terms)>> {
        let terms = self.via.terms().await.map_err(|e| match e {
            ClientError::Api { status: 404, .. } => anyhow::anyhow!(
                "{} is not a peer (it has no /v1/terms): pass a `peer serve` URL",
                self.via.base_url()
            ),
            other => anyhow::anyhow!(
                "the peer at {} does not answer: {other}",
                self.via.base_url()
            ),
        })?;
        let mut currency = match &search.currency {
            Some(c) => c.clone(),
            None => terms
                .currencies
                .first()
                .map(|c| c.issuer.clone())
                .context("the peer takes no currency")?,
        };
        let solicitation = uuid::Uuid::new_v4().to_string();
        let mut retried = false;
        let bids = loop {
            let s = Solicit {
                document: search.document.clone(),
                max_price: search.max_price,
                currency: currency.clone(),
                hops_left: search.hops.min(SOLICIT_HOPS_MAX),
                respond_by: node::now_ms() + search.wait_ms,
                solicitation: Some(solicitation.clone()),
            };
            let fee = terms.solicit_fee;
            let payer = self.payer(&terms, &currency, search);
            match self
                .paying(&terms, payer.as_ref(), fee, |counter, pay| {
                    let s = s.clone();
                    async move { self.via.solicit_paying(&s, counter, &pay).await }
                })
                .await
            {
                Ok(answer) => break answer.value.bids,
                // Seed 001: the peer names the currencies it takes; ask again in one of them.
                Err(ClientError::Api {
                    code,
                    details: Some(d),
                    ..
                }) if code == "currency_not_accepted" && !retried => {
                    retried = true;
                    currency = d["currencies"][0]["issuer"]
                        .as_str()
                        .context("the peer refused the currency and named none")?
                        .to_owned();
                }
                Err(e) => return Err(e).context("the solicitation failed"),
            }
        };
        let count = bids.len();
        // A bid above the maximum is not one this buyer asked for, whatever the peer says.
        let Some(best) = bids
            .into_iter()
            .filter(|b| b.price <= search.max_price)
            .min_by_key(|b| b.price)
        else {
            return Ok(None);
        };
        Ok(Some((self.found(search, best, currency, count), terms)))
    }

    fn found(&self, search: &Search, best: Bid, currency: String, bids: usize) -> Found {
        let mut path = vec![self.via.base_url().to_owned()];
        path.extend(best.via.clone());
        Found {
            document: search.document.clone(),
            bid: best.bid,
            price: best.price,
            expires_at: best.expires_at,
            currency,
            path,
            bids,
        }
    }

    /// Find, accept, retrieve, check, write `out`; contest when the bytes do not come.
    pub async fn get(&self, search: &Search, out: &Path) -> anyhow::Result<Got> {
        // Before paying anything: the document must be writable where it was asked for.
        check_writable(out)?;
        let Some((found, terms)) = self.find_with_terms(search).await? else {
            return Err(search.no_bid());
        };
        let me = self.key.entity().to_string();
        let payer = self.payer(&terms, &found.currency, search);
        let instructions: Instructions = self
            .paying(&terms, payer.as_ref(), found.price, |counter, pay| {
                let (bid, me) = (found.bid.clone(), me.clone());
                async move { self.via.accept_paying(&bid, &me, counter, &pay).await }
            })
            .await
            .context("accepting the bid failed")?
            .value;
        let fetched = clients::peer::retrieve(&self.http, self.key.clone(), &instructions).await;
        let failure = match &fetched {
            Ok(bytes) if protocol::overlay::document_matches(&search.document, bytes) => None,
            Ok(_) => Some("the bytes served do not match the document's SHA-256".to_owned()),
            Err(e) => Some(format!("the retrieval failed: {e}")),
        };
        if let Some(reason) = failure {
            let refund = self
                .via
                .contest(&found.bid, &reason, self.counters.next())
                .await;
            match refund {
                Ok(a) => bail!("{reason}; contested, {} refunded", a.value.refunded),
                Err(e) => bail!("{reason}; the contest failed too: {e}"),
            }
        }
        let bytes = fetched.context("retrieval")?;
        node::client::write_durably(out, &bytes)
            .with_context(|| format!("cannot write {}", out.display()))?;
        Ok(Got {
            found,
            out: out.display().to_string(),
            bytes: bytes.len(),
            served_by: instructions.peer.clone(),
            served_from: instructions.base_url().unwrap_or_default(),
        })
    }
}

/// Can a file be written at `out` (its directory exists and takes a new file; `out` is not a
/// directory)? Checked with a probe file, removed again.
fn check_writable(out: &Path) -> anyhow::Result<()> {
    if out.is_dir() {
        bail!("--out {} is a directory: name a file", out.display());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let probe = dir.join(format!(".peer-get-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: cannot write in {}", out.display(), dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

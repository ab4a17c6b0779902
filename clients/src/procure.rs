//! Procurement, once (DESIGN section 2): the buyer's moves from a matched agent to a contract
//! the market audits. match (the caller's, through [`crate::market::MarketClient`]) ->
//! [`Seller::open`] (the agent's signed offer) -> [`buy`] (terms at the offer's prices, pay
//! first, propose, wait until active) -> [`register`] (the dual-signed contract and the roots
//! of the objects the market should audit).
//!
//! Used by backup `init`, backup slot replacement and renewal, the cdn publisher and
//! `devnet buy`. What stays with each caller: which agents to ask (the match request and what
//! to do when one does not answer), how much credit to prepay on top of the price, and a
//! [`Journal`] when purchases must survive a crash (backup's `purchases.json`).
//!
//! Use:
//! ```ignore
//! let seller = Seller::open(&http, key.clone(), &chosen.agent, &chosen.endpoint).await?;
//! let order = Order { issuer, block_bytes, duration_s, auditors: vec![market_entity] };
//! let bought = procure::buy(&seller, &order, |t| credit_for(t), &wallet, &mut NoJournal).await?;
//! // ... store objects ...
//! procure::register(&market, &bought.signed, vec![procure::object(name, &root, size)]).await?;
//! ```

use std::sync::Arc;

use node::client::{ClientError, CommandAnswer};
use protocol::book::{RegisteredObject, Registration};
use protocol::market::{Contract, Offer};
use protocol::{EntityId, KeyPair};

use crate::agent::{AgentClient, SignedContract};
use crate::issuer::IssuerClient;
use crate::market::MarketClient;

/// What to buy from one agent.
#[derive(Debug, Clone)]
pub struct Order {
    /// The issuer whose currency pays (the agent must accept it).
    pub issuer: EntityId,
    /// The block: bytes the contract may hold.
    pub block_bytes: u64,
    /// The contract's length from now.
    pub duration_s: u64,
    /// Who may audit the agent for this contract: the market's entity, so that its
    /// registration ([`register`]) lets the market audit.
    pub auditors: Vec<EntityId>,
}

/// An agent that may sell: its client (signing as the buyer) and its signed offer.
pub struct Seller {
    /// The agent's entity id, as the market named it.
    pub agent: String,
    pub endpoint: String,
    pub client: AgentClient,
    /// The offer, its signature checked against the agent that served it.
    pub offer: Offer,
}

impl Seller {
    /// Read the offer of the agent at `endpoint`, as buyer `key`.
    pub async fn open(
        http: &reqwest::Client,
        key: Arc<KeyPair>,
        agent: &str,
        endpoint: &str,
    ) -> Result<Seller, ClientError> {
        let client = AgentClient::new(http.clone(), endpoint, key);
        let (_, offer) = client.offer().await?;
        Ok(Seller {
            agent: agent.to_owned(),
            endpoint: endpoint.to_owned(),
            client,
            offer,
        })
    }

    /// Does the offer allow a block of `block_bytes`? Check it before paying: a payment
    /// for a contract the agent then refuses stays with the agent.
    pub fn has_room_for(&self, block_bytes: u64) -> bool {
        self.offer.block_bytes_max >= block_bytes
    }
}

/// What was bought.
#[derive(Debug, Clone)]
pub struct Bought {
    /// The agent's entity id and endpoint (from the [`Seller`]).
    pub agent: String,
    pub endpoint: String,
    /// The terms as the buyer signed them.
    pub terms: Contract,
    /// The agent's countersigned contract (its `status` is `active` unless the agent did not
    /// see the payment within [`crate::agent::PREPAID_WAIT_MS_MAX`]).
    pub signed: SignedContract,
    /// Prepaid credit paid on top of the price, in minor units.
    pub credit: u64,
}

impl Bought {
    /// What was paid: the price and the credit, in minor units.
    pub fn amount(&self) -> u64 {
        self.terms.contract_price.saturating_add(self.credit)
    }

    /// The contract's end, Unix seconds (0 when unreadable).
    pub fn end_s(&self) -> i64 {
        protocol::market::parse_rfc3339(&self.terms.end).unwrap_or(0)
    }
}

/// Where a buyer keeps its purchases while they happen, so a crash between paying and using
/// a contract loses nothing paid. [`buy`] calls it in this order: [`Journal::record`] before
/// anything is paid (an error stops the purchase), [`Journal::refused`] when the issuer
/// refused the payment (nothing left the wallet), [`Journal::accepted`] once the agent
/// countersigned.
pub trait Journal {
    type Error;
    /// About to pay `amount` for `terms`: make it durable first.
    fn record(&mut self, terms: &Contract, amount: u64) -> Result<(), Self::Error>;
    /// The issuer refused the payment (a 4xx): nothing was paid for `terms`.
    fn refused(&mut self, terms: &Contract) -> Result<(), Self::Error>;
    /// The agent accepted `terms`: `signed` is its countersigned contract.
    fn accepted(&mut self, terms: &Contract, signed: &SignedContract) -> Result<(), Self::Error>;
}

/// No journal: purchases live only in memory (devnet, or a buyer with its own database).
pub struct NoJournal;

impl Journal for NoJournal {
    type Error = std::convert::Infallible;
    fn record(&mut self, _: &Contract, _: u64) -> Result<(), Self::Error> {
        Ok(())
    }
    fn refused(&mut self, _: &Contract) -> Result<(), Self::Error> {
        Ok(())
    }
    fn accepted(&mut self, _: &Contract, _: &SignedContract) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why [`buy`] failed, by step (each caller words its own context).
#[derive(Debug)]
pub enum BuyError<E> {
    /// Terms could not be formed from the offer (the agent does not take the currency, a
    /// price out of range).
    Terms(ClientError),
    /// The price and the credit overflow together.
    Overflow,
    /// The journal failed (nothing is paid after a failed [`Journal::record`]).
    Journal(E),
    /// The payment failed. A 4xx was a refusal (nothing paid); after another error it may
    /// have happened, and the journal keeps the record.
    Pay(ClientError),
    /// The agent refused the paid proposal (the payment stays with the agent for that id).
    Propose(ClientError),
}

impl<E: std::fmt::Display> std::fmt::Display for BuyError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuyError::Terms(e) => write!(f, "forming a contract: {e}"),
            BuyError::Overflow => write!(f, "a contract's price overflows"),
            BuyError::Journal(e) => write!(f, "recording a purchase: {e}"),
            BuyError::Pay(e) => write!(f, "paying for a contract: {e}"),
            BuyError::Propose(e) => write!(f, "proposing a contract: {e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for BuyError<E> {}

/// Buy `order` from `seller`: terms at its offer's prices (the buyer is the seller client's
/// key), `credit(&terms)` of prepaid credit on top of the price, paid first and then
/// proposed (so the contract is active from its first moment and never counts against the
/// agent's share of unpaid contracts). The proposal is retried while the agent answers
/// `too_many_pending` (it has not seen the payment yet), and the answer comes once the
/// contract is active, or after [`crate::agent::PREPAID_WAIT_MS_MAX`] still pending. `journal` hears of
/// every step (see [`Journal`]).
pub async fn buy<J: Journal>(
    seller: &Seller,
    order: &Order,
    credit: impl FnOnce(&Contract) -> u64,
    wallet: &IssuerClient,
    journal: &mut J,
) -> Result<Bought, BuyError<J::Error>> {
    let agent = &seller.client;
    let terms = AgentClient::terms_from_offer(
        &seller.offer,
        agent.signed().key().entity(),
        &order.issuer,
        order.block_bytes,
        order.duration_s,
        order.auditors.clone(),
    )
    .map_err(BuyError::Terms)?;
    let credit = credit(&terms);
    let amount = terms
        .contract_price
        .checked_add(credit)
        .ok_or(BuyError::Overflow)?;
    // The offer may name an account to pay instead of the agent (DESIGN 14); resolved
    // before the journal hears of a payment.
    let payee = match seller.offer.currency(&order.issuer) {
        Some(c) => crate::names::offer_payee(c, &terms.agent)
            .await
            .map_err(BuyError::Pay)?,
        None => crate::names::Payee::entity(terms.agent.clone()),
    };
    journal.record(&terms, amount).map_err(BuyError::Journal)?;
    match wallet.transfer_to(&payee, amount, Some(&terms.id)).await {
        Ok(_) => {}
        // Only a refusal (4xx) says the payment did not happen; after a 5xx (a proxy, an
        // issuer failing mid-way) it may have, so the record stays.
        Err(e @ ClientError::Api { status, .. }) if (400..500).contains(&status) => {
            journal.refused(&terms).map_err(BuyError::Journal)?;
            return Err(BuyError::Pay(e));
        }
        Err(e) => return Err(BuyError::Pay(e)),
    }
    let deadline = crate::agent::prepaid_deadline();
    let mut answer = agent
        .propose_paid(&terms, deadline)
        .await
        .map_err(BuyError::Propose)?;
    journal
        .accepted(&terms, &answer.value)
        .map_err(BuyError::Journal)?;
    agent.wait_active(&terms, &mut answer.value, deadline).await;
    Ok(Bought {
        agent: seller.agent.clone(),
        endpoint: seller.endpoint.clone(),
        terms,
        signed: answer.value,
        credit,
    })
}

/// An object for [`register`]: its name, the Merkle root the agent acknowledged, its size
/// (the leaf count follows from it, [`protocol::merkle::leaf_count_for`]).
pub fn object(name: &str, merkle_root: &str, size: u64) -> RegisteredObject {
    RegisteredObject {
        name: name.to_owned(),
        merkle_root: merkle_root.to_owned(),
        leaf_count: protocol::merkle::leaf_count_for(size),
        size,
    }
}

/// Register the dual-signed contract `signed` with the market, with the objects (see
/// [`object`]) it should audit the agent on.
pub async fn register(
    market: &MarketClient,
    signed: &SignedContract,
    objects: Vec<RegisteredObject>,
) -> Result<CommandAnswer<serde_json::Value>, ClientError> {
    market
        .register(&Registration {
            contract: signed.contract.clone(),
            agent_signature: signed.agent_signature.clone(),
            objects,
        })
        .await
}

/// The market's entity id (the auditor to name in an [`Order`]).
pub async fn market_entity(market: &MarketClient) -> Result<EntityId, ClientError> {
    Ok(market.signed().audience().await?.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_objects_count_their_leaves() {
        let leaf = protocol::merkle::LEAF_BYTES as u64;
        assert_eq!(object("k", "r", 0).leaf_count, 1);
        assert_eq!(object("k", "r", leaf).leaf_count, 1);
        assert_eq!(object("k", "r", leaf + 1).leaf_count, 2);
        assert_eq!(object("k", "r", 5).size, 5);
    }
}

//! The purchase journal (`purchases.json` in the configuration directory): every contract
//! is recorded before it is paid for, and leaves the journal once the repository's config
//! names it. A command that fails between paying and using a contract (an agent refusing
//! after the payment, a wallet running dry on the fifth of six contracts, a kill) leaves
//! its purchases here, so nothing paid is recorded nowhere: the next `init` or `repair` in
//! this directory adopts the ones still usable, and the CLI names the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clients::agent::SignedContract;
use clients::procure::{self, Bought, BuyError, Journal, Order, Seller};
use node::client::SignedClient;
use protocol::KeyPair;
use serde::{Deserialize, Serialize};

use crate::error::{remote, Error};

/// The journal's file in the configuration directory.
pub const JOURNAL_FILE: &str = "purchases.json";

/// One contract paid for (or about to be).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Purchase {
    /// `init`, `renewal` or `replacement`.
    pub purpose: String,
    /// The repository it was bought for (none for `init`, which has no id until it ends).
    pub repository: Option<String>,
    pub slot: usize,
    pub agent: String,
    pub endpoint: String,
    pub terms: protocol::market::Contract,
    /// What is paid: the contract's price plus prepaid credit, in minor units.
    pub amount: u64,
    /// The currency of `amount` (code and decimals), to show it to people; none when the
    /// issuer did not say.
    #[serde(default)]
    pub currency: Option<protocol::ledger::Currency>,
    /// The agent's countersigned contract, once it accepted (a contract the agent refused
    /// after the payment has none: the payment is held by the agent for that id).
    pub signed: Option<SignedContract>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_FILE)
}

/// Every purchase recorded in `dir` (none when there is no journal).
pub fn load(dir: &Path) -> Result<Vec<Purchase>, Error> {
    match std::fs::read(path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path(dir).display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::Io(format!("{}: {e}", path(dir).display()))),
    }
}

/// Write the journal durably (written, synced, renamed, directory synced): a payment is
/// made only once its record would survive a crash.
fn save(dir: &Path, all: &[Purchase]) -> Result<(), Error> {
    use std::io::Write;
    crate::repo::private_dir(dir)?;
    let target = path(dir);
    if all.is_empty() {
        return match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        };
    }
    let tmp = target.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(all).map_err(|e| Error::Io(e.to_string()))?;
    let mut f = crate::repo::private_file(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &target)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Record `p` before paying for it.
pub fn record(dir: &Path, p: Purchase) -> Result<(), Error> {
    let mut all = load(dir)?;
    all.retain(|q| q.terms.id != p.terms.id);
    all.push(p);
    save(dir, &all)
}

/// The agent accepted contract `id`: keep its countersigned contract with the record.
pub fn accepted(dir: &Path, id: &str, signed: &SignedContract) -> Result<(), Error> {
    let mut all = load(dir)?;
    for p in all.iter_mut().filter(|p| p.terms.id == id) {
        p.signed = Some(signed.clone());
    }
    save(dir, &all)
}

/// Drop the records of contracts `ids` (now named by the repository's config, or found
/// unusable).
pub fn settled(dir: &Path, ids: &[&str]) -> Result<(), Error> {
    let mut all = load(dir)?;
    let before = all.len();
    all.retain(|p| !ids.contains(&p.terms.id.as_str()));
    if all.len() == before {
        return Ok(());
    }
    save(dir, &all)
}

/// What a purchase is for: the rest of its record comes from the seller and the terms.
pub struct Purpose {
    /// `init`, `renewal` or `replacement`.
    pub purpose: String,
    pub repository: Option<String>,
    pub slot: usize,
    pub currency: Option<protocol::ledger::Currency>,
}

/// The journal in `dir` as [`clients::procure`] drives it, for one purchase.
struct Recorder<'a> {
    dir: &'a Path,
    why: Purpose,
    agent: &'a str,
    endpoint: &'a str,
}

impl Journal for Recorder<'_> {
    type Error = Error;

    fn record(&mut self, terms: &protocol::market::Contract, amount: u64) -> Result<(), Error> {
        record(
            self.dir,
            Purchase {
                purpose: self.why.purpose.clone(),
                repository: self.why.repository.clone(),
                slot: self.why.slot,
                agent: self.agent.to_owned(),
                endpoint: self.endpoint.to_owned(),
                terms: terms.clone(),
                amount,
                currency: self.why.currency.clone(),
                signed: None,
            },
        )
    }

    fn refused(&mut self, terms: &protocol::market::Contract) -> Result<(), Error> {
        settled(self.dir, &[terms.id.as_str()])
    }

    fn accepted(
        &mut self,
        terms: &protocol::market::Contract,
        signed: &SignedContract,
    ) -> Result<(), Error> {
        accepted(self.dir, &terms.id, signed)
    }
}

/// The credit a repository's contract is bought with: for the key file and config, and a
/// first megabyte of writes.
pub fn first_credit(terms: &protocol::market::Contract) -> u64 {
    protocol::market::per_kib_charge(terms.write_per_kib, 1 << 20).unwrap_or(0)
}

/// Buy `order` from `seller` ([`clients::procure::buy`]), paying `credit(&terms)` on top of
/// the price through `wallet`, recorded in `dir` throughout: recorded before the payment,
/// dropped again when the issuer refuses the payment (nothing left the wallet), kept with the
/// agent's countersignature once accepted (until the config names the contract: [`settled`]),
/// and kept without it when the outcome of the payment is unknown or the agent refused after
/// it.
pub async fn buy(
    dir: &Path,
    why: Purpose,
    seller: &Seller,
    order: &Order,
    credit: impl FnOnce(&protocol::market::Contract) -> u64,
    wallet: &clients::issuer::IssuerClient,
    context: &str,
) -> Result<Bought, Error> {
    let mut journal = Recorder {
        dir,
        why,
        agent: &seller.agent,
        endpoint: &seller.endpoint,
    };
    procure::buy(seller, order, credit, wallet, &mut journal)
        .await
        .map_err(|e| match e {
            BuyError::Terms(e) => remote("forming a contract")(e),
            BuyError::Overflow => Error::Corrupt("a contract's price overflows".into()),
            BuyError::Journal(e) => e,
            BuyError::Pay(e) => remote(format!("paying for {context}"))(e),
            BuyError::Propose(e) => remote(context.to_owned())(e),
        })
}

/// Record a contract just bought as active (DESIGN 11): a `contract` proposal from the
/// wallet's chain (beside its key at `key_path`) to the agent, and its agreement. Never fails
/// the purchase: a record the agent does not agree to now is said in the log and sent again
/// by a later command ([`resend_records`]).
pub async fn record_active(key_path: &Path, key: Arc<KeyPair>, seller: &Seller, bought: &Bought) {
    if bought.signed.status != "active" {
        // Not paid as far as the agent knows yet: it would not agree. A later command sends
        // the record once the contract is in use (`resend_records` writes none itself).
        return;
    }
    let tx = clients::records::contract_active(&bought.terms);
    match clients::records::record_deal(
        key_path,
        key,
        seller.client.signed(),
        protocol::record::kinds::CONTRACT,
        &tx,
    )
    .await
    {
        clients::records::Agreed::Yes(_) => {}
        clients::records::Agreed::Later(why) => eprintln!(
            "warning: the record of contract {} is not agreed by its agent yet (sent again \
             later): {why}",
            bought.terms.id
        ),
    }
}

/// Send the wallet's unanswered record proposals again to the agents of `agents` (each to
/// its own counter-party). Best effort: failures are logged.
pub async fn resend_records(key_path: &Path, key: Arc<KeyPair>, agents: &[SignedClient]) {
    match clients::records::resend_unanswered(key_path, key, agents).await {
        Ok(_) => {}
        Err(e) => eprintln!("warning: cannot send the unanswered records again: {e}"),
    }
}

/// Record each contract of `slots` that has ended and has no `completed` record yet in the
/// wallet's chain (DESIGN 11): its agent's view gives the figures (bytes written and read,
/// audits answered), which the agent agrees to from its own books. Best effort: an agent that
/// does not answer, or a contract already reaped, is left for a later command.
pub async fn record_ended(
    key_path: &Path,
    key: Arc<KeyPair>,
    http: &reqwest::Client,
    slots: &[crate::repo::Slot],
) {
    let now = node::now_s();
    let ended: Vec<&crate::repo::Slot> = slots
        .iter()
        .filter(|s| s.end_s > 0 && s.end_s <= now)
        .collect();
    if ended.is_empty() {
        return;
    }
    let recorded: std::collections::HashSet<String> =
        match clients::records::RecordChain::open_async(key_path, key.clone()).await {
            Ok(chain) => chain
                .own()
                .iter()
                .filter(|b| b.transaction_json()["event"] == "completed")
                .filter_map(|b| b.transaction_json()["contract"].as_str().map(str::to_owned))
                .collect(),
            Err(e) => {
                eprintln!("warning: the record chain: {e}");
                return;
            }
        };
    for slot in ended {
        if recorded.contains(&slot.contract) {
            continue;
        }
        let agent = clients::agent::AgentClient::new(http.clone(), &slot.endpoint, key.clone());
        let Ok(view) = agent.contract(&slot.contract).await else {
            continue;
        };
        if view.status != "ended" {
            continue;
        }
        let tx = clients::records::contract_completed(&view);
        if let clients::records::Agreed::Later(why) = clients::records::record_deal(
            key_path,
            key.clone(),
            agent.signed(),
            protocol::record::kinds::CONTRACT,
            &tx,
        )
        .await
        {
            eprintln!(
                "warning: the completed record of contract {} is not agreed yet: {why}",
                slot.contract
            );
        }
    }
}

/// A line for the user about purchases in `dir` that no config uses, if any.
pub fn unused_note(dir: &Path) -> Option<String> {
    let all = load(dir).ok()?;
    if all.is_empty() {
        return None;
    }
    let amount: u64 = all.iter().fold(0u64, |s, p| s.saturating_add(p.amount));
    // In the currency when every record names the same one, else in minor units.
    let amount = match all.first().and_then(|p| p.currency.clone()) {
        Some(c) if all.iter().all(|p| p.currency.as_ref() == Some(&c)) => c.show(amount),
        _ => format!("{amount} in minor units"),
    };
    let accepted = all.iter().filter(|p| p.signed.is_some()).count();
    Some(format!(
        "{} contracts paid for ({amount}; {accepted} accepted by their agents) \
         are not in use yet; they are recorded in {}: `backup init` or `backup repair` in this \
         config directory uses those still active; the others lapse at their end",
        all.len(),
        path(dir).display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purchase(id: &str) -> Purchase {
        let key = protocol::KeyPair::generate().expect("key");
        Purchase {
            purpose: "init".into(),
            repository: None,
            slot: 0,
            agent: key.entity().to_string(),
            endpoint: "http://127.0.0.1:1".into(),
            terms: protocol::market::Contract {
                id: id.into(),
                agent: key.entity().clone(),
                buyer: key.entity().clone(),
                issuer: key.entity().clone(),
                block_bytes: 1 << 20,
                start: protocol::market::format_rfc3339(0),
                end: protocol::market::format_rfc3339(60),
                contract_price: 10,
                write_per_kib: 1,
                read_per_kib: 1,
                auditors: vec![],
            },
            amount: 1034,
            currency: Some(protocol::ledger::Currency {
                code: "EUR".into(),
                name: String::new(),
                decimals: 2,
            }),
            signed: None,
        }
    }

    /// Recorded before paying, kept through a restart (it is a file), dropped once settled;
    /// the note names what is left.
    #[test]
    fn purchases_are_recorded_until_settled() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert!(load(tmp.path()).expect("empty").is_empty());
        assert_eq!(unused_note(tmp.path()), None);
        record(tmp.path(), purchase("a")).expect("record");
        record(tmp.path(), purchase("b")).expect("record");
        assert_eq!(load(tmp.path()).expect("load").len(), 2);
        let note = unused_note(tmp.path()).expect("a note");
        assert!(
            note.contains("2 contracts") && note.contains("20.68 EUR"),
            "{note}"
        );
        settled(tmp.path(), &["a"]).expect("settle");
        let left = load(tmp.path()).expect("load");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].terms.id, "b");
        settled(tmp.path(), &["b"]).expect("settle");
        assert!(!tmp.path().join(JOURNAL_FILE).exists());
    }
}

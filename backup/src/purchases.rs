//! The purchase journal (`purchases.json` in the configuration directory): every contract
//! is recorded before it is paid for, and leaves the journal once the repository's config
//! names it. A command that fails between paying and using a contract (an agent refusing
//! after the payment, a wallet running dry on the fifth of six contracts, a kill) leaves
//! its purchases here, so nothing paid is recorded nowhere: the next `init` or `repair` in
//! this directory adopts the ones still usable, and the CLI names the rest.

use std::path::{Path, PathBuf};

use clients::agent::SignedContract;
use serde::{Deserialize, Serialize};

use crate::error::Error;

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

/// Pause between proposals while the agent has not seen the payment yet.
const PROPOSE_POLL_MS: u64 = 100;

/// Buy `p.terms` from `agent`, paying `credit` on top of the price through `wallet`,
/// recorded in `dir` throughout: recorded before the payment, dropped again when the issuer
/// refuses the payment (nothing left the wallet), kept with the agent's countersignature
/// once accepted (until the config names the contract: [`settled`]), and kept without it
/// when the outcome of the payment is unknown or the agent refused after it. Pays first and
/// then proposes, as [`clients::agent::AgentClient::buy`] does.
pub async fn buy(
    dir: &Path,
    p: Purchase,
    agent: &clients::agent::AgentClient,
    wallet: &clients::issuer::IssuerClient,
    credit: u64,
    context: &str,
) -> Result<SignedContract, Error> {
    use node::client::ClientError;
    use std::time::{Duration, Instant};
    let terms = p.terms.clone();
    record(dir, p)?;
    match clients::agent::pay(wallet, &terms, credit).await {
        Ok(()) => {}
        // Only a refusal (4xx) says the payment did not happen; after a 5xx (a proxy, an
        // issuer failing mid-way) it may have, so the record stays.
        Err(e @ ClientError::Api { status, .. }) if (400..500).contains(&status) => {
            settled(dir, &[terms.id.as_str()])?;
            return Err(crate::error::remote(format!("paying for {context}"))(e));
        }
        Err(e) => return Err(crate::error::remote(format!("paying for {context}"))(e)),
    }
    let deadline = Instant::now() + Duration::from_millis(clients::agent::PREPAID_WAIT_MS_MAX);
    let mut answer = loop {
        match agent.propose(&terms).await {
            Err(ClientError::Api { code, .. })
                if code == "too_many_pending" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(PROPOSE_POLL_MS)).await;
            }
            other => break other.map_err(crate::error::remote(context.to_owned()))?,
        }
    };
    accepted(dir, &terms.id, &answer.value)?;
    // Accepted before the agent saw the payment: it turns active as soon as it does.
    while answer.value.status != "active" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(PROPOSE_POLL_MS)).await;
        if agent
            .contract(&terms.id)
            .await
            .is_ok_and(|v| v.status == "active")
        {
            answer.value.status = "active".into();
        }
    }
    Ok(answer.value)
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

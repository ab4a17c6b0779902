//! The two kinds of account (DESIGN 14, seed 000 section 5.1), in one place:
//!
//! - **Opaque**: the customer is `name@host`; its money is held under the bank's entity at
//!   each issuer, and the bank's own books (`store`) say how much is whose.
//! - **Transparent**: the bank keeps the customer's own key (`DATA/customers/NAME.key`, mode
//!   0600, its command counters beside it) and acts for it at the issuers: the balance and
//!   deposits are the issuer's for that key, and payments are signed with it. The bank's
//!   books only keep the app tokens' allowances.
//!
//! Everything that differs by kind (the balance, the deposits, paying, what a name resolves
//! to) asks here.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clients::issuer::IssuerClient;
use node::client::CounterStore;
use protocol::ledger::DepositsPage;
use protocol::{EntityId, KeyPair};

use crate::error::Error;
use crate::serve::Bank;
use crate::store;

/// Where a transparent customer's key lives under the bank's data directory.
pub fn key_path(data_dir: &Path, customer: &str) -> PathBuf {
    data_dir.join("customers").join(format!("{customer}.key"))
}

/// Make a transparent customer's key (before the customer is recorded, so a customer never
/// exists without its key). An existing key file is kept: a retried `customer add` after
/// a crash finds it.
pub fn create_key(data_dir: &Path, customer: &str) -> Result<EntityId, Error> {
    let path = key_path(data_dir, customer);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::Internal(e.to_string()))?;
    }
    let key = node::keyfile::load_or_create(&path).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(key.entity().clone())
}

/// A customer's kind, resolved once per request: what every function below takes.
pub enum Custody {
    /// Held under the bank's entity, in the bank's books.
    Opaque,
    /// The customer's own key (loaded) and its file (its counters live beside it).
    Transparent { key: Arc<KeyPair>, path: PathBuf },
}

impl Custody {
    /// `customer`'s kind, its key loaded when it has one (on the blocking pool, with the
    /// kind's lookup).
    pub async fn of(bank: &Bank, customer: &str) -> Result<Custody, Error> {
        let (name, path) = (customer.to_owned(), key_path(&bank.data_dir, customer));
        bank.db
            .run(move |conn| {
                if store::customer_kind(conn, &name)?.as_deref() != Some(store::TRANSPARENT) {
                    return Ok(Custody::Opaque);
                }
                let key = node::keyfile::load(&path).map_err(|e| Error::Internal(e.to_string()))?;
                Ok(Custody::Transparent {
                    key: Arc::new(key),
                    path,
                })
            })
            .await
    }

    /// The entity the customer is paid at: its own key's (transparent: true), or the bank's
    /// (opaque, naming the customer as `userid`).
    pub fn entity<'a>(&'a self, bank: &'a Bank) -> (&'a EntityId, bool) {
        match self {
            Custody::Transparent { key, .. } => (key.entity(), true),
            Custody::Opaque => (bank.key.entity(), false),
        }
    }

    /// A transparent customer's wallet at `issuer` (its key, its counters); `None` for an
    /// opaque one.
    pub fn wallet(&self, bank: &Bank, issuer: &str) -> Result<Option<IssuerClient>, Error> {
        let Custody::Transparent { key, path } = self else {
            return Ok(None);
        };
        let currency = bank
            .currency(issuer)
            .ok_or_else(|| Error::UnknownCurrency(issuer.to_owned()))?;
        Ok(Some(IssuerClient::new(
            bank.http.clone(),
            &currency.url,
            key.clone(),
            Some(CounterStore::beside_key(path)),
        )))
    }
}

/// A customer's balance in `issuer`'s currency.
pub async fn balance(
    bank: &Bank,
    custody: &Custody,
    customer: &str,
    issuer: &str,
) -> Result<i64, Error> {
    if let Some(wallet) = custody.wallet(bank, issuer)? {
        return Ok(wallet
            .balance()
            .await
            .map_err(|e| Error::Upstream(format!("the issuer: {e}")))?
            .balance);
    }
    let (customer, issuer) = (customer.to_owned(), issuer.to_owned());
    bank.db
        .run(move |conn| store::balance(conn, &customer, &issuer))
        .await
}

/// A transparent customer's deposits, as its issuer lists them (`None` for an opaque one,
/// whose deposits are the bank's books').
pub async fn own_deposits(
    bank: &Bank,
    custody: &Custody,
    issuer: &str,
    after: u64,
    wait_ms: u64,
    transaction_id: Option<&str>,
) -> Result<Option<DepositsPage>, Error> {
    let Some(wallet) = custody.wallet(bank, issuer)? else {
        return Ok(None);
    };
    wallet
        .deposits(after, wait_ms, transaction_id)
        .await
        .map(Some)
        .map_err(|e| Error::Upstream(format!("the issuer: {e}")))
}

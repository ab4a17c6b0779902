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

use clients::issuer::IssuerClient;
use node::client::CounterStore;
use protocol::ledger::DepositsPage;
use protocol::EntityId;

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

/// A customer's own key, when the account is transparent.
pub async fn own_key(bank: &Bank, customer: &str) -> Result<Option<PathBuf>, Error> {
    let name = customer.to_owned();
    let kind = bank
        .db
        .run(move |conn| store::customer_kind(conn, &name))
        .await?;
    Ok((kind.as_deref() == Some(store::TRANSPARENT)).then(|| key_path(&bank.data_dir, customer)))
}

/// The transparent customer's wallet at `issuer` (its key, its counters).
pub fn own_wallet(bank: &Bank, key: &Path, issuer: &str) -> Result<IssuerClient, Error> {
    let currency = bank
        .currency(issuer)
        .ok_or_else(|| Error::UnknownCurrency(issuer.to_owned()))?;
    let loaded = node::keyfile::load(key).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(IssuerClient::new(
        bank.http.clone(),
        &currency.url,
        std::sync::Arc::new(loaded),
        Some(CounterStore::beside_key(key)),
    ))
}

/// The entity a customer is paid at: its own key's (transparent), or the bank's (opaque,
/// naming the customer as `userid`).
pub async fn entity_of(bank: &Bank, customer: &str) -> Result<(EntityId, bool), Error> {
    match own_key(bank, customer).await? {
        Some(path) => {
            let key = node::keyfile::load(&path).map_err(|e| Error::Internal(e.to_string()))?;
            Ok((key.entity().clone(), true))
        }
        None => Ok((bank.key.entity().clone(), false)),
    }
}

/// A customer's balance in `issuer`'s currency.
pub async fn balance(bank: &Bank, customer: &str, issuer: &str) -> Result<i64, Error> {
    if let Some(key) = own_key(bank, customer).await? {
        return Ok(own_wallet(bank, &key, issuer)?
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
    customer: &str,
    issuer: &str,
    after: u64,
    wait_ms: u64,
    transaction_id: Option<&str>,
) -> Result<Option<DepositsPage>, Error> {
    let Some(key) = own_key(bank, customer).await? else {
        return Ok(None);
    };
    own_wallet(bank, &key, issuer)?
        .deposits(after, wait_ms, transaction_id)
        .await
        .map(Some)
        .map_err(|e| Error::Upstream(format!("the issuer: {e}")))
}

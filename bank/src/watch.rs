//! Following the bank's deposits at each issuer (seed 000 section 5.2, step 6): a long poll
//! from the stored cursor; each page is credited to the customers it names in one
//! transaction with the cursor (`store::credit_deposits`), so a crash between the two is not
//! possible and no deposit is credited twice.

use std::sync::Arc;
use std::time::Duration;

use crate::error::Error;
use crate::serve::Bank;

/// How long one poll of the issuer waits for a new deposit.
pub const DEPOSITS_WAIT_MS: u64 = 20_000;
/// Back-off after a failed poll, doubling up to the max.
pub const BACKOFF_MS_MIN: u64 = 200;
pub const BACKOFF_MS_MAX: u64 = 10_000;

/// Credit `issuer`'s deposits to customers as they arrive, forever.
pub async fn follow_deposits(bank: Arc<Bank>, issuer: String) {
    let mut backoff = BACKOFF_MS_MIN;
    loop {
        match step(&bank, &issuer).await {
            Ok(()) => backoff = BACKOFF_MS_MIN,
            Err(e) => {
                tracing::warn!(issuer, error = %e, "deposit watcher");
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MS_MAX);
            }
        }
    }
}

/// One poll: the deposits after the cursor, credited.
async fn step(bank: &Arc<Bank>, issuer: &str) -> Result<(), Error> {
    let currency = bank
        .currency(issuer)
        .ok_or_else(|| Error::UnknownCurrency(issuer.to_owned()))?;
    let key = issuer.to_owned();
    let after = bank
        .db
        .run(move |conn| crate::store::deposits_cursor(conn, &key))
        .await?;
    let page = currency
        .wallet
        .deposits(after, DEPOSITS_WAIT_MS, None)
        .await
        .map_err(|e| Error::Upstream(e.to_string()))?;
    if page.deposits.is_empty() {
        return Ok(());
    }
    let key = issuer.to_owned();
    let credited = bank
        .db
        .run(move |conn| crate::store::credit_deposits(conn, &key, &page.deposits, page.next))
        .await?;
    if credited > 0 {
        bank.credited.send_modify(|n| *n = n.wrapping_add(1));
    }
    Ok(())
}

//! Double spenders (DESIGN 10): the market follows the fraud feed of every issuer whose
//! currency is in the book (`node::paywords::follow_frauds`, proofs checked on their own
//! before they are kept) and refuses the registrations and reports of a payer with a proof.

use protocol::EntityId;

use super::Market;
use crate::error::Error;

/// The book's currencies may be this old when the fraud feeds are read.
const ISSUERS_STALE_MS_MAX: u64 = 10_000;
/// How often the market reads the issuers' fraud feeds.
pub const FRAUD_FOLLOW_INTERVAL_MS: u64 = 5_000;

impl Market {
    /// Read every book currency's issuer's fraud feed once; answers the payers newly marked.
    /// An issuer that does not answer is skipped until the next round.
    pub async fn follow_frauds(&self) -> Result<Vec<EntityId>, Error> {
        self.fresh_index(ISSUERS_STALE_MS_MAX).await?;
        let issuers = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .issuers();
        let http = node::client::http_client(&node::client::ClientOptions::default())
            .map_err(|e| Error::Db(db::DbError::Task(e.to_string())))?;
        let mut marked = Vec::new();
        for (issuer, url) in issuers {
            let Ok(issuer) = EntityId::parse(&issuer) else {
                continue;
            };
            let client = node::client::SignedClient::new(http.clone(), &url, self.key.clone());
            match node::paywords::follow_frauds(&self.db, &issuer, &client).await {
                Ok(payers) => marked.extend(payers),
                Err(e) => tracing::debug!(issuer = %url, error = %e, "fraud feed not read"),
            }
        }
        for payer in &marked {
            tracing::warn!(payer = %payer, "an issuer proved this payer double spent paywords");
        }
        Ok(marked)
    }

    /// Refuse `buyer` when an issuer proved it double spent (`403 payer_fraud`).
    pub(super) async fn refuse_fraudster(&self, buyer: &EntityId) -> Result<(), Error> {
        let buyer = buyer.clone();
        let fraud = self
            .db
            .run(move |conn| node::paywords::is_fraudster(conn, &buyer).map_err(Error::from))
            .await?;
        if fraud {
            return Err(Error::PayerFraud);
        }
        Ok(())
    }
}

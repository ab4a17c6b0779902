//! Paywords at the agent (DESIGN 10, issue 15): a charged request (a write, a read, an audit
//! past the free one) may carry `LCP-Payword`; its new words are credited to the contract at
//! once, with no issuer involved. The words are redeemed in batches later (`tasks::paywords`),
//! and buyers an issuer proved double spent are refused.
//!
//! Invariant: the words noted and the contract's credit commit in one transaction, before the
//! request is served: a crash never loses words the agent accepted, nor credits words twice.

use diesel::prelude::*;
use node::client::SignedClient;
pub use node::paywords::PaywordHeaders;
use protocol::EntityId;

use super::Agent;
use crate::error::Error;
use crate::schema::contracts;

/// The words one request carries for one contract, ready to be noted inside a transaction
/// ([`PaywordWork::apply`]): what [`Agent::take_payword`] does in a transaction of its own,
/// and a read does in the transaction that charges it (one trip to the database, not two).
pub struct PaywordWork {
    id: String,
    payer: EntityId,
    vendor: EntityId,
    header: String,
    touchstone: Option<String>,
    cap: u64,
    now: i64,
    /// Words that pay a debt off bring the buyer's tab down, as a deposit does.
    tabs: Option<(
        std::sync::Arc<protocol::KeyPair>,
        crate::config::AgentConfig,
    )>,
}

impl PaywordWork {
    /// The contract the words pay.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Check and note the words, and credit the contract, inside the caller's transaction.
    /// Refused words change nothing (`402 invalid_payword`, `payword_cap_reached`,
    /// `payer_fraud`); the caller's transaction then rolls back.
    pub fn apply(&self, conn: &mut db::AnyConnection) -> Result<node::paywords::Accepted, Error> {
        // The contract is read in the transaction that credits it.
        let row = contracts::table
            .find(&self.id)
            .first::<super::rows::ContractRow>(conn)
            .optional()?
            .ok_or(Error::UnknownContract)?;
        Agent::require_buyer(&row, &self.payer, false)?;
        let issuer = EntityId::parse(&row.issuer)
            .map_err(|_| Error::Db(db::DbError::Task("a contract's issuer is malformed".into())))?;
        let accepted = node::paywords::accept(
            conn,
            self.now,
            &issuer,
            &self.payer,
            &self.vendor,
            &self.header,
            self.touchstone.as_deref(),
            self.cap,
        )??;
        if accepted.value > 0 {
            let value = i64::try_from(accepted.value)
                .map_err(|_| Error::Db(db::DbError::Task("payword value".into())))?;
            let noted = super::usage::credit_paid(conn, &self.id, value, true)?;
            if let Some((key, config)) = &self.tabs {
                let tab = super::tab::TabRef::of(key, config, row.buyer.clone(), &row.issuer);
                super::tab::mirror(conn, &tab, true)?;
            }
            super::usage::note_paid(conn, noted)?;
        }
        Ok(accepted)
    }
}

impl Agent {
    /// The words `headers` carry from `payer` (the request's signer, who must be contract
    /// `id`'s buyer), to note with [`PaywordWork::apply`]; `None` without a payword.
    pub fn payword_work(
        &self,
        id: &str,
        payer: &EntityId,
        headers: &PaywordHeaders,
    ) -> Option<PaywordWork> {
        let header = headers.payword.clone()?;
        Some(PaywordWork {
            id: id.to_owned(),
            payer: payer.clone(),
            vendor: self.key.entity().clone(),
            header,
            touchstone: headers.touchstone.clone(),
            cap: self.config.payword_unredeemed_max,
            now: node::now_s(),
            tabs: (self.config.tab_limit > 0).then(|| (self.key.clone(), self.config.clone())),
        })
    }

    /// Count words [`PaywordWork::apply`] accepted (after its transaction committed).
    pub fn payword_taken(&self, id: &str, accepted: &node::paywords::Accepted) {
        if accepted.value > 0 {
            self.payword_payments
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                contract = id,
                words = accepted.words,
                value = accepted.value,
                "paywords accepted"
            );
        }
    }

    /// Credit contract `id` with the words `headers` carry from `payer` (the request's signer,
    /// who must be the contract's buyer). Nothing to do without a payword. Refused words leave
    /// the credit as it was (`402 invalid_payword`, `payword_cap_reached`, `payer_fraud`).
    ///
    /// `for_read`: the words pay for a read or an audit, whose charge is itself committed
    /// relaxed (`agents::reads`): then so are the words, since losing both in a power cut is
    /// one read given free and nothing else (a kill -9 loses neither). Words for writes and
    /// payments ahead are fsynced before the answer.
    pub async fn take_payword(
        &self,
        id: &str,
        payer: &EntityId,
        headers: &PaywordHeaders,
        for_read: bool,
    ) -> Result<u64, Error> {
        match self.payword_work(id, payer, headers) {
            Some(work) => self.note_payword(work, for_read).await,
            None => Ok(0),
        }
    }

    /// [`Agent::take_payword`] for words already taken apart.
    pub async fn note_payword(&self, work: PaywordWork, for_read: bool) -> Result<u64, Error> {
        let id = work.id.clone();
        let accepted = self
            .db
            .run(move |conn| {
                if for_read {
                    db::relaxed_write_transaction(conn, |conn| work.apply(conn))
                } else {
                    db::write_transaction(conn, |conn| work.apply(conn))
                }
            })
            .await?;
        self.payword_taken(&id, &accepted);
        Ok(accepted.value)
    }

    /// Follow the issuer's fraud proofs (not at shutdown), then redeem this agent's words due
    /// at `issuer` (all of them with `all`). Answers the value credited by the issuer (fees
    /// deducted). The issuer is not asked anything else when nothing is due.
    pub async fn redeem_paywords(
        &self,
        issuer: &EntityId,
        client: &SignedClient,
        counter: u64,
        all: bool,
    ) -> Result<u64, String> {
        if !all {
            for payer in node::paywords::follow_frauds(&self.db, issuer, client).await? {
                tracing::warn!(payer = %payer, "the issuer proved this payer double spent: refusing its paywords and contracts");
                self.note_error(format!(
                    "double spend proven against {payer}: refused from now on"
                ));
            }
        }
        let threshold = self.config.payword_redeem_threshold;
        let redeemed =
            node::paywords::redeem_due(&self.db, issuer, client, counter, threshold, all).await?;
        if !all {
            node::records::record_redemption(&self.records, client, &redeemed).await;
        }
        if redeemed.credited > 0 {
            // The history's cash received for words (issue 22); the issuer already paid.
            let (currency, credited) = (issuer.to_string(), redeemed.credited);
            let noted = self
                .db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| {
                        let delta = super::history::Delta {
                            paywords_redeemed: i64::try_from(credited).unwrap_or(i64::MAX),
                            ..Default::default()
                        };
                        super::history::note(conn, node::now_s(), &currency, &delta)
                            .map_err(Error::from)
                    })
                })
                .await;
            if let Err(e) = noted {
                tracing::warn!(error = %e, "the history missed a redemption");
            }
        }
        Ok(redeemed.credited)
    }

    /// Paywords held, redeemed and pending per currency, for the dashboard.
    pub async fn payword_holdings(&self) -> Result<Vec<node::paywords::Holdings>, Error> {
        Ok(self.db.run(node::paywords::holdings).await?)
    }
}

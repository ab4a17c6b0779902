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

impl Agent {
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
        let Some(header) = headers.payword.clone() else {
            return Ok(0);
        };
        let (payer, vendor, id) = (payer.clone(), self.key.entity().clone(), id.to_owned());
        let id_shown = id.clone();
        let touchstone = headers.touchstone.clone();
        let cap = self.config.payword_unredeemed_max;
        let now = node::now_s();
        // Words that pay a debt off bring the buyer's tab down, as a deposit does.
        let tabs = (self.config.tab_limit > 0).then(|| (self.key.clone(), self.config.clone()));
        let accepted = self
            .db
            .run(move |conn| {
                let work = |conn: &mut db::AnyConnection| {
                    // The contract is read in the transaction that credits it: one trip to
                    // the database per payment.
                    let row = contracts::table
                        .find(&id)
                        .first::<super::rows::ContractRow>(conn)
                        .optional()?
                        .ok_or(Error::UnknownContract)?;
                    Agent::require_buyer(&row, &payer, false)?;
                    let issuer = EntityId::parse(&row.issuer).map_err(|_| {
                        Error::Db(db::DbError::Task("a contract's issuer is malformed".into()))
                    })?;
                    let accepted = node::paywords::accept(
                        conn,
                        now,
                        &issuer,
                        &payer,
                        &vendor,
                        &header,
                        touchstone.as_deref(),
                        cap,
                    )??;
                    if accepted.value > 0 {
                        let value = i64::try_from(accepted.value)
                            .map_err(|_| Error::Db(db::DbError::Task("payword value".into())))?;
                        let noted = super::usage::credit_paid(conn, &id, value, true)?;
                        if let Some((key, config)) = &tabs {
                            let tab =
                                super::tab::TabRef::of(key, config, row.buyer.clone(), &row.issuer);
                            super::tab::mirror(conn, &tab, true)?;
                        }
                        super::usage::note_paid(conn, noted)?;
                    }
                    Ok::<_, Error>(accepted)
                };
                if for_read {
                    db::relaxed_write_transaction(conn, work)
                } else {
                    db::write_transaction(conn, work)
                }
            })
            .await?;
        if accepted.value > 0 {
            self.payword_payments
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                contract = id_shown,
                words = accepted.words,
                value = accepted.value,
                "paywords accepted"
            );
        }
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

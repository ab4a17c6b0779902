//! Paywords at the agent (DESIGN 10, issue 15): a charged request (a write, a read, an audit
//! past the free one) may carry `LCP-Payword`; its new words are credited to the contract at
//! once, with no issuer involved. The words are redeemed in batches later (`tasks::paywords`),
//! and buyers an issuer proved double spent are refused.
//!
//! Invariant: the words noted and the contract's credit commit in one transaction, before the
//! request is served: a crash never loses words the agent accepted, nor credits words twice.

use diesel::prelude::*;
use node::client::SignedClient;
use protocol::payword::{RedemptionsAnswer, HEADER_PAYWORD, HEADER_TOUCHSTONE};
use protocol::EntityId;

use super::Agent;
use crate::error::Error;
use crate::schema::contracts;

/// The payword headers of a request, if it carries one.
#[derive(Debug, Clone, Default)]
pub struct PaywordHeaders {
    pub payword: Option<String>,
    pub touchstone: Option<String>,
}

impl PaywordHeaders {
    pub fn of(req: &actix_web::HttpRequest) -> PaywordHeaders {
        let text = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        PaywordHeaders {
            payword: text(HEADER_PAYWORD),
            touchstone: text(HEADER_TOUCHSTONE),
        }
    }
}

impl Agent {
    /// Credit contract `id` with the words `headers` carry from `payer` (the request's signer,
    /// who must be the contract's buyer). Nothing to do without a payword. Refused words leave
    /// the credit as it was (`402 invalid_payword`, `payword_cap_reached`, `payer_fraud`).
    pub async fn take_payword(
        &self,
        id: &str,
        payer: &EntityId,
        headers: &PaywordHeaders,
    ) -> Result<u64, Error> {
        let Some(header) = headers.payword.clone() else {
            return Ok(0);
        };
        let row = self.load_contract(id).await?;
        Self::require_buyer(&row, payer, false)?;
        let issuer = EntityId::parse(&row.issuer)
            .map_err(|_| Error::Db(db::DbError::Task("a contract's issuer is malformed".into())))?;
        let (payer, vendor, id) = (payer.clone(), self.key.entity().clone(), id.to_owned());
        let touchstone = headers.touchstone.clone();
        let cap = self.config.payword_unredeemed_max;
        let now = node::now_s();
        let accepted = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
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
                        diesel::update(contracts::table.find(&id))
                            .set(contracts::paid.eq(contracts::paid + value))
                            .execute(conn)?;
                    }
                    Ok::<_, Error>(accepted)
                })
            })
            .await?;
        if accepted.value > 0 {
            self.payword_payments
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(contract = %row.id, words = accepted.words, value = accepted.value, "paywords accepted");
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
            self.follow_frauds(issuer, client).await?;
        }
        let due = {
            let (issuer, threshold) = (issuer.clone(), self.config.payword_redeem_threshold);
            self.db
                .run(move |conn| node::paywords::due(conn, &issuer, node::now_s(), threshold, all))
                .await
                .map_err(|e| e.to_string())?
        };
        if due.is_empty() {
            return Ok(0);
        }
        let body = node::paywords::request_body(&due).map_err(|e| e.to_string())?;
        let answer: RedemptionsAnswer = client
            .command("POST", "/lcp/v1/redemptions", body, counter)
            .await
            .map_err(|e| e.to_string())?
            .value;
        let credited = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| node::paywords::settle(conn, &due, &answer))
            })
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(issuer = %issuer, credited, "paywords redeemed");
        Ok(credited)
    }

    /// Read `issuer`'s fraud proofs after this agent's cursor; keep the payers of those that
    /// verify (their paywords and contracts are refused from now on).
    async fn follow_frauds(&self, issuer: &EntityId, client: &SignedClient) -> Result<(), String> {
        let after = {
            let issuer = issuer.clone();
            self.db
                .run(move |conn| node::paywords::fraud_cursor(conn, &issuer))
                .await
                .map_err(|e| e.to_string())?
        };
        let page: protocol::payword::FraudsPage = client
            .query(&format!("/lcp/v1/frauds?after={after}"), 0)
            .await
            .map_err(|e| e.to_string())?;
        if page.frauds.is_empty() && page.next == after {
            return Ok(());
        }
        let issuer = issuer.clone();
        let marked = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    node::paywords::note_frauds(conn, &issuer, &page)
                })
            })
            .await
            .map_err(|e| e.to_string())?;
        for payer in marked {
            tracing::warn!(payer = %payer, "the issuer proved this payer double spent: refusing its paywords and contracts");
            self.note_error(format!(
                "double spend proven against {payer}: refused from now on"
            ));
        }
        Ok(())
    }

    /// Paywords held, redeemed and pending per currency, for the dashboard.
    pub async fn payword_holdings(&self) -> Result<Vec<node::paywords::Holdings>, Error> {
        Ok(self.db.run(node::paywords::holdings).await?)
    }
}

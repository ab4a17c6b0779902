//! One node's part in a payment over credit paths (DESIGN 12, seed 003): prepare, fulfil,
//! reject, and the sweep that settles what a lost answer left open.
//!
//! How a payment moves (Interledger's shape: the fulfilment travels back as the answers):
//! - An intermediate hop holds the amount on its lines with the sender (`in`) and with the
//!   next hop (`out`) in one transaction, forwards the prepare with an expiry
//!   `HOP_EXPIRY_MARGIN_MS` earlier, and waits. The next hop's signed answer either carries
//!   the secret (both holds commit) or an error (both are released).
//! - The target opens the sealed secret first (a payment it cannot open holds nothing), holds
//!   each path's amount as it arrives, and when the paths' amounts reach the total commits
//!   them all at once and answers every waiting prepare with the secret. If the total has not
//!   arrived shortly before its earliest hold lapses, it releases them all and answers
//!   `payment_incomplete`: nothing moves unless the whole payment arrives.
//!
//! Who settles what (so that the two copies of every line end alike, even across kill -9):
//! - an `in` hold is this node's to settle: committed only with the secret, before it
//!   expires; released at expiry (the sweep) or when the next hop refuses;
//! - an `out` hold is settled only by the peer's word: its answer, `POST /v1/credit/fulfill`,
//!   or, when the answer was lost, the sweep asking the peer (`GET
//!   /v1/credit/payments/{payment}`) after the hold lapsed. A hop that lost the answer to its
//!   forward releases its `in` hold (its upstream hears the error and releases too), and bears
//!   the loss if the peer turns out to have committed, as an Interledger connector does.

use std::sync::Arc;
use std::time::Duration;

use protocol::credit::{
    check_secret, route_of, CreditError, Fulfill, Fulfilled, PaymentStatus, Prepare, Reject,
    ANSWER_SLACK_MS, HOP_EXPIRY_MARGIN_MS,
};
use protocol::EntityId;

use super::holds::{self, Direction, HopHold, Select};
use super::{Arrived, CreditBook, CreditNodeError, Outcome};
use crate::client::ClientError;

impl CreditBook {
    /// `sender` sends this node a prepare: hold, forward or wait for the total, and answer the
    /// secret or why not.
    pub async fn prepare(
        self: &Arc<Self>,
        sender: &EntityId,
        p: Prepare,
    ) -> Result<Fulfilled, CreditNodeError> {
        p.validate()?;
        let me = self.key.entity().to_string();
        let at = p.path.iter().position(|e| *e == me).ok_or_else(|| {
            CreditNodeError::Refused("this node is not on the payment's path".into())
        })?;
        if at == 0 || p.path[at - 1] != sender.as_str() {
            return Err(CreditNodeError::Refused(
                "a prepare comes from the hop before this node on its path".into(),
            ));
        }
        let now = crate::now_ms();
        let is_target = at + 1 == p.path.len();
        let floor = now
            + if is_target {
                ANSWER_SLACK_MS
            } else {
                HOP_EXPIRY_MARGIN_MS
            };
        if p.expires_at <= floor {
            return Err(
                CreditError::Expiry("the hold would lapse before it could be used".into()).into(),
            );
        }
        if p.expires_at > now.saturating_add(self.policy.hold_ms_max) {
            return Err(CreditError::Expiry(format!(
                "this node holds for at most {} ms",
                self.policy.hold_ms_max
            ))
            .into());
        }
        let hop = HopHold {
            payment: p.payment.clone(),
            route: route_of(&p.path),
            direction: Direction::In,
            peer: sender.to_string(),
            payer: p.path[0].clone(),
            target: p.path[p.path.len() - 1].clone(),
            total: p.total,
            condition: p.condition.clone(),
            expires_ms: p.expires_at,
            created_ms: now,
        };
        if is_target {
            // Opened before anything is held: a payment the target cannot open never holds.
            let secret = self.credit_key.open(&p.sealed_secret, &p.condition)?;
            return self.arrive(hop, p, hex::encode(secret)).await;
        }
        self.forward(hop, p, at).await
    }

    /// An intermediate hop: hold both sides, forward, settle by the answer.
    async fn forward(
        self: &Arc<Self>,
        hop: HopHold,
        p: Prepare,
        at: usize,
    ) -> Result<Fulfilled, CreditNodeError> {
        let me = self.key.entity().to_string();
        let next = p.path[at + 1].clone();
        let client = self.neighbor_client(&next).ok_or_else(|| {
            CreditNodeError::NoRoute(format!("this node does not know where {next} answers"))
        })?;
        let next_expires = p.expires_at - HOP_EXPIRY_MARGIN_MS;
        let out = HopHold {
            direction: Direction::Out,
            peer: next.clone(),
            expires_ms: next_expires,
            ..hop.clone()
        };
        let (hop_in, parts_in, currency, amount) =
            (hop.clone(), p.lines.clone(), p.currency.clone(), p.amount);
        let (me_c, next_c) = (me.clone(), next.clone());
        let out_parts = self
            .db
            .run(move |conn| {
                holds::write_retrying(conn, |conn| {
                    let parts_in = if parts_in.is_empty() {
                        let lines = holds::hop_lines(conn, &hop_in.peer, &me_c, &currency)?;
                        holds::split_hop(&lines, amount)?
                    } else {
                        parts_in.clone()
                    };
                    holds::hold(conn, &hop_in, &hop_in.peer, &me_c, &currency, &parts_in)?;
                    let lines = holds::hop_lines(conn, &me_c, &next_c, &currency)?;
                    let parts_out = holds::split_hop(&lines, amount)?;
                    holds::hold(conn, &out, &me_c, &next_c, &currency, &parts_out)?;
                    Ok::<_, CreditNodeError>(parts_out)
                })
            })
            .await?;
        let forward = Prepare {
            expires_at: next_expires,
            lines: out_parts,
            ..p.clone()
        };
        let body = serde_json::to_vec(&forward)
            .map_err(|e| CreditNodeError::InvalidJson(e.to_string()))?;
        let wait_ms = next_expires
            .saturating_sub(crate::now_ms())
            .saturating_add(ANSWER_SLACK_MS);
        // Bounded by the next hop's expiry (plus the slack), not by the client's own timeout:
        // an answer later than that finds this node's `in` hold lapsed.
        let answer = match tokio::time::timeout(
            Duration::from_millis(wait_ms),
            client.command_waiting::<Fulfilled>(
                "POST",
                "/v1/credit/prepare",
                body,
                self.counter.next(),
                wait_ms,
            ),
        )
        .await
        {
            Ok(a) => a,
            Err(_) => Err(ClientError::Unreachable {
                url: client.base_url().to_owned(),
                message: format!("no answer within {wait_ms} ms"),
            }),
        };
        let route = hop.route.clone();
        let outcome = match answer {
            Ok(a) if check_secret(&a.value.secret, &p.condition).is_ok() => {
                let secret = a.value.secret;
                let in_moved = self
                    .settle_hop(&p.payment, &route, Some(&next), Some(secret.clone()), true)
                    .await?;
                if in_moved == 0 {
                    // The `in` hold lapsed meanwhile (or was settled otherwise: see below).
                    Err(CreditNodeError::Unreachable(
                        "the answer came after this hop's hold lapsed".into(),
                    ))
                } else {
                    Ok(secret)
                }
            }
            Err(ClientError::Api {
                status,
                code,
                message,
                ..
            }) => {
                self.settle_hop(&p.payment, &route, Some(&next), None, true)
                    .await?;
                Err(CreditNodeError::Downstream {
                    status,
                    code,
                    message,
                })
            }
            other => {
                // No word from the next hop (or a secret that does not open the condition):
                // our upstream hears an error and releases, so our `in` hold goes too; the
                // `out` hold waits for the peer's word (the sweep).
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "the next hop answered a wrong secret".into(),
                };
                self.settle_hop(&p.payment, &route, None, None, false)
                    .await?;
                Err(CreditNodeError::Unreachable(why))
            }
        };
        let secret = match outcome {
            Ok(secret) => secret,
            // The `in` hold committed meanwhile (the next hop's fulfil, or the sweep at the
            // edge of the wait): the upstream must hear the secret, or the two copies of its
            // line would part.
            Err(e) => self.committed_secret(&p.payment, &route).await?.ok_or(e)?,
        };
        Ok(Fulfilled {
            payment: p.payment,
            secret,
        })
    }

    /// The secret of `route` of `payment` when this node committed its `in` hold.
    async fn committed_secret(
        &self,
        payment: &str,
        route: &str,
    ) -> Result<Option<String>, CreditNodeError> {
        let (payment, route) = (payment.to_owned(), route.to_owned());
        self.db
            .run(move |conn| holds::committed_secret(conn, &payment, &route, Direction::In))
            .await
    }

    /// Settle one route of a payment here: the `in` holds, and the `out` holds with `peer`
    /// too when `with_out` (commit with `secret`, release without).
    pub(super) async fn settle_hop(
        &self,
        payment: &str,
        route: &str,
        peer: Option<&str>,
        secret: Option<String>,
        with_out: bool,
    ) -> Result<u64, CreditNodeError> {
        let (payment, route, peer) = (
            payment.to_owned(),
            route.to_owned(),
            peer.map(str::to_owned),
        );
        self.db
            .run(move |conn| {
                // `in` before `out`, the order a prepare holds them in.
                holds::write_retrying(conn, |conn| {
                    let sel = Select {
                        payment: &payment,
                        direction: Direction::In,
                        route: Some(&route),
                        peer: None,
                    };
                    let (_, in_moved) = holds::settle(conn, sel, secret.as_deref())?;
                    if with_out {
                        let sel = Select {
                            payment: &payment,
                            direction: Direction::Out,
                            route: Some(&route),
                            peer: peer.as_deref(),
                        };
                        holds::settle(conn, sel, secret.as_deref())?;
                    }
                    Ok::<_, CreditNodeError>(in_moved)
                })
            })
            .await
    }

    /// The target: hold this path's amount; commit everything when the total is in, else
    /// wait for it until shortly before this hold lapses.
    async fn arrive(
        &self,
        hop: HopHold,
        p: Prepare,
        secret: String,
    ) -> Result<Fulfilled, CreditNodeError> {
        let me = self.key.entity().to_string();
        let payment = p.payment.clone();
        let mut outcome = {
            // One target step at a time: the running sum is read and acted on alone.
            let _step = self.target_step.lock().await;
            let rx = self.waiter(&payment);
            let (parts_in, currency, amount, total) =
                (p.lines.clone(), p.currency.clone(), p.amount, p.total);
            let secret_c = secret.clone();
            let hook = self.on_commit.clone();
            let transaction_id = p.transaction_id.clone();
            let complete = self
                .db
                .run(move |conn| {
                    holds::write_retrying(conn, |conn| {
                        let parts_in = if parts_in.is_empty() {
                            let lines = holds::hop_lines(conn, &hop.peer, &me, &currency)?;
                            holds::split_hop(&lines, amount)?
                        } else {
                            parts_in.clone()
                        };
                        holds::hold(conn, &hop, &hop.peer, &me, &currency, &parts_in)?;
                        let sum = holds::in_sum(conn, &hop.payment)?;
                        if sum > total {
                            return Err(CreditError::Range(
                                "the paths carry more than the payment's total",
                            )
                            .into());
                        }
                        let arrived = Arrived {
                            payment: &hop.payment,
                            payer: &hop.payer,
                            currency: &currency,
                            total,
                            transaction_id: transaction_id.as_deref(),
                        };
                        if let Some(hook) = &hook {
                            hook(conn, &arrived, sum == total)
                                .map_err(CreditNodeError::PaymentRefused)?;
                        }
                        if sum < total {
                            return Ok(false);
                        }
                        let all_in = Select {
                            payment: &hop.payment,
                            direction: Direction::In,
                            route: None,
                            peer: None,
                        };
                        let (_, moved) = holds::settle(conn, all_in, Some(&secret_c))?;
                        if moved != sum {
                            // A hold lapsed before the total came: nothing commits (this
                            // transaction rolls back), and the holds are released.
                            return Err(CreditNodeError::Incomplete);
                        }
                        Ok::<_, CreditNodeError>(true)
                    })
                })
                .await;
            let complete = match complete {
                Ok(c) => c,
                Err(e) => {
                    // This path held nothing: its waiter goes unless other paths wait.
                    drop(rx);
                    self.forget_unwatched(&payment);
                    return Err(e);
                }
            };
            if complete {
                self.resolve(&payment, Outcome::Fulfilled(secret.clone()));
                return Ok(Fulfilled { payment, secret });
            }
            rx
        };
        let deadline_ms = p.expires_at.saturating_sub(ANSWER_SLACK_MS);
        let wait = Duration::from_millis(deadline_ms.saturating_sub(crate::now_ms()));
        let waited = tokio::time::timeout(wait, outcome.wait_for(Option::is_some)).await;
        let resolved = match waited {
            Ok(Ok(v)) => v.clone(),
            _ => None,
        };
        match resolved {
            Some(Outcome::Fulfilled(secret)) => Ok(Fulfilled { payment, secret }),
            Some(Outcome::Rejected) => Err(CreditNodeError::Incomplete),
            None => {
                self.give_up(&payment).await?;
                Err(CreditNodeError::Incomplete)
            }
        }
    }

    /// The target gives up on `payment`: every `in` hold still held is released and every
    /// waiting prepare answered `payment_incomplete`.
    pub(super) async fn give_up(&self, payment: &str) -> Result<(), CreditNodeError> {
        let _step = self.target_step.lock().await;
        let p = payment.to_owned();
        self.db
            .run(move |conn| {
                holds::write_retrying(conn, |conn| {
                    let sel = Select {
                        payment: &p,
                        direction: Direction::In,
                        route: None,
                        peer: None,
                    };
                    holds::settle(conn, sel, None)
                })
            })
            .await?;
        self.resolve(payment, Outcome::Rejected);
        Ok(())
    }

    /// `POST /v1/credit/fulfill`: `sender` (the peer this node paid) shows the secret: the
    /// `out` holds with it commit, and the `in` holds of the same routes.
    pub async fn fulfill(
        &self,
        sender: &EntityId,
        f: Fulfill,
    ) -> Result<serde_json::Value, CreditNodeError> {
        let (payment, peer, secret) = (f.payment.clone(), sender.to_string(), f.secret.clone());
        let routes = self
            .db
            .run(move |conn| {
                holds::write_retrying(conn, |conn| {
                    let sel = Select {
                        payment: &payment,
                        direction: Direction::Out,
                        route: None,
                        peer: Some(&peer),
                    };
                    let mut open = holds::held(conn, sel)?;
                    if open.is_empty() {
                        // Unknown or settled? On PostgreSQL each statement reads the latest
                        // commit (READ COMMITTED), so a prepare's holds can commit between
                        // the read above and this one: they are read again once seen, and a
                        // payment is called settled only when its rows exist and none is held
                        // (rows only go absent, held, settled, in that order).
                        let (seen, _) = holds::status(conn, &payment, Some(&peer))?;
                        if seen.is_empty() {
                            return Err(CreditError::UnknownPayment(payment.clone()).into());
                        }
                        open = holds::held(conn, sel)?;
                    }
                    let Some((_, _, _, _, condition)) = open.first() else {
                        return Err(CreditError::Settled.into());
                    };
                    check_secret(&secret, condition)?;
                    let (routes, _) = holds::settle(conn, sel, Some(&secret))?;
                    for route in &routes {
                        let sel = Select {
                            payment: &payment,
                            direction: Direction::In,
                            route: Some(route),
                            peer: None,
                        };
                        holds::settle(conn, sel, Some(&secret))?;
                    }
                    Ok::<_, CreditNodeError>(routes)
                })
            })
            .await?;
        Ok(serde_json::json!({"payment": f.payment, "state": "committed", "routes": routes}))
    }

    /// `POST /v1/credit/reject`: the payer (or the hop before this node) calls a payment
    /// off. The target releases everything and answers its waiting prepares; a hop passes
    /// the word on to the peers it paid (their answers then release its own holds).
    pub async fn reject(
        self: &Arc<Self>,
        sender: &EntityId,
        r: Reject,
    ) -> Result<serde_json::Value, CreditNodeError> {
        let (payment, who) = (r.payment.clone(), sender.to_string());
        let (holds, _) = self
            .db
            .run(move |conn| holds::status(conn, &payment, None))
            .await?;
        if holds.is_empty() {
            return Err(CreditError::UnknownPayment(r.payment).into());
        }
        let payment = r.payment.clone();
        let payer_or_upstream = self.is_payer_or_upstream(&payment, &who).await?;
        if !payer_or_upstream {
            return Err(CreditNodeError::Refused(
                "only the payer or the hop before this node may reject a payment".into(),
            ));
        }
        let open_out: Vec<&str> = holds
            .iter()
            .filter(|h| h.direction == "out" && h.state == holds::HELD)
            .map(|h| h.peer.as_str())
            .collect();
        if open_out.is_empty() {
            if holds
                .iter()
                .any(|h| h.direction == "in" && h.state == holds::HELD)
            {
                self.give_up(&payment).await?;
                return Ok(serde_json::json!({"payment": payment, "state": "released"}));
            }
            return Err(CreditError::Settled.into());
        }
        let mut peers: Vec<String> = open_out.into_iter().map(str::to_owned).collect();
        peers.dedup();
        for peer in peers {
            let Some(client) = self.neighbor_client(&peer) else {
                continue;
            };
            let body = serde_json::to_vec(&r).unwrap_or_default();
            let counter = self.counter.next();
            // Best effort and bounded: the peer's answer to our prepare settles our holds.
            tokio::spawn(async move {
                let sent = client
                    .command::<serde_json::Value>("POST", "/v1/credit/reject", body, counter)
                    .await;
                if let Err(e) = sent {
                    tracing::debug!(error = %e, "passing a rejection on failed");
                }
            });
        }
        Ok(serde_json::json!({"payment": payment, "state": "passed_on"}))
    }

    async fn is_payer_or_upstream(
        &self,
        payment: &str,
        who: &str,
    ) -> Result<bool, CreditNodeError> {
        let (payment, who) = (payment.to_owned(), who.to_owned());
        self.db
            .run(move |conn| {
                use diesel::prelude::*;
                use holds::credit_holds as h;
                let n: i64 = h::table
                    .filter(h::payment.eq(&payment))
                    .filter(
                        h::payer
                            .eq(&who)
                            .or(h::direction.eq("in").and(h::peer.eq(&who))),
                    )
                    .count()
                    .get_result(conn)?;
                Ok::<_, CreditNodeError>(n > 0)
            })
            .await
    }

    /// `GET /v1/credit/payments/{payment}`: this node's holds of `payment` on lines with
    /// `asker`, and the secret once committed.
    pub async fn payment_status(
        &self,
        asker: &EntityId,
        payment: &str,
    ) -> Result<PaymentStatus, CreditNodeError> {
        let (p, who) = (payment.to_owned(), asker.to_string());
        let (holds, secret) = self
            .db
            .run(move |conn| holds::status(conn, &p, Some(&who)))
            .await?;
        if holds.is_empty() {
            return Err(CreditError::UnknownPayment(payment.to_owned()).into());
        }
        let committed = holds.iter().any(|h| h.state == holds::COMMITTED);
        Ok(PaymentStatus {
            payment: payment.to_owned(),
            holds,
            secret: secret.filter(|_| committed),
        })
    }
}

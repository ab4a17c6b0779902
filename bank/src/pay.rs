//! Payments a bank makes for its customers (DESIGN 14, seed 000 section 5.2 step 4).
//!
//! 1. The money (amount and the issuer's fee) is taken from the customer's balance and the
//!    token's allowance, and the payment recorded `pending` with the command counter and the
//!    exact body it will be sent with: one transaction (`store::reserve_payment`).
//! 2. The bank's wallet sends the transfer to the issuer, naming the payer (`from_name`).
//! 3. An answer settles it: done, or refused and refunded. No answer (the issuer is down, the
//!    bank crashed) leaves it pending; [`resend_pending`] sends it again, byte for byte with
//!    the same counter, so the issuer executes it at most once and answers the stored result.

use std::sync::Arc;
use std::time::Duration;

use clients::issuer::IssuerClient;
use node::client::{ClientError, CommandAnswer};
use protocol::ledger::TransferReceipt;
use protocol::{fee_for, Amount};
use serde::Serialize;

use crate::error::Error;
use crate::serve::Bank;
use crate::store::{self, Payment, Token};

/// How often pending payments are looked at.
pub const RESEND_INTERVAL_MS: u64 = 2_000;
/// A pending payment younger than this is still being sent by its request: left alone.
pub const RESEND_AGE_MS_MIN: u64 = 10_000;

/// What an app asks the bank to pay.
#[derive(Debug, Clone)]
pub struct Order {
    pub payee: clients::names::Payee,
    pub amount: u64,
    pub transaction_id: Option<String>,
    /// The app's own id for this payment: the same id again through the same token answers
    /// the payment made and pays nothing more (an app retrying after a lost answer).
    pub request_id: Option<String>,
}

/// The answer to an app's transfer, in the issuer's shape: `seq` is the issuer's.
#[derive(Debug, Clone, Serialize)]
pub struct Paid {
    pub result: &'static str,
    pub seq: u64,
    pub fee: u64,
    pub balance: i64,
}

#[derive(Serialize)]
struct TransferBody<'a> {
    recipient: &'a str,
    amount: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    userid: Option<&'a str>,
    from_name: &'a str,
}

/// Who pays: a customer in one currency, through an app's token or from the web page.
#[derive(Debug, Clone)]
pub struct Payer {
    pub customer: String,
    pub issuer: String,
    /// The app token's id; `None` for the customer's own payment on the web page.
    pub token: Option<String>,
}

impl From<&Token> for Payer {
    fn from(t: &Token) -> Payer {
        Payer {
            customer: t.customer.clone(),
            issuer: t.issuer.clone(),
            token: Some(t.id.clone()),
        }
    }
}

/// Pay `order` for the payer's customer in the payer's currency.
pub async fn pay(bank: &Arc<Bank>, token: &Payer, order: Order) -> Result<Paid, Error> {
    let currency = bank
        .currency(&token.issuer)
        .ok_or_else(|| Error::UnknownCurrency(token.issuer.clone()))?;
    if order.amount == 0 || order.amount > currency.max_amount {
        return Err(Error::InvalidAmount {
            max: currency.max_amount,
        });
    }
    if let (Some(token_id), Some(request_id)) = (&token.token, &order.request_id) {
        let (t, r) = (token_id.clone(), request_id.clone());
        let earlier = bank
            .db
            .run(move |conn| store::earlier_payment(conn, &t, &r))
            .await?;
        if let Some(e) = earlier {
            return answer_again(bank, token, &order, e).await;
        }
    }
    let from_name = format!("{}@{}", token.customer, bank.name_host());
    let fee = fee_for(Amount(order.amount), currency.fee_flat, currency.fee_bps)
        .map_err(|_| Error::InvalidAmount {
            max: currency.max_amount,
        })?
        .0;
    let custody = crate::custody::Custody::of(bank, &token.customer).await?;
    if let Some(wallet) = custody.wallet(bank, &token.issuer)? {
        let own = Own {
            wallet,
            fee,
            from_name: &from_name,
            max_amount: currency.max_amount,
        };
        return pay_own(bank, token, &order, own).await;
    }
    if order.payee.entity == *bank.key.entity() {
        return pay_inside(bank, token, &order, &from_name).await;
    }
    let counter = currency
        .wallet
        .next_counter()
        .await
        .map_err(|e| Error::Internal(format!("cannot reserve a counter: {e}")))?;
    let request = serde_json::to_string(&TransferBody {
        recipient: order.payee.entity.as_str(),
        amount: order.amount,
        transaction_id: order.transaction_id.as_deref(),
        userid: order.payee.userid.as_deref(),
        from_name: &from_name,
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    let payment = Payment {
        customer: token.customer.clone(),
        issuer: token.issuer.clone(),
        recipient: order.payee.entity.to_string(),
        userid: order.payee.userid.clone(),
        amount: order.amount,
        fee,
        transaction_id: order.transaction_id.clone(),
        counter,
        request: request.clone(),
        request_id: order.request_id.clone(),
    };
    let token_id = token.token.clone();
    let now = node::now_ms();
    let seq = bank
        .db
        .run(move |conn| store::reserve_payment(conn, token_id.as_deref(), &payment, now))
        .await?;
    let sent = send(bank, &token.issuer, counter, &request).await;
    let (customer, issuer) = (token.customer.clone(), token.issuer.clone());
    match settle(bank, seq, sent).await? {
        Settled::Done(receipt) => {
            let balance = bank
                .db
                .run(move |conn| store::balance(conn, &customer, &issuer))
                .await?;
            Ok(Paid {
                result: "success",
                seq: receipt.seq,
                fee: receipt.fee,
                balance,
            })
        }
        Settled::Refused(e) => Err(refusal(e, currency.max_amount)),
        Settled::Unknown(e) => Err(Error::Upstream(format!(
            "{e}; the payment stays pending and will be sent again"
        ))),
    }
}

/// The answer to a payment asked again with the `request_id` of one made before: the same
/// payment (refused as a different one if it is not), as it stands now. Nothing is paid.
async fn answer_again(
    bank: &Arc<Bank>,
    token: &Payer,
    order: &Order,
    e: store::Earlier,
) -> Result<Paid, Error> {
    // What the earlier payment sent: the amount from its body (a book entry has none: its
    // total is the amount).
    let amount = match &e.request {
        Some(body) => serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["amount"].as_u64())
            .unwrap_or(e.total),
        None => e.total,
    };
    // A book entry's counterparty is the bank's entity, as its payee's is.
    if amount != order.amount
        || e.transaction_id != order.transaction_id
        || e.counterparty != order.payee.entity.as_str()
    {
        return Err(Error::InvalidQuery(
            "this request_id was used for another payment".into(),
        ));
    }
    match e.state.as_str() {
        store::DONE => {
            let (customer, issuer) = (token.customer.clone(), token.issuer.clone());
            let balance = bank
                .db
                .run(move |conn| store::balance(conn, &customer, &issuer))
                .await?;
            Ok(Paid {
                result: "success",
                seq: e.issuer_seq.unwrap_or(e.seq).unsigned_abs(),
                fee: e.total - amount,
                balance,
            })
        }
        store::PENDING => Err(Error::Upstream(
            "this payment is still pending: the issuer has not answered; it will be sent again"
                .into(),
        )),
        _ => Err(Error::InvalidQuery(
            "this request_id's payment was refused (and refunded): use a new request_id".into(),
        )),
    }
}

/// What a transparent customer's payment needs besides the order.
struct Own<'a> {
    /// The customer's own wallet at the token's issuer.
    wallet: IssuerClient,
    fee: u64,
    from_name: &'a str,
    max_amount: u64,
}

/// Pay from a transparent customer's own key: the token's allowance is charged first (and
/// given back if the issuer refuses), then the transfer is signed with the customer's key
/// and its own counters, naming the payer. No answer leaves the allowance charged: the
/// payment may have happened (the issuer's deposits of the key tell).
async fn pay_own(
    bank: &Arc<Bank>,
    token: &Payer,
    order: &Order,
    own: Own<'_>,
) -> Result<Paid, Error> {
    let total = order
        .amount
        .checked_add(own.fee)
        .ok_or(Error::InvalidAmount {
            max: own.max_amount,
        })?;
    // A counter first: a failure there charges nothing.
    let wallet = own.wallet;
    let counter = wallet
        .next_counter()
        .await
        .map_err(|e| Error::Internal(format!("cannot reserve a counter: {e}")))?;
    let (token_id, customer) = (token.token.clone(), token.customer.clone());
    bank.db
        .run(move |conn| store::reserve_allowance(conn, token_id.as_deref(), &customer, total))
        .await?;
    let request = serde_json::to_vec(&TransferBody {
        recipient: order.payee.entity.as_str(),
        amount: order.amount,
        transaction_id: order.transaction_id.as_deref(),
        userid: order.payee.userid.as_deref(),
        from_name: own.from_name,
    })
    .map_err(|e| Error::Internal(e.to_string()))?;
    let sent: Result<CommandAnswer<TransferReceipt>, ClientError> = wallet
        .signed()
        .command("POST", "/lcp/v1/transfers", request, counter)
        .await;
    match sent {
        Ok(answer) => Ok(Paid {
            result: "success",
            seq: answer.value.seq,
            fee: answer.value.fee,
            balance: answer.value.balance,
        }),
        Err(e @ ClientError::Api { status, .. }) if (400..500).contains(&status) => {
            if let Some(id) = token.token.clone() {
                bank.db
                    .run(move |conn| store::release_allowance(conn, &id, total))
                    .await?;
            }
            if e.code() == Some("insufficient_funds") {
                // The customer's own money is short, not the bank's.
                let balance = wallet.balance().await.map(|b| b.balance).unwrap_or(0);
                return Err(Error::InsufficientFunds {
                    balance,
                    needed: total,
                });
            }
            Err(refusal(e, own.max_amount))
        }
        Err(e) => Err(Error::Upstream(format!(
            "{e}; the payment may or may not have been made: see the deposits"
        ))),
    }
}

/// Pay another customer of this bank: a book entry, no issuer command, no fee
/// ([`store::transfer_inside`]); `seq` in the answer is the bank's statement seq.
async fn pay_inside(
    bank: &Arc<Bank>,
    token: &Payer,
    order: &Order,
    from_name: &str,
) -> Result<Paid, Error> {
    let Some(payee) = order.payee.userid.clone() else {
        return Err(Error::InvalidRecipient(
            "a payment to this bank must name one of its customers (userid)".into(),
        ));
    };
    if payee == token.customer {
        return Err(Error::InvalidRecipient(
            "paying yourself moves nothing".into(),
        ));
    }
    if let crate::custody::Custody::Transparent { .. } =
        crate::custody::Custody::of(bank, &payee).await?
    {
        return Err(Error::InvalidRecipient(format!(
            "{payee} has a transparent account: pay its own key (its name resolves to it)"
        )));
    }
    let (payer, issuer, token_id) = (
        token.customer.clone(),
        token.issuer.clone(),
        token.token.clone(),
    );
    let (from_name, entity) = (from_name.to_owned(), bank.key.entity().to_string());
    let (amount, transaction_id) = (order.amount, order.transaction_id.clone());
    let request_id = order.request_id.clone();
    let (seq, balance) = bank
        .db
        .run(move |conn| {
            let seq = store::transfer_inside(
                conn,
                token_id.as_deref(),
                &store::Inside {
                    payer: &payer,
                    payer_name: &from_name,
                    payee: &payee,
                    issuer: &issuer,
                    bank: &entity,
                    amount,
                    transaction_id: transaction_id.as_deref(),
                    request_id: request_id.as_deref(),
                },
                node::now_ms(),
            )?;
            Ok::<_, Error>((seq, store::balance(conn, &payer, &issuer)?))
        })
        .await?;
    // The payee's apps may be waiting on their deposits.
    bank.credited.send_modify(|n| *n = n.wrapping_add(1));
    Ok(Paid {
        result: "success",
        seq: seq.unsigned_abs(),
        fee: 0,
        balance,
    })
}

async fn send(
    bank: &Bank,
    issuer: &str,
    counter: u64,
    request: &str,
) -> Result<CommandAnswer<TransferReceipt>, ClientError> {
    let Some(currency) = bank.currency(issuer) else {
        return Err(ClientError::Config(format!("no currency {issuer}")));
    };
    currency
        .wallet
        .signed()
        .command(
            "POST",
            "/lcp/v1/transfers",
            request.as_bytes().to_vec(),
            counter,
        )
        .await
}

enum Settled {
    Done(TransferReceipt),
    Refused(ClientError),
    Unknown(ClientError),
}

/// Record what the issuer answered: done, refused (refunded), or no answer (left pending).
async fn settle(
    bank: &Bank,
    seq: i64,
    sent: Result<CommandAnswer<TransferReceipt>, ClientError>,
) -> Result<Settled, Error> {
    match sent {
        Ok(answer) => {
            let issuer_seq = answer.value.seq;
            bank.db
                .run(move |conn| store::complete_payment(conn, seq, issuer_seq))
                .await?;
            Ok(Settled::Done(answer.value))
        }
        // A 4xx is the issuer's final word on this command: refund it.
        Err(e @ ClientError::Api { status, .. }) if (400..500).contains(&status) => {
            bank.db
                .run(move |conn| store::refund_payment(conn, seq))
                .await?;
            Ok(Settled::Refused(e))
        }
        Err(e) => Ok(Settled::Unknown(e)),
    }
}

/// The issuer's refusal as the bank's error: the recipient's fault keeps its code; anything
/// else (the bank's own account short, a bad signature) is the bank's failure.
fn refusal(e: ClientError, max_amount: u64) -> Error {
    match (e.code(), &e) {
        (Some("invalid_recipient"), ClientError::Api { message, .. }) => {
            Error::InvalidRecipient(message.clone())
        }
        (Some("invalid_amount"), _) => Error::InvalidAmount { max: max_amount },
        (Some("invalid_transaction_id"), _) => Error::InvalidTransactionId,
        _ => Error::Upstream(format!("the issuer refused the payment: {e}")),
    }
}

/// Send pending payments again until each is settled, forever.
pub async fn resend_pending(bank: Arc<Bank>) {
    loop {
        tokio::time::sleep(Duration::from_millis(RESEND_INTERVAL_MS)).await;
        let pending = match bank.db.run(store::pending_payments).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pending payments");
                continue;
            }
        };
        let now = node::now_ms();
        for p in pending
            .into_iter()
            .filter(|p| p.time_ms.saturating_add(RESEND_AGE_MS_MIN) <= now)
        {
            let sent = send(&bank, &p.issuer, p.counter, &p.request).await;
            match settle(&bank, p.seq, sent).await {
                Ok(Settled::Done(_)) => tracing::info!(seq = p.seq, "pending payment done"),
                Ok(Settled::Refused(e)) => {
                    tracing::warn!(seq = p.seq, error = %e, "pending payment refused; refunded")
                }
                Ok(Settled::Unknown(e)) => {
                    tracing::debug!(seq = p.seq, error = %e, "pending payment: no answer yet")
                }
                Err(e) => tracing::warn!(seq = p.seq, error = %e, "pending payment"),
            }
        }
    }
}

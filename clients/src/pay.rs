//! Paying for a charged request, once (DESIGN section 2): an agent answers `402
//! payment_required` when a contract's credit does not cover a read or a write; the buyer pays
//! (an LCP transfer to the agent with the contract id as transaction id), then asks again
//! until the agent has seen the payment, within one bounded wait.
//!
//! How much to pay is the caller's policy (a few writes ahead, a window of reads ahead): the
//! agent's `402` does not say how much a top-up should cover, only that credit is short.
//!
//! Use:
//! ```ignore
//! let info = clients::pay::pay_on_402(
//!     || async { agent.put(contract, name, bytes.clone()).await.map_err(Failure::Agent) },
//!     Some(|| clients::pay::top_up(&wallet, agent_ref, contract, amount)),
//! )
//! .await?;
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

use node::client::ClientError;
use protocol::EntityId;

use crate::issuer::IssuerClient;
use crate::paywords::{PaywordPayer, PaywordPayment};
use crate::wallet::WalletError;

/// The stable code of an agent's `402`: the contract's credit does not cover the request.
pub const PAYMENT_REQUIRED: &str = "payment_required";

/// Longest [`pay_on_402`] keeps asking again after paying, for the agent to see the payment
/// (the issuer's deposit feed reaches it within a poll or two; a longer wait means the
/// payment is lost or the agent is stuck, and the `402` is answered to the caller).
pub const PAY_RETRY_WAIT_MS_MAX: u64 = 20_000;

/// Pause between the requests made meanwhile.
pub const PAY_RETRY_POLL_MS: u64 = 100;

/// Why a charged request failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// The agent's answer (or no answer), unchanged: the caller reads its code. A
    /// `payment_required` here means nobody paid (no payer), or the payment was not seen
    /// within [`PAY_RETRY_WAIT_MS_MAX`].
    Agent(ClientError),
    /// The caller's own failure: the payment (`pay`), or making the request's body anew.
    Caller(E),
}

impl<E> From<ClientError> for Failure<E> {
    fn from(e: ClientError) -> Self {
        Failure::Agent(e)
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Agent(e) => e.fmt(f),
            Failure::Caller(e) => e.fmt(f),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Failure<E> {}

/// Is this the agent asking for payment first?
pub fn payment_required(e: &ClientError) -> bool {
    e.code() == Some(PAYMENT_REQUIRED)
}

/// Send `request`; when the agent answers `402 payment_required`, call `pay` (once), then send
/// `request` again every [`PAY_RETRY_POLL_MS`] until the agent answers otherwise or
/// [`PAY_RETRY_WAIT_MS_MAX`] has passed since the first request (then its `402` is the
/// answer, as [`Failure::Agent`]).
///
/// - `request` is called for every attempt, so it can make its body anew (a body handed over
///   to the first attempt is gone); it answers the agent's errors as [`Failure::Agent`] and
///   its own as [`Failure::Caller`].
/// - `pay` with `None`: nobody pays, and a `402` is answered at once.
/// - A failed `pay` ends it with its error as [`Failure::Caller`].
/// - Every answer but `402` (success or error) is returned as it is.
pub async fn pay_on_402<T, E, R, RF, P, PF>(request: R, pay: Option<P>) -> Result<T, Failure<E>>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<T, Failure<E>>>,
    P: FnOnce() -> PF,
    PF: Future<Output = Result<(), E>>,
{
    pay_on_402_within(Duration::from_millis(PAY_RETRY_WAIT_MS_MAX), request, pay).await
}

/// [`pay_on_402`] with the wait as a parameter (for tests).
async fn pay_on_402_within<T, E, R, RF, P, PF>(
    wait: Duration,
    mut request: R,
    mut pay: Option<P>,
) -> Result<T, Failure<E>>
where
    R: FnMut() -> RF,
    RF: Future<Output = Result<T, Failure<E>>>,
    P: FnOnce() -> PF,
    PF: Future<Output = Result<(), E>>,
{
    let deadline = Instant::now() + wait;
    let mut paid = false;
    loop {
        match request().await {
            Err(Failure::Agent(e)) if payment_required(&e) && Instant::now() < deadline => {
                if !paid {
                    let Some(pay) = pay.take() else {
                        return Err(Failure::Agent(e));
                    };
                    pay().await.map_err(Failure::Caller)?;
                    paid = true;
                }
                tokio::time::sleep(Duration::from_millis(PAY_RETRY_POLL_MS)).await;
            }
            other => return other,
        }
    }
}

/// Send a charged request paid by paywords, falling back on the transfer and its wait.
///
/// - With a `payer` and a known `charge`, the first request carries words for the charge
///   (no `402` at all from an agent that takes paywords).
/// - Without a known charge, or when the words did not cover it, a `402` that says what is
///   due is paid in words at once and the request sent again (one round trip, no waiting
///   for a deposit).
/// - An agent that still answers `402` (it does not take paywords) is paid by `fallback`
///   the old way ([`pay_on_402`]).
///
/// `request` gets the payment to attach (`None`: none) and is called for every attempt.
/// A failure to make words (no funds for a new chain) is the caller's, via `words_failed`.
pub async fn pay_with_words<T, E, R, RF, P, PF>(
    payer: Option<&PaywordPayer>,
    vendor: &EntityId,
    charge: Option<u64>,
    mut request: R,
    fallback: Option<P>,
    words_failed: fn(WalletError) -> E,
) -> Result<T, Failure<E>>
where
    R: FnMut(Option<PaywordPayment>) -> RF,
    RF: Future<Output = Result<T, Failure<E>>>,
    P: FnOnce() -> PF,
    PF: Future<Output = Result<(), E>>,
{
    if let Some(payer) = payer {
        let first = match charge {
            Some(c) => payer
                .pay(vendor, c)
                .await
                .map_err(|e| Failure::Caller(words_failed(e)))?,
            None => None,
        };
        match request(first).await {
            Err(Failure::Agent(e)) if payment_required(&e) => {
                if let Some(due) = e.amount_due() {
                    let more = payer
                        .pay(vendor, due)
                        .await
                        .map_err(|e| Failure::Caller(words_failed(e)))?;
                    match request(more).await {
                        Err(Failure::Agent(e)) if payment_required(&e) => {}
                        other => return other,
                    }
                }
            }
            other => return other,
        }
    }
    pay_on_402(|| request(None), fallback).await
}

/// Which agent a top-up pays, and where it is reached.
#[derive(Debug, Clone, Copy)]
pub struct AgentRef<'a> {
    pub entity: &'a EntityId,
    pub endpoint: &'a str,
    /// The contract's currency.
    pub issuer: &'a EntityId,
}

/// Pay `amount` to `agent` for contract `contract` (an LCP transfer whose transaction id is
/// the contract id, which the agent credits to that contract), to the agent or to the bank
/// account it is paid into ([`crate::names::agent_payee`], DESIGN 14).
pub async fn top_up(
    wallet: &IssuerClient,
    agent: AgentRef<'_>,
    contract: &str,
    amount: u64,
) -> Result<(), ClientError> {
    let payee = crate::names::agent_payee(agent.endpoint, agent.entity, agent.issuer).await?;
    wallet.transfer_to(&payee, amount, Some(contract)).await?;
    Ok(())
}

/// One top-up of [`top_up_many`]: `amount` for `contract` at `agent`.
#[derive(Debug, Clone, Copy)]
pub struct TopUp<'a> {
    pub agent: AgentRef<'a>,
    pub contract: &'a str,
    pub amount: u64,
}

/// Pay several agents at once (issue 21): one batch command
/// (`POST /lcp/v1/transfers/batch`) for up to [`protocol::ledger::BATCH_TRANSFERS_MAX`]
/// top-ups, each answered on its own, instead of one command each. Answers each top-up's
/// outcome in order (`Err` with the issuer's reason for one refused alone). A single top-up,
/// or a wallet paying through a bank (which takes single transfers only), pays one by one.
/// An error of the whole call (no answer) means nothing is known to be paid.
pub async fn top_up_many(
    wallet: &IssuerClient,
    top_ups: &[TopUp<'_>],
) -> Result<Vec<Result<(), String>>, ClientError> {
    if top_ups.len() <= 1 || wallet.bank().is_some() {
        let mut outcomes = Vec::with_capacity(top_ups.len());
        for t in top_ups {
            outcomes.push(
                top_up(wallet, t.agent, t.contract, t.amount)
                    .await
                    .map_err(|e| e.to_string()),
            );
        }
        return Ok(outcomes);
    }
    let mut items = Vec::with_capacity(top_ups.len());
    for t in top_ups {
        let payee =
            crate::names::agent_payee(t.agent.endpoint, t.agent.entity, t.agent.issuer).await?;
        items.push(protocol::ledger::BatchItem {
            recipient: payee.entity.to_string(),
            amount: t.amount,
            transaction_id: Some(t.contract.to_owned()),
            userid: payee.userid,
        });
    }
    let mut outcomes = Vec::with_capacity(items.len());
    for chunk in items.chunks(protocol::ledger::BATCH_TRANSFERS_MAX) {
        let answer = wallet.transfer_batch(chunk).await?;
        if answer.value.results.len() != chunk.len() {
            return Err(ClientError::Decode(format!(
                "a batch of {} was answered with {} results",
                chunk.len(),
                answer.value.results.len()
            )));
        }
        outcomes.extend(answer.value.results.iter().map(|r| {
            if r.succeeded() {
                Ok(())
            } else {
                Err(format!(
                    "{}: {}",
                    r.code.as_deref().unwrap_or("refused"),
                    r.message.as_deref().unwrap_or("")
                ))
            }
        }));
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type NoPay = fn() -> std::future::Ready<Result<(), String>>;

    fn asks_payment() -> ClientError {
        ClientError::Api {
            status: 402,
            code: PAYMENT_REQUIRED.into(),
            message: "payment required".into(),
            details: None,
        }
    }

    /// Answers `402` for the first `refusals` requests, then `Ok(attempt)`.
    fn agent(
        refusals: usize,
        calls: &AtomicUsize,
    ) -> impl FnMut() -> std::future::Ready<Result<usize, Failure<String>>> + '_ {
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < refusals {
                Err(Failure::Agent(asks_payment()))
            } else {
                Ok(n)
            })
        }
    }

    /// Paid once however many `402`s come before the payment is seen; then the answer.
    #[tokio::test]
    async fn pays_once_then_retries_until_accepted() {
        let (calls, pays) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let pay = || {
            pays.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<(), String>(()))
        };
        let got = pay_on_402(agent(3, &calls), Some(pay)).await;
        assert!(matches!(got, Ok(3)), "{got:?}");
        assert_eq!(pays.load(Ordering::SeqCst), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    /// Without a payer a `402` is the answer at once; a failed payment is the caller's error;
    /// past the wait the `402` is the answer.
    #[tokio::test]
    async fn no_payer_a_failed_payment_and_the_bound_end_it() {
        let calls = AtomicUsize::new(0);
        let none: Option<NoPay> = None;
        let got = pay_on_402(agent(1, &calls), none).await;
        assert!(matches!(got, Err(Failure::Agent(ref e)) if payment_required(e)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicUsize::new(0);
        let broke = || std::future::ready(Err::<(), String>("no funds".into()));
        let got = pay_on_402(agent(1, &calls), Some(broke)).await;
        assert!(matches!(got, Err(Failure::Caller(ref e)) if e == "no funds"));

        let calls = AtomicUsize::new(0);
        let pay = || std::future::ready(Ok::<(), String>(()));
        let got = pay_on_402_within(
            Duration::from_millis(250),
            agent(usize::MAX, &calls),
            Some(pay),
        )
        .await;
        assert!(matches!(got, Err(Failure::Agent(ref e)) if payment_required(e)));
        assert!(calls.load(Ordering::SeqCst) <= 4, "{calls:?}");
    }

    /// Another error is answered as it is, without paying.
    #[tokio::test]
    async fn other_errors_pass_through() {
        let pays = AtomicUsize::new(0);
        let pay = || {
            pays.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<(), String>(()))
        };
        let got: Result<(), Failure<String>> = pay_on_402(
            || {
                std::future::ready(Err(Failure::Agent(ClientError::Api {
                    status: 409,
                    code: "block_full".into(),
                    message: "full".into(),
                    details: None,
                })))
            },
            Some(pay),
        )
        .await;
        assert!(matches!(got, Err(Failure::Agent(ref e)) if e.code() == Some("block_full")));
        assert_eq!(pays.load(Ordering::SeqCst), 0);
    }
}

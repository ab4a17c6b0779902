//! Paying charged requests with paywords (DESIGN 10): the words for one request's charge,
//! from a chain of the right issuer in the payer's wallet, bought when there is none.
//!
//! Use: `let payment = payer.pay(&agent_id, charge).await?;` then send the request with
//! `payment.headers()` (`AgentClient::put_paid`, `open_paid`, `audit_paid`).

use std::sync::Arc;

use protocol::payword::{envelope_header_value, Payword, HEADER_PAYWORD, HEADER_TOUCHSTONE};
use protocol::{EntityId, KeyPair};

use crate::issuer::IssuerClient;
use crate::wallet::{self, Wallet, WalletError, BLOCK_WORDS_DEFAULT};

/// Words in a chain the payer buys on its own, unless told otherwise: at one minor unit a
/// word, 100,000 units held in escrow until spent or expired (and never more than half of
/// the wallet's balance, see [`PaywordPayer::pay`]).
pub const AUTO_CHAIN_WORDS_DEFAULT: u64 = 100_000;
/// A chain is used only while it has at least this long to live (vendors redeem before
/// expiry; words given too late might not be redeemed in time).
pub const CHAIN_MARGIN_S: i64 = 3_600;
/// Choices of a chain one payment makes at most (see [`PaywordPayer::pay`]).
const PAY_TRIES_MAX: u32 = 3;

/// Whether a tool pays by payword: yes unless the environment variable `var` is `0` (then by
/// LCP transfer, as before paywords). `BACKUP_PAYWORDS`, `CDN_PAYWORDS`.
pub fn enabled(var: &str) -> bool {
    std::env::var(var).map_or(true, |v| v != "0")
}

/// One request's payment: the `LCP-Payword` and `LCP-Touchstone` headers.
#[derive(Debug, Clone)]
pub struct PaywordPayment {
    pub payword: Payword,
    /// The touchstone's header value (sent with every payment: a vendor seeing the chain for
    /// the first time needs it, and it costs no signature).
    pub touchstone: String,
    /// Value handed over (words x unit).
    pub value: u64,
}

impl PaywordPayment {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        vec![
            (HEADER_PAYWORD, self.payword.header_value()),
            (HEADER_TOUCHSTONE, self.touchstone.clone()),
        ]
    }
}

/// A payer: its key, its wallet of chains and its issuer (one currency).
#[derive(Clone)]
pub struct PaywordPayer {
    key: Arc<KeyPair>,
    wallet: Wallet,
    issuer: IssuerClient,
    /// Words per new block given to a vendor.
    pub block_words: u64,
    /// Words in a chain bought automatically (at one minor unit each).
    pub chain_words: u64,
    /// One payment at a time in this process: choosing a chain, buying one when none is
    /// left and taking its words are one step, so concurrent writes neither pick the same
    /// last words nor buy two chains at once. (Other processes are kept apart by the
    /// wallet's file locks; a word is never given twice either way.)
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The issuer's entity when the caller knows it (a repository's configuration does): then
    /// paying from a chain already held needs no word from the issuer at all.
    known_issuer: Option<EntityId>,
    /// The chain the last payment came from: tried first, so a payment costs one wallet
    /// update, not a scan of every chain file.
    current: Arc<std::sync::Mutex<Option<wallet::ChainFile>>>,
}

impl PaywordPayer {
    pub fn new(key: Arc<KeyPair>, wallet: Wallet, issuer: IssuerClient) -> PaywordPayer {
        PaywordPayer {
            key,
            wallet,
            issuer,
            block_words: BLOCK_WORDS_DEFAULT,
            chain_words: AUTO_CHAIN_WORDS_DEFAULT,
            turn: Arc::default(),
            known_issuer: None,
            current: Arc::default(),
        }
    }

    /// Name the issuer's entity, so words can be paid while the issuer does not answer.
    pub fn with_issuer(mut self, issuer: EntityId) -> PaywordPayer {
        self.known_issuer = Some(issuer);
        self
    }

    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// Words worth at least `amount` for `vendor`, from a usable chain of this issuer (one
    /// bought now at one minor unit a word when none is left). `amount` 0 pays nothing.
    pub async fn pay(
        &self,
        vendor: &EntityId,
        amount: u64,
    ) -> Result<Option<PaywordPayment>, WalletError> {
        if amount == 0 {
            return Ok(None);
        }
        let _turn = self.turn.lock().await;
        // Another process may take the chain's last words between the choice and the
        // payment: then choose again (a new chain is bought the second time at the latest).
        let mut tries = 0;
        loop {
            tries += 1;
            match self.pay_once(vendor, amount).await {
                Err(WalletError::Exhausted { .. }) if tries < PAY_TRIES_MAX => continue,
                other => return other,
            }
        }
    }

    async fn pay_once(
        &self,
        vendor: &EntityId,
        amount: u64,
    ) -> Result<Option<PaywordPayment>, WalletError> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(file) = current.filter(|c| {
            c.expires_at_s > node::now_s().saturating_add(CHAIN_MARGIN_S)
                && self
                    .known_issuer
                    .as_ref()
                    .map_or(c.issuer_url == self.issuer.signed().base_url(), |i| {
                        c.touchstone.signer == i.as_str()
                    })
        }) {
            match self.pay_from(&file, vendor, amount).await {
                Err(WalletError::Exhausted { .. } | WalletError::Expired(_)) => {}
                other => return other,
            }
        }
        let found = self.chain_held(Some((vendor, amount))).await?;
        let file = match found {
            Some(f) => f,
            None => {
                // At most half of what the wallet holds goes into escrow, so buying contracts
                // (transfers) still works; never less than this charge.
                let balance = self.issuer.balance().await?.balance.max(0).unsigned_abs();
                let length = self
                    .chain_words
                    .min(balance / 2)
                    .max(amount)
                    .min(protocol::payword::CHAIN_LENGTH_MAX);
                if length < amount {
                    return Err(WalletError::Invalid(format!(
                        "a charge of {amount} is more than one chain can pay"
                    )));
                }
                wallet::buy(&self.issuer, &self.wallet, length, 1, None).await?
            }
        };
        let paid = self.pay_from(&file, vendor, amount).await;
        if paid.is_ok() {
            *self
                .current
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file);
        }
        paid
    }

    /// A chain of this issuer held in the wallet that has not expired (one scan of the chain
    /// files); with `for_payment`, one that can pay that amount to that vendor.
    async fn chain_held(
        &self,
        for_payment: Option<(&EntityId, u64)>,
    ) -> Result<Option<wallet::ChainFile>, WalletError> {
        // The issuer's entity when known; otherwise chains bought at this issuer's URL are
        // taken as its own (each touchstone says who signed it), so a payment from a chain
        // held asks the issuer nothing.
        let issuer = self.known_issuer.clone();
        let url = self.issuer.signed().base_url().to_owned();
        let w = self.wallet.clone();
        let payment = for_payment.map(|(v, amount)| (v.to_string(), amount));
        let now = node::now_s();
        tokio::task::spawn_blocking(move || {
            // The wallet holds chains of any unit: the words needed depend on it.
            Ok::<_, WalletError>(w.chains()?.into_iter().find(|c| {
                let of_issuer = match &issuer {
                    Some(i) => c.touchstone.signer == i.as_str(),
                    None => c.issuer_url == url,
                };
                of_issuer
                    && c.expires_at_s > now.saturating_add(CHAIN_MARGIN_S)
                    && payment
                        .as_ref()
                        .is_none_or(|(v, amount)| c.payable_words(v) >= amount.div_ceil(c.unit))
            }))
        })
        .await
        .map_err(|e| WalletError::Invalid(e.to_string()))?
    }

    /// Find a chain to pay from before the first payment needs it (the first then costs one
    /// wallet update, not a scan of every chain file). Buys nothing; a chain that cannot pay
    /// the payment's vendor is passed over then, as any other.
    pub async fn warm(&self) -> Result<(), WalletError> {
        let held = self.chain_held(None).await?;
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.is_none() {
            *current = held;
        }
        Ok(())
    }

    /// Words worth `amount` for `vendor` from the chain of `file`.
    async fn pay_from(
        &self,
        file: &wallet::ChainFile,
        vendor: &EntityId,
        amount: u64,
    ) -> Result<Option<PaywordPayment>, WalletError> {
        let words = amount.div_ceil(file.unit);
        let (w, key, vendor, chain) = (
            self.wallet.clone(),
            self.key.clone(),
            vendor.clone(),
            file.chain.clone(),
        );
        let block_words = self.block_words;
        let payword = tokio::task::spawn_blocking(move || {
            w.pay(&key, &chain, &vendor, words, block_words, node::now_s())
        })
        .await
        .map_err(|e| WalletError::Invalid(e.to_string()))??;
        Ok(Some(PaywordPayment {
            payword,
            touchstone: envelope_header_value(&file.touchstone),
            value: words.saturating_mul(file.unit),
        }))
    }
}

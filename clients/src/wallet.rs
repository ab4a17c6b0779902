//! The payer's payword chains (DESIGN section 10), kept beside the key in `<key>.chains/`.
//!
//! - Buying: the wallet picks a random seed `W_n`, hashes it down to the root and keeps the
//!   seed (with a checkpoint every ~sqrt(n) words, so any word costs at most ~sqrt(n) hashes)
//!   before it asks the issuer, so a chain that was paid for is never without its words.
//! - Paying: each vendor gets its own block of words, signed once; a payment hands over the
//!   next words of the vendor's block.
//!
//! Invariants:
//! - A word or a block leaves only after the state that reserves it is fsynced: a crash never
//!   reveals a word twice, nor gives two vendors overlapping blocks (that would be a double
//!   spend, caught and published by the issuer).
//! - Blocks of one chain never overlap: each starts at the chain's `next_free` word.
//! - Every change to a chain's file happens under an exclusive lock on `<chain>.lock`, so
//!   several processes may pay from one wallet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use node::client::ClientError;
use protocol::payword::{sign_block, ChainPurchase, OpenTouchstone, Payword, Word};
use protocol::{EntityId, Envelope, KeyPair};
use serde::{Deserialize, Serialize};

/// Words per block when the caller does not say: a vendor is paid from one signed block for
/// this many words before the payer signs again.
pub const BLOCK_WORDS_DEFAULT: u64 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("wallet state {path}: {message}")]
    State { path: String, message: String },
    #[error("no chain {0} in this wallet")]
    UnknownChain(String),
    #[error("chain {chain} has {left} word(s) left, fewer than the {asked} asked for")]
    Exhausted {
        chain: String,
        left: u64,
        asked: u64,
    },
    #[error("chain {0} has expired")]
    Expired(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// One vendor's block of a chain and how far it was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    pub from: u64,
    pub end: u64,
    pub signature: String,
    /// The highest word handed over (`from - 1` before the first payment).
    pub given_to: u64,
}

/// A chain's file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainFile {
    pub chain: String,
    pub issuer_url: String,
    pub touchstone: Envelope,
    /// `W_n`, hex: the secret every word comes from.
    pub seed: String,
    pub length: u64,
    pub unit: u64,
    pub expires_at_s: i64,
    /// The first word no block holds yet.
    pub next_free: u64,
    /// Blocks per vendor entity id, oldest first.
    pub blocks: BTreeMap<String, Vec<BlockState>>,
    /// `W_{j x step}` for j = 0, 1, ...: words cost at most `step` hashes.
    pub step: u64,
    pub checkpoints: Vec<String>,
}

/// What `lcp chain list` shows of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainSummary {
    pub chain: String,
    pub issuer: String,
    pub unit: u64,
    pub length: u64,
    pub words_spent: u64,
    pub words_left: u64,
    pub value_left: u64,
    pub expires_at: String,
    pub expired: bool,
    pub vendors: usize,
}

impl ChainFile {
    /// A new chain of `length` words with a fresh seed; the touchstone is filled in once the
    /// issuer answers. Blocking: hashes `length` times.
    pub fn generate(length: u64) -> Result<(Word, Word, u64, Vec<String>), WalletError> {
        let seed = Word::random().map_err(|e| WalletError::Invalid(e.to_string()))?;
        let step = step_for(length);
        let mut checkpoints = vec![String::new(); (length / step + 1) as usize];
        let mut w = seed;
        let mut i = length;
        loop {
            if i.is_multiple_of(step) {
                checkpoints[(i / step) as usize] = w.hex();
            }
            if i == 0 {
                break;
            }
            w = w.hashed();
            i -= 1;
        }
        Ok((seed, w, step, checkpoints))
    }

    /// `W_i` (0 <= i <= length).
    pub fn word(&self, i: u64) -> Result<Word, WalletError> {
        if i > self.length {
            return Err(WalletError::Invalid(format!(
                "no word {i} in a chain of {}",
                self.length
            )));
        }
        let bad = |m: &str| WalletError::Invalid(format!("chain {}: {m}", self.chain));
        // The nearest checkpoint at or above i, or the seed.
        let j = i.div_ceil(self.step) * self.step;
        let (start, at) = if j >= self.length {
            (
                Word::parse(&self.seed).map_err(|_| bad("malformed seed"))?,
                self.length,
            )
        } else {
            let text = self
                .checkpoints
                .get((j / self.step) as usize)
                .ok_or_else(|| bad("missing checkpoint"))?;
            (
                Word::parse(text).map_err(|_| bad("malformed checkpoint"))?,
                j,
            )
        };
        Ok(start.hashed_times(at - i))
    }

    pub fn summary(&self, now_s: i64) -> ChainSummary {
        let spent: u64 = self
            .blocks
            .values()
            .flatten()
            .map(|b| b.given_to + 1 - b.from)
            .sum();
        let open: u64 = self
            .blocks
            .values()
            .filter_map(|bs| bs.last())
            .map(|b| b.end - b.given_to)
            .sum();
        let left = (self.length + 1 - self.next_free) + open;
        ChainSummary {
            chain: self.chain.clone(),
            issuer: self.issuer_url.clone(),
            unit: self.unit,
            length: self.length,
            words_spent: spent,
            words_left: left,
            value_left: left.saturating_mul(self.unit),
            expires_at: protocol::market::format_rfc3339(self.expires_at_s),
            expired: now_s >= self.expires_at_s,
            vendors: self.blocks.len(),
        }
    }

    /// Words `vendor` can still be paid without a new block.
    pub fn open_words(&self, vendor: &str) -> u64 {
        self.blocks
            .get(vendor)
            .and_then(|bs| bs.last())
            .map(|b| b.end - b.given_to)
            .unwrap_or(0)
    }

    /// Words `vendor` could be paid from this chain in all (its block and unallocated words).
    pub fn payable_words(&self, vendor: &str) -> u64 {
        self.open_words(vendor)
            .max(self.length + 1 - self.next_free)
    }
}

/// ~sqrt(length), at least 1: checkpoints and the hashes per word balance.
fn step_for(length: u64) -> u64 {
    ((length as f64).sqrt().ceil() as u64).max(1)
}

/// The chains beside one key.
#[derive(Debug, Clone)]
pub struct Wallet {
    dir: PathBuf,
}

impl Wallet {
    /// `<key>.chains/` beside `key_path`.
    pub fn beside_key(key_path: &Path) -> Wallet {
        let mut name = key_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        name.push(".chains");
        Wallet {
            dir: key_path.with_file_name(name),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, message: impl Into<String>) -> WalletError {
        WalletError::State {
            path: self.dir.display().to_string(),
            message: message.into(),
        }
    }

    fn path_of(&self, chain: &str) -> PathBuf {
        self.dir.join(format!("{chain}.json"))
    }

    /// Keep a chain bought (or about to be: `pending`) durably. Blocking.
    pub fn save(&self, file: &ChainFile) -> Result<(), WalletError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.err(e.to_string()))?;
        self.write(&self.path_of(&file.chain), file)
    }

    /// Forget a chain file (a pending one whose purchase failed).
    pub fn remove(&self, chain: &str) -> Result<(), WalletError> {
        match std::fs::remove_file(self.path_of(chain)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    fn write(&self, path: &Path, file: &ChainFile) -> Result<(), WalletError> {
        let bytes = serde_json::to_vec(file).map_err(|e| self.err(e.to_string()))?;
        node::client::write_durably(path, &bytes).map_err(|e| self.err(e.to_string()))
    }

    fn read(&self, path: &Path) -> Result<ChainFile, WalletError> {
        let bytes =
            std::fs::read(path).map_err(|e| self.err(format!("{}: {e}", path.display())))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.err(format!("{} is corrupt: {e}", path.display())))
    }

    /// Every chain in the wallet, sorted by expiry. Blocking.
    pub fn chains(&self) -> Result<Vec<ChainFile>, WalletError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e.to_string())),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| self.err(e.to_string()))?.path();
            let pending = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("pending-"));
            if path.extension().is_some_and(|x| x == "json") && !pending {
                let file = self.read(&path)?;
                if !file.touchstone.signature.is_empty() {
                    out.push(file);
                }
            }
        }
        out.sort_by_key(|c| c.expires_at_s);
        Ok(out)
    }

    pub fn chain(&self, chain: &str) -> Result<ChainFile, WalletError> {
        let path = self.path_of(chain);
        if !path.exists() {
            return Err(WalletError::UnknownChain(chain.to_owned()));
        }
        self.read(&path)
    }

    /// Hand `vendor` the next `words` words of `chain`, opening a new block of
    /// `max(block_words, words)` (or what is left) when its block cannot hold them. The state
    /// is fsynced before the payword is returned. Blocking.
    pub fn pay(
        &self,
        key: &KeyPair,
        chain: &str,
        vendor: &EntityId,
        words: u64,
        block_words: u64,
        now_s: i64,
    ) -> Result<Payword, WalletError> {
        if words == 0 {
            return Err(WalletError::Invalid("pay at least one word".into()));
        }
        let path = self.path_of(chain);
        if !path.exists() {
            return Err(WalletError::UnknownChain(chain.to_owned()));
        }
        let lock_path = self.dir.join(format!("{chain}.lock"));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.err(format!("cannot open lock file: {e}")))?;
        lock.lock()
            .map_err(|e| self.err(format!("cannot lock: {e}")))?;
        let mut file = self.read(&path)?;
        if now_s >= file.expires_at_s {
            return Err(WalletError::Expired(chain.to_owned()));
        }
        let vendor_id = vendor.to_string();
        if file.open_words(&vendor_id) < words {
            let unallocated = file.length + 1 - file.next_free;
            if unallocated < words {
                return Err(WalletError::Exhausted {
                    chain: chain.to_owned(),
                    left: unallocated.max(file.open_words(&vendor_id)),
                    asked: words,
                });
            }
            let size = block_words.max(words).min(unallocated);
            let from = file.next_free;
            let end = from + size - 1;
            let signature = sign_block(key, chain, vendor, from, end);
            file.next_free = end + 1;
            file.blocks
                .entry(vendor_id.clone())
                .or_default()
                .push(BlockState {
                    from,
                    end,
                    signature,
                    given_to: from - 1,
                });
        }
        // Invariant: the vendor has a block with at least `words` open words (made above).
        let Some(block) = file.blocks.get_mut(&vendor_id).and_then(|bs| bs.last_mut()) else {
            return Err(self.err("block vanished"));
        };
        block.given_to += words;
        let payword_block = block.clone();
        let word = file.word(payword_block.given_to)?;
        self.write(&path, &file)?;
        drop(lock);
        Ok(Payword {
            chain: chain.to_owned(),
            from: payword_block.from,
            end: payword_block.end,
            to: payword_block.given_to,
            word,
            signature: payword_block.signature,
        })
    }

    /// A chain of `issuer` (its entity) with `unit` that can pay `vendor` `words` words and
    /// lives at least `margin_s` more. Blocking.
    pub fn usable_chain(
        &self,
        issuer: &EntityId,
        unit: Option<u64>,
        vendor: &str,
        words: u64,
        now_s: i64,
        margin_s: i64,
    ) -> Result<Option<ChainFile>, WalletError> {
        Ok(self.chains()?.into_iter().find(|c| {
            c.touchstone.signer == issuer.as_str()
                && unit.is_none_or(|u| u == c.unit)
                && c.expires_at_s > now_s.saturating_add(margin_s)
                && c.payable_words(vendor) >= words
        }))
    }
}

/// Buy a chain of `length` words of `unit` from `issuer`, keeping it in `wallet`. The seed
/// is stored (as a pending file) before the issuer is asked, so a purchase answered but not
/// seen (a crash, a lost answer) still has its words; `lcp chain list` ignores pending files.
pub async fn buy(
    issuer: &crate::issuer::IssuerClient,
    wallet: &Wallet,
    length: u64,
    unit: u64,
    expires_in_s: Option<u64>,
) -> Result<ChainFile, WalletError> {
    if length == 0 || length > protocol::payword::CHAIN_LENGTH_MAX {
        return Err(WalletError::Invalid(format!(
            "--length must be 1 to {} words",
            protocol::payword::CHAIN_LENGTH_MAX
        )));
    }
    let (seed, root, step, checkpoints) =
        tokio::task::spawn_blocking(move || ChainFile::generate(length))
            .await
            .map_err(|e| WalletError::Invalid(e.to_string()))??;
    let issuer_id = issuer.signed().audience().await?.clone();
    let mut file = ChainFile {
        chain: format!("pending-{}", &root.hex()[..16]),
        issuer_url: issuer.signed().base_url().to_owned(),
        touchstone: Envelope {
            signer: issuer_id.to_string(),
            kind: protocol::payword::TOUCHSTONE_TYPE.into(),
            payload: String::new(),
            signature: String::new(),
        },
        seed: seed.hex(),
        length,
        unit,
        expires_at_s: 0,
        next_free: 1,
        blocks: BTreeMap::new(),
        step,
        checkpoints,
    };
    let pending = file.chain.clone();
    {
        let (w, f) = (wallet.clone(), file.clone());
        tokio::task::spawn_blocking(move || w.save(&f))
            .await
            .map_err(|e| WalletError::Invalid(e.to_string()))??;
    }
    let purchase = ChainPurchase {
        root,
        length,
        unit,
        expires_in_s,
    };
    let receipt = match issuer.buy_chain(&purchase).await {
        Ok(r) => r.value,
        Err(e) => {
            // Refused (funds, limits): nothing was bought. Unknown outcome: keep the seed.
            if matches!(e, ClientError::Api { .. }) {
                let _ = wallet.remove(&pending);
            }
            return Err(e.into());
        }
    };
    let t = OpenTouchstone::open(&receipt.touchstone)
        .map_err(|e| WalletError::Invalid(format!("the issuer's touchstone: {e}")))?;
    let me = issuer.signed().key().entity();
    if t.issuer != issuer_id
        || &t.payer != me
        || t.touchstone.root != root
        || t.touchstone.length != length
        || t.touchstone.unit != unit
        || t.touchstone.chain != receipt.chain
    {
        return Err(WalletError::Invalid(
            "the issuer's touchstone does not match the chain asked for".into(),
        ));
    }
    file.chain = receipt.chain;
    file.touchstone = receipt.touchstone;
    file.expires_at_s = t.expires_at_s;
    let w = wallet.clone();
    let saved = file.clone();
    tokio::task::spawn_blocking(move || {
        w.save(&saved)?;
        w.remove(&pending)
    })
    .await
    .map_err(|e| WalletError::Invalid(e.to_string()))??;
    Ok(file)
}

/// Open a chain file's touchstone (it was checked when bought; a tampered file fails here).
pub fn touchstone_of(file: &ChainFile) -> Result<OpenTouchstone, WalletError> {
    OpenTouchstone::open(&file.touchstone).map_err(|e| WalletError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain_file(length: u64) -> ChainFile {
        let (seed, _root, step, checkpoints) = ChainFile::generate(length).expect("generate");
        ChainFile {
            chain: "0b4e8a3c-7f2d-4c1e-9a5b-3d6f8e2a1c4b".into(),
            issuer_url: "http://127.0.0.1:1".into(),
            touchstone: Envelope {
                signer: String::new(),
                kind: "touchstone".into(),
                payload: String::new(),
                signature: "x".into(),
            },
            seed: seed.hex(),
            length,
            unit: 2,
            expires_at_s: i64::MAX,
            next_free: 1,
            blocks: BTreeMap::new(),
            step,
            checkpoints,
        }
    }

    #[test]
    fn every_word_hashes_to_the_root() {
        for length in [1, 2, 10, 99, 100, 101] {
            let f = chain_file(length);
            let root = f.word(0).expect("root");
            assert_eq!(
                Word::parse(&f.seed).expect("seed").hashed_times(length),
                root
            );
            for i in 0..=length {
                assert_eq!(
                    f.word(i).expect("word").hashed_times(i),
                    root,
                    "{length} {i}"
                );
            }
        }
    }

    #[test]
    fn blocks_never_overlap_and_words_advance() {
        let dir = tempfile::tempdir().expect("tmp");
        let wallet = Wallet::beside_key(&dir.path().join("k.key"));
        let key = KeyPair::generate().expect("key");
        let (a, b) = (
            KeyPair::generate().expect("key"),
            KeyPair::generate().expect("key"),
        );
        let f = chain_file(10);
        let root = f.word(0).expect("root");
        wallet.save(&f).expect("save");
        let p1 = wallet
            .pay(&key, &f.chain, a.entity(), 2, 4, 0)
            .expect("pay");
        assert_eq!((p1.from, p1.end, p1.to), (1, 4, 2));
        let p2 = wallet
            .pay(&key, &f.chain, b.entity(), 1, 4, 0)
            .expect("pay");
        assert_eq!((p2.from, p2.end, p2.to), (5, 8, 5));
        let p3 = wallet
            .pay(&key, &f.chain, a.entity(), 2, 4, 0)
            .expect("pay");
        assert_eq!((p3.from, p3.end, p3.to), (1, 4, 4));
        assert_eq!(p3.word.hashed_times(4), root);
        // a's block is used up: the rest of the chain (2 words) is its next block.
        let p4 = wallet
            .pay(&key, &f.chain, a.entity(), 1, 4, 0)
            .expect("pay");
        assert_eq!((p4.from, p4.end, p4.to), (9, 10, 9));
        assert!(matches!(
            wallet.pay(&key, &f.chain, b.entity(), 4, 4, 0),
            Err(WalletError::Exhausted { .. })
        ));
        let s = wallet.chain(&f.chain).expect("chain").summary(0);
        assert_eq!((s.words_spent, s.words_left), (6, 4));
    }
}

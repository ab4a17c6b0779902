//! A repository: its slots (one agent and contract per shard position), its keys, and the
//! objects it keeps on the agents. Every object but the key file is sealed; packs, indexes and
//! snapshots are erasure-coded, shard `i` on slot `i`.
//!
//! On each slot's contract:
//! - `key-<repo>`: the password-wrapped key file (the same on every slot);
//! - `cfg-<repo>`: the sealed repository config, slot order included (the same on every slot);
//! - `p-<pack>-<i>`, `i-<index>-<i>`, `s-<snapshot>-<i>`: shard `i` of a pack, an index or a
//!   snapshot.
//!
//! The local configuration directory only caches: `repo.json`, `key.json` and `index.json` can
//! all be rebuilt from the agents with the market URL, the repository id, the password and the
//! wallet that bought the contracts.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clients::agent::{AgentClient, SignedContract};
use clients::issuer::IssuerClient;
use clients::market::MarketClient;
use futures_util::future::join_all;
use node::client::ClientError;
use protocol::market::Contract;
use protocol::{EntityId, Envelope, KeyPair};
use serde::{Deserialize, Serialize};

use crate::crypto::{ExportedKey, KeyFile, Keys};
use crate::erasure;
use crate::error::{remote, Error};
use crate::pack::Location;
use crate::tree::Snapshot;

mod locks;
mod shards;
mod slots;

pub use shards::{get_paying, open_paying, rebuild_verified, shard_roots, Reader};

/// A lock older than this is ignored: it belongs to a backup or prune that was killed.
pub const LOCK_STALE_S: i64 = 24 * 3600;
/// Agents tried in turn when replacing a lost one.
const REPLACE_TRIES_MAX: usize = 5;
/// The largest sharded object a read accepts (a pack is about 20 MiB, an index of a million
/// chunks about 150 MiB): a shard length an agent announces is checked against it before a
/// buffer is sized from it.
const OBJECT_BYTES_MAX: u64 = 1 << 30;

/// Retired contracts the config remembers, at most (for `stats`' spending; older ones are
/// dropped, and their payments no longer counted).
pub const RETIRED_MAX: usize = 64;

/// Longest an interrupted command spends removing its lock before it exits anyway (an agent
/// that hangs must not keep a Ctrl-C from ending the command).
pub const UNLOCK_ON_SIGNAL_MS_MAX: u64 = 10_000;

/// SIGINT and SIGTERM, caught while a command holds a lock: restic removes its lock on
/// Ctrl-C, and a lock left behind makes the next `prune` refuse until `backup unlock`. Caught
/// from before the lock is taken, so no signal in between kills the process with it held.
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Catch SIGINT and SIGTERM from now on (one that cannot be caught keeps its default).
    pub fn catch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next signal, as the error that ends the command (exit 130 or 143).
    pub async fn next(&mut self) -> Error {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.int) => Error::Interrupted { signal: "SIGINT", exit_code: 130 },
            () = recv(&mut self.term) => Error::Interrupted { signal: "SIGTERM", exit_code: 143 },
        }
    }
}

/// Run `work` until it ends or a signal arrives (then [`Error::Interrupted`]).
pub async fn until_signal<T>(
    signals: &mut Signals,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::select! {
        r = work => r,
        e = signals.next() => Err(e),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Slot {
    pub agent: String,
    pub endpoint: String,
    pub contract: String,
    pub write_per_kib: u64,
    pub read_per_kib: u64,
    /// The contract's block and end (Unix s): what a replacement buys.
    #[serde(default)]
    pub block_bytes: u64,
    #[serde(default)]
    pub end_s: i64,
    /// The contract's length, which a renewal buys again (0: unknown, from before it was
    /// recorded).
    #[serde(default)]
    pub duration_s: u64,
}

/// ` (tried: a: why; b: why)` for the agents that refused, or nothing.
fn tried(refused: &[String]) -> String {
    if refused.is_empty() {
        String::new()
    } else {
        format!(" (tried: {})", refused.join("; "))
    }
}

/// A contract bought for a slot, not yet in use.
pub struct BoughtSlot {
    pub slot: Slot,
    pub agent: AgentClient,
    pub signed: SignedContract,
}

use node::now_s;

/// What identifies a repository and where its shards are.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoConfig {
    pub repository: String,
    pub market: String,
    pub issuer: String,
    pub issuer_url: String,
    pub data_shards: usize,
    pub parity_shards: usize,
    pub slots: Vec<Slot>,
    /// Contracts the slots held before a renewal, growth or replacement (the latest
    /// [`RETIRED_MAX`]): they lapse, and `stats` counts what was paid to them.
    #[serde(default)]
    pub retired: Vec<Slot>,
}

/// A pack's shards as stored: their length and each one's Merkle root (computed here from
/// the bytes sent, and acknowledged by the agent), which audits check the agents' proofs
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRoots {
    pub shard_len: u64,
    pub roots: Vec<String>,
}

/// What an index object on the agents holds: chunk locations and the shard roots of the packs
/// that hold them. Objects written before roots were recorded are a bare location map.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexObject {
    pub chunks: HashMap<String, Location>,
    #[serde(default)]
    pub packs: HashMap<String, ShardRoots>,
}

impl IndexObject {
    pub fn parse(bytes: &[u8]) -> Result<IndexObject, serde_json::Error> {
        serde_json::from_slice(bytes).or_else(|e| {
            serde_json::from_slice::<HashMap<String, Location>>(bytes)
                .map(|chunks| IndexObject {
                    chunks,
                    packs: HashMap::new(),
                })
                .map_err(|_| e)
        })
    }
}

/// The local cache of where every chunk is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    pub chunks: HashMap<String, Location>,
    /// Shard roots by pack id (packs stored before roots were recorded have none).
    #[serde(default)]
    pub packs: HashMap<String, ShardRoots>,
    /// Index objects already folded in.
    pub loaded: Vec<String>,
    /// Locations uploaded by a backup that has not finished (written after every pack, so an
    /// interrupted backup resumes without uploading them again).
    #[serde(default)]
    pub pending: HashMap<String, Location>,
}

/// The wallet key: the buyer's identity on agents and market, and the payer in LCP. Its path
/// matters: the wallet's counters live beside it (`<key>.counters`).
#[derive(Clone)]
pub struct Wallet {
    pub key: Arc<KeyPair>,
    pub path: PathBuf,
    /// Set: the key still signs the backup's requests, but payments come from this bank
    /// account (DESIGN 14: `backup init --bank URL --bank-token T`), and no paywords are
    /// used (a bank pays plain transfers only).
    pub bank: Option<BankLink>,
}

/// A bank account that pays for a repository, as `init` remembered it (`<config>/bank`,
/// readable by its owner only: the token spends money).
pub use clients::bank::BankLink;

/// The file under the configuration directory a bank link is kept in.
pub const BANK_FILE: &str = "bank";

impl Wallet {
    pub fn load(path: &Path) -> Result<Wallet, Error> {
        let key = node::keyfile::load(path)
            .map_err(|e| Error::Usage(format!("wallet {}: {e}", path.display())))?;
        Ok(Wallet {
            key: Arc::new(key),
            path: path.to_path_buf(),
            bank: None,
        })
    }

    /// This wallet paying through `bank` (checked for form here; the bank checks the token).
    pub fn with_bank(mut self, bank: BankLink) -> Result<Wallet, Error> {
        bank.access(reqwest::Client::new())
            .map_err(|e| Error::Usage(format!("--bank-token: {e}")))?;
        self.bank = Some(bank);
        Ok(self)
    }

    /// A client of `issuer_url` paying with this key, or through the bank when there is one.
    pub fn client(&self, http: &reqwest::Client, issuer_url: &str) -> IssuerClient {
        let client = IssuerClient::new(
            http.clone(),
            issuer_url,
            self.key.clone(),
            Some(node::client::CounterStore::beside_key(&self.path)),
        );
        match self.bank.as_ref().and_then(|b| b.access(http.clone()).ok()) {
            // `with_bank` checked the link's form, so `new` only fails on a link edited since.
            Some(access) => client.through_bank(access),
            None => client,
        }
    }
}

pub struct Repo {
    pub dir: PathBuf,
    pub config: RepoConfig,
    /// Shared with the threads of `create` and `restore`.
    pub keys: Arc<Keys>,
    pub index: Index,
    pub buyer: Arc<KeyPair>,
    /// The wallet key's path: its record chain lives beside it (`<key>.records/`).
    pub key_path: PathBuf,
    pub wallet: IssuerClient,
    /// Pays each charged request with paywords from the wallet's chains (`<key>.chains/`),
    /// so agents that take them never answer `402`; `None` when `BACKUP_PAYWORDS=0`.
    pub words: Option<clients::paywords::PaywordPayer>,
    pub http: reqwest::Client,
    agents: Vec<Arc<AgentClient>>,
    /// Slots whose agent did not answer a sharded write: later writes skip them, and their
    /// shards stay unwritten until `repair` (at most [`Repo::unwritten_max`] slots).
    unwritten: std::sync::Mutex<std::collections::BTreeSet<usize>>,
    /// Objects (`i-..`, `s-..`) fewer than k slots can hold: written half way by a command
    /// that stopped (killed, or a contract full). They are not the repository's: skipped
    /// with a warning, and deleted by `prune`.
    half_written: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// Packs listed on at least k slots when the index was last synced: only their chunks
    /// count as stored for deduplication (an index may still name a pack a killed prune
    /// deleted, or half deleted).
    stored_packs: HashSet<String>,
    /// Slots whose agent did not answer (a refused connection, or no bytes for the read
    /// timeout) in this command: not asked again, so one hung agent costs one timeout, not
    /// one per request. Shared with every [`Reader`]; a slot given to a new agent is cleared.
    silent: Arc<[AtomicBool]>,
}

/// What opens the repository's key: the password, or an exported key file.
pub enum Secret {
    Password(String),
    Key(ExportedKey),
}

impl Secret {
    /// The master key of `repository`, whose password-wrapped key file is `key`.
    pub fn keys(&self, key: &KeyFile, repository: &str) -> Result<Keys, Error> {
        match self {
            Secret::Password(p) => key.unwrap(p),
            Secret::Key(k) => k.keys(repository),
        }
    }
}

pub fn key_name(repo: &str) -> String {
    format!("key-{repo}")
}

pub fn config_name(repo: &str) -> String {
    format!("cfg-{repo}")
}

/// Write a file of the configuration directory, readable by its owner only: `key.json` holds
/// the password-wrapped key (an offline guessing target) and the rest names the repository's
/// contracts and chunks.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Io(e.to_string()))?;
    let mut f = private_file(&tmp)?;
    f.write_all(&bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Create (or truncate) `path` with mode 0600.
pub fn private_file(path: &Path) -> Result<std::fs::File, Error> {
    Ok(node::keyfile::create_private(path)?)
}

/// Create the configuration directory `dir`, private to its owner (mode 0700).
pub fn private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = std::fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))
}

/// Contract terms from a dual-signed contract envelope.
pub fn terms_of(envelope: &Envelope) -> Result<Contract, Error> {
    envelope
        .open::<Contract>(protocol::market::CONTRACT_TYPE)
        .map(|(_, c)| c)
        .map_err(|e| Error::Corrupt(format!("contract envelope: {e}")))
}

/// What each slot's contract lists: full object names, shard suffixes included; `None` for
/// a slot whose agent did not answer.
pub struct Listing {
    pub slots: Vec<Option<HashSet<String>>>,
}

impl Listing {
    /// Object names without the shard suffix, over every slot that answered.
    pub fn names(&self) -> Vec<String> {
        let mut names = std::collections::BTreeSet::new();
        for (i, held) in self.slots.iter().enumerate() {
            let suffix = format!("-{i}");
            for name in held.iter().flatten() {
                let base = name.strip_suffix(&suffix).unwrap_or(name);
                names.insert(base.to_owned());
            }
        }
        names.into_iter().collect()
    }

    /// How many slots list their shard of `base` (`<base>-<i>` on slot `i`).
    pub fn listed(&self, base: &str) -> usize {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, held)| {
                held.as_ref()
                    .is_some_and(|h| h.contains(&format!("{base}-{i}")))
            })
            .count()
    }

    /// How many slots may hold a shard of `base`: those listing it and those that did not
    /// answer.
    pub fn could_hold(&self, base: &str) -> usize {
        self.listed(base) + self.slots.iter().filter(|h| h.is_none()).count()
    }
}

/// Whether to pay agents by payword: yes unless `BACKUP_PAYWORDS=0` (then every charge is
/// an LCP transfer to the contract, as before paywords).
pub fn paywords_on() -> bool {
    clients::paywords::enabled("BACKUP_PAYWORDS")
}

impl Repo {
    pub fn new(
        dir: &Path,
        config: RepoConfig,
        keys: Keys,
        payer: &Wallet,
        http: reqwest::Client,
    ) -> Repo {
        let buyer = payer.key.clone();
        let wallet = payer.client(&http, &config.issuer_url);
        let words = (paywords_on() && payer.bank.is_none()).then(|| {
            let words = clients::paywords::PaywordPayer::new(
                buyer.clone(),
                clients::wallet::Wallet::beside_key(&payer.path),
                wallet.clone(),
            );
            match EntityId::parse(&config.issuer) {
                Ok(issuer) => words.with_issuer(issuer),
                Err(_) => words,
            }
        });
        let agents = config
            .slots
            .iter()
            .map(|s| Arc::new(AgentClient::new(http.clone(), &s.endpoint, buyer.clone())))
            .collect();
        let index = read_json(&dir.join("index.json")).unwrap_or_default();
        let silent = config
            .slots
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect();
        Repo {
            silent,
            dir: dir.to_path_buf(),
            config,
            keys: Arc::new(keys),
            index,
            buyer,
            key_path: payer.path.clone(),
            wallet,
            words,
            http,
            agents,
            unwritten: Default::default(),
            half_written: Default::default(),
            stored_packs: HashSet::new(),
        }
    }

    /// How many slots a sharded write may leave unwritten because their agents do not answer:
    /// m - 1, so what is stored still survives the loss of one more agent. An agent at home
    /// being off does not stop a backup; `repair` writes the missing shards later.
    pub fn unwritten_max(&self) -> usize {
        self.config.parity_shards.saturating_sub(1)
    }

    /// The slots left unwritten so far (see [`Repo::unwritten_max`]).
    pub fn unwritten(&self) -> Vec<usize> {
        let set = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        set.iter().copied().collect()
    }

    /// Open the repository cached in `dir`.
    pub fn open_local(
        dir: &Path,
        secret: &Secret,
        payer: &Wallet,
        http: reqwest::Client,
    ) -> Result<Repo, Error> {
        let config: RepoConfig = read_json(&dir.join("repo.json")).map_err(|_| {
            Error::NoRepository(format!(
                "{} has no repository (run `backup init`, or give --repo, --market and --wallet)",
                dir.display()
            ))
        })?;
        let key: KeyFile = read_json(&dir.join("key.json"))?;
        let keys = secret.keys(&key, &config.repository)?;
        Ok(Repo::new(dir, config, keys, payer, http))
    }

    /// Check that the keys open the repository's sealed config, read from the first slot that
    /// answers (an exported key file carries no check of its own): a wrong key is refused
    /// up front as such, not later as corrupt data. No slot answering is no verdict.
    pub async fn verify_key(&self) -> Result<(), Error> {
        let name = config_name(&self.config.repository);
        for (i, agent) in self.agents.iter().enumerate() {
            let contract = &self.config.slots[i].contract;
            if let Ok(sealed) = get_paying(agent, contract, &name, None, None).await {
                return self.keys.open(&sealed).map(drop).map_err(|_| {
                    Error::WrongKey("it does not open the repository's config".into())
                });
            }
        }
        Ok(())
    }

    /// Rebuild the local cache in `dir` from the agents: find the slots through the market
    /// (the contracts this wallet registered that hold `key-<repo>`), read the key file and the
    /// sealed config from the first slot that answers.
    pub async fn recover(
        dir: &Path,
        repository: &str,
        market_url: &str,
        secret: &Secret,
        payer: &Wallet,
        http: reqwest::Client,
    ) -> Result<Repo, Error> {
        let buyer = payer.key.clone();
        let market = MarketClient::new(http.clone(), market_url, buyer.clone());
        let mine = market
            .my_contracts()
            .await
            .map_err(remote("listing this wallet's contracts at the market"))?;
        let key_obj = key_name(repository);
        let mut holders: Vec<_> = mine
            .iter()
            .filter(|c| c.objects.iter().any(|o| o.name == key_obj))
            .collect();
        // Latest end first: after a renewal, the old contracts still hold the config as it
        // was before it (naming themselves); the renewed ones hold the current one.
        holders.sort_by_key(|c| {
            std::cmp::Reverse(protocol::market::parse_rfc3339(&c.end).unwrap_or(0))
        });
        if holders.is_empty() {
            return Err(Error::NoRepository(format!(
                "the market knows no contract of this wallet holding repository {repository}"
            )));
        }
        let mut last_err = None;
        for c in holders {
            let agent = AgentClient::new(http.clone(), &c.endpoint, buyer.clone());
            let attempt = async {
                let key_bytes = get_paying(&agent, &c.id, &key_obj, None, None).await?;
                let key: KeyFile = serde_json::from_slice(&key_bytes)
                    .map_err(|e| Error::Corrupt(format!("key file: {e}")))?;
                let keys = secret.keys(&key, repository)?;
                let sealed =
                    get_paying(&agent, &c.id, &config_name(repository), None, None).await?;
                let plain = keys.open(&sealed).map_err(|e| match secret {
                    Secret::Key(_) => {
                        Error::WrongKey("it does not open the repository's config".into())
                    }
                    Secret::Password(_) => e,
                })?;
                let config: RepoConfig = serde_json::from_slice(&plain)
                    .map_err(|e| Error::Corrupt(format!("config: {e}")))?;
                Ok::<_, Error>((key, keys, config))
            }
            .await;
            match attempt {
                Ok((key, keys, mut config)) => {
                    // Endpoints may have moved since the config was written; the market knows.
                    for slot in &mut config.slots {
                        if let Some(m) = mine.iter().find(|m| m.id == slot.contract) {
                            slot.endpoint = m.endpoint.clone();
                        }
                    }
                    config.market = market_url.to_owned();
                    private_dir(dir)?;
                    write_json(&dir.join("key.json"), &key)?;
                    write_json(&dir.join("repo.json"), &config)?;
                    return Ok(Repo::new(dir, config, keys, payer, http));
                }
                Err(e @ (Error::WrongPassword | Error::WrongKey(_))) => return Err(e),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| Error::NoRepository(repository.to_owned())))
    }

    pub fn save_config(&self, key: &KeyFile) -> Result<(), Error> {
        private_dir(&self.dir)?;
        write_json(&self.dir.join("key.json"), key)?;
        write_json(&self.dir.join("repo.json"), &self.config)?;
        // Contracts the config now names are the repository's: no longer just purchases.
        let ids: Vec<&str> = self
            .config
            .slots
            .iter()
            .map(|s| s.contract.as_str())
            .collect();
        crate::purchases::settled(&self.dir, &ids)
    }

    pub fn save_index(&self) -> Result<(), Error> {
        write_json(&self.dir.join("index.json"), &self.index)
    }

    pub fn k(&self) -> usize {
        self.config.data_shards
    }

    pub fn n(&self) -> usize {
        self.config.data_shards + self.config.parity_shards
    }

    /// Send the wallet's unanswered record proposals again to this repository's agents
    /// (best effort, see `purchases::resend_records`).
    pub async fn resend_records(&self) {
        let agents: Vec<node::client::SignedClient> =
            self.agents.iter().map(|a| a.signed().clone()).collect();
        crate::purchases::resend_records(&self.key_path, self.buyer.clone(), &agents).await;
        let slots: Vec<Slot> = self
            .config
            .slots
            .iter()
            .chain(&self.config.retired)
            .cloned()
            .collect();
        crate::purchases::record_ended(&self.key_path, self.buyer.clone(), &self.http, &slots)
            .await;
    }

    pub fn agent(&self, i: usize) -> &AgentClient {
        &self.agents[i]
    }

    /// What every slot's contract lists (free queries, all at once).
    pub async fn listing(&self) -> Result<Listing, Error> {
        let views = self.agents.iter().enumerate().map(|(i, a)| async move {
            if self.silent[i].load(Ordering::Relaxed) {
                return None;
            }
            Some(a.contract(&self.config.slots[i].contract).await)
        });
        let mut slots = Vec::with_capacity(self.n());
        let mut last = None;
        for (i, view) in join_all(views).await.into_iter().enumerate() {
            match view {
                Some(Ok(view)) => {
                    slots.push(Some(view.objects.into_iter().map(|o| o.name).collect()))
                }
                Some(Err(e)) => {
                    if unreachable(&e) {
                        self.silent[i].store(true, Ordering::Relaxed);
                    }
                    slots.push(None);
                    last = Some(e);
                }
                None => slots.push(None),
            }
        }
        if slots.iter().all(Option::is_none) {
            return Err(last.map_or_else(
                || Error::Corrupt("the repository has no slots".into()),
                remote("listing the repository's objects"),
            ));
        }
        Ok(Listing { slots })
    }

    /// The repository's objects, by name without the shard suffix (`p-<pack>`, `s-<id>`,
    /// `i-<id>`, `key-..`, `cfg-..`): the union over every slot that answers, so a slot just
    /// replaced or renewed, still empty, hides nothing.
    pub async fn object_names(&self) -> Result<Vec<String>, Error> {
        Ok(self.listing().await?.names())
    }

    /// Is `name` (an index or snapshot object) written half way: can fewer than k slots hold
    /// its shards? Such an object can never be read whole, so it is not the repository's (as
    /// a half-written pack is not): it is skipped, with a warning the first time, and `prune`
    /// deletes it. An object that only some agents that do not answer hold is not skipped:
    /// reading it fails, and nothing is decided without it.
    fn skip_half_written(&self, listing: &Listing, name: &str) -> bool {
        let could = listing.could_hold(name);
        if could >= self.k() {
            return false;
        }
        let mut half = self.half_written.lock().unwrap_or_else(|p| p.into_inner());
        if half.insert(name.to_owned()) {
            eprintln!(
                "warning: {name} cannot be read whole (only {could} of its {} shards were \
                 written, {} are needed: a backup or prune stopped half way); it is left out, \
                 and `backup prune` deletes it",
                self.n(),
                self.k()
            );
        }
        true
    }

    /// Objects found written half way so far (see [`Repo::skip_half_written`]).
    pub fn half_written(&self) -> Vec<String> {
        let half = self.half_written.lock().unwrap_or_else(|p| p.into_inner());
        half.iter().cloned().collect()
    }

    /// Does pack `id` count as stored: listed on at least k slots when the index was last
    /// synced? Deduplication trusts only such packs.
    pub fn is_stored(&self, pack: &str) -> bool {
        self.stored_packs.contains(pack)
    }

    /// Fold in every index object not yet in the local cache. When one the cache folded in is
    /// gone (a prune, perhaps from another machine, replaced it), the cache starts over from
    /// the agents: it may name packs that no longer exist, and a backup trusting it would
    /// record chunks nobody stores. Chunks of an interrupted backup count as stored only while
    /// their packs are listed on k slots, and so does every chunk for deduplication
    /// ([`Repo::is_stored`]). An index object written half way is skipped
    /// ([`Repo::skip_half_written`]): it must not hide the good ones.
    pub async fn sync_index(&mut self) -> Result<(), Error> {
        let listing = self.listing().await?;
        let names = listing.names();
        let k = self.k();
        self.stored_packs = names
            .iter()
            .filter(|n| n.starts_with("p-") && listing.listed(n) >= k)
            .map(|n| n["p-".len()..].to_owned())
            .collect();
        let mut indexes: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with("i-") && !self.skip_half_written(&listing, n))
            .filter_map(|n| n.strip_prefix("i-"))
            .map(str::to_owned)
            .collect();
        indexes.sort();
        // A location naming a pack that is no longer stored (a killed prune deleted it while
        // the index naming it stayed) may have another in some index: fold them all again.
        let stale = (self.index.chunks.values()).any(|l| !self.stored_packs.contains(&l.pack));
        if stale || self.index.loaded.iter().any(|id| !indexes.contains(id)) {
            let pending = std::mem::take(&mut self.index.pending);
            self.index = Index {
                pending,
                ..Index::default()
            };
        }
        let stored = &self.stored_packs;
        self.index.pending.retain(|_, l| stored.contains(&l.pack));
        for id in indexes {
            if self.index.loaded.contains(&id) {
                continue;
            }
            let keys = &self.keys;
            let (plain, _) = self
                .get_sharded(&format!("i-{id}"), |d| keys.open(d).is_ok())
                .await?;
            let object = IndexObject::parse(&self.keys.open(&plain)?)
                .map_err(|e| Error::Corrupt(format!("index {id}: {e}")))?;
            // A chunk stored twice (uploaded again after a killed prune deleted its pack) is
            // located in a pack that is stored.
            for (chunk, loc) in object.chunks {
                match self.index.chunks.entry(chunk) {
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(loc);
                    }
                    std::collections::hash_map::Entry::Occupied(mut o) => {
                        if !self.stored_packs.contains(&o.get().pack)
                            && self.stored_packs.contains(&loc.pack)
                        {
                            o.insert(loc);
                        }
                    }
                }
            }
            self.index.packs.extend(object.packs);
            self.index.loaded.push(id);
        }
        self.save_index()
    }

    /// Every snapshot, oldest first.
    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, Error> {
        let listing = self.listing().await?;
        let names = listing.names();
        let mut out = Vec::new();
        for id in names
            .iter()
            .filter(|n| n.starts_with("s-") && !self.skip_half_written(&listing, n))
            .filter_map(|n| n.strip_prefix("s-"))
        {
            out.push(self.snapshot(id).await?);
        }
        out.sort_by_key(|s| (s.unix_s, s.unix_ms));
        Ok(out)
    }

    pub async fn snapshot(&self, id: &str) -> Result<Snapshot, Error> {
        let keys = &self.keys;
        let (sealed, _) = self
            .get_sharded(&format!("s-{id}"), |d| keys.open(d).is_ok())
            .await?;
        serde_json::from_slice(&self.keys.open(&sealed)?)
            .map_err(|e| Error::Corrupt(format!("snapshot {id}: {e}")))
    }
}

/// Is this a transport failure (the agent did not answer) rather than an answer?
pub fn unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::Unreachable { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index objects stored before shard roots were recorded (a bare location map) still
    /// load, without roots; new ones keep theirs; anything else is refused.
    #[test]
    fn index_objects_old_and_new_parse() {
        let loc = Location {
            pack: "ab".into(),
            offset: 3,
            length: 4,
        };
        let old = serde_json::json!({"c1": loc}).to_string();
        let parsed = IndexObject::parse(old.as_bytes()).expect("old format");
        assert_eq!(parsed.chunks.get("c1"), Some(&loc));
        assert!(parsed.packs.is_empty());

        let roots = ShardRoots {
            shard_len: 10,
            roots: vec!["r0".into(), "r1".into()],
        };
        let new = IndexObject {
            chunks: HashMap::from([("c1".to_string(), loc.clone())]),
            packs: HashMap::from([("ab".to_string(), roots.clone())]),
        };
        let parsed =
            IndexObject::parse(&serde_json::to_vec(&new).expect("json")).expect("new format");
        assert_eq!(parsed.packs.get("ab"), Some(&roots));
        assert_eq!(parsed.chunks.get("c1"), Some(&loc));

        assert!(IndexObject::parse(b"[1, 2]").is_err());
        assert!(IndexObject::parse(br#"{"c1": 5}"#).is_err());
    }
}

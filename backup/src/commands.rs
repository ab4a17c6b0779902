//! The commands: `init`, `create`, `snapshots`, `ls`, `restore`. The CLI (`main.rs`) only
//! parses arguments and prints.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use market::book::{MatchRequest, RegisteredObject, Registration};
use market::client::MarketClient;
use serde::Serialize;
use storage_agent::client::AgentClient;

use crate::chunker::Chunker;
use crate::crypto::{KeyFile, Keys};
use crate::erasure;
use crate::error::{remote, Error};
use crate::filter::PathFilter;
use crate::pack::{self, Location, PackBuilder, PACK_BYTES_TARGET};
use crate::progress::Progress;
use crate::repo::{self, Repo, RepoConfig, Slot};
use crate::tree::{Kind, Node, Snapshot};

/// FastCDC sizes: about 1 MiB chunks.
pub const CHUNK_MIN: u32 = 256 << 10;
pub const CHUNK_AVG: u32 = 1 << 20;
pub const CHUNK_MAX: u32 = 4 << 20;

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub market: String,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Space bought on each agent.
    pub slot_bytes: u64,
    pub duration_s: u64,
    pub max_failure_probability: f64,
    /// The issuer (entity id) whose currency pays the contracts; `None`: the currency most
    /// online agents in the book accept.
    pub currency: Option<String>,
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_s() -> i64 {
    i64::try_from(lcp::now_ms() / 1000).unwrap_or(i64::MAX)
}

/// The currency a new repository pays in: `wanted` (an issuer id) when given, else the one
/// the most online agents accept. (Not the cheapest offer's: one cheap agent in a currency
/// nobody else takes would make every match fail.)
fn choose_currency(
    offers: &[market::book::Listing],
    wanted: Option<&str>,
) -> Result<protocol::market::OfferCurrency, Error> {
    let mut counts: Vec<(protocol::market::OfferCurrency, usize)> = Vec::new();
    for listing in offers.iter().filter(|l| l.online) {
        let Ok((_, offer)) = listing
            .offer
            .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
        else {
            continue;
        };
        for c in offer.currencies {
            match counts
                .iter_mut()
                .find(|(known, _)| known.issuer == c.issuer)
            {
                Some((_, n)) => *n += 1,
                None => counts.push((c, 1)),
            }
        }
    }
    if let Some(issuer) = wanted {
        return counts
            .into_iter()
            .find(|(c, _)| c.issuer.as_str() == issuer)
            .map(|(c, _)| c)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "no online agent in the market accepts currency {issuer}"
                ))
            });
    }
    // Stable: among equally common currencies, the one listed first (the cheapest offer's).
    let most = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
    counts
        .into_iter()
        .find(|(_, n)| *n == most && most > 0)
        .map(|(c, _)| c)
        .ok_or_else(|| Error::Io("the market has no online agents yet".into()))
}

/// Times `init` asks the market again after a matched agent did not answer or had no room.
const MATCH_TRIES_MAX: usize = 3;
/// Room a slot needs besides one pack's shard: the key file, the config, index and snapshot
/// objects, locks.
pub const SLOT_METADATA_BYTES: u64 = 1 << 20;

/// The smallest `--slot-bytes` that holds one pack of the largest size (a full pack plus
/// one more chunk) split k ways, and the repository's small objects: a smaller repository
/// could not store a single backup.
pub fn slot_bytes_min(data_shards: usize) -> u64 {
    let pack_max = (PACK_BYTES_TARGET as u64).saturating_add(u64::from(CHUNK_MAX));
    pack_max
        .div_ceil(data_shards.max(1) as u64)
        .saturating_add(SLOT_METADATA_BYTES)
}

/// One contract `init` bought (or adopted from an earlier, failed `init`).
#[derive(Debug, Clone, Serialize)]
pub struct InitSlot {
    pub endpoint: String,
    pub agent: String,
    pub contract: String,
    /// The contract's price and the write credit paid with it, in minor units.
    pub price: u64,
    pub credit: u64,
    /// Bought by an earlier `init` in this config directory that failed, and used now.
    pub adopted: bool,
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitSummary {
    pub repository: String,
    pub slots: Vec<InitSlot>,
    /// Paid now (prices and credit of the contracts not adopted), in minor units.
    pub paid: u64,
    /// The currency's descriptor (code and decimals), for showing amounts.
    pub currency: lcp::client::Currency,
}

/// Contracts an earlier `init` in `dir` paid for and could not use, still fit for this one:
/// accepted by their agent and active, of this block size and currency, with at least nine
/// tenths of the term left, one per agent. At most `n`.
async fn adoptable(
    dir: &Path,
    options: &InitOptions,
    issuer: &protocol::EntityId,
    buyer: &std::sync::Arc<protocol::KeyPair>,
    http: &reqwest::Client,
    n: usize,
) -> Result<Vec<(Slot, storage_agent::client::SignedContract)>, Error> {
    let mut out: Vec<(Slot, storage_agent::client::SignedContract)> = Vec::new();
    let term_min = i64::try_from(options.duration_s / 10 * 9).unwrap_or(i64::MAX);
    for p in crate::purchases::load(dir)? {
        let Some(signed) = p.signed.clone() else {
            continue;
        };
        let end = protocol::market::parse_rfc3339(&p.terms.end).unwrap_or(0);
        let fits = p.purpose == "init"
            && p.terms.block_bytes == options.slot_bytes
            && &p.terms.issuer == issuer
            && end.saturating_sub(now_s()) >= term_min
            && !out.iter().any(|(s, _)| s.agent == p.agent);
        if out.len() >= n || !fits {
            continue;
        }
        let agent = AgentClient::new(http.clone(), &p.endpoint, buyer.clone());
        if !matches!(agent.contract(&p.terms.id).await, Ok(v) if v.status == "active") {
            continue;
        }
        out.push((
            Slot {
                agent: p.agent.clone(),
                endpoint: p.endpoint.clone(),
                contract: p.terms.id.clone(),
                write_per_kib: p.terms.write_per_kib,
                read_per_kib: p.terms.read_per_kib,
                block_bytes: p.terms.block_bytes,
                end_s: end,
                duration_s: options.duration_s,
            },
            signed,
        ));
    }
    Ok(out)
}

/// `backup init`: buy a contract on each of k + m agents the market matches, store the key
/// file and the sealed config on each, register them with the market. Every purchase is
/// recorded in the config directory before it is paid ([`crate::purchases`]); contracts an
/// earlier failed `init` there paid for are used first.
pub async fn init(
    dir: &Path,
    options: &InitOptions,
    password: &str,
    payer: &repo::Wallet,
    http: reqwest::Client,
) -> Result<InitSummary, Error> {
    let buyer = payer.key.clone();
    if dir.join("repo.json").exists() {
        return Err(Error::Usage(format!(
            "{} already holds a repository; use another --config-dir",
            dir.display()
        )));
    }
    let (k, m) = (options.data_shards, options.parity_shards);
    if k == 0 || m == 0 || k + m > 32 {
        return Err(Error::Usage(
            "--data-shards and --parity-shards must be at least 1, and at most 32 together".into(),
        ));
    }
    if options.duration_s == 0 {
        return Err(Error::Usage("--duration-s must be more than 0".into()));
    }
    // Checked before anything is bought: a block too small for one pack made every backup
    // fail after six contracts were paid.
    let slot_min = slot_bytes_min(k);
    if options.slot_bytes < slot_min {
        return Err(Error::Usage(format!(
            "--slot-bytes {} is too small: each slot must hold a shard of a pack and the \
             repository's small objects, at least {slot_min} bytes with {k} data shards",
            options.slot_bytes
        )));
    }
    if !(options.max_failure_probability > 0.0 && options.max_failure_probability < 1.0) {
        return Err(Error::Usage(
            "--max-failure-probability must be between 0 and 1".into(),
        ));
    }
    lcp::client::check_url(&options.market).map_err(|e| Error::Usage(format!("--market: {e}")))?;
    let market = MarketClient::new(http.clone(), &options.market, buyer.clone());
    let market_entity = market
        .signed()
        .audience()
        .await
        .map_err(remote("asking the market who it is"))?
        .clone();
    let offers = market
        .offers(None)
        .await
        .map_err(remote("reading the market's book"))?;
    let currency = choose_currency(&offers, options.currency.as_deref())?;
    let wallet = payer.client(&http, &currency.issuer_url);
    let money = wallet
        .currency()
        .await
        .map_err(remote("reading the issuer's currency"))?;
    let adopted = adoptable(dir, options, &currency.issuer, &buyer, &http, k + m).await?;
    let wanted = k + m - adopted.len();
    // The market may match an agent that has just gone offline, or filled up since its
    // offer: it is left out and the market asked again, a few times. Nothing is paid until
    // every chosen agent answered with room for the block.
    let mut exclude: Vec<String> = adopted.iter().map(|(s, _)| s.agent.clone()).collect();
    let mut tries = 0;
    let chosen = loop {
        if wanted == 0 {
            break Vec::new();
        }
        let answer = market
            .match_agents(&MatchRequest {
                currency: currency.issuer.to_string(),
                shard_bytes: options.slot_bytes,
                // With contracts adopted, the rest: as many data shards as still fit
                // (the durability of the whole set is what the adopted agents leave).
                data_shards: wanted.saturating_sub(m).max(1) as u64,
                total_shards: Some(wanted as u64),
                duration_s: options.duration_s,
                expected_read_bytes: 0,
                max_failure_probability: options.max_failure_probability,
                exclude: exclude.clone(),
            })
            .await
            .map_err(|e| match e.code() {
                Some("cannot_meet_target") => Error::Io(format!(
                    "the market has no {wanted} agents that together meet the target for \
                     blocks of {} bytes (answering: {e}); try a smaller --slot-bytes, fewer \
                     shards, a higher --max-failure-probability, or wait for more agents",
                    options.slot_bytes
                )),
                _ => remote("matching agents")(e),
            })?;
        let mut answering = Vec::new();
        for chosen in answer.agents {
            let agent = AgentClient::new(http.clone(), &chosen.endpoint, buyer.clone());
            match agent.offer().await {
                Ok((_, offer))
                    if offer.block_bytes_max >= options.slot_bytes || tries >= MATCH_TRIES_MAX =>
                {
                    answering.push((chosen, agent, offer))
                }
                Ok(_) => exclude.push(chosen.agent),
                Err(e) if repo::unreachable(&e) && tries < MATCH_TRIES_MAX => {
                    exclude.push(chosen.agent)
                }
                Err(e) => {
                    return Err(remote(format!("reading the offer of {}", chosen.endpoint))(
                        e,
                    ))
                }
            }
        }
        if answering.len() == wanted {
            break answering;
        }
        tries += 1;
    };
    let repository = uuid();
    let keys = Keys::generate()?;
    let key_file = KeyFile::wrap(&keys, &repository, password)?;
    let mut slots = Vec::new();
    let mut signed = Vec::new();
    let mut summary_slots = Vec::new();
    for (slot, s) in adopted {
        let terms = s.terms().map_err(remote("reading an adopted contract"))?;
        summary_slots.push(InitSlot {
            endpoint: slot.endpoint.clone(),
            agent: slot.agent.clone(),
            contract: slot.contract.clone(),
            price: terms.contract_price,
            credit: 0,
            adopted: true,
        });
        slots.push(slot);
        signed.push(s);
    }
    let mut paid = 0u64;
    for (chosen, agent, offer) in &chosen {
        let terms = AgentClient::terms_from_offer(
            offer,
            buyer.entity(),
            &currency.issuer,
            options.slot_bytes,
            options.duration_s,
            vec![market_entity.clone()],
        )
        .map_err(remote("forming a contract"))?;
        // Credit for the key file and config, and a first megabyte of writes.
        let credit = protocol::market::per_kib_charge(terms.write_per_kib, 1 << 20).unwrap_or(0);
        let amount = terms
            .contract_price
            .checked_add(credit)
            .ok_or_else(|| Error::Corrupt("a contract's price overflows".into()))?;
        let purchase = crate::purchases::Purchase {
            purpose: "init".into(),
            repository: None,
            slot: slots.len(),
            agent: chosen.agent.clone(),
            endpoint: chosen.endpoint.clone(),
            terms: terms.clone(),
            amount,
            currency: Some(money.clone()),
            signed: None,
        };
        let context = format!("a contract from {}", chosen.endpoint);
        let bought = crate::purchases::buy(dir, purchase, agent, &wallet, credit, &context).await?;
        paid = paid.saturating_add(amount);
        summary_slots.push(InitSlot {
            endpoint: chosen.endpoint.clone(),
            agent: chosen.agent.clone(),
            contract: terms.id.clone(),
            price: terms.contract_price,
            credit,
            adopted: false,
        });
        slots.push(Slot {
            agent: chosen.agent.clone(),
            endpoint: chosen.endpoint.clone(),
            contract: terms.id.clone(),
            write_per_kib: terms.write_per_kib,
            read_per_kib: terms.read_per_kib,
            block_bytes: options.slot_bytes,
            end_s: protocol::market::parse_rfc3339(&terms.end).unwrap_or(0),
            duration_s: options.duration_s,
        });
        signed.push(bought);
    }
    let config = RepoConfig {
        repository: repository.clone(),
        market: options.market.clone(),
        issuer: currency.issuer.to_string(),
        issuer_url: currency.issuer_url.clone(),
        data_shards: k,
        parity_shards: m,
        slots,
        retired: Vec::new(),
    };
    let repo = Repo::new(dir, config, keys, payer, http);
    let key_bytes = serde_json::to_vec(&key_file).map_err(|e| Error::Io(e.to_string()))?;
    let key_size = key_bytes.len() as u64;
    let key_roots = repo
        .put_replicated(&repo::key_name(&repository), key_bytes)
        .await?;
    let sealed = repo
        .keys
        .seal(&serde_json::to_vec(&repo.config).map_err(|e| Error::Io(e.to_string()))?)?;
    repo.put_replicated(&repo::config_name(&repository), sealed)
        .await?;
    for (i, s) in signed.iter().enumerate() {
        let leaves = |size: u64| size.div_ceil(protocol::merkle::LEAF_BYTES as u64).max(1);
        market
            .register(&Registration {
                contract: s.contract.clone(),
                agent_signature: s.agent_signature.clone(),
                // Only the key file, which never changes: the config is rewritten by every
                // repair and renewal, and an audit against its first root would then fail an
                // honest agent. Packs are audited by `backup check` (their roots are in the
                // index, which the market never sees).
                objects: vec![RegisteredObject {
                    name: repo::key_name(&repository),
                    merkle_root: key_roots[i].clone(),
                    leaf_count: leaves(key_size),
                    size: key_size,
                }],
            })
            .await
            .map_err(remote("registering a contract with the market"))?;
    }
    repo.save_config(&key_file)?;
    Ok(InitSummary {
        repository,
        slots: summary_slots,
        paid,
        currency: money,
    })
}

/// What `create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateSummary {
    pub snapshot: String,
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
    /// Bytes of packs uploaded (after dedup, compression, encryption; before erasure coding).
    pub data_added: u64,
    /// Bytes sent to agents, parity included.
    pub bytes_stored: u64,
    pub chunks_new: u64,
    pub chunks_known: u64,
    pub packs: u64,
    pub seconds: f64,
    /// Where the time went: see [`CreateStages`].
    pub stage_seconds: CreateStages,
    /// Paths that could not be read (`path: reason`), left out of the snapshot, which is saved
    /// without them (the CLI then exits 6, like restic's "incomplete snapshot").
    pub unreadable: Vec<String>,
    /// Slots whose agent did not answer: their shards of this backup are missing until
    /// `backup repair` (at most m - 1 of them, so the backup survives one more loss).
    pub unwritten_slots: Vec<usize>,
    /// Slots whose agents did not answer, more than a write tolerates: moved to spare agents
    /// before the backup (their old contracts lapse; `backup repair` rebuilds their shards
    /// of earlier backups).
    pub moved_slots: Vec<usize>,
}

/// Time per stage of `create`, in seconds. The stages overlap (they run at once).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CreateStages {
    /// The chunking thread: reading, chunking, keyed hashing, dedup (less its waits).
    pub chunk: f64,
    /// The sealing thread: compressing, encrypting, packing, hashing packs (less its waits).
    pub seal: f64,
    pub erasure_code: f64,
    /// Storing shards (a pack's k + m uploads at once), payments included.
    pub upload: f64,
    /// The uploader waiting for the chunking thread's next pack.
    pub upload_idle: f64,
}

/// First path seen of each file with several names, by (device, inode).
type FirstNames = HashMap<(u64, u64), String>;

/// A path given to `create`, as the snapshot records it.
#[derive(Debug, PartialEq, Eq)]
pub struct Root {
    /// Absolute, with its last component as typed: a symlink given as an argument is named
    /// as the user named it (`/usr/share/doc/python3-dev`, not the `python3` it points to).
    pub absolute: PathBuf,
    /// Its name in the snapshot: the last component as typed (`root` for `/`).
    pub name: String,
    /// Where its contents are read: the path with every symlink resolved, so an argument
    /// that is a symlink to a directory backs up that directory's contents under `name`.
    pub read_from: PathBuf,
}

impl Root {
    /// `typed` as `create` records it: the parent made absolute (symlinks in it resolved),
    /// the last component kept as typed. `.`, `..` and `/` have no name of their own and are
    /// resolved whole.
    pub fn of(typed: &Path) -> Result<Root, Error> {
        let usage = |e: std::io::Error| Error::Usage(format!("{}: {e}", typed.display()));
        let read_from = std::fs::canonicalize(typed).map_err(usage)?;
        let absolute = match typed.components().next_back() {
            Some(std::path::Component::Normal(last)) => {
                let parent = match typed.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                std::fs::canonicalize(parent).map_err(usage)?.join(last)
            }
            _ => read_from.clone(),
        };
        let name = absolute
            .file_name()
            .map_or_else(|| "root".into(), |n| n.to_string_lossy().into_owned());
        Ok(Root {
            absolute,
            name,
            read_from,
        })
    }
}

/// Walk `root`, answering nodes (paths starting with `name`, the root's name in the
/// snapshot), skipping excluded paths. A path that cannot be read is left out and named in
/// `unreadable` (a directory that cannot be listed is kept, empty).
fn walk(
    root: &Path,
    name: &str,
    exclude: &PathFilter,
    first_names: &mut FirstNames,
    out: &mut Vec<(PathBuf, Node)>,
    unreadable: &mut Vec<String>,
) -> Result<(), Error> {
    let mut stack = vec![(root.to_path_buf(), name.to_owned())];
    while let Some((path, rel)) = stack.pop() {
        if exclude.matches(&rel, Some(&path)) {
            continue;
        }
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                unreadable.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            let target = match std::fs::read_link(&path) {
                Ok(target) => target,
                Err(e) => {
                    unreadable.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            Node {
                path: rel.clone(),
                kind: Kind::Symlink,
                mode,
                mtime_ns,
                size: 0,
                chunks: vec![],
                target: Some(target.to_string_lossy().into_owned()),
                link: None,
            }
        } else if ft.is_dir() {
            let mut entries: Vec<_> = match std::fs::read_dir(&path) {
                Ok(listing) => listing
                    .filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .collect(),
                Err(e) => {
                    unreadable.push(format!("{}: {e}", path.display()));
                    Vec::new()
                }
            };
            entries.sort();
            for e in entries.into_iter().rev() {
                let child_rel = format!("{rel}/{}", e.to_string_lossy());
                stack.push((path.join(&e), child_rel));
            }
            Node {
                path: rel.clone(),
                kind: Kind::Dir,
                mode,
                mtime_ns,
                size: 0,
                chunks: vec![],
                target: None,
                link: None,
            }
        } else if ft.is_file() {
            let link = if meta.nlink() > 1 {
                match first_names.entry((meta.dev(), meta.ino())) {
                    std::collections::hash_map::Entry::Occupied(first) => Some(first.get().clone()),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(rel.clone());
                        None
                    }
                }
            } else {
                None
            };
            Node {
                path: rel.clone(),
                kind: Kind::File,
                mode,
                mtime_ns,
                size: meta.len(),
                chunks: vec![],
                target: None,
                link,
            }
        } else {
            continue; // sockets, fifos, devices: not backed up
        };
        out.push((path, node));
    }
    Ok(())
}

/// Finished packs waiting for their upload, at most. Each is about [`PACK_BYTES_TARGET`]
/// (16 MiB), and the sealing thread also waits until the uploader has taken its pack before
/// it fills the next: `create` holds one pack being filled and one being coded and uploaded
/// (with its shards), which keeps its peak memory below restic's.
pub const PACKS_IN_FLIGHT_MAX: usize = 1;

/// A closed pack on its way from the chunking thread to the uploader.
struct ClosedPack {
    id: String,
    bytes: Vec<u8>,
    locations: Vec<(String, Location)>,
}

/// What the chunking thread counted.
#[derive(Default)]
struct Chunked {
    nodes: Vec<Node>,
    files: u64,
    dirs: u64,
    bytes: u64,
    chunks_new: u64,
    chunks_known: u64,
    /// Files that could not be read (`path: reason`), left out.
    unreadable: Vec<String>,
    /// Time the chunking and the sealing thread spent working.
    chunk_busy: std::time::Duration,
    seal_busy: std::time::Duration,
}

/// New chunks waiting for the sealing thread, at most (each at most [`CHUNK_MAX`]).
const SEAL_QUEUE_CHUNKS: usize = 2;

/// The sealing thread of `create`: compress, seal and pack each new chunk from `chunks`; each
/// full pack goes to `packs`, and the thread waits until the uploader has taken it before it
/// fills the next (so `create` holds one pack being filled and one being uploaded). Answers
/// the time it spent working (not waiting).
fn seal_all(
    chunks: std::sync::mpsc::Receiver<(String, Vec<u8>)>,
    recycled: &std::sync::mpsc::Receiver<Vec<u8>>,
    keys: &Keys,
    packs: &tokio::sync::mpsc::Sender<ClosedPack>,
    runtime: &tokio::runtime::Handle,
) -> Result<std::time::Duration, Error> {
    let mut waited = std::time::Duration::ZERO;
    let started = Instant::now();
    let send = |packer: PackBuilder, waited: &mut std::time::Duration| {
        let (id, bytes, locations) = packer.finish();
        let t = Instant::now();
        let pack = ClosedPack {
            id,
            bytes,
            locations,
        };
        // The uploader stopped: its error is the one reported.
        fn stopped<T>(_: T) -> Error {
            Error::Io("the uploader stopped".into())
        }
        packs.blocking_send(pack).map_err(stopped)?;
        // Taken once the channel has room again.
        drop(runtime.block_on(packs.reserve()).map_err(stopped)?);
        *waited += t.elapsed();
        Ok::<_, Error>(())
    };
    // Buffers of packs already coded come back, so two pack buffers serve the whole backup.
    let new_pack = || PackBuilder::with_buffer(recycled.try_recv().unwrap_or_default());
    let mut packer = new_pack();
    let mut sealer = pack::Sealer::new(CHUNK_MAX as usize)?;
    loop {
        let t = Instant::now();
        let Ok((id, data)) = chunks.recv() else { break };
        waited += t.elapsed();
        packer.add(id, sealer.seal(keys, &data)?);
        if packer.len() >= PACK_BYTES_TARGET {
            send(std::mem::replace(&mut packer, new_pack()), &mut waited)?;
        }
    }
    if !packer.is_empty() {
        send(packer, &mut waited)?;
    }
    Ok(started.elapsed().saturating_sub(waited))
}

/// The chunking side of `create`, on two threads of its own: this one reads, cuts, hashes
/// and dedups against `known`; new chunks go to a sealing thread ([`seal_all`]), which
/// compresses, seals and packs them (compression is the larger part of the work, so the two
/// run at once). Adds the bytes read to `read`.
fn chunk_all(
    found: Vec<(PathBuf, Node)>,
    keys: &Keys,
    mut known: HashSet<String>,
    packs: &tokio::sync::mpsc::Sender<ClosedPack>,
    read: &AtomicU64,
    runtime: &tokio::runtime::Handle,
    recycled: std::sync::mpsc::Receiver<Vec<u8>>,
) -> Result<Chunked, Error> {
    let mut out = Chunked {
        nodes: Vec::with_capacity(found.len()),
        ..Chunked::default()
    };
    let (to_seal, chunks) = std::sync::mpsc::sync_channel(SEAL_QUEUE_CHUNKS);
    // Files that other names link to, and their chunks once read.
    let linked: HashSet<String> = found.iter().filter_map(|(_, n)| n.link.clone()).collect();
    let mut linked_chunks: HashMap<String, Vec<String>> = HashMap::new();
    std::thread::scope(|scope| {
        let sealer = scope.spawn(move || seal_all(chunks, &recycled, keys, packs, runtime));
        let started = Instant::now();
        let mut waited = std::time::Duration::ZERO;
        let mut chunker = Chunker::new(CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
        let chunk_files = || -> Result<(), Error> {
            for (path, mut node) in found {
                match node.kind {
                    Kind::Dir => out.dirs += 1,
                    Kind::Symlink => {}
                    Kind::File if node.link.is_some() => {
                        let first = node.link.as_deref().unwrap_or_default();
                        let Some(chunks) = linked_chunks.get(first) else {
                            // Its first name could not be read: neither can this one.
                            out.unreadable
                                .push(format!("{}: unreadable", path.display()));
                            continue;
                        };
                        node.chunks = chunks.clone();
                        out.files += 1;
                    }
                    Kind::File => {
                        let file = match std::fs::File::open(&path) {
                            Ok(file) => file,
                            Err(e) => {
                                out.unreadable.push(format!("{}: {e}", path.display()));
                                continue;
                            }
                        };
                        let chunked = chunker.chunks(file, &path, |data| {
                            let id = keys.chunk_id(data);
                            out.bytes += data.len() as u64;
                            read.fetch_add(data.len() as u64, Ordering::Relaxed);
                            if known.contains(&id) {
                                out.chunks_known += 1;
                            } else {
                                out.chunks_new += 1;
                                known.insert(id.clone());
                                let t = Instant::now();
                                to_seal
                                    .send((id.clone(), data.to_vec()))
                                    .map_err(|_| Error::Io("the sealing thread stopped".into()))?;
                                waited += t.elapsed();
                            }
                            node.chunks.push(id);
                            Ok(())
                        });
                        match chunked {
                            Ok(()) => out.files += 1,
                            // Left out; what it sent to be sealed is stored, unused.
                            Err(Error::Unreadable(e)) => {
                                out.unreadable.push(e);
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                        if linked.contains(&node.path) {
                            linked_chunks.insert(node.path.clone(), node.chunks.clone());
                        }
                    }
                }
                out.nodes.push(node);
            }
            Ok(())
        };
        let chunked = chunk_files();
        drop(to_seal);
        out.chunk_busy = started.elapsed().saturating_sub(waited);
        let sealed = sealer
            .join()
            .map_err(|_| Error::Io("the sealing thread panicked".into()));
        // The sealer's error first: when it stops, the chunker only sees a closed channel.
        out.seal_busy = sealed??;
        chunked
    })?;
    Ok(out)
}

/// `backup create`: chunk, dedup, compress, encrypt and pack on one thread while the packs it
/// closes are erasure-coded and uploaded; then the index and the snapshot.
pub async fn create(
    repo: &mut Repo,
    paths: &[PathBuf],
    exclude: &[String],
) -> Result<CreateSummary, Error> {
    // An ended contract refuses every write: say what to do before anything is written.
    let now = now_s();
    let ended: Vec<usize> = (0..repo.n())
        .filter(|&i| repo.config.slots[i].end_s > 0 && repo.config.slots[i].end_s <= now)
        .collect();
    if !ended.is_empty() {
        return Err(Error::Ended(format!(
            "the contracts have ended: run backup repair (it renews them; slots {ended:?} \
             ended)"
        )));
    }
    // A prune must not delete what this backup counts as stored while it runs. Ctrl-C removes
    // the lock (caught from before it is taken); what was uploaded stays for the next run.
    let mut signals = repo::Signals::catch();
    // A signal during the taking is seen right after it (the lock is then named).
    let lock = repo.lock("create").await?;
    let result = repo::until_signal(&mut signals, create_locked(repo, paths, exclude)).await;
    repo.unlock_after(&lock, &result).await;
    result
}

async fn create_locked(
    repo: &mut Repo,
    paths: &[PathBuf],
    exclude: &[String],
) -> Result<CreateSummary, Error> {
    let started = Instant::now();
    let exclude = PathFilter::new(exclude, "--exclude")?;
    let mut found = Vec::new();
    let mut first_names = FirstNames::new();
    let mut unreadable = Vec::new();
    // A snapshot names each backed-up path by its last component: two with the same one
    // would be merged, and one lost on restore.
    let mut roots: HashMap<String, PathBuf> = HashMap::new();
    let mut absolute = Vec::new();
    for typed in paths {
        let root = Root::of(typed)?;
        let p = root.absolute;
        if let Some(other) = roots.insert(root.name.clone(), p.clone()) {
            return Err(Error::Usage(format!(
                "{} and {} would both be `{}` in the snapshot: back them up in separate snapshots",
                other.display(),
                p.display(),
                root.name
            )));
        }
        walk(
            &root.read_from,
            &root.name,
            &exclude,
            &mut first_names,
            &mut found,
            &mut unreadable,
        )?;
        absolute.push(p.to_string_lossy().into_owned());
    }
    // Too many agents off: their slots move to spare agents first.
    let moved_slots = repo.move_unanswering_slots().await?;
    repo.sync_index().await?;
    // Chunks an interrupted backup already uploaded count as stored.
    let pending = std::mem::take(&mut repo.index.pending);
    repo.index.chunks.extend(pending.clone());
    let mut added_locations: HashMap<String, Location> = pending;

    // Hard links are not read again.
    let total: u64 = found
        .iter()
        .filter(|(_, n)| n.link.is_none())
        .map(|(_, n)| n.size)
        .sum();
    // Bulk credit for the expected writes: shards of about total / k on each slot.
    let per_slot = total / repo.k() as u64 + (1 << 20);
    repo.prepay(per_slot, |s| s.write_per_kib).await?;

    let mut summary = CreateSummary {
        snapshot: String::new(),
        files: 0,
        dirs: 0,
        bytes: 0,
        data_added: 0,
        bytes_stored: 0,
        chunks_new: 0,
        chunks_known: 0,
        packs: 0,
        seconds: 0.0,
        stage_seconds: CreateStages::default(),
        unreadable,
        unwritten_slots: vec![],
        moved_slots,
    };
    let progress = Progress::start(total);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<ClosedPack>(PACKS_IN_FLIGHT_MAX);
    // Deduplication trusts only packs listed on k slots: an index may still name a pack a
    // killed prune deleted.
    let known: HashSet<String> = (repo.index.chunks.iter())
        .filter(|(_, l)| repo.is_stored(&l.pack))
        .map(|(c, _)| c.clone())
        .collect();
    let (keys, read) = (repo.keys.clone(), progress.counter());
    let runtime = tokio::runtime::Handle::current();
    let (recycle, recycled) = std::sync::mpsc::sync_channel(PACKS_IN_FLIGHT_MAX + 1);
    let chunker = tokio::task::spawn_blocking(move || {
        chunk_all(found, &keys, known, &tx, &read, &runtime, recycled)
    });
    let uploaded = async {
        loop {
            let idle = Instant::now();
            let Some(pack) = rx.recv().await else { break };
            summary.stage_seconds.upload_idle += idle.elapsed().as_secs_f64();
            upload_pack(repo, pack, &recycle, &mut summary, &mut added_locations).await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    // On an upload error the channel closes, so the chunking thread stops too.
    drop(rx);
    let chunked = chunker
        .await
        .map_err(|e| Error::Io(format!("the chunking thread failed: {e}")));
    if let Err(e) = uploaded {
        return Err(forget_uploads_when_full(repo, e, &added_locations).await);
    }
    let chunked = chunked??;
    summary.stage_seconds.chunk = chunked.chunk_busy.as_secs_f64();
    summary.stage_seconds.seal = chunked.seal_busy.as_secs_f64();
    progress.finish();
    summary.files = chunked.files;
    summary.dirs = chunked.dirs;
    summary.bytes = chunked.bytes;
    summary.chunks_new = chunked.chunks_new;
    summary.chunks_known = chunked.chunks_known;
    summary.unreadable.extend(chunked.unreadable);
    let nodes = chunked.nodes;

    // The index of what this backup added, then the snapshot that refers to it.
    if !added_locations.is_empty() {
        let index_id = uuid();
        // The roots of the packs this backup stored (an interrupted run's included: the
        // local index kept them).
        let packs = added_locations
            .values()
            .filter_map(|l| Some((l.pack.clone(), repo.index.packs.get(&l.pack)?.clone())))
            .collect();
        let object = repo::IndexObject {
            chunks: added_locations,
            packs,
        };
        let sealed = repo
            .keys
            .seal(&serde_json::to_vec(&object).map_err(|e| Error::Io(e.to_string()))?)?;
        let name = format!("i-{index_id}");
        if let Err(e) = repo.put_sharded(&name, &sealed).await {
            // No half-written index is left, and on a full repository no packs it would
            // have named.
            let _ = repo.delete_sharded(&name).await;
            return Err(forget_uploads_when_full(repo, e, &object.chunks).await);
        }
        repo.index.loaded.push(index_id);
    }
    repo.index.pending.clear();
    repo.save_index()?;
    let snapshot = Snapshot {
        id: uuid().replace('-', "")[..16].to_owned(),
        time: protocol::market::format_rfc3339(now_s()),
        unix_s: now_s(),
        unix_ms: lcp::now_ms(),
        hostname: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default(),
        paths: absolute,
        nodes,
        files: summary.files,
        bytes: summary.bytes,
        data_added: summary.data_added,
    };
    let sealed = repo
        .keys
        .seal(&serde_json::to_vec(&snapshot).map_err(|e| Error::Io(e.to_string()))?)?;
    let name = format!("s-{}", snapshot.id);
    if let Err(e) = repo.put_sharded(&name, &sealed).await {
        // No half-written snapshot is left to be listed as if this backup had succeeded.
        let _ = repo.delete_sharded(&name).await;
        return Err(e);
    }
    summary.unwritten_slots = repo.unwritten();
    summary.snapshot = snapshot.id;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// After `create` failed with `error`: when the repository is full, the packs this backup
/// stored (`added`, which no index names yet) are deleted and forgotten, so they do not hold
/// room that `forget --prune` is meant to free; a resumed backup could not finish either,
/// with no room for its index. Any other failure keeps them for the next run to resume
/// from. Answers `error`.
async fn forget_uploads_when_full(
    repo: &mut Repo,
    error: Error,
    added: &HashMap<String, Location>,
) -> Error {
    if !matches!(error, Error::Full(_)) {
        return error;
    }
    let packs: HashSet<String> = added.values().map(|l| l.pack.clone()).collect();
    for pack in &packs {
        // Best effort: a pack left behind is deleted by the next prune.
        let _ = repo.delete_sharded(&format!("p-{pack}")).await;
    }
    repo.index.pending.clear();
    repo.index.chunks.retain(|_, l| !packs.contains(&l.pack));
    repo.index.packs.retain(|p, _| !packs.contains(p));
    match repo.save_index() {
        Ok(()) => error,
        Err(e) => e,
    }
}

/// Erasure-code one closed pack (on a blocking thread: it is CPU work), store its shards,
/// and record its chunks as pending in the local index.
async fn upload_pack(
    repo: &mut Repo,
    pack: ClosedPack,
    recycle: &std::sync::mpsc::SyncSender<Vec<u8>>,
    summary: &mut CreateSummary,
    added: &mut HashMap<String, Location>,
) -> Result<(), Error> {
    let ClosedPack {
        id,
        bytes,
        locations,
    } = pack;
    let (k, m) = (repo.k(), repo.config.parity_shards);
    let len = bytes.len() as u64;
    // The pack's bytes are freed once coded: only its shards travel on.
    let t = Instant::now();
    let (shards, roots, bytes) = tokio::task::spawn_blocking(move || {
        erasure::encode(&bytes, k, m).map(|s| (repo::shard_roots(&s), s, bytes))
    })
    .await
    .map_err(|e| Error::Io(format!("erasure coding failed: {e}")))?
    .map(|(roots, shards, bytes)| (shards, roots, bytes))?;
    summary.stage_seconds.erasure_code += t.elapsed().as_secs_f64();
    let t = Instant::now();
    // The pack stays until its shards are stored, to make one again should a write repeat.
    let name = format!("p-{id}");
    let roots = match repo
        .put_shards(&name, shards, roots, &|i| erasure::shard(&bytes, k, m, i))
        .await
    {
        Ok(roots) => roots,
        Err(e) => {
            // A pack that did not fit everywhere holds room on the slots it did fit.
            if matches!(e, Error::Full(_)) {
                let _ = repo.delete_sharded(&name).await;
            }
            return Err(e);
        }
    };
    repo.index.packs.insert(id, roots);
    summary.stage_seconds.upload += t.elapsed().as_secs_f64();
    // Back to the sealing thread for its next pack (dropped if it has enough).
    let _ = recycle.try_send(bytes);
    summary.data_added += len;
    summary.bytes_stored += erasure::shard_len(len as usize, k) as u64 * repo.n() as u64;
    summary.packs += 1;
    for (chunk, loc) in locations {
        repo.index.chunks.insert(chunk.clone(), loc.clone());
        repo.index.pending.insert(chunk.clone(), loc.clone());
        added.insert(chunk, loc);
    }
    // After every pack: a killed backup resumes from here.
    repo.save_index()
}

/// The snapshot `which` names: an id, an id prefix, or `latest`.
pub async fn find_snapshot(repo: &Repo, which: &str) -> Result<Snapshot, Error> {
    if which.is_empty() {
        return Err(Error::Usage(
            "which snapshot? give an id (or its first characters) or `latest`".into(),
        ));
    }
    let all = repo.snapshots().await?;
    let found = if which == "latest" {
        all.into_iter().last()
    } else {
        let mut matching: Vec<Snapshot> = all
            .into_iter()
            .filter(|s| s.id.starts_with(which))
            .collect();
        if matching.len() > 1 {
            return Err(Error::Usage(format!(
                "snapshot prefix {which} is ambiguous"
            )));
        }
        matching.pop()
    };
    found.ok_or_else(|| Error::Usage(format!("no snapshot {which}")))
}

/// What `restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreSummary {
    pub snapshot: String,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub packs_read: u64,
    /// Shards that were missing or damaged (the data was rebuilt from the others).
    pub shards_bad: u64,
    pub seconds: f64,
    /// Where the time went: see [`RestoreStages`].
    pub stage_seconds: RestoreStages,
}

/// Time per stage of `restore`, in seconds (the fetcher and the writer run at once).
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreStages {
    /// The fetcher reading packs (k shard reads at once, payments included) and verifying
    /// them.
    pub fetch: f64,
    /// The writer decrypting, decompressing and writing.
    pub write: f64,
    /// The writer waiting for the fetcher's next pack.
    pub write_idle: f64,
}

/// Packs fetched ahead of the writer, at most: the fetcher reads the next pack while the
/// writer works through the last, then waits for the writer to take it. Each is about 16 MiB:
/// a restore holds two packs (the writer's and the next), plus the blobs it keeps.
pub const PACKS_AHEAD_MAX: usize = 1;
/// Sealed blobs a restore keeps from packs it has left, because deduplicated data needs them
/// again later, at most. Past it, a pack is read again instead.
pub const KEPT_BYTES_MAX: u64 = 16 << 20;

/// How a restore gets every chunk while holding one pack at a time (restic does it the other
/// way round, writing each pack's chunks into all their files; this keeps files written front
/// to back). The writer works through the snapshot's chunk references in order; a chunk
/// comes from the blobs kept so far, else from the pack in hand, else the next pack is
/// loaded. When a pack is left, the blobs of it that are referenced again later are kept (up
/// to [`KEPT_BYTES_MAX`]); a kept blob is dropped after its last reference. The fetcher reads
/// exactly `loads`, in order; both sides follow this one plan.
struct RestorePlan {
    loads: Vec<Load>,
    /// For each chunk reference, in order: is it the chunk's last one?
    last_use: Vec<bool>,
}

/// One pack load of a [`RestorePlan`].
struct Load {
    pack: String,
    /// Chunks of the pack in hand to keep (copied out) before it is replaced by this one.
    keep: Vec<String>,
}

impl RestorePlan {
    fn new(refs: &[&String], locations: &HashMap<String, Location>) -> Result<Self, Error> {
        let loc = |id: &str| {
            locations
                .get(id)
                .ok_or_else(|| Error::Corrupt(format!("chunk {id} is in no index")))
        };
        let mut last_at: HashMap<&str, usize> = HashMap::new();
        let mut chunks_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (i, id) in refs.iter().enumerate() {
            if last_at.insert(id.as_str(), i).is_none() {
                chunks_of
                    .entry(loc(id)?.pack.as_str())
                    .or_default()
                    .push(id);
            }
        }
        let last_use = refs
            .iter()
            .enumerate()
            .map(|(i, id)| last_at.get(id.as_str()) == Some(&i))
            .collect();
        let (mut loads, mut kept, mut kept_bytes) = (Vec::new(), HashMap::new(), 0u64);
        let mut current: Option<&str> = None;
        for (i, id) in refs.iter().enumerate() {
            let pack = loc(id)?.pack.as_str();
            if let Some(len) = kept.get(id.as_str()).copied() {
                if last_at.get(id.as_str()) == Some(&i) {
                    kept.remove(id.as_str());
                    kept_bytes -= len;
                }
                continue;
            }
            if current == Some(pack) {
                continue;
            }
            let mut keep = Vec::new();
            for &other in current.and_then(|p| chunks_of.get(p)).into_iter().flatten() {
                let len = loc(other)?.length;
                let needed_later = last_at.get(other).is_some_and(|&at| at > i);
                if needed_later
                    && !kept.contains_key(other)
                    && kept_bytes.saturating_add(len) <= KEPT_BYTES_MAX
                {
                    kept.insert(other, len);
                    kept_bytes += len;
                    keep.push(other.to_string());
                }
            }
            loads.push(Load {
                pack: pack.to_string(),
                keep,
            });
            current = Some(pack);
        }
        Ok(RestorePlan { loads, last_use })
    }
}

/// A pack read by the fetcher: its id, its bytes, and how many shards were bad.
type Fetched = Result<(String, Vec<u8>, usize), Error>;

/// The writer's side of the fetcher: packs in planned order, and the way back for buffers.
struct PackFeed {
    packs: tokio::sync::mpsc::Receiver<Fetched>,
    recycle: std::sync::mpsc::SyncSender<Vec<u8>>,
}

/// `backup restore`: rebuild the snapshot's tree under `target`. A task fetches the packs in
/// the order the writer needs them (planned in advance), [`PACKS_AHEAD_MAX`] ahead, while a
/// blocking thread decrypts, decompresses and writes. Files are not synced one by one
/// (restic does not either): the data is in the page cache when this returns, and on disk
/// once the system writes it back (run `sync` for that).
pub async fn restore(
    repo: &mut Repo,
    which: &str,
    target: &Path,
    include: &[String],
) -> Result<RestoreSummary, Error> {
    let started = Instant::now();
    let snap = find_snapshot(repo, which).await?;
    repo.sync_index().await?;
    let include_set = PathFilter::new(include, "--include")?;
    let mut nodes: Vec<Node> = snap
        .nodes
        .into_iter()
        .filter(|n| include_set.is_empty() || include_set.matches_here_or_above(&n.path))
        .collect();
    if nodes.is_empty() && !include_set.is_empty() {
        return Err(Error::Usage(format!(
            "--include {}: no path of snapshot {} matches (paths start with the backed-up \
             directory's name; `backup ls {}` lists them)",
            include_set.patterns(),
            snap.id,
            snap.id
        )));
    }
    // A hard link whose first name is restored becomes a link to it; otherwise (left out by
    // --include) a file with its own copy of the contents.
    let written: HashSet<String> = nodes
        .iter()
        .filter(|n| n.kind == Kind::File && n.link.is_none())
        .map(|n| n.path.clone())
        .collect();
    for n in &mut nodes {
        match &n.link {
            Some(first) if written.contains(first) => n.chunks.clear(),
            Some(_) => n.link = None,
            None => {}
        }
    }
    // Where every chunk is, and the order the packs will be loaded in.
    let mut locations: HashMap<String, Location> = HashMap::new();
    for id in nodes.iter().flat_map(|n| n.chunks.iter()) {
        let loc = repo
            .index
            .chunks
            .get(id)
            .ok_or_else(|| Error::Corrupt(format!("chunk {id} is in no index")))?;
        locations.insert(id.clone(), loc.clone());
    }
    let refs: Vec<&String> = nodes.iter().flat_map(|n| n.chunks.iter()).collect();
    let plan = RestorePlan::new(&refs, &locations)?;
    let loads: Vec<String> = plan.loads.iter().map(|l| l.pack.clone()).collect();
    // Read credit for everything, up front.
    let needed: u64 = nodes
        .iter()
        .filter(|n| n.link.is_none())
        .map(|n| n.size)
        .sum();
    repo.prepay(needed / repo.k() as u64 + (4 << 20), |s| s.read_per_kib)
        .await?;
    std::fs::create_dir_all(target)
        .map_err(|e| Error::Io(format!("--target {}: {e}", target.display())))?;

    let progress = Progress::start(needed);
    let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(PACKS_AHEAD_MAX);
    let reader = repo.reader();
    // Packs' buffers go back to the fetcher once the writer is done with them, so a restore
    // reuses two buffers.
    let (recycle, recycled) = std::sync::mpsc::sync_channel::<Vec<u8>>(PACKS_AHEAD_MAX + 1);
    let fetcher = tokio::spawn(async move {
        let mut busy = std::time::Duration::ZERO;
        for pack in loads {
            let t = Instant::now();
            let buffer = recycled.try_recv().unwrap_or_default();
            let got = reader
                .get_into(
                    &format!("p-{pack}"),
                    |d| protocol::sha256_hex(d) == pack,
                    buffer,
                )
                .await
                .map(|(bytes, bad)| (pack, bytes, bad.len()));
            busy += t.elapsed();
            let failed = got.is_err();
            // A closed channel: the writer stopped, and reports why. After the send, wait
            // for the writer to take the pack before fetching the next: the writer hands
            // back its old pack's buffer first, so a restore holds two packs and no more.
            if tx.send(got).await.is_err() || failed || tx.reserve().await.is_err() {
                break;
            }
        }
        busy
    });
    let mut summary = RestoreSummary {
        snapshot: snap.id.clone(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        packs_read: 0,
        shards_bad: 0,
        seconds: 0.0,
        stage_seconds: RestoreStages::default(),
    };
    let (keys, target, written) = (repo.keys.clone(), target.to_path_buf(), progress.counter());
    let writer = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let written = write_tree(
            &nodes,
            &locations,
            plan,
            &keys,
            &target,
            PackFeed { packs: rx, recycle },
            &written,
            &mut summary,
        );
        let idle = summary.stage_seconds.write_idle;
        summary.stage_seconds.write = t.elapsed().as_secs_f64() - idle;
        written.map(|()| summary)
    });
    let result = writer
        .await
        .map_err(|e| Error::Io(format!("the restore thread failed: {e}")));
    progress.finish();
    if !matches!(result, Ok(Ok(_))) {
        fetcher.abort();
    }
    let mut summary = result??;
    // The writer took every planned pack, so the fetcher has finished.
    summary.stage_seconds.fetch = fetcher
        .await
        .map_err(|e| Error::Io(format!("the pack fetcher failed: {e}")))?
        .as_secs_f64();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The writing side of `restore`: every node under `target`, chunks from the packs `packs`
/// delivers in the planned order.
#[allow(clippy::too_many_arguments)]
fn write_tree(
    nodes: &[Node],
    locations: &HashMap<String, Location>,
    plan: RestorePlan,
    keys: &Keys,
    target: &Path,
    feed: PackFeed,
    written: &AtomicU64,
    summary: &mut RestoreSummary,
) -> Result<(), Error> {
    use std::io::Write;
    let PackFeed { mut packs, recycle } = feed;
    let RestorePlan { loads, last_use } = plan;
    let mut loads = loads.into_iter();
    // The pack in hand (id and bytes), the blobs kept from packs left behind, and the
    // position in the plan's chunk references.
    let mut current: Option<(String, Vec<u8>)> = None;
    let mut kept: HashMap<String, Vec<u8>> = HashMap::new();
    let mut at = 0usize;
    let mut opener = pack::ChunkOpener::new(CHUNK_MAX as usize)?;
    let mut dirs = Vec::new();
    for node in nodes {
        let path = safe_join(target, &node.path)?;
        match node.kind {
            Kind::Dir => {
                // A symlink (or file) already where a directory goes is replaced: following
                // it would write outside the target.
                if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_dir()) {
                    std::fs::remove_file(&path).map_err(|e| io_at(&path, e))?;
                }
                std::fs::create_dir_all(&path).map_err(|e| io_at(&path, e))?;
                dirs.push((path, node));
                summary.dirs += 1;
            }
            Kind::Symlink => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(node.target.as_deref().unwrap_or(""), &path)?;
                set_symlink_mtime(&path, node.mtime_ns)?;
                summary.symlinks += 1;
            }
            Kind::File if node.link.is_some() => {
                let first = safe_join(target, node.link.as_deref().unwrap_or_default())?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&path);
                std::fs::hard_link(&first, &path)
                    .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
                summary.files += 1;
            }
            Kind::File => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // Whole chunks are written at once: no buffering needed.
                // What is already there is unlinked, not written through: a symlink or a hard
                // link in the target must not carry the restore outside it (restic does the
                // same), and `create_new` refuses whatever appears meanwhile.
                match std::fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {
                        return Err(Error::Io(format!(
                            "{}: a directory is where the snapshot has a file",
                            path.display()
                        )))
                    }
                    Ok(_) => std::fs::remove_file(&path).map_err(|e| io_at(&path, e))?,
                    Err(_) => {}
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_at(&path, e))?;
                for id in &node.chunks {
                    let loc = locations
                        .get(id)
                        .ok_or_else(|| Error::Corrupt(format!("chunk {id} is in no index")))?;
                    let last = last_use.get(at).copied().unwrap_or(true);
                    at += 1;
                    let in_hand = current.as_ref().is_some_and(|(p, _)| *p == loc.pack);
                    if !kept.contains_key(id) && !in_hand {
                        let load = loads
                            .next()
                            .filter(|l| l.pack == loc.pack)
                            .ok_or_else(|| Error::Io("the restore plan is out of step".into()))?;
                        if let Some((_, old)) = current.take() {
                            for k in load.keep {
                                let blob = blob_of(&old, locations, &k)?;
                                kept.insert(k, blob.to_vec());
                            }
                            // Handed back before the next is taken, so the fetcher reuses
                            // it (dropped if it has enough buffers).
                            let _ = recycle.try_send(old);
                        }
                        let t = Instant::now();
                        let got = packs.blocking_recv();
                        summary.stage_seconds.write_idle += t.elapsed().as_secs_f64();
                        let (pack, bytes, bad) =
                            got.ok_or_else(|| Error::Io("the pack fetcher stopped early".into()))??;
                        if pack != loc.pack {
                            return Err(Error::Io(format!(
                                "pack {pack} arrived where {} was planned",
                                loc.pack
                            )));
                        }
                        summary.packs_read += 1;
                        summary.shards_bad += bad as u64;
                        current = Some((pack, bytes));
                    }
                    let chunk = match (kept.get(id), &current) {
                        (Some(blob), _) => opener.open(keys, blob)?,
                        (None, Some((_, pack_bytes))) => {
                            opener.open(keys, blob_of(pack_bytes, locations, id)?)?
                        }
                        (None, None) => return Err(Error::Io("no pack in hand".into())),
                    };
                    if last {
                        kept.remove(id);
                    }
                    out.write_all(chunk)?;
                    summary.bytes += chunk.len() as u64;
                    written.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                let file = out;
                file.set_permissions(std::fs::Permissions::from_mode(node.mode))?;
                file.set_modified(mtime(node.mtime_ns))?;
                summary.files += 1;
            }
        }
    }
    // Directories last, deepest first: writing into a directory changes its mtime, and a
    // read-only directory must still be written into first.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in dirs {
        std::fs::File::open(&path)?.set_modified(mtime(node.mtime_ns))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))?;
    }
    Ok(())
}

/// An IO error at `path`, naming it.
fn io_at(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

/// Chunk `id`'s sealed blob in `pack` (the bytes of the pack the index says holds it).
fn blob_of<'a>(
    pack: &'a [u8],
    locations: &HashMap<String, Location>,
    id: &str,
) -> Result<&'a [u8], Error> {
    let loc = locations
        .get(id)
        .ok_or_else(|| Error::Corrupt(format!("chunk {id} is in no index")))?;
    let start = usize::try_from(loc.offset).map_err(|_| Error::Corrupt("offset".into()))?;
    let end = start + usize::try_from(loc.length).map_err(|_| Error::Corrupt("length".into()))?;
    pack.get(start..end)
        .ok_or_else(|| Error::Corrupt(format!("chunk {id} lies outside its pack")))
}

/// A snapshot's mtime (ns since the epoch) as a time; before 1970 counts as 1970.
fn mtime(mtime_ns: i128) -> std::time::SystemTime {
    std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(mtime_ns.max(0)).unwrap_or(u64::MAX))
}

/// Set a symlink's own mtime (not its target's).
fn set_symlink_mtime(path: &Path, mtime_ns: i128) -> Result<(), Error> {
    let t = filetime::FileTime::from_system_time(mtime(mtime_ns));
    filetime::set_symlink_file_times(path, t, t)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// `target/rel`, refusing paths that would leave `target`.
fn safe_join(target: &Path, rel: &str) -> Result<PathBuf, Error> {
    let mut out = target.to_path_buf();
    for part in rel.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(Error::Corrupt(format!("unsafe path in snapshot: {rel}")));
        }
        out.push(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listing of one agent accepting the currencies of `issuers`, in that order.
    fn listing(issuers: &[&protocol::KeyPair], online: bool) -> market::book::Listing {
        let agent = protocol::KeyPair::generate().expect("key");
        let offer = protocol::market::Offer {
            agent: agent.entity().clone(),
            endpoint: "http://127.0.0.1:1".into(),
            issued_at: protocol::market::format_rfc3339(now_s()),
            expires_at: protocol::market::format_rfc3339(now_s() + 600),
            free_bytes: 1 << 30,
            block_bytes_max: 1 << 30,
            duration_s_max: 86_400,
            currencies: issuers
                .iter()
                .map(|i| protocol::market::OfferCurrency {
                    issuer: i.entity().clone(),
                    issuer_url: format!("http://issuer-{}", &i.entity().as_str()[8..14]),
                    storage_per_gib_day: 1,
                    write_per_kib: 1,
                    read_per_kib: 1,
                    contract_min: 1,
                })
                .collect(),
        };
        market::book::Listing {
            agent: agent.entity().to_string(),
            endpoint: offer.endpoint.clone(),
            offer: protocol::Envelope::sign_json(&agent, protocol::market::OFFER_TYPE, &offer)
                .expect("sign"),
            currency: issuers[0].entity().to_string(),
            p_fail: 0.1,
            reference_price: 1,
            adjusted_price: 1.0,
            audits_passed: 0,
            audits_failed: 0,
            online,
            vetted: false,
        }
    }

    #[test]
    fn a_new_repository_pays_in_the_currency_most_agents_take() {
        let (a, b) = (
            protocol::KeyPair::generate().expect("key"),
            protocol::KeyPair::generate().expect("key"),
        );
        // The cheapest offer (listed first) is the only one in currency b, and an offline
        // agent's does not count.
        let book = vec![
            listing(&[&b], true),
            listing(&[&a], true),
            listing(&[&a], true),
            listing(&[&b], false),
            listing(&[&b], false),
        ];
        let chosen = choose_currency(&book, None).expect("a currency");
        assert_eq!(chosen.issuer, *a.entity());
        let asked = choose_currency(&book, Some(b.entity().as_str())).expect("b");
        assert_eq!(asked.issuer, *b.entity());
        let nobody = protocol::KeyPair::generate().expect("key");
        assert!(matches!(
            choose_currency(&book, Some(nobody.entity().as_str())),
            Err(Error::Usage(_))
        ));
        assert!(choose_currency(&[listing(&[&a], false)], None).is_err());
    }

    fn plan(refs: &[(&str, &str, u64)]) -> RestorePlan {
        let locations: HashMap<String, Location> = refs
            .iter()
            .map(|&(id, pack, length)| {
                let loc = Location {
                    pack: pack.into(),
                    offset: 0,
                    length,
                };
                (id.to_string(), loc)
            })
            .collect();
        let ids: Vec<String> = refs.iter().map(|r| r.0.to_string()).collect();
        let refs: Vec<&String> = ids.iter().collect();
        RestorePlan::new(&refs, &locations).expect("plan")
    }

    fn loads(plan: &RestorePlan) -> Vec<(String, Vec<String>)> {
        plan.loads
            .iter()
            .map(|l| (l.pack.clone(), l.keep.clone()))
            .collect()
    }

    /// A symlink given as an argument keeps the name it was given (and its absolute path is
    /// not resolved through it), while its contents are read from what it points to.
    #[test]
    fn a_symlinked_argument_is_recorded_as_typed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let base = std::fs::canonicalize(tmp.path()).expect("abs");
        std::fs::create_dir(base.join("python3")).expect("dir");
        std::os::unix::fs::symlink("python3", base.join("python3-dev")).expect("ln");
        let root = Root::of(&base.join("python3-dev")).expect("root");
        assert_eq!(root.name, "python3-dev");
        assert_eq!(root.absolute, base.join("python3-dev"));
        assert_eq!(root.read_from, base.join("python3"));
        // A trailing slash names the same thing.
        let slash = PathBuf::from(format!("{}/", base.join("python3-dev").display()));
        assert_eq!(Root::of(&slash).expect("root").name, "python3-dev");
        assert_eq!(Root::of(Path::new("/")).expect("root").name, "root");
        assert!(matches!(
            Root::of(&base.join("missing")),
            Err(Error::Usage(_))
        ));
    }

    /// A chunk needed again after its pack is left is kept, so every pack is read once; past
    /// the bound on kept bytes the pack is read again instead.
    #[test]
    fn a_restore_plan_reads_each_pack_once_keeping_what_is_needed_again() {
        let small = plan(&[
            ("a", "p1", 10),
            ("b", "p1", 10),
            ("c", "p2", 10),
            ("a", "p1", 10),
        ]);
        assert_eq!(
            loads(&small),
            vec![("p1".into(), vec![]), ("p2".into(), vec!["a".into()])]
        );
        assert_eq!(small.last_use, vec![false, true, true, true]);

        let big = KEPT_BYTES_MAX;
        let reread = plan(&[("a", "p1", big + 1), ("c", "p2", 10), ("a", "p1", big + 1)]);
        assert_eq!(
            loads(&reread),
            vec![
                ("p1".into(), vec![]),
                ("p2".into(), vec![]),
                ("p1".into(), vec![])
            ]
        );
    }
}

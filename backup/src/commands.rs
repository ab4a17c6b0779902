//! The commands: `init`, `create`, `snapshots`, `ls`, `restore`. The CLI (`main.rs`) only
//! parses arguments and prints.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use market::book::{MatchRequest, RegisteredObject, Registration};
use market::client::MarketClient;
use serde::Serialize;
use storage_agent::client::AgentClient;

use crate::crypto::{KeyFile, Keys};
use crate::error::{remote, Error};
use crate::pack::{self, Location, PackBuilder, PACK_BYTES_TARGET};
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
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn now_s() -> i64 {
    i64::try_from(lcp::now_ms() / 1000).unwrap_or(i64::MAX)
}

/// `backup init`: buy a contract on each of k + m agents the market matches, store the key
/// file and the sealed config on each, register them with the market. Answers the id.
pub async fn init(
    dir: &Path,
    options: &InitOptions,
    password: &str,
    payer: &repo::Wallet,
    http: reqwest::Client,
) -> Result<String, Error> {
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
    let currency = offers
        .first()
        .and_then(|o| {
            o.offer
                .open::<protocol::market::Offer>(protocol::market::OFFER_TYPE)
                .ok()
                .and_then(|(_, offer)| offer.currencies.first().cloned())
        })
        .ok_or_else(|| Error::Usage("the market has no offers yet".into()))?;
    let answer = market
        .match_agents(&MatchRequest {
            currency: currency.issuer.to_string(),
            shard_bytes: options.slot_bytes,
            data_shards: k as u64,
            total_shards: Some((k + m) as u64),
            duration_s: options.duration_s,
            expected_read_bytes: 0,
            max_failure_probability: options.max_failure_probability,
            exclude: vec![],
        })
        .await
        .map_err(remote("matching agents"))?;
    let wallet = payer.client(&http, &currency.issuer_url);
    let repository = uuid();
    let keys = Keys::generate()?;
    let key_file = KeyFile::wrap(&keys, &repository, password)?;
    let mut slots = Vec::new();
    let mut signed = Vec::new();
    for chosen in &answer.agents {
        let agent = AgentClient::new(http.clone(), &chosen.endpoint, buyer.clone());
        let (_, offer) = agent
            .offer()
            .await
            .map_err(remote("reading an agent's offer"))?;
        let terms = AgentClient::terms_from_offer(
            &offer,
            buyer.entity(),
            &currency.issuer,
            options.slot_bytes,
            options.duration_s,
            vec![market_entity.clone()],
        )
        .map_err(remote("forming a contract"))?;
        // Credit for the key file and config, and a first megabyte of writes.
        let credit = protocol::market::per_kib_charge(terms.write_per_kib, 1 << 20).unwrap_or(0);
        let bought = agent
            .buy(&wallet, &terms, credit)
            .await
            .map_err(remote(format!(
                "buying a contract from {}",
                chosen.endpoint
            )))?;
        slots.push(Slot {
            agent: chosen.agent.clone(),
            endpoint: chosen.endpoint.clone(),
            contract: terms.id.clone(),
            write_per_kib: terms.write_per_kib,
            read_per_kib: terms.read_per_kib,
            block_bytes: options.slot_bytes,
            end_s: protocol::market::parse_rfc3339(&terms.end).unwrap_or(0),
        });
        signed.push(bought.value);
    }
    let config = RepoConfig {
        repository: repository.clone(),
        market: options.market.clone(),
        issuer: currency.issuer.to_string(),
        issuer_url: currency.issuer_url.clone(),
        data_shards: k,
        parity_shards: m,
        slots,
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
    let cfg_size = sealed.len() as u64;
    let cfg_roots = repo
        .put_replicated(&repo::config_name(&repository), sealed)
        .await?;
    for (i, s) in signed.iter().enumerate() {
        let leaves = |size: u64| size.div_ceil(protocol::merkle::LEAF_BYTES as u64).max(1);
        market
            .register(&Registration {
                contract: s.contract.clone(),
                agent_signature: s.agent_signature.clone(),
                objects: vec![
                    RegisteredObject {
                        name: repo::key_name(&repository),
                        merkle_root: key_roots[i].clone(),
                        leaf_count: leaves(key_size),
                        size: key_size,
                    },
                    RegisteredObject {
                        name: repo::config_name(&repository),
                        merkle_root: cfg_roots[i].clone(),
                        leaf_count: leaves(cfg_size),
                        size: cfg_size,
                    },
                ],
            })
            .await
            .map_err(remote("registering a contract with the market"))?;
    }
    repo.save_config(&key_file)?;
    Ok(repository)
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
}

/// Progress on a terminal: one line, rewritten.
struct Progress {
    on: bool,
    start: Instant,
    total_bytes: u64,
}

impl Progress {
    fn show(&self, done: u64, added: u64) {
        if !self.on {
            return;
        }
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total_bytes.saturating_sub(done)) as f64 / rate
        } else {
            0.0
        };
        eprint!(
            "\r{:>6.1}% {:>8.1} MiB of {:.1} MiB, {:.1} MiB/s, {:.1} MiB new, ETA {:.0} s   ",
            100.0 * done as f64 / self.total_bytes.max(1) as f64,
            done as f64 / 1048576.0,
            self.total_bytes as f64 / 1048576.0,
            rate / 1048576.0,
            added as f64 / 1048576.0,
            eta
        );
    }

    fn done(&self) {
        if self.on {
            eprintln!();
        }
    }
}

/// Walk `root`, answering nodes (paths relative to the parent of `root`), skipping excluded
/// paths.
fn walk(
    root: &Path,
    exclude: &globset::GlobSet,
    out: &mut Vec<(PathBuf, Node)>,
) -> Result<(), Error> {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let mut stack = vec![(root.to_path_buf(), name)];
    while let Some((path, rel)) = stack.pop() {
        if exclude.is_match(&rel) || exclude.is_match(&path) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
        let mode = meta.mode() & 0o7777;
        let ft = meta.file_type();
        let node = if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            Node {
                path: rel.clone(),
                kind: Kind::Symlink,
                mode,
                mtime_ns,
                size: 0,
                chunks: vec![],
                target: Some(target.to_string_lossy().into_owned()),
            }
        } else if ft.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(&path)
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
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
            }
        } else if ft.is_file() {
            Node {
                path: rel.clone(),
                kind: Kind::File,
                mode,
                mtime_ns,
                size: meta.len(),
                chunks: vec![],
                target: None,
            }
        } else {
            continue; // sockets, fifos, devices: not backed up
        };
        out.push((path, node));
    }
    Ok(())
}

/// `backup create`: chunk, dedup, compress, encrypt, pack, erasure-code and upload; then the
/// index and the snapshot.
pub async fn create(
    repo: &mut Repo,
    paths: &[PathBuf],
    exclude: &[String],
) -> Result<CreateSummary, Error> {
    let started = Instant::now();
    let exclude = glob_set(exclude, "--exclude")?;
    let mut found = Vec::new();
    for p in paths {
        let p =
            std::fs::canonicalize(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))?;
        walk(&p, &exclude, &mut found)?;
    }
    repo.sync_index().await?;
    // Chunks an interrupted backup already uploaded count as stored.
    let pending = std::mem::take(&mut repo.index.pending);
    repo.index.chunks.extend(pending.clone());
    let mut added_locations: HashMap<String, Location> = pending;

    let total: u64 = found.iter().map(|(_, n)| n.size).sum();
    let progress = Progress {
        on: std::io::stderr().is_terminal(),
        start: Instant::now(),
        total_bytes: total,
    };
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
    };
    let mut packer = PackBuilder::default();
    let mut nodes = Vec::with_capacity(found.len());
    let mut done = 0u64;
    for (path, mut node) in found {
        match node.kind {
            Kind::Dir => summary.dirs += 1,
            Kind::Symlink => {}
            Kind::File => {
                summary.files += 1;
                let file = std::fs::File::open(&path)
                    .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
                let chunker = fastcdc::v2020::StreamCDC::new(file, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX);
                for chunk in chunker {
                    let chunk = chunk.map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
                    let id = repo.keys.chunk_id(&chunk.data);
                    summary.bytes += chunk.data.len() as u64;
                    done += chunk.data.len() as u64;
                    if repo.index.chunks.contains_key(&id) || packer.contains(&id) {
                        summary.chunks_known += 1;
                    } else {
                        summary.chunks_new += 1;
                        let blob = pack::seal_chunk(&repo.keys, &chunk.data)?;
                        packer.add(id.clone(), &blob);
                        if packer.len() >= PACK_BYTES_TARGET {
                            let full = std::mem::take(&mut packer);
                            upload_pack(repo, full, &mut summary, &mut added_locations).await?;
                            progress.show(done, summary.data_added);
                        }
                    }
                    node.chunks.push(id);
                }
            }
        }
        nodes.push(node);
    }
    if !packer.is_empty() {
        upload_pack(repo, packer, &mut summary, &mut added_locations).await?;
    }
    progress.show(done, summary.data_added);
    progress.done();

    // The index of what this backup added, then the snapshot that refers to it.
    if !added_locations.is_empty() {
        let index_id = uuid();
        let sealed = repo
            .keys
            .seal(&serde_json::to_vec(&added_locations).map_err(|e| Error::Io(e.to_string()))?)?;
        repo.put_sharded(&format!("i-{index_id}"), &sealed).await?;
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
        paths: paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
        nodes,
        files: summary.files,
        bytes: summary.bytes,
        data_added: summary.data_added,
    };
    let sealed = repo
        .keys
        .seal(&serde_json::to_vec(&snapshot).map_err(|e| Error::Io(e.to_string()))?)?;
    repo.put_sharded(&format!("s-{}", snapshot.id), &sealed)
        .await?;
    summary.snapshot = snapshot.id;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

async fn upload_pack(
    repo: &mut Repo,
    packer: PackBuilder,
    summary: &mut CreateSummary,
    added: &mut HashMap<String, Location>,
) -> Result<(), Error> {
    let (id, bytes, locations) = packer.finish();
    repo.put_sharded(&format!("p-{id}"), &bytes).await?;
    summary.data_added += bytes.len() as u64;
    summary.bytes_stored += (bytes.len() as u64 + 8).div_ceil(repo.k() as u64) * repo.n() as u64;
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
}

/// Packs kept in memory during a restore.
const PACK_CACHE_MAX: usize = 2;

/// `backup restore`: rebuild the snapshot's tree under `target`.
pub async fn restore(
    repo: &mut Repo,
    which: &str,
    target: &Path,
    include: &[String],
) -> Result<RestoreSummary, Error> {
    let started = Instant::now();
    let snap = find_snapshot(repo, which).await?;
    repo.sync_index().await?;
    let include_set = glob_set(include, "--include")?;
    let wanted = |n: &Node| include.is_empty() || include_set.is_match(&n.path);
    // Read credit for everything, up front.
    let needed: u64 = snap
        .nodes
        .iter()
        .filter(|n| wanted(n))
        .map(|n| n.size)
        .sum();
    repo.prepay(needed / repo.k() as u64 + (4 << 20), |s| s.read_per_kib)
        .await?;
    std::fs::create_dir_all(target)?;
    let mut summary = RestoreSummary {
        snapshot: snap.id.clone(),
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        packs_read: 0,
        shards_bad: 0,
        seconds: 0.0,
    };
    let mut cache: Vec<(String, Vec<u8>)> = Vec::new();
    let mut dirs = Vec::new();
    for node in snap.nodes.iter().filter(|n| wanted(n)) {
        let path = safe_join(target, &node.path)?;
        match node.kind {
            Kind::Dir => {
                std::fs::create_dir_all(&path)?;
                dirs.push((path, node));
                summary.dirs += 1;
            }
            Kind::Symlink => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let _ = std::fs::remove_file(&path);
                std::os::unix::fs::symlink(node.target.as_deref().unwrap_or(""), &path)?;
                summary.symlinks += 1;
            }
            Kind::File => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let mut out = std::fs::File::create(&path)?;
                for id in &node.chunks {
                    let loc = repo
                        .index
                        .chunks
                        .get(id)
                        .cloned()
                        .ok_or_else(|| Error::Corrupt(format!("chunk {id} is in no index")))?;
                    let pos = match cache.iter().position(|(p, _)| *p == loc.pack) {
                        Some(p) => p,
                        None => {
                            let (bytes, bad) = repo
                                .get_sharded(&format!("p-{}", loc.pack), |d| {
                                    protocol::sha256_hex(d) == loc.pack
                                })
                                .await?;
                            summary.packs_read += 1;
                            summary.shards_bad += bad.len() as u64;
                            if cache.len() == PACK_CACHE_MAX {
                                cache.remove(0);
                            }
                            cache.push((loc.pack.clone(), bytes));
                            cache.len() - 1
                        }
                    };
                    let pack_bytes = &cache[pos].1;
                    let start =
                        usize::try_from(loc.offset).map_err(|_| Error::Corrupt("offset".into()))?;
                    let end = start
                        + usize::try_from(loc.length)
                            .map_err(|_| Error::Corrupt("length".into()))?;
                    let blob = pack_bytes.get(start..end).ok_or_else(|| {
                        Error::Corrupt(format!("chunk {id} lies outside its pack"))
                    })?;
                    let chunk = pack::open_chunk(&repo.keys, blob, CHUNK_MAX as usize)?;
                    use std::io::Write;
                    out.write_all(&chunk)?;
                    summary.bytes += chunk.len() as u64;
                }
                out.sync_all()?;
                drop(out);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))?;
                set_mtime(&path, node.mtime_ns)?;
                summary.files += 1;
            }
        }
    }
    // Directories last, deepest first: writing into a directory changes its mtime, and a
    // read-only directory must still be written into first.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (path, node) in dirs {
        set_mtime(&path, node.mtime_ns)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(node.mode))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn set_mtime(path: &Path, mtime_ns: i128) -> Result<(), Error> {
    let t = if mtime_ns >= 0 {
        std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(u64::try_from(mtime_ns).unwrap_or(u64::MAX))
    } else {
        std::time::UNIX_EPOCH
    };
    let f = std::fs::File::open(path)?;
    f.set_modified(t)?;
    Ok(())
}

/// The patterns given with `flag`, as one matcher.
fn glob_set(patterns: &[String], flag: &str) -> Result<globset::GlobSet, Error> {
    let mut set = globset::GlobSetBuilder::new();
    for g in patterns {
        set.add(globset::Glob::new(g).map_err(|e| Error::Usage(format!("{flag} {g}: {e}")))?);
    }
    set.build().map_err(|e| Error::Usage(e.to_string()))
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

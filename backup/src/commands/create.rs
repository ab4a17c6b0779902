//! `backup create`: walk the paths, chunk, dedup, seal and pack on two threads, and upload
//! each pack's shards as it fills.

use super::*;

/// What `create` did.
#[derive(Debug, Clone, Serialize)]
pub struct CreateSummary {
    pub snapshot: String,
    pub files: u64,
    pub dirs: u64,
    /// Symbolic links recorded (as links: their targets are not followed).
    pub symlinks: u64,
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
    symlinks: u64,
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
                    Kind::Symlink => out.symlinks += 1,
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
    // Bulk credit for the expected writes: shards of about total / k on each slot. Paying by
    // payword, each write carries the words for its own charge instead.
    if repo.words.is_none() {
        let per_slot = total / repo.k() as u64 + (1 << 20);
        repo.prepay(per_slot, |s| s.write_per_kib).await?;
    }

    let mut summary = CreateSummary {
        snapshot: String::new(),
        files: 0,
        dirs: 0,
        symlinks: 0,
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
    summary.symlinks = chunked.symlinks;
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
        unix_ms: node::now_ms(),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}

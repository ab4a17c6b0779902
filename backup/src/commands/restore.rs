//! `backup restore`: plan which packs to load and which chunks to keep, fetch one pack ahead,
//! and write the tree on a blocking thread.

use super::*;

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
    // Paying by payword, exactly the shards the plan loads are paid ahead (their lengths are
    // in the index; without them the files' bytes count), plus 1 MiB: a read the credit does
    // not cover is paid in words on the spot anyway. By transfer, the files' bytes and 4 MiB,
    // as before.
    let per_slot = if repo.words.is_some() {
        let shards: Option<u64> = loads
            .iter()
            .map(|p| repo.index.packs.get(p).map(|r| r.shard_len))
            .sum();
        shards.unwrap_or(needed / repo.k() as u64) + (1 << 20)
    } else {
        needed / repo.k() as u64 + (4 << 20)
    };
    repo.prepay(per_slot, |s| s.read_per_kib).await?;
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

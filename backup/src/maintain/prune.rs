//! Retention and space: `forget` (which snapshots to keep), `prune` (delete or repack packs
//! no snapshot needs, under the exclusive lock) and `unlock`.

use super::*;

/// Retention: which snapshots to keep.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

/// The snapshots `keep` keeps, by id. As restic does by default, snapshots are grouped by
/// host and backed-up paths and each group is kept by itself: `--keep-last 1` keeps the last
/// backup of ~/Documents and the last of ~/Photos.
pub fn kept(snapshots: &[Snapshot], keep: Keep) -> HashSet<String> {
    let mut groups: std::collections::BTreeMap<(&str, Vec<&str>), Vec<&Snapshot>> =
        Default::default();
    for s in snapshots {
        let mut paths: Vec<&str> = s.paths.iter().map(String::as_str).collect();
        paths.sort_unstable();
        groups.entry((&s.hostname, paths)).or_default().push(s);
    }
    groups
        .into_values()
        .flat_map(|group| kept_of_group(group, keep))
        .collect()
}

/// restic's rules within one group: the newest in each of the last N days, weeks, months,
/// plus the last N.
fn kept_of_group(snapshots: Vec<&Snapshot>, keep: Keep) -> HashSet<String> {
    let mut by_new = snapshots;
    by_new.sort_by_key(|s| std::cmp::Reverse((s.unix_s, s.unix_ms)));
    let mut out: HashSet<String> = by_new
        .iter()
        .take(keep.last)
        .map(|s| s.id.clone())
        .collect();
    for (n, period_s) in [
        (keep.daily, 86_400),
        (keep.weekly, 7 * 86_400),
        (keep.monthly, 30 * 86_400),
    ] {
        let mut seen = HashSet::new();
        for s in &by_new {
            if seen.len() >= n {
                break;
            }
            if seen.insert(s.unix_s.div_euclid(period_s)) {
                out.insert(s.id.clone());
            }
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    pub kept: Vec<String>,
    pub removed: Vec<String>,
}

/// `backup forget ID...`: delete these snapshots (each id may be its first characters, as in
/// `restore`); an unknown or ambiguous one deletes nothing.
pub async fn forget_ids(repo: &mut Repo, ids: &[String]) -> Result<ForgetReport, Error> {
    let mut doomed = Vec::new();
    for id in ids {
        doomed.push(crate::commands::find_snapshot(repo, id).await?.id);
    }
    for id in &doomed {
        repo.delete_sharded(&format!("s-{id}")).await?;
    }
    let mut kept: Vec<String> = repo.snapshots().await?.into_iter().map(|s| s.id).collect();
    kept.sort();
    Ok(ForgetReport {
        kept,
        removed: doomed,
    })
}

/// `backup forget`: delete the snapshots `keep` does not keep.
pub async fn forget(repo: &mut Repo, keep: Keep) -> Result<ForgetReport, Error> {
    let all = repo.snapshots().await?;
    let keep_ids = kept(&all, keep);
    let mut removed = Vec::new();
    for s in &all {
        if !keep_ids.contains(&s.id) {
            repo.delete_sharded(&format!("s-{}", s.id)).await?;
            removed.push(s.id.clone());
        }
    }
    let mut kept: Vec<String> = keep_ids.into_iter().collect();
    kept.sort();
    Ok(ForgetReport { kept, removed })
}

#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub packs_deleted: usize,
    /// Partly unused packs rewritten with only their used blobs.
    pub packs_repacked: usize,
    pub packs_kept: usize,
    pub bytes_freed: u64,
    /// Index and snapshot objects written half way (by a command that stopped), deleted.
    pub objects_half_written: Vec<String>,
}

/// A pack with more than this share (percent) of unused bytes is repacked by `prune`.
pub const REPACK_UNUSED_PCT: u64 = 5;

/// `backup prune`: delete every pack no remaining snapshot uses and every object written
/// half way, repack the packs partly unused, and write a fresh index of what remains
/// (replacing the old index objects). See [`prune_locked`] for the order.
pub async fn prune(repo: &mut Repo) -> Result<PruneReport, Error> {
    // Alone: a running backup counts on packs this would delete.
    let mut signals = crate::repo::Signals::catch();
    let lock = repo.lock("prune").await?;
    let result = crate::repo::until_signal(&mut signals, prune_locked(repo)).await;
    repo.unlock_after(&lock, &result).await;
    result
}

/// `backup unlock`: remove every lock (after a killed backup or prune; only when none runs).
pub async fn unlock(repo: &Repo) -> Result<Vec<String>, Error> {
    let locks = repo.locks().await?;
    for (_, _, name) in &locks {
        repo.unlock(name).await;
    }
    Ok(locks.into_iter().map(|(_, _, name)| name).collect())
}

/// The order is what keeps a prune safe when killed at any point, and able to run on a full
/// repository:
/// 1. garbage first: packs no snapshot uses and objects written half way. Nothing counts on
///    them: a backup deduplicates only against packs listed on k slots
///    ([`Repo::is_stored`]), `check` and `restore` need only the packs snapshots use. Their
///    room is free before anything is written.
/// 2. packs partly unused are repacked (stopping, not failing, if the room runs out);
/// 3. a new index object of what is kept, then the old index objects are deleted;
/// 4. last, the repacked packs' originals, which the old index objects named for chunks a
///    snapshot uses.
async fn prune_locked(repo: &mut Repo) -> Result<PruneReport, Error> {
    repo.sync_index().await?;
    let snapshots = repo.snapshots().await?;
    let used_chunks: HashSet<&String> = snapshots
        .iter()
        .flat_map(|s| s.nodes.iter().flat_map(|n| n.chunks.iter()))
        .collect();
    // A snapshot naming a chunk no index has (its index unreadable): deleting by what the
    // index says would delete what that snapshot needs.
    if let Some(lost) = used_chunks
        .iter()
        .find(|c| !repo.index.chunks.contains_key(c.as_str()))
    {
        return Err(Error::CheckFailed(format!(
            "a snapshot uses chunk {lost}, which no readable index locates: prune deletes \
             nothing until `backup check` and `backup repair` have dealt with it"
        )));
    }
    let used_packs = used_packs(repo, &snapshots);
    // Every pack stored: those the index names, an interrupted backup's, and any on the agents
    // that no index names (a backup killed between storing a pack and recording it).
    let listing = repo.listing().await?;
    let mut all_packs: HashSet<String> = repo
        .index
        .chunks
        .values()
        .chain(repo.index.pending.values())
        .map(|l| l.pack.clone())
        .collect();
    all_packs.extend(
        listing
            .names()
            .iter()
            .filter_map(|n| n.strip_prefix("p-"))
            .map(str::to_owned),
    );
    // 1. Garbage, deleted first.
    let garbage: Vec<String> = all_packs.difference(&used_packs).cloned().collect();
    let deleted = garbage.len();
    let mut freed = 0u64;
    for pack in &garbage {
        freed = freed.saturating_add(repo.delete_sharded(&format!("p-{pack}")).await?);
    }
    let half = repo.half_written();
    for name in &half {
        freed = freed.saturating_add(repo.delete_sharded(name).await?);
    }
    repo.index
        .chunks
        .retain(|_, l| used_packs.contains(&l.pack));
    repo.index
        .pending
        .retain(|_, l| used_packs.contains(&l.pack));
    // 2. Packs that are partly unused are rewritten with their used blobs only (the blobs
    // stay sealed: nothing is decrypted); their originals are deleted at the end.
    let mut repacked_originals = Vec::new();
    for pack in &used_packs {
        let entries: Vec<(String, Location)> = repo
            .index
            .chunks
            .iter()
            .filter(|(_, l)| &l.pack == pack)
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect();
        let total: u64 = entries.iter().map(|(_, l)| l.length).sum();
        let unused: u64 = entries
            .iter()
            .filter(|(c, _)| !used_chunks.contains(c))
            .map(|(_, l)| l.length)
            .sum();
        if unused.saturating_mul(100) <= total.saturating_mul(REPACK_UNUSED_PCT) {
            continue;
        }
        let name = format!("p-{pack}");
        let (bytes, _) = repo
            .get_sharded(&name, |d| protocol::sha256_hex(d) == *pack)
            .await?;
        let mut builder = PackBuilder::default();
        for (chunk, loc) in entries.iter().filter(|(c, _)| used_chunks.contains(c)) {
            let start = usize::try_from(loc.offset).map_err(|_| Error::Corrupt("offset".into()))?;
            let end =
                start + usize::try_from(loc.length).map_err(|_| Error::Corrupt("length".into()))?;
            let blob = bytes
                .get(start..end)
                .ok_or_else(|| Error::Corrupt(format!("chunk {chunk} outside pack {pack}")))?;
            builder.add(chunk.clone(), blob);
        }
        let (new_id, new_bytes, locations) = builder.finish();
        let new_name = format!("p-{new_id}");
        let roots = match repo.put_sharded(&new_name, &new_bytes).await {
            Ok(roots) => roots,
            // No room for the copy: the pack stays as it is (its unused blobs with it).
            Err(Error::Full(_)) => {
                let _ = repo.delete_sharded(&new_name).await;
                break;
            }
            Err(e) => return Err(e),
        };
        repo.index.packs.insert(new_id, roots);
        for (chunk, loc) in locations {
            repo.index.chunks.insert(chunk, loc);
        }
        for (chunk, _) in entries.iter().filter(|(c, _)| !used_chunks.contains(c)) {
            repo.index.chunks.remove(chunk);
        }
        repacked_originals.push(pack.clone());
    }
    let packs_kept: HashSet<String> = repo.index.chunks.values().map(|l| l.pack.clone()).collect();
    repo.index.packs.retain(|p, _| packs_kept.contains(p));
    let packs_kept = packs_kept.len();
    // 3. A new index object replaces the old ones, unless nothing changed (a full repository
    // with nothing to free must not need room to be pruned).
    let changed = deleted > 0 || !repacked_originals.is_empty() || repo.index.loaded.len() > 1;
    if changed {
        let old_indexes = std::mem::take(&mut repo.index.loaded);
        let id = uuid::Uuid::new_v4().to_string();
        let object = crate::repo::IndexObject {
            chunks: repo.index.chunks.clone(),
            packs: repo.index.packs.clone(),
        };
        let sealed = repo
            .keys
            .seal(&serde_json::to_vec(&object).map_err(|e| Error::Io(e.to_string()))?)?;
        let name = format!("i-{id}");
        if let Err(e) = repo.put_sharded(&name, &sealed).await {
            // The old index objects still stand; no half-written one is left beside them.
            let _ = repo.delete_sharded(&name).await;
            repo.index.loaded = old_indexes;
            repo.save_index()?;
            return Err(e);
        }
        repo.index.loaded.push(id);
        for old in old_indexes {
            repo.delete_sharded(&format!("i-{old}")).await?;
        }
    }
    repo.save_index()?;
    // 4. The repacked originals, which only the old index objects named.
    let repacked = repacked_originals.len();
    for pack in repacked_originals {
        freed = freed.saturating_add(repo.delete_sharded(&format!("p-{pack}")).await?);
    }
    Ok(PruneReport {
        packs_deleted: deleted,
        packs_repacked: repacked,
        packs_kept,
        bytes_freed: freed,
        objects_half_written: half,
    })
}

//! Keeping a repository healthy: `check` (structure, contracts, and with `--read-data` every
//! shard), `repair` (rebuild missing or damaged shards from the survivors, onto the same agent
//! or onto a new one bought through the market), `forget` (retention) and `prune` (delete packs
//! no snapshot needs; both in maintain/prune.rs), `stats`, `settle` (pay the agents' tabs,
//! maintain/settle.rs).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use crate::error::Error;
use crate::pack::{Location, PackBuilder};
use crate::repo::{Repo, ShardRoots, Slot};
use crate::tree::Snapshot;

mod prune;
mod settle;

pub use prune::*;
pub use settle::*;

/// One problem `check` found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// The object (`p-<pack>`, `s-<id>`, `i-<id>`, `key-...`), or the contract.
    pub object: String,
    /// Shard positions (slots) affected.
    pub slots: Vec<usize>,
    pub what: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub snapshots: usize,
    pub packs: usize,
    /// Audits sent (a random leaf of a pack's shard, proven against the root recorded at
    /// upload), and how many failed.
    pub audits: usize,
    pub audits_failed: usize,
    pub shards_read: usize,
    pub problems: Vec<Problem>,
    /// Index and snapshot objects written half way (by a command that stopped): not the
    /// repository's, so no problem; `prune` deletes them.
    pub half_written: Vec<String>,
}

/// The sharded objects the repository must keep: its snapshots and index objects (those
/// written half way excepted: they are not the repository's), and every pack a snapshot uses.
/// A pack no snapshot uses (left by a killed backup, or unused since a `forget`, or half
/// deleted by a killed prune) is not the repository's problem: `prune` deletes it.
async fn sharded_objects(repo: &Repo, snapshots: &[Snapshot]) -> Result<Vec<String>, Error> {
    let listing = repo.listing().await?;
    let half: HashSet<String> = repo.half_written().into_iter().collect();
    let mut out: BTreeSet<String> = listing
        .names()
        .into_iter()
        .filter(|n| (n.starts_with("s-") || n.starts_with("i-")) && !half.contains(n))
        .collect();
    out.extend(
        used_packs(repo, snapshots)
            .into_iter()
            .map(|p| format!("p-{p}")),
    );
    Ok(out.into_iter().collect())
}

/// The packs holding the chunks `snapshots` use (as the index locates them).
fn used_packs(repo: &Repo, snapshots: &[Snapshot]) -> HashSet<String> {
    snapshots
        .iter()
        .flat_map(|s| s.nodes.iter().flat_map(|n| n.chunks.iter()))
        .filter_map(|c| repo.index.chunks.get(c))
        .map(|l| l.pack.clone())
        .collect()
}

/// What `verify` accepts for an object: packs hash to their id; the rest must open.
fn verifier<'a>(repo: &'a Repo, name: &'a str) -> impl Fn(&[u8]) -> bool + 'a {
    move |data: &[u8]| match name.strip_prefix("p-") {
        Some(id) => protocol::sha256_hex(data) == id,
        None => repo.keys.open(data).is_ok(),
    }
}

/// Packs audited on each agent per `check`, at most (chosen at random among those with
/// recorded roots): a check of a large repository stays a few requests per agent.
pub const AUDITED_PACKS_PER_SLOT_MAX: usize = 16;

/// A uniformly random number below `n` (> 0), from the OS.
fn random_below(n: u64) -> Result<u64, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Crypto("the OS random source failed".into()))?;
    // The bias of a modulo over 64 bits is negligible for counts of packs and leaves.
    Ok(u64::from_le_bytes(bytes) % n.max(1))
}

/// Audit slot `i` on up to [`AUDITED_PACKS_PER_SLOT_MAX`] of `packs` (held by its agent, with
/// recorded roots): for each, a random leaf of the slot's shard, whose Merkle proof must lead
/// to the root recorded when it was stored. Answers the audits sent and the failures.
async fn audit_slot(
    repo: &Repo,
    i: usize,
    mut packs: Vec<(&String, &ShardRoots)>,
) -> Result<(usize, Vec<Problem>), Error> {
    let slot = &repo.config.slots[i];
    // A random choice of packs: a partial Fisher-Yates shuffle.
    let audited = packs.len().min(AUDITED_PACKS_PER_SLOT_MAX);
    for j in 0..audited {
        let pick = j + random_below((packs.len() - j) as u64)? as usize;
        packs.swap(j, pick);
    }
    let mut problems = Vec::new();
    for (pack, roots) in packs.into_iter().take(audited) {
        let Some(root) = roots.roots.get(i) else {
            continue;
        };
        let leaves = protocol::merkle::leaf_count_for(roots.shard_len);
        let leaf = random_below(leaves)?;
        let name = format!("p-{pack}-{i}");
        let what = match repo.audit_paying(i, &name, leaf).await {
            Ok(answer)
                if answer.leaf_count == leaves
                    && clients::agent::verify_audit(&answer, root, leaf) =>
            {
                continue
            }
            Ok(_) => format!(
                "audit failed on {}: leaf {leaf} of shard {i} does not prove its root",
                slot.endpoint
            ),
            Err(e) => format!("audit failed on {}: {e}", slot.endpoint),
        };
        problems.push(Problem {
            object: format!("p-{pack}"),
            slots: vec![i],
            what,
        });
    }
    Ok((audited, problems))
}

/// `backup check`: snapshots readable and complete against the index, every slot's contract
/// active and holding a shard of every object, every agent audited on random leaves of
/// random packs; with `read_data`, every shard read and checked.
pub async fn check(repo: &mut Repo, read_data: bool) -> Result<CheckReport, Error> {
    repo.sync_index().await?;
    let mut problems = Vec::new();
    let snapshots = repo.snapshots().await?;
    for s in &snapshots {
        for n in &s.nodes {
            for c in &n.chunks {
                if !repo.index.chunks.contains_key(c) {
                    problems.push(Problem {
                        object: format!("s-{}", s.id),
                        slots: vec![],
                        what: format!("{}: chunk {c} is in no index", n.path),
                    });
                }
            }
        }
    }
    let objects = sharded_objects(repo, &snapshots).await?;
    let (mut audits, mut audits_failed) = (0, 0);
    // Each slot: the contract is active and lists a shard of every object.
    for (i, slot) in repo.config.slots.iter().enumerate() {
        match repo.agent(i).contract(&slot.contract).await {
            Ok(view) => {
                if view.status != "active" {
                    problems.push(Problem {
                        object: slot.contract.clone(),
                        slots: vec![i],
                        what: format!("contract with {} is {}", slot.endpoint, view.status),
                    });
                }
                let held: HashSet<String> = view.objects.into_iter().map(|o| o.name).collect();
                for o in &objects {
                    if !held.contains(&format!("{o}-{i}")) {
                        problems.push(Problem {
                            object: o.clone(),
                            slots: vec![i],
                            what: format!("shard {i} missing on {}", slot.endpoint),
                        });
                    }
                }
                let auditable = repo
                    .index
                    .packs
                    .iter()
                    .filter(|(p, _)| held.contains(&format!("p-{p}-{i}")))
                    .collect();
                let (sent, failed) = audit_slot(repo, i, auditable).await?;
                audits += sent;
                audits_failed += failed.len();
                problems.extend(failed);
            }
            Err(e) => problems.push(Problem {
                object: slot.contract.clone(),
                slots: vec![i],
                what: format!("agent {} does not answer: {e}", slot.endpoint),
            }),
        }
    }
    let mut shards_read = 0;
    if read_data {
        for o in &objects {
            let shards = repo.fetch_shards(o).await;
            shards_read += shards.iter().filter(|s| s.is_some()).count();
            match crate::repo::rebuild_verified(
                shards,
                repo.k(),
                repo.config.parity_shards,
                verifier(repo, o),
                true,
            ) {
                Ok((_, bad)) if bad.is_empty() => {}
                Ok((_, bad)) => problems.push(Problem {
                    object: o.clone(),
                    slots: bad,
                    what: "shards missing or damaged (the object is still recoverable)".into(),
                }),
                Err(e) => problems.push(Problem {
                    object: o.clone(),
                    slots: vec![],
                    what: format!("cannot be rebuilt: {e}"),
                }),
            }
        }
    }
    let packs = objects.iter().filter(|o| o.starts_with("p-")).count();
    Ok(CheckReport {
        snapshots: snapshots.len(),
        packs,
        audits,
        audits_failed,
        shards_read,
        problems,
        half_written: repo.half_written(),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub objects_checked: usize,
    /// Shards written: rebuilt ones, and every shard of a renewed slot.
    pub shards_rewritten: usize,
    pub slots_replaced: Vec<usize>,
    /// Slots whose contract ended within the renewal window: each has a new contract (the
    /// same agent when the market still lists it) holding its shards; the old one lapses.
    pub slots_renewed: Vec<usize>,
    /// Renewed slots whose own agent could not renew (short of space, or no longer listed):
    /// their new contract is with a spare agent, which got their shards rebuilt.
    pub slots_renewed_elsewhere: Vec<usize>,
    /// Slots whose agent is gone and could not be replaced (`slot: why`): their shards stay
    /// missing until a later repair finds an agent.
    pub slots_unreplaced: Vec<String>,
    /// Objects that could not be rebuilt from what survives (`object: why`).
    pub objects_lost: Vec<String>,
}

/// The renewal window when the contract's term is not recorded (repositories made before it
/// was): a week.
pub const RENEW_WITHIN_S_UNKNOWN_TERM: u64 = 7 * 86_400;
/// A renewal of a contract whose term is not recorded buys this long: 30 days.
pub const RENEW_TERM_S_UNKNOWN: u64 = 30 * 86_400;

/// Does `slot`'s contract end within the window: `renew_within_s`, else a quarter of the
/// contract's term?
pub fn due_for_renewal(slot: &Slot, now_s: i64, renew_within_s: Option<u64>) -> bool {
    let window = renew_within_s.unwrap_or(if slot.duration_s > 0 {
        slot.duration_s / 4
    } else {
        RENEW_WITHIN_S_UNKNOWN_TERM
    });
    slot.end_s.saturating_sub(now_s) <= i64::try_from(window).unwrap_or(i64::MAX)
}

/// `backup repair`: a slot whose agent does not answer gets a new agent (bought through the
/// market); a slot whose contract ends within the renewal window gets a new contract for
/// another term ([`due_for_renewal`]); with `grow_bytes`, every slot gets a new contract
/// with a block larger by its share of them (the repository's packed capacity grows by
/// about that much), moved like a renewal. Then every object is rebuilt from its shards (read
/// where they were before the renewals) and each missing or damaged shard, and every shard of
/// a renewed slot, is written. Last, the config naming the new contracts goes to every slot.
///
/// Alone, like prune: it moves slots and rewrites shards and the config that a running
/// backup writes into, so it takes the exclusive `repair` lock (refused while a backup or a
/// prune holds one, and removed on Ctrl-C).
pub async fn repair(
    repo: &mut Repo,
    renew_within_s: Option<u64>,
    grow_bytes: Option<u64>,
) -> Result<RepairReport, Error> {
    if grow_bytes == Some(0) {
        return Err(Error::Usage("--grow must be more than 0 bytes".into()));
    }
    let mut signals = crate::repo::Signals::catch();
    let lock = repo.lock("repair").await?;
    let result = crate::repo::until_signal(
        &mut signals,
        repair_locked(repo, renew_within_s, grow_bytes),
    )
    .await;
    repo.unlock_after(&lock, &result).await;
    result
}

async fn repair_locked(
    repo: &mut Repo,
    renew_within_s: Option<u64>,
    grow_bytes: Option<u64>,
) -> Result<RepairReport, Error> {
    // Growing: every slot's block by its share of the bytes added (a repository holds about
    // k x the block of packed data).
    let grow_per_slot = match grow_bytes {
        Some(0) => return Err(Error::Usage("--grow must be more than 0 bytes".into())),
        Some(g) => Some(g.div_ceil(repo.k() as u64)),
        None => None,
    };
    // Everything that can be done is done: a slot without a replacement does not stop the
    // others, nor the rebuilding of shards onto the slots that answer.
    let (mut replaced, mut unreplaced, mut dead) = (Vec::new(), Vec::new(), Vec::new());
    let mut down = Vec::new();
    for i in 0..repo.n() {
        let slot = repo.config.slots[i].clone();
        if repo.agent(i).contract(&slot.contract).await.is_err() {
            down.push(i);
        }
    }
    // More than m silent agents: replacing them would strand every earlier object.
    repo.refuse_losing_more_than_m(&down)?;
    for i in down {
        match repo.replace_slot(i).await {
            Ok(()) => replaced.push(i),
            Err(e) => {
                unreplaced.push(format!("{i}: {e}"));
                dead.push(i);
            }
        }
    }
    repo.sync_index().await?;
    let snapshots = repo.snapshots().await?;
    let objects = sharded_objects(repo, &snapshots).await?;
    // Shards are read from the contracts as they are now, and written to the renewed ones.
    let before = repo.reader();
    let now = node::now_s();
    let (mut renewed, mut moved) = (Vec::new(), Vec::new());
    for i in 0..repo.n() {
        let slot = &repo.config.slots[i];
        let grown = grow_per_slot.map(|g| slot.block_bytes.saturating_add(g));
        let due = grown.is_some() || due_for_renewal(slot, now, renew_within_s);
        if replaced.contains(&i) || dead.contains(&i) || !due {
            continue;
        }
        let term = match slot.duration_s {
            0 => RENEW_TERM_S_UNKNOWN,
            d => d,
        };
        // The same agent when it has room, else a spare: the shards are rebuilt onto it
        // below either way. A slot nobody renews does not stop the others.
        match repo.buy_slot(i, term, true, grown).await {
            Ok(bought) => {
                if bought.slot.agent != repo.config.slots[i].agent {
                    moved.push(i);
                }
                renewed.push((i, repo.adopt(i, bought)));
            }
            Err(e) => unreplaced.push(format!("{i}: not renewed: {e}")),
        }
    }
    let renewed_slots: Vec<usize> = renewed.iter().map(|(i, _)| *i).collect();
    let mut rewritten = 0;
    let mut lost = Vec::new();
    for o in &objects {
        let shards = before.fetch_shards(o).await;
        let (data, mut write) = match crate::repo::rebuild_verified(
            shards,
            repo.k(),
            repo.config.parity_shards,
            verifier(repo, o),
            true,
        ) {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                lost.push(format!("{o}: {e}"));
                continue;
            }
        };
        write.extend(renewed_slots.iter().copied());
        write.retain(|i| !dead.contains(i));
        write.sort_unstable();
        write.dedup();
        if !write.is_empty() {
            rewritten += repo.rewrite_shards(o, &data, &write).await?;
        }
    }
    // A renewed slot is switched to only when every object was written to it: otherwise the
    // objects that could not be copied would be on none of the new contracts. The new
    // contracts then lapse unused; the old ones keep the data until the next repair.
    let switched = lost.is_empty();
    if !renewed.is_empty() && switched {
        repo.publish(&renewed).await?;
    } else if !renewed.is_empty() {
        for (i, _) in &renewed {
            unreplaced.push(format!(
                "{i}: renewal not switched to, since {} objects could not be copied",
                lost.len()
            ));
        }
    }
    Ok(RepairReport {
        objects_checked: objects.len(),
        shards_rewritten: rewritten,
        slots_replaced: replaced,
        slots_renewed: if switched { renewed_slots } else { Vec::new() },
        slots_renewed_elsewhere: if switched { moved } else { Vec::new() },
        slots_unreplaced: unreplaced,
        objects_lost: lost,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub repository: String,
    pub snapshots: usize,
    pub files: u64,
    /// Bytes of the latest snapshot's files.
    pub latest_bytes: u64,
    pub chunks: usize,
    pub packs: usize,
    pub data_shards: usize,
    pub parity_shards: usize,
    pub agents: Vec<String>,
    /// Bytes of packs (deduplicated, compressed, sealed) the index names.
    pub packed_bytes: u64,
    /// What that occupies on the agents with parity (packs whose shard length is recorded).
    pub stored_bytes: u64,
    /// About how much packed data the contracts hold: k x the smallest slot's block.
    pub capacity_bytes: u64,
    /// When the first contract ends (RFC 3339): `repair` renews before then.
    pub first_contract_end: String,
    /// What the current contracts cost (their prices), in minor units.
    pub contracts_cost: u64,
    /// Paid so far to the current contracts and those they replaced (prices, and credit for
    /// writes and reads), in minor units, as the agents report it.
    pub spent: u64,
    /// Prepaid credit the current contracts still hold (negative: owed on a tab).
    pub credit_left: i64,
    /// Contracts whose agent did not answer and whose payment was never seen: what was paid to
    /// them is not in `spent` (a contract seen before counts with what it was paid then).
    pub contracts_unanswered: usize,
    /// The currency (code and decimals) the amounts are in; none when the issuer did not
    /// answer within [`clients::issuer::CURRENCY_WAIT_MS_MAX`] (amounts are then shown in minor
    /// units).
    pub currency: Option<protocol::ledger::Currency>,
}

/// What each contract was last seen to have been paid (minor units), kept in the
/// configuration directory, so `spent` does not shrink when an agent is down or reaped a
/// contract: what was paid stays paid.
const PAID_SEEN_FILE: &str = "paid_seen.json";

/// What the repository's contracts cost and what was paid to them: (cost of the current
/// ones, spent on all, credit left on the current ones, contracts that did not answer and
/// were never seen).
async fn spending(repo: &Repo) -> Result<(u64, u64, i64, usize), Error> {
    let seen_path = repo.dir.join(PAID_SEEN_FILE);
    let mut seen: HashMap<String, u64> = crate::repo::read_json(&seen_path).unwrap_or_default();
    let (mut cost, mut credit) = (0u64, 0i64);
    // Every contract asked at once: an agent that does not answer costs one timeout.
    let current = repo
        .config
        .slots
        .iter()
        .enumerate()
        .map(|(i, slot)| async move {
            (
                slot.contract.clone(),
                repo.agent(i).contract(&slot.contract).await,
            )
        });
    let retired = repo.config.retired.iter().map(|old| async move {
        let agent =
            clients::agent::AgentClient::new(repo.http.clone(), &old.endpoint, repo.buyer.clone());
        (old.contract.clone(), agent.contract(&old.contract).await)
    });
    let (current, retired) = futures_util::future::join(
        futures_util::future::join_all(current),
        futures_util::future::join_all(retired),
    )
    .await;
    let mut all = Vec::new();
    for (id, view) in current {
        if let Ok(v) = &view {
            cost = cost.saturating_add(v.contract_price);
            credit = credit.saturating_add(v.credit);
        }
        all.push((id, view.map(|v| v.paid)));
    }
    all.extend(retired.into_iter().map(|(id, v)| (id, v.map(|v| v.paid))));
    let (mut spent, mut unanswered) = (0u64, 0usize);
    for (id, paid) in all {
        let known = seen.get(&id).copied();
        match (paid, known) {
            (Ok(p), k) => {
                let p = p.max(k.unwrap_or(0));
                seen.insert(id, p);
                spent = spent.saturating_add(p);
            }
            (Err(_), Some(k)) => spent = spent.saturating_add(k),
            (Err(_), None) => unanswered += 1,
        }
    }
    // Best effort: a cache of figures the agents gave; losing it only makes stats forget.
    if let Err(e) = crate::repo::write_json(&seen_path, &seen) {
        eprintln!("warning: cannot keep what the contracts were paid: {e}");
    }
    Ok((cost, spent, credit, unanswered))
}

/// `backup stats`.
pub async fn stats(repo: &mut Repo) -> Result<Stats, Error> {
    repo.sync_index().await?;
    let snapshots = repo.snapshots().await?;
    let packs: HashSet<&String> = repo.index.chunks.values().map(|l| &l.pack).collect();
    let packed_bytes = repo.index.chunks.values().map(|l| l.length).sum();
    let stored_bytes = packs
        .iter()
        .filter_map(|p| repo.index.packs.get(*p))
        .map(|r| r.shard_len.saturating_mul(r.roots.len() as u64))
        .sum();
    let block_min = repo
        .config
        .slots
        .iter()
        .map(|s| s.block_bytes)
        .min()
        .unwrap_or(0);
    let end_min = repo.config.slots.iter().map(|s| s.end_s).min().unwrap_or(0);
    let (contracts_cost, spent, credit_left, contracts_unanswered) = spending(repo).await?;
    // For showing amounts only: stats does not fail for want of it.
    let currency = clients::issuer::currency_at(&repo.config.issuer_url).await;
    Ok(Stats {
        contracts_cost,
        spent,
        credit_left,
        contracts_unanswered,
        currency,
        packed_bytes,
        stored_bytes,
        capacity_bytes: block_min.saturating_mul(repo.k() as u64),
        first_contract_end: protocol::market::format_rfc3339(end_min),
        repository: repo.config.repository.clone(),
        snapshots: snapshots.len(),
        files: snapshots.last().map_or(0, |s| s.files),
        latest_bytes: snapshots.last().map_or(0, |s| s.bytes),
        chunks: repo.index.chunks.len(),
        packs: packs.len(),
        data_shards: repo.k(),
        parity_shards: repo.config.parity_shards,
        agents: repo
            .config
            .slots
            .iter()
            .map(|s| s.endpoint.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, host: &str, path: &str, unix_s: i64) -> Snapshot {
        Snapshot {
            id: id.into(),
            time: String::new(),
            unix_s,
            unix_ms: 0,
            hostname: host.into(),
            paths: vec![path.into()],
            nodes: vec![],
            files: 0,
            bytes: 0,
            data_added: 0,
        }
    }

    /// Each host and set of paths is kept by itself, as restic does.
    #[test]
    fn retention_applies_per_host_and_paths() {
        let all = vec![
            snap("docs-old", "h", "/home/me/Documents", 100),
            snap("docs-new", "h", "/home/me/Documents", 200),
            snap("photos-old", "h", "/home/me/Photos", 300),
            snap("photos-new", "h", "/home/me/Photos", 400),
            snap("other-host", "h2", "/home/me/Photos", 50),
        ];
        let last = Keep {
            last: 1,
            ..Keep::default()
        };
        let mut ids: Vec<String> = kept(&all, last).into_iter().collect();
        ids.sort();
        assert_eq!(ids, vec!["docs-new", "other-host", "photos-new"]);
        let daily = Keep {
            daily: 1,
            ..Keep::default()
        };
        assert_eq!(kept(&all, daily).len(), 3, "one per group (all in one day)");
    }
}

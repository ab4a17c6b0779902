//! The `backup` binary's commands, run from parsed arguments: a module of `main.rs` (the
//! CLI), not of the library. `main.rs` holds the arguments and what the commands share
//! (configuration directory, password, wallet, opening a repository, printing).

use super::*;

pub(super) async fn run(cli: Cli) -> Result<(), Error> {
    let dir = config_dir(&cli.config_dir);
    if cli.key_file.is_some() && matches!(cli.command, Cmd::Init { .. }) {
        return Err(Error::Usage(
            "--key-file opens an existing repository; `init` makes a new key (export it \
             afterwards with `backup key export`)"
                .into(),
        ));
    }
    let auth = Auth {
        password_file: cli.password_file.clone(),
        key_file: cli.command.key_file().or(cli.key_file.as_ref()).cloned(),
    };
    match cli.command {
        Cmd::Init {
            market,
            wallet,
            data_shards,
            parity_shards,
            slot_bytes,
            duration_s,
            max_failure_probability,
            currency,
            bank,
            bank_token,
            out: JsonArg { json },
            ..
        } => {
            let mut buyer = Wallet::load(&wallet)?;
            let mut currency = currency;
            let link = bank
                .zip(bank_token)
                .map(|(url, token)| backup::repo::BankLink {
                    url,
                    token: token.trim().to_owned(),
                });
            if let Some(link) = &link {
                buyer = buyer.with_bank(link.clone())?;
                currency = Some(bank_currency(link, currency).await?);
            }
            let pw = new_password(&cli.password_file)?;
            let options = InitOptions {
                market,
                data_shards,
                parity_shards,
                slot_bytes,
                duration_s,
                max_failure_probability,
                currency,
            };
            let s = commands::init(&dir, &options, &pw, &buyer, http()?).await?;
            remember_wallet(&dir, &wallet)?;
            if let Some(link) = &link {
                remember_bank(&dir, link)?;
            }
            print(json, &s, || {
                let money = |amount: u64| s.currency.show(amount);
                out!("{}", s.repository);
                out!("agents chosen (contract price + write credit paid ahead):");
                for (i, slot) in s.slots.iter().enumerate() {
                    let how = if slot.adopted {
                        " (bought by an earlier init that failed, used now)"
                    } else {
                        ""
                    };
                    out!(
                        "  slot {i}: {}  {} + {}{how}",
                        slot.endpoint,
                        money(slot.price),
                        money(slot.credit)
                    );
                }
                out!("paid {} in all", money(s.paid));
            })
        }
        Cmd::Create {
            paths,
            exclude,
            out: JsonArg { json },
            ..
        } => {
            let mut repo = open(&dir, &auth).await?;
            warn_renewal(&repo);
            let s = commands::create(&mut repo, &paths, &exclude).await?;
            repo.resend_records().await;
            print(json, &s, || {
                out!(
                    "snapshot {} saved: {} files, {} dirs, {} symlinks, {:.1} MiB read, {:.1} MiB added ({} new chunks, {} known), {:.1} s",
                    s.snapshot,
                    s.files,
                    s.dirs,
                    s.symlinks,
                    s.bytes as f64 / 1048576.0,
                    s.data_added as f64 / 1048576.0,
                    s.chunks_new,
                    s.chunks_known,
                    s.seconds
                )
            })?;
            if !s.moved_slots.is_empty() {
                eprintln!(
                    "warning: the agents of slots {:?} did not answer: those slots moved to spare \
                     agents (their old contracts lapse); run `backup repair` to rebuild their \
                     shards of earlier backups",
                    s.moved_slots
                );
            }
            if !s.unwritten_slots.is_empty() {
                eprintln!(
                    "warning: the agents of slots {:?} did not answer: their shards of this backup \
                     are missing (it survives one more lost agent meanwhile); run `backup repair`",
                    s.unwritten_slots
                );
            }
            if s.unreadable.is_empty() {
                return Ok(());
            }
            const SHOWN_MAX: usize = 20;
            for u in s.unreadable.iter().take(SHOWN_MAX) {
                eprintln!("warning: left out: {u}");
            }
            if s.unreadable.len() > SHOWN_MAX {
                eprintln!("warning: and {} more", s.unreadable.len() - SHOWN_MAX);
            }
            Err(Error::Incomplete(format!(
                "snapshot {} saved without {} paths that could not be read",
                s.snapshot,
                s.unreadable.len()
            )))
        }
        Cmd::Snapshots {
            at,
            out: JsonArg { json },
            ..
        } => {
            let repo = open_or_recover(&dir, &auth, at).await?;
            let all = repo.snapshots().await?;
            let brief: Vec<_> = all
                .iter()
                .map(|s| serde_json::json!({"id": s.id, "time": s.time, "hostname": s.hostname, "paths": s.paths, "files": s.files, "bytes": s.bytes, "data_added": s.data_added}))
                .collect();
            print(json, &brief, || {
                out!(
                    "{:<16}  {:<20}  {:<12}  {:>8}  {:>10}  paths",
                    "id",
                    "time",
                    "host",
                    "files",
                    "MiB"
                );
                for s in &all {
                    out!(
                        "{:<16}  {:<20}  {:<12}  {:>8}  {:>10.1}  {}",
                        s.id,
                        s.time,
                        s.hostname,
                        s.files,
                        s.bytes as f64 / 1048576.0,
                        s.paths.join(" ")
                    );
                }
            })
        }
        Cmd::Ls {
            snapshot,
            at,
            out: JsonArg { json },
            ..
        } => {
            let repo = open_or_recover(&dir, &auth, at).await?;
            let s = commands::find_snapshot(&repo, &snapshot).await?;
            let nodes: Vec<_> = s
                .nodes
                .iter()
                .map(|n| serde_json::json!({"path": n.path, "type": n.kind, "mode": format!("{:o}", n.mode), "size": n.size, "mtime_ns": n.mtime_ns.to_string(), "target": n.target}))
                .collect();
            print(json, &nodes, || {
                for n in &s.nodes {
                    let kind = match n.kind {
                        backup::tree::Kind::File => '-',
                        backup::tree::Kind::Dir => 'd',
                        backup::tree::Kind::Symlink => 'l',
                    };
                    match &n.target {
                        Some(t) => {
                            out!("{kind} {:04o} {:>12} {} -> {t}", n.mode, n.size, n.path)
                        }
                        None => out!("{kind} {:04o} {:>12} {}", n.mode, n.size, n.path),
                    }
                }
            })
        }
        Cmd::Check {
            read_data,
            out: JsonArg { json },
            ..
        } => {
            let mut repo = open(&dir, &auth).await?;
            warn_renewal(&repo);
            let r = backup::maintain::check(&mut repo, read_data).await?;
            print(json, &r, || {
                out!(
                    "{} snapshots, {} packs, {} audits ({} failed), {} shards read: {} problems",
                    r.snapshots,
                    r.packs,
                    r.audits,
                    r.audits_failed,
                    r.shards_read,
                    r.problems.len()
                );
                for p in &r.problems {
                    out!("  {} slots {:?}: {}", p.object, p.slots, p.what);
                }
                for o in &r.half_written {
                    out!("  left over, not a problem: {o} (written half way; `backup prune` deletes it)");
                }
            })?;
            if !r.problems.is_empty() {
                return Err(Error::CheckFailed(format!(
                    "{} problems found; `backup repair` rebuilds what the surviving shards allow",
                    r.problems.len()
                )));
            }
            Ok(())
        }
        Cmd::Repair {
            renew_within_days,
            grow,
            out: JsonArg { json },
            ..
        } => {
            let mut repo = open(&dir, &auth).await?;
            let within_s = renew_within_days.map(|d| d.saturating_mul(86_400));
            let r = backup::maintain::repair(&mut repo, within_s, grow).await?;
            print(json, &r, || {
                out!(
                    "{} objects checked, {} shards rewritten, slots replaced: {:?}, renewed: {:?}",
                    r.objects_checked,
                    r.shards_rewritten,
                    r.slots_replaced,
                    r.slots_renewed
                );
                if !r.slots_renewed_elsewhere.is_empty() {
                    out!(
                        "  renewed on another agent (their own could not renew): slots {:?}",
                        r.slots_renewed_elsewhere
                    );
                }
                for s in &r.slots_unreplaced {
                    out!("  not replaced: slot {s}");
                }
                for o in &r.objects_lost {
                    out!("  not rebuilt: {o}");
                }
            })?;
            if !r.objects_lost.is_empty() {
                return Err(Error::CheckFailed(format!(
                    "{} objects cannot be rebuilt from the shards that survive",
                    r.objects_lost.len()
                )));
            }
            if !r.slots_unreplaced.is_empty() {
                return Err(Error::Io(format!(
                    "repair did what it could; {} slots have no replacement agent yet: run it \
                     again once another agent joins the market",
                    r.slots_unreplaced.len()
                )));
            }
            Ok(())
        }
        Cmd::Forget {
            snapshots,
            keep_last,
            keep_daily,
            keep_weekly,
            keep_monthly,
            prune,
            out: JsonArg { json },
            ..
        } => {
            let keep = backup::maintain::Keep {
                last: keep_last,
                daily: keep_daily,
                weekly: keep_weekly,
                monthly: keep_monthly,
            };
            let rules = keep.last + keep.daily + keep.weekly + keep.monthly > 0;
            if !rules && snapshots.is_empty() {
                return Err(Error::Usage(
                    "which snapshots? give their ids (`backup snapshots` lists them), or rules \
                     for those to keep: --keep-last N, --keep-daily N, --keep-weekly N, \
                     --keep-monthly N"
                        .into(),
                ));
            }
            if rules && !snapshots.is_empty() {
                return Err(Error::Usage(
                    "give snapshot ids or --keep-* rules, not both".into(),
                ));
            }
            let mut repo = open(&dir, &auth).await?;
            let f = if rules {
                backup::maintain::forget(&mut repo, keep).await?
            } else {
                backup::maintain::forget_ids(&mut repo, &snapshots).await?
            };
            let p = if prune {
                Some(backup::maintain::prune(&mut repo).await?)
            } else {
                None
            };
            print(json, &serde_json::json!({"forget": f, "prune": p}), || {
                out!(
                    "kept {} snapshots, removed {}",
                    f.kept.len(),
                    f.removed.len()
                );
                if let Some(p) = &p {
                    out!(
                        "pruned {} packs ({} bytes freed), {} kept",
                        p.packs_deleted,
                        p.bytes_freed,
                        p.packs_kept
                    );
                }
            })
        }
        Cmd::Prune {
            out: JsonArg { json },
            ..
        } => {
            let mut repo = open(&dir, &auth).await?;
            let p = backup::maintain::prune(&mut repo).await?;
            print(json, &p, || {
                out!(
                    "pruned {} packs ({} bytes freed), {} kept",
                    p.packs_deleted,
                    p.bytes_freed,
                    p.packs_kept
                )
            })
        }
        Cmd::Unlock {
            out: JsonArg { json },
            ..
        } => {
            let repo = open(&dir, &auth).await?;
            let removed = backup::maintain::unlock(&repo).await?;
            print(json, &serde_json::json!({ "removed": removed }), || {
                out!("{} locks removed", removed.len())
            })
        }
        Cmd::Records {
            out: JsonArg { json },
        } => {
            let wallet = wallet_key(&dir, &remembered_wallet(&dir)?)?;
            let r = backup::records::show(&dir, &wallet).await?;
            print(json, &r, || {
                for line in clients::records::shown_lines(&r) {
                    out!("{line}");
                }
            })
        }
        Cmd::Settle {
            out: JsonArg { json },
            ..
        } => {
            let repo = open(&dir, &auth).await?;
            let s = backup::maintain::settle(&repo).await?;
            print(json, &s, || {
                if s.tabs.is_empty() {
                    out!("no tab owed at the repository's agents");
                }
                for t in &s.tabs {
                    out!(
                        "paid {} to {} (tab {}); it now shows {} owed{}",
                        t.paid,
                        t.endpoint,
                        t.line,
                        t.owed_after,
                        if t.countersigned {
                            ", countersigned"
                        } else {
                            ""
                        }
                    );
                }
                for e in &s.unreachable {
                    out!("could not ask {e}");
                }
            })
        }
        Cmd::Stats {
            out: JsonArg { json },
            ..
        } => {
            let mut repo = open(&dir, &auth).await?;
            let s = backup::maintain::stats(&mut repo).await?;
            print(json, &s, || {
                out!("repository {}: {} snapshots, latest {} files ({:.1} MiB), {} chunks in {} packs, {}+{} shards on {}",
                    s.repository, s.snapshots, s.files, s.latest_bytes as f64 / 1048576.0, s.chunks, s.packs, s.data_shards, s.parity_shards, s.agents.join(" "));
                out!("packed {:.1} MiB of about {:.1} MiB the contracts hold, {:.1} MiB on the agents with parity; the first contract ends {}",
                    s.packed_bytes as f64 / 1048576.0, s.capacity_bytes as f64 / 1048576.0, s.stored_bytes as f64 / 1048576.0, s.first_contract_end);
                let money = |amount: i128| match &s.currency {
                    Some(c) => c.show(amount),
                    None => format!("{amount} (minor units)"),
                };
                out!(
                    "the contracts cost {}; spent so far {} (their prices and paid reads and writes, retired contracts included), {} of it still credit",
                    money(s.contracts_cost.into()),
                    money(s.spent.into()),
                    money(s.credit_left.into())
                );
                if s.contracts_unanswered > 0 {
                    out!(
                        "  {} contracts' agents did not answer: what was paid to them is not counted",
                        s.contracts_unanswered
                    );
                }
            })
        }
        Cmd::Key {
            command:
                KeyCmd::Export {
                    out,
                    json: JsonArg { json },
                    ..
                },
        } => {
            // Opening proves the password, so an export never hands out a key nobody can use.
            let repo = open(&dir, &auth).await?;
            let exported = ExportedKey::new(&repo.keys, &repo.config.repository);
            let text =
                serde_json::to_vec_pretty(&exported).map_err(|e| Error::Io(e.to_string()))?;
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&out)
                .and_then(|mut f| f.write_all(&text))
                .map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
            let written = serde_json::json!({
                "repository": repo.config.repository,
                "key_file": out.to_string_lossy(),
            });
            print(json, &written, || {
                out!(
                    "key file of {} written to {}",
                    repo.config.repository,
                    out.display()
                )
            })
        }
        Cmd::Restore {
            snapshot,
            target,
            include,
            at,
            out: JsonArg { json },
            ..
        } => {
            let mut r = open_or_recover(&dir, &auth, at).await?;
            let s = commands::restore(&mut r, &snapshot, &target, &include).await?;
            print(json, &s, || {
                out!(
                    "restored snapshot {}: {} files, {} dirs, {} symlinks, {:.1} MiB, {} packs read, {} damaged or missing shards worked around, {:.1} s",
                    s.snapshot, s.files, s.dirs, s.symlinks, s.bytes as f64 / 1048576.0, s.packs_read, s.shards_bad, s.seconds
                )
            })
        }
    }
}

/// The currency a bank token pays in (its issuer's id), which must be `--currency` when that
/// is given too.
async fn bank_currency(
    link: &backup::repo::BankLink,
    wanted: Option<String>,
) -> Result<String, Error> {
    let access = clients::bank::BankAccess::new(http()?, &link.url, &link.token)
        .map_err(|e| Error::Usage(format!("--bank: {e}")))?;
    let account = access
        .account()
        .await
        .map_err(|e| Error::Usage(format!("the bank at {} refused the token: {e}", link.url)))?;
    match wanted {
        Some(w) if w != account.issuer => Err(Error::Usage(format!(
            "--currency {w} is not the token's currency ({}, issuer {})",
            account.issuer_url, account.issuer
        ))),
        _ => Ok(account.issuer),
    }
}

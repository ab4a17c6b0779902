//! The backup CLI end to end on a 6-agent devnet (real binaries, loopback): a tree with many
//! small files, a large file, empty files, unicode names, symlinks, a hard link and restrictive
//! permissions is backed up; a second backup after a small change uploads little; two agents are killed;
//! a fresh config directory restores it with only the market URL, the repository id, the
//! password and the wallet, identical in contents, links, modes and mtimes (symlinks' own
//! mtimes too). A wrong password fails fast and writes nothing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use devnet::Which;

mod util;
use util::*;

fn make_tree(root: &Path) {
    let t = |p: &str| root.join(p);
    std::fs::create_dir_all(t("docs/notes")).expect("dirs");
    for i in 0..150 {
        std::fs::write(
            t(&format!("docs/notes/note-{i:03}.txt")),
            format!("note {i}\n").repeat(i % 40 + 1),
        )
        .expect("small file");
    }
    std::fs::write(t("big.bin"), noise(3 << 20, 7)).expect("large file");
    std::fs::write(t("empty"), b"").expect("empty");
    std::fs::write(t("docs/empty-too"), b"").expect("empty");
    std::fs::write(t("docs/Überschrift – 日本語 🎉.txt"), "unicode name\n").expect("unicode");
    std::os::unix::fs::symlink("big.bin", t("link-to-big")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", t("docs/dangling")).expect("symlink");
    // A link older than its creation: a restore that left links at "now" would differ.
    let old_link = filetime::FileTime::from_unix_time(1_100_000_000, 0);
    filetime::set_symlink_file_times(t("docs/dangling"), old_link, old_link).expect("lutimes");
    std::fs::create_dir(t("private")).expect("dir");
    std::fs::write(t("private/secret"), "s3cret\n").expect("secret");
    std::fs::set_permissions(t("private/secret"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::set_permissions(t("private"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::write(t("script.sh"), "#!/bin/sh\necho hi\n").expect("script");
    std::fs::set_permissions(t("script.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    // Two names of one file: read once, restored as a hard link.
    std::fs::hard_link(t("script.sh"), t("docs/script-link.sh")).expect("hard link");
    let old = std::fs::File::open(t("docs/notes/note-000.txt")).expect("open");
    old.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .expect("mtime");
}

#[test]
fn back_up_lose_two_agents_and_restore_on_a_fresh_machine() {
    // Six agents hold the repository; two more can replace lost ones.
    let (tmp, mut net, cli) = network(8);
    let src = tmp.path().join("data");
    make_tree(&src);
    let home = tmp.path().join("config-a");

    let init = cli.init(&home, &["--slot-bytes", "67108864"]);
    let repository = init["repository"]
        .as_str()
        .expect("repository id")
        .to_owned();

    let src_arg = src.to_string_lossy().into_owned();
    let first = cli.ok(&home, &["create", &src_arg, "--json"]);
    assert!(
        first["data_added"].as_u64().expect("data_added") > 3 << 20,
        "{first}"
    );
    assert_eq!(first["files"], 157);
    assert_eq!(first["symlinks"], 2, "both links recorded: {first}");
    every_contract_is_recorded_by_both_sides(&cli, &home);

    // A small change: one note edited. Only its chunk (and the metadata) is new.
    std::fs::write(src.join("docs/notes/note-007.txt"), "changed\n").expect("edit");
    let second = cli.ok(&home, &["create", &src_arg, "--json"]);
    let added = second["data_added"].as_u64().expect("data_added");
    assert!(added < 64 << 10, "a small change uploads little: {second}");
    assert_eq!(second["chunks_new"], 1, "{second}");

    // A wrong password fails fast, with a clear message and exit code 3, and writes nothing.
    let index_before = std::fs::read(home.join("index.json")).expect("index");
    let (code, _, err) = cli.run(&home, "wrong password", &["create", &src_arg, "--json"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("wrong password"), "{err}");
    assert_eq!(
        std::fs::read(home.join("index.json")).expect("index"),
        index_before
    );
    let snaps = cli.ok(&home, &["snapshots", "--json"]);
    assert_eq!(
        snaps.as_array().map(Vec::len),
        Some(2),
        "no snapshot from the failed run"
    );

    // Two agents holding shards die.
    let (dead_a, dead_b) = (slot_agent(&net, &home, 1), slot_agent(&net, &home, 4));
    net.kill(Which::Agent(dead_a)).expect("kill");
    net.kill(Which::Agent(dead_b)).expect("kill");

    // A fresh machine: only the market, the repository id, the password and the wallet.
    // First a look at what is there, as a restic user does before restoring.
    let look = tmp.path().join("config-look");
    let wallet_arg = cli.wallet.to_string_lossy().into_owned();
    let at = [
        "--repo",
        repository.as_str(),
        "--market",
        cli.market.as_str(),
        "--wallet",
        wallet_arg.as_str(),
    ];
    let listed = cli.ok(&look, &[&["snapshots", "--json"][..], &at[..]].concat());
    let here = cli.ok(&home, &["snapshots", "--json"]);
    assert_eq!(listed, here, "the same snapshots as on the first machine");
    let files = cli.ok(
        &tempfile::tempdir().expect("dir").path().join("c"),
        &[&["ls", "latest", "--json"][..], &at[..]].concat(),
    );
    assert!(files.as_array().is_some_and(|f| !f.is_empty()), "{files}");
    let fresh = tmp.path().join("config-b");
    let target = tmp.path().join("restored");
    let args = cli.recover_args(&target, &repository);
    let restored = cli.ok(&fresh, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        restored["shards_bad"].as_u64().expect("bad") > 0,
        "two agents were down: {restored}"
    );
    let name = src
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    same_tree(&target.join(&name), &src);
    let ino = |p: &str| {
        std::fs::metadata(target.join(&name).join(p))
            .expect("restored")
            .ino()
    };
    assert_eq!(
        ino("script.sh"),
        ino("docs/script-link.sh"),
        "a hard link again"
    );

    // check sees the dead agents; repair moves their shards to new agents; then all is well.
    let (code, out, _) = cli.run(&fresh, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 4, "check fails while agents are down: {out}");
    let repaired = cli.ok(&fresh, &["repair", "--json"]);
    assert_eq!(
        repaired["slots_replaced"],
        serde_json::json!([1, 4]),
        "{repaired}"
    );
    assert!(repaired["shards_rewritten"].as_u64().expect("n") > 0);
    assert_eq!(
        repaired["slots_renewed"],
        serde_json::json!([]),
        "30-day contracts are not due: {repaired}"
    );
    let checked = cli.ok(&fresh, &["check", "--read-data", "--json"]);
    market_audits_pass(&cli, &fresh);
    // Every agent audited (the roots came back with the index, on this fresh machine), the
    // replacements included, and every proof held.
    assert!(
        checked["audits"].as_u64().expect("audits") >= 6,
        "{checked}"
    );
    assert_eq!(checked["audits_failed"], 0, "{checked}");

    // A shard altered on an agent's disk: check --read-data reports it, restore is still
    // exact, repair heals it.
    let victim = slot_agent(&net, &home, 2);
    let objects = net.agents[victim].data.join("objects");
    let shard = walk_files(&objects)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("p-"))
        })
        .max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .expect("a pack shard on disk");
    let mut bytes = std::fs::read(&shard).expect("read shard");
    // Every byte, so whichever leaf an audit asks for is wrong.
    bytes.iter_mut().for_each(|b| *b ^= 0xff);
    std::fs::write(&shard, bytes).expect("alter shard");
    net.restart(Which::Agent(victim))
        .expect("restart: no cached copy");
    // The agent still lists the shard, so only the audit (a Merkle proof of a random leaf
    // against the root recorded at upload) can tell, without reading any data.
    let (code, out, _) = cli.run(&fresh, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 4, "the audit fails: {out}");
    assert!(out.contains("audit failed"), "{out}");
    let (code, out, _) = cli.run(&fresh, PASSWORD, &["check", "--read-data", "--json"]);
    assert_eq!(code, 4, "the altered shard is reported: {out}");
    assert!(out.contains("damaged"), "{out}");
    let again = tmp.path().join("restored-again");
    cli.ok(
        &fresh,
        &[
            "restore",
            "latest",
            "--target",
            &again.to_string_lossy(),
            "--json",
        ],
    );
    same_tree(&again.join(&name), &src);
    cli.ok(&fresh, &["repair", "--json"]);
    cli.ok(&fresh, &["check", "--read-data", "--json"]);

    // forget + prune: the older snapshots' unique data goes; the agents' used bytes drop.
    std::fs::remove_file(src.join("big.bin")).expect("rm");
    cli.ok(&fresh, &["create", &src_arg, "--json"]);
    let before = used_bytes(&net);
    let f = cli.ok(&fresh, &["forget", "--keep-last", "1", "--prune", "--json"]);
    assert_eq!(
        f["forget"]["removed"].as_array().map(Vec::len),
        Some(2),
        "{f}"
    );
    let p = &f["prune"];
    assert!(
        p["packs_deleted"].as_u64().expect("n") + p["packs_repacked"].as_u64().expect("n") >= 1,
        "{f}"
    );
    let after = used_bytes(&net);
    assert!(
        after + (2 << 20) < before,
        "used bytes drop: {before} -> {after}"
    );
    // What remains restores exactly (repacked blobs included).
    let last = tmp.path().join("restored-after-prune");
    cli.ok(
        &fresh,
        &[
            "restore",
            "latest",
            "--target",
            &last.to_string_lossy(),
            "--json",
        ],
    );
    same_tree(&last.join(&name), &src);
    drop(net);
}

#[test]
fn a_backup_killed_half_way_resumes_without_uploading_again() {
    let (tmp, _net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "134217728"]);
    // 48 MiB that does not compress: three packs or more.
    let src = tmp.path().join("big");
    std::fs::create_dir(&src).expect("dir");
    for i in 0..4 {
        std::fs::write(src.join(format!("part-{i}")), noise(12 << 20, 100 + i)).expect("write");
    }
    kill_create_after_first_pack(&home, &src);
    let resumed = cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    let known = resumed["chunks_known"].as_u64().expect("known");
    let added = resumed["data_added"].as_u64().expect("added");
    assert!(
        known >= 1,
        "chunks stored before the kill are not uploaded again: {resumed}"
    );
    assert!(
        added < 40 << 20,
        "the resumed backup uploads less than everything: {resumed}"
    );
    // And the snapshot is whole.
    cli.restore_exact(&home, &tmp.path().join("restored"), "big", &src);

    // Killed again, then pruned: prune deletes the packs that backup stored (no snapshot uses
    // them), so the next backup must not count them as stored.
    let more = tmp.path().join("more");
    std::fs::create_dir(&more).expect("dir");
    // Distinct seeds (`noise` sets the low bit), so no file repeats another.
    for i in 0..3 {
        std::fs::write(more.join(format!("part-{i}")), noise(12 << 20, 300 + 2 * i))
            .expect("write");
    }
    kill_create_after_first_pack(&home, &more);
    // The killed backup left its lock: prune refuses until `unlock` (as restic's).
    let (code, _, err) = cli.run(&home, PASSWORD, &["prune"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("locked by a create"), "{err}");
    // So does repair: it moves slots and rewrites the config a backup writes to.
    let (code, _, err) = cli.run(&home, PASSWORD, &["repair"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("locked by a create"), "{err}");
    let unlocked = cli.ok(&home, &["unlock", "--json"]);
    // This one's, and the first killed backup's.
    assert_eq!(
        unlocked["removed"].as_array().map(Vec::len),
        Some(2),
        "{unlocked}"
    );
    let pruned = cli.ok(&home, &["prune", "--json"]);
    assert!(
        pruned["packs_deleted"].as_u64().expect("deleted") >= 1,
        "the interrupted backup's packs go: {pruned}"
    );
    let again = cli.ok(&home, &["create", &more.to_string_lossy(), "--json"]);
    assert_eq!(
        again["chunks_known"], 0,
        "nothing counts as stored: {again}"
    );
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored-more"), "more", &more);

    // A prune killed at any point loses nothing a kept snapshot needs: the newer snapshot of
    // `more` leaves part-1 out, so forgetting the older one leaves packs to delete and to
    // repack; prune is killed early, later, later still, then run to the end.
    cli.ok(
        &home,
        &[
            "create",
            &more.to_string_lossy(),
            "--exclude",
            "part-1",
            "--json",
        ],
    );
    cli.ok(&home, &["forget", "--keep-last", "1", "--json"]);
    std::fs::remove_file(more.join("part-1")).expect("rm");
    for kill_after_ms in [40, 150, 400] {
        cli.ok(&home, &["unlock", "--json"]);
        let mut prune = Command::new(env!("CARGO_BIN_EXE_backup"))
            .arg("--config-dir")
            .arg(&home)
            .args(["prune", "--json"])
            .env("BACKUP_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn prune");
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        let _ = prune.kill();
        prune.wait().expect("reap");
        cli.ok(&home, &["check", "--read-data", "--json"]);
    }
    cli.ok(&home, &["unlock", "--json"]);
    cli.ok(&home, &["prune", "--json"]);
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(
        &home,
        &tmp.path().join("restored-after-prunes"),
        "more",
        &more,
    );
}

#[test]
fn repair_renews_contracts_that_end_soon_and_an_exported_key_restores_without_the_password() {
    let (tmp, _net, cli) = network(6);
    let home = tmp.path().join("config");
    // Ten-minute contracts: the default window (a quarter of the term) is 150 s away.
    cli.init(&home, &["--slot-bytes", "67108864", "--duration-s", "600"]);
    let src = tmp.path().join("data");
    make_tree(&src);
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    let slots = |dir: &Path| -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("repo.json")).expect("repo.json"))
                .expect("json");
        v["slots"].as_array().expect("slots").clone()
    };
    let before = slots(&home);

    let quiet = cli.ok(&home, &["repair", "--json"]);
    assert_eq!(quiet["slots_renewed"], serde_json::json!([]), "{quiet}");
    assert_eq!(quiet["shards_rewritten"], 0, "{quiet}");

    let key = tmp.path().join("exported.key");
    let (code, out, err) = cli.run(
        &home,
        PASSWORD,
        &["key", "export", "--out", &key.to_string_lossy()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mode = std::fs::metadata(&key).expect("key file").mode() & 0o777;
    assert_eq!(mode, 0o600, "the exported key is private");

    // Within a day of their end: every contract is renewed, with the same agents. Contract
    // times are whole seconds: let one pass since the first contracts, so a renewal that
    // starts now ends later even when everything so far took less than a second.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let renewed = cli.ok(&home, &["repair", "--renew-within-days", "1", "--json"]);
    assert_eq!(
        renewed["slots_renewed"],
        serde_json::json!([0, 1, 2, 3, 4, 5]),
        "{renewed}"
    );
    let objects = renewed["objects_checked"].as_u64().expect("objects");
    assert!(objects >= 3, "a pack, an index, a snapshot: {renewed}");
    assert_eq!(
        renewed["shards_rewritten"].as_u64(),
        Some(objects * 6),
        "every shard moved to the new contracts: {renewed}"
    );
    let after = slots(&home);
    for (old, new) in before.iter().zip(after.iter()) {
        assert_ne!(old["contract"], new["contract"], "a new contract");
        assert_eq!(old["agent"], new["agent"], "the same agent, still offered");
        assert!(
            new["end_s"].as_i64() > old["end_s"].as_i64(),
            "ends later: {old} {new}"
        );
    }
    cli.ok(&home, &["check", "--read-data", "--json"]);

    // A fresh machine with the exported key instead of the password (a wrong one is set, and
    // not used): the renewed contracts' config is found, and the restore is exact.
    let fresh = tmp.path().join("config-fresh");
    let target = tmp.path().join("restored");
    let repository = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(home.join("repo.json")).expect("repo.json"),
    )
    .expect("json")["repository"]
        .as_str()
        .expect("id")
        .to_owned();
    let restore_args = |key: &Path| -> Vec<String> {
        let mut args = vec!["--key-file".to_owned(), key.to_string_lossy().into_owned()];
        args.extend(cli.recover_args(&target, &repository));
        args
    };
    // A key file of another repository is refused (exit 3) and nothing is restored.
    let mut other: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key).expect("key")).expect("json");
    other["repository"] = serde_json::json!("another-repository");
    let other_key = tmp.path().join("other.key");
    std::fs::write(&other_key, other.to_string()).expect("write");
    let args = restore_args(&other_key);
    let (code, _, err) = cli.run(
        &tmp.path().join("config-other"),
        "not the password",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("key file"), "{err}");
    assert!(!target.exists(), "nothing restored");

    let args = restore_args(&key);
    let (code, out, err) = cli.run(
        &fresh,
        "not the password",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, 0, "{err}\n{out}");
    same_tree(&target.join("data"), &src);
    let recovered = slots(&fresh);
    for (a, b) in recovered.iter().zip(after.iter()) {
        assert_eq!(a["contract"], b["contract"], "the renewed config");
    }
}

/// What a restic user does wrong, or meets, on an ordinary day: two roots with one name,
/// exclude patterns, a file they cannot read, an include that matches nothing, a wrong
/// exported key, and one agent switched off during a backup.
#[test]
fn everyday_mistakes_and_an_agent_off_during_a_backup() {
    // Six agents hold the repository; one more can replace a lost one.
    let (tmp, mut net, cli) = network(7);
    let home = tmp.path().join("config");
    let wallet = cli.wallet.to_string_lossy().into_owned();
    let init = |extra: &[&str]| {
        let mut args = vec!["init", "--market", &cli.market, "--wallet", &wallet];
        args.extend_from_slice(extra);
        cli.run(&tmp.path().join("config-refused"), PASSWORD, &args)
    };
    // Nonsense is refused before the market is asked (exit 2); a block no agent offers gets
    // a message that says what to change (the devnet's agents cap blocks at 512 MiB).
    let (code, _, err) = init(&["--slot-bytes", "0"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = init(&["--max-failure-probability", "2"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = init(&["--slot-bytes", "10737418240"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("try a smaller --slot-bytes"), "{err}");
    assert!(!tmp.path().join("config-refused/repo.json").exists());
    cli.init(&home, &["--slot-bytes", "67108864"]);

    // Two roots that would both be `docs` in the snapshot: refused, exit 2, nothing stored.
    for side in ["a", "b"] {
        std::fs::create_dir_all(tmp.path().join(side).join("docs")).expect("dir");
    }
    let (a, b) = (tmp.path().join("a/docs"), tmp.path().join("b/docs"));
    let (code, _, err) = cli.run(
        &home,
        PASSWORD,
        &["create", &a.to_string_lossy(), &b.to_string_lossy()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("would both be `docs`"), "{err}");

    // Excludes match a name at any depth; `*` stays within a component.
    let src = tmp.path().join("src");
    for (path, body) in [
        ("keep.txt", "keep"),
        ("skip.tmp", "tmp"),
        ("sub/also-skip.tmp", "tmp"),
        ("sub/keep.md", "md"),
        ("cache/blob", "cache"),
        ("deep/a/b/notes.txt", "deep"),
    ] {
        let p = src.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, body).expect("write");
    }
    // As root, reading a mode-000 file needs the DAC capabilities: `setpriv` drops them from
    // the bounding set, so the CLI meets the file as a user would.
    let secret = src.join("secret");
    std::fs::write(&secret, "locked").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let mut create = if nix_uid_is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--bounding-set=-dac_override,-dac_read_search", "--"])
            .arg(env!("CARGO_BIN_EXE_backup"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_backup"))
    };
    let out = create
        .arg("--config-dir")
        .arg(&home)
        .args(["create", &src.to_string_lossy(), "--json"])
        .args([
            "--exclude",
            "*.tmp",
            "--exclude",
            "cache",
            "--exclude",
            "deep/*.txt",
        ])
        .env("BACKUP_PASSWORD", PASSWORD)
        .output()
        .expect("run create");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(6),
        "saved without the unreadable file: {stderr}"
    );
    assert!(
        stderr.contains("left out") && stderr.contains("secret"),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(
        summary["unreadable"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );
    let listed = cli.ok(&home, &["ls", "latest", "--json"]).to_string();
    for gone in ["skip.tmp", "also-skip.tmp", "cache", "secret"] {
        assert!(
            !listed.contains(gone),
            "{gone} is excluded or unreadable: {listed}"
        );
    }
    for kept in ["keep.txt", "keep.md", "deep/a/b/notes.txt"] {
        assert!(
            listed.contains(kept),
            "{kept} is kept (`*` does not cross `/`): {listed}"
        );
    }
    let snapshots = cli.ok(&home, &["snapshots", "--json"]);
    assert_eq!(
        snapshots[0]["paths"],
        serde_json::json!([src.canonicalize().expect("abs").to_string_lossy()]),
        "paths are absolute: {snapshots}"
    );

    // An include that matches nothing is an error, and nothing is written.
    let target = tmp.path().join("restored");
    let (code, _, err) = cli.run(
        &home,
        PASSWORD,
        &[
            "restore",
            "latest",
            "--target",
            &target.to_string_lossy(),
            "--include",
            "nothing-here",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no path of snapshot"), "{err}");
    assert!(!target.exists());
    // A directory brings what is under it.
    cli.ok(
        &home,
        &[
            "restore",
            "latest",
            "--target",
            &target.to_string_lossy(),
            "--include",
            "src/sub",
            "--json",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(target.join("src/sub/keep.md")).expect("md"),
        "md"
    );
    assert!(!target.join("src/keep.txt").exists());

    // Symlinks already in the target are replaced, never written through: nothing outside
    // the target changes.
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).expect("dir");
    std::fs::write(outside.join("victim"), "untouched").expect("write");
    let over = tmp.path().join("restored-over-links");
    std::fs::create_dir_all(over.join("src")).expect("dir");
    std::os::unix::fs::symlink(outside.join("victim"), over.join("src/keep.txt")).expect("ln");
    std::os::unix::fs::symlink(outside.join("dir"), over.join("src/sub")).expect("ln");
    cli.ok(
        &home,
        &[
            "restore",
            "latest",
            "--target",
            &over.to_string_lossy(),
            "--json",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("victim")).expect("victim"),
        "untouched"
    );
    assert_eq!(
        std::fs::read_dir(outside.join("dir")).expect("dir").count(),
        0
    );
    assert_eq!(
        std::fs::read_to_string(over.join("src/keep.txt")).expect("keep"),
        "keep"
    );
    assert!(std::fs::symlink_metadata(over.join("src/sub"))
        .expect("sub")
        .is_dir());

    // A wrong exported key (right repository, another master key) is a wrong key: exit 3.
    let key = tmp.path().join("key.json");
    cli.ok(
        &home,
        &["key", "export", "--out", &key.to_string_lossy(), "--json"],
    );
    let mut exported: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key).expect("key")).expect("json");
    use base64::Engine;
    exported["master"] = base64::engine::general_purpose::STANDARD
        .encode(noise(64, 7))
        .into();
    let wrong = tmp.path().join("wrong-key.json");
    std::fs::write(&wrong, exported.to_string()).expect("write");
    let (code, _, err) = cli.run(
        &home,
        "",
        &["--key-file", &wrong.to_string_lossy(), "snapshots"],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("wrong key file"), "{err}");

    // One agent of the repository is off: the backup still succeeds (it survives one more
    // loss), says so, and repair completes it on the spare agent.
    let off = slot_agent(&net, &home, 3);
    net.kill(Which::Agent(off)).expect("kill");
    std::fs::write(src.join("new.bin"), noise(3 << 20, 11)).expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (code, out, err) = cli.run(
        &home,
        PASSWORD,
        &["create", &src.to_string_lossy(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("run `backup repair`"), "{err}");
    let degraded: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        degraded["unwritten_slots"],
        serde_json::json!([3]),
        "{degraded}"
    );
    let (code, out, _) = cli.run(&home, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 4, "the missing shards show: {out}");
    // Meanwhile a second agent goes, and there is one spare: repair replaces one slot,
    // rebuilds its shards, says the other has no replacement yet (exit 1), and stops at
    // nothing.
    let second = slot_agent(&net, &home, 4);
    net.kill(Which::Agent(second)).expect("kill");
    let (code, out, err) = cli.run(&home, PASSWORD, &["repair", "--json"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no replacement agent yet"), "{err}");
    let repaired: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        repaired["slots_replaced"],
        serde_json::json!([3]),
        "{repaired}"
    );
    let unreplaced = repaired["slots_unreplaced"].as_array().expect("unreplaced");
    assert!(
        unreplaced.len() == 1 && unreplaced[0].as_str().is_some_and(|s| s.starts_with("4:")),
        "{repaired}"
    );
    assert!(
        repaired["shards_rewritten"].as_u64().expect("n") > 0,
        "{repaired}"
    );
    // Only slot 4's shards are missing now.
    let (code, out, _) = cli.run(&home, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 4, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    for p in report["problems"].as_array().expect("problems") {
        assert_eq!(p["slots"], serde_json::json!([4]), "{p}");
    }
    let again = tmp.path().join("restored-again");
    cli.ok(
        &home,
        &[
            "restore",
            "latest",
            "--target",
            &again.to_string_lossy(),
            "--json",
        ],
    );
    let stats = cli.ok(&home, &["stats", "--json"]);
    let packed = stats["packed_bytes"].as_u64().expect("packed");
    assert!(packed > 3 << 20, "new.bin does not compress: {stats}");
    assert!(
        stats["stored_bytes"].as_u64().expect("stored") >= packed * 6 / 4,
        "parity on top: {stats}"
    );
    assert_eq!(stats["capacity_bytes"], 4 * 67108864u64, "{stats}");
    assert_eq!(stats["snapshots"], 2, "{stats}");
    // The older snapshot removed by (a prefix of) its id; ids and rules do not mix.
    let listed = cli.ok(&home, &["snapshots", "--json"]);
    let older = listed[0]["id"].as_str().expect("id")[..8].to_string();
    let (code, _, err) = cli.run(&home, PASSWORD, &["forget", &older, "--keep-last", "1"]);
    assert_eq!(code, 2, "{err}");
    let forgot = cli.ok(&home, &["forget", &older, "--json"])["forget"].clone();
    assert_eq!(
        forgot["removed"].as_array().map(Vec::len),
        Some(1),
        "{forgot}"
    );
    assert_eq!(forgot["kept"].as_array().map(Vec::len), Some(1), "{forgot}");
    // This backup had no excludes, and the secret is readable again: the whole tree.
    same_tree(&again.join("src"), &src);
}

/// Is this test running as root (who reads any file unless its capabilities are dropped)?
/// Every contract the repository bought has a `contract` record in the wallet's chain, agreed
/// by its agent; the chain links from sequence 1, and each agent's copy of the wallet's blocks
/// is the CLI's (issue 16).
fn every_contract_is_recorded_by_both_sides(cli: &Cli, home: &Path) {
    let shown = cli.ok(home, &["records", "--json"]);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("repo.json")).expect("repo.json"))
            .expect("config");
    let slots = config["slots"].as_array().expect("slots");
    let blocks = shown["blocks"].as_array().expect("blocks");
    assert_eq!(
        blocks.len(),
        slots.len(),
        "one record per contract: {shown}"
    );
    assert_eq!(shown["waiting"], 0, "every record agreed: {shown}");
    let wallet = shown["entity"].as_str().expect("entity");
    let mut previous = protocol::record::GENESIS_HASH.to_owned();
    for (i, b) in blocks.iter().enumerate() {
        assert_eq!(b["sequence_number"], i as u64 + 1, "{b}");
        assert_eq!(b["type"], "contract");
        assert_eq!(b["transaction"]["event"], "active");
        let agreement: protocol::record::HalfBlock =
            serde_json::from_value(b["agreement"].clone()).expect("agreement");
        agreement.validate().expect("the agent's half verifies");
        assert_eq!(agreement.link_sequence_number, i as u64 + 1);
        let contract = b["transaction"]["contract"].as_str().expect("contract");
        let slot = slots
            .iter()
            .find(|s| s["contract"] == contract)
            .expect("a record of each slot's contract");
        assert_eq!(b["counterparty"], slot["agent"]);
        assert_eq!(agreement.public_key, slot["agent"].as_str().expect("agent"));
        // The agent's copy of the wallet's chain holds this very block.
        let copy = records_at(slot["endpoint"].as_str().expect("endpoint"), wallet);
        let held = copy["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .find(|c| c["sequence_number"] == b["sequence_number"])
            .cloned()
            .expect("the agent holds the proposal");
        let held: protocol::record::HalfBlock = serde_json::from_value(held).expect("block");
        assert_eq!(held.hash(), b["hash"].as_str().expect("hash"));
        assert_eq!(held.previous_hash, previous, "the chain links");
        previous = held.hash();
    }
}

/// `GET /v1/records?public_key=ENTITY&from=1` at `endpoint`.
fn records_at(endpoint: &str, entity: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        reqwest::get(format!("{endpoint}/v1/records?public_key={entity}&from=1"))
            .await
            .expect("GET /v1/records")
            .json()
            .await
            .expect("json")
    })
}

fn nix_uid_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The agents' count of `402 payment_required` answers and of requests paid by paywords,
/// summed over the running agents (`/metrics`, read from loopback: the owner's).
fn payment_counts(net: &devnet::Devnet) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let http = reqwest::Client::new();
        let (mut asked, mut by_words) = (0, 0);
        for a in net.agents.iter().filter(|a| a.running()) {
            let text = http
                .get(format!("{}/metrics", a.url))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .expect("text");
            let value = |name: &str| -> u64 {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("no {name} in {text}"))
            };
            asked += value("agent_payment_required_total ");
            by_words += value("agent_payword_payments_total ");
        }
        (asked, by_words)
    })
}

/// Issue 15: paid by paywords, a backup and its restore cost the agents no `402` at all (no
/// transfer and no wait for a deposit per charge), and the wallet holds the chain.
#[test]
fn a_backup_and_restore_paid_only_by_paywords_answer_no_402() {
    let (tmp, net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &[]);
    let src = tmp.path().join("src");
    make_tree(&src);
    std::fs::write(src.join("big.bin"), noise(3 << 20, 77)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    let (asked, by_words) = payment_counts(&net);
    assert_eq!(asked, 0, "the agents asked for payment {asked} times");
    assert!(by_words > 0, "the writes and reads were paid by paywords");
    let chains = std::fs::read_dir(format!("{}.chains", cli.wallet.display()))
        .expect("the wallet keeps its chains beside the key")
        .count();
    assert!(chains >= 1);
}

/// Issue 15: with the issuer down, agents keep taking paywords, so a backup and its restore
/// still work; when the issuer is back, the agents redeem what they were paid.
#[test]
fn backup_and_restore_work_while_the_issuer_is_down() {
    let (tmp, mut net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &[]);
    let src = tmp.path().join("src");
    make_tree(&src);
    // The first backup buys the wallet's chain (the issuer is up).
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    net.kill(Which::Issuer).expect("kill the issuer");
    std::fs::write(src.join("new.bin"), noise(2 << 20, 91)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    let (_, by_words) = payment_counts(&net);
    assert!(by_words > 0);
    net.restart(Which::Issuer).expect("restart the issuer");
    // Every agent's words are redeemed once the issuer answers (the devnet's agents redeem
    // what they hold at once and look every few seconds).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let chain = clients::wallet::Wallet::beside_key(&cli.wallet)
        .chains()
        .expect("chains")
        .remove(0);
    let issuer = net.issuer.url.clone();
    rt.block_on(async {
        let client = clients::issuer::IssuerClient::from_key_file(
            &issuer,
            &cli.wallet,
            &clients::ClientOptions::default(),
        )
        .expect("client");
        let spent = chain.summary(node::now_s()).words_spent;
        let spent_now = || {
            clients::wallet::Wallet::beside_key(&cli.wallet)
                .chain(&chain.chain)
                .expect("chain")
                .summary(node::now_s())
                .words_spent
        };
        assert!(spent_now() >= spent);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = client.chain(&chain.chain).await;
            let redeemed = status
                .map(|c| c.redeemed.iter().map(|r| r.to + 1 - r.from).sum::<u64>())
                .unwrap_or(0);
            if redeemed == spent_now() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redeemed {redeemed} of {} words",
                spent_now()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
}

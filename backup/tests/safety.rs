//! Data safety end to end on a devnet (issue 12): Ctrl-C during a backup removes its lock, a
//! symlinked argument is recorded as typed, a full repository can be pruned and a
//! half-written index hides nothing.

use std::path::Path;
use std::process::Command;

use backup::repo::{Repo, Secret, Wallet};
use devnet::Which;

mod util;
use util::*;

/// The repository in `home`, opened through the library (to do what a killed command or a
/// full contract leaves behind, which the CLI never does on purpose).
fn open_repo(cli: &Cli, home: &Path) -> Repo {
    let wallet = Wallet::load(&cli.wallet).expect("wallet");
    Repo::open_local(
        home,
        &Secret::Password(PASSWORD.into()),
        &wallet,
        reqwest::Client::new(),
    )
    .expect("open the repository")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Ctrl-C (and SIGTERM) during `backup create` removes its lock, as restic does, and exits
/// 130 (143); the next `prune` needs no `unlock`, and the backup resumes. A symlinked argument
/// keeps the name it was given.
#[test]
fn ctrl_c_removes_the_lock_and_a_symlinked_argument_keeps_its_name() {
    let (tmp, _net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "134217728"]);
    // 48 MiB that does not compress: three packs or more, so the signal comes mid-backup.
    let src = tmp.path().join("big");
    std::fs::create_dir(&src).expect("dir");
    for i in 0..4 {
        std::fs::write(src.join(format!("part-{i}")), noise(12 << 20, 100 + 2 * i)).expect("write");
    }
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let child = create_until_first_pack(&home, &src);
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let out = child.wait_with_output().expect("reap");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
        assert!(err.contains("interrupted"), "{err}");
        // No lock is left: prune runs without `backup unlock`.
        let (code, out, err) = cli.run(&home, PASSWORD, &["prune", "--json"]);
        assert_eq!(code, 0, "prune after {signal}: {err}{out}");
    }
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "big", &src);

    // A symlink given as an argument is recorded by the name it was given (its contents
    // are those of what it points to), and restores under that name.
    let real = tmp.path().join("python3");
    std::fs::create_dir(&real).expect("dir");
    std::fs::write(real.join("README"), "docs\n").expect("write");
    let link = tmp.path().join("python3-dev");
    std::os::unix::fs::symlink("python3", &link).expect("ln");
    cli.ok(&home, &["create", &link.to_string_lossy(), "--json"]);
    let snapshots = cli.ok(&home, &["snapshots", "--json"]);
    let last = snapshots
        .as_array()
        .and_then(|a| a.last())
        .expect("a snapshot");
    let typed = tmp
        .path()
        .canonicalize()
        .expect("abs")
        .join("python3-dev")
        .to_string_lossy()
        .into_owned();
    assert_eq!(last["paths"], serde_json::json!([typed]), "{snapshots}");
    let listed = cli.ok(&home, &["ls", "latest", "--json"]).to_string();
    assert!(listed.contains("python3-dev/README"), "{listed}");
    cli.restore_exact(
        &home,
        &tmp.path().join("restored-link"),
        "python3-dev",
        &real,
    );
}

/// Fill every slot's contract to within `room` bytes with a pack nobody names (what a
/// backup killed on a full repository leaves).
fn fill_with_a_leftover_pack(repo: &Repo, room: u64) {
    runtime().block_on(async {
        // Credit for the writes below (a few MiB per slot at 1-2 per KiB).
        repo.prepay_all(100_000).await.expect("prepay");
        let name = format!("p-{}", "ab".repeat(32));
        for (i, slot) in repo.config.slots.iter().enumerate() {
            let view = repo
                .agent(i)
                .contract(&slot.contract)
                .await
                .expect("contract");
            let fill = view.block_bytes - view.used_bytes - room;
            repo.agent(i)
                .put(
                    &slot.contract,
                    &format!("{name}-{i}"),
                    vec![7u8; fill as usize],
                )
                .await
                .expect("fill");
        }
    });
}

/// Copy shards 0 to 2 of index object `from` as a new index object (fewer than the k = 4
/// needed to read it): what a prune that ran out of room on slot 3 left.
fn half_write_an_index(repo: &Repo, from: &str) -> String {
    let copy = format!("i-{}", uuid_like());
    runtime().block_on(async {
        repo.prepay_all(10_000).await.expect("prepay");
        for i in 0..3 {
            let contract = &repo.config.slots[i].contract;
            let shard = backup::repo::get_paying(
                repo.agent(i),
                contract,
                &format!("{from}-{i}"),
                None,
                None,
            )
            .await
            .expect("read shard");
            repo.agent(i)
                .put(contract, &format!("{copy}-{i}"), shard)
                .await
                .expect("write shard");
        }
    });
    copy
}

fn uuid_like() -> String {
    let n = noise(16, 99);
    let hex: String = n.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The repository's index objects, by name (`i-<id>`).
fn index_objects(repo: &Repo) -> Vec<String> {
    runtime().block_on(async {
        repo.object_names()
            .await
            .expect("names")
            .into_iter()
            .filter(|n| n.starts_with("i-"))
            .collect()
    })
}

/// A repository filled until `create` says it is full stays whole: the failed backup's packs
/// do not hold room, `prune` works on it (it frees before it writes), a half-written index
/// object is skipped with a warning naming it (every command works) and prune deletes it,
/// and `forget --prune` makes room for the backup that did not fit.
#[test]
fn a_full_repository_prunes_and_a_half_written_index_hides_nothing() {
    let (tmp, mut net, cli) = network(6);
    let home = tmp.path().join("config");
    // 16 MiB per slot: about 64 MiB of packed data with 4 data shards.
    cli.init(&home, &["--slot-bytes", "16777216"]);
    let dir = |name: &str, mib: usize, seed: u64| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).expect("dir");
        std::fs::write(d.join("data"), noise(mib << 20, seed)).expect("write");
        d
    };
    let (a, b, c) = (dir("a", 20, 11), dir("b", 20, 13), dir("c", 28, 15));
    cli.ok(&home, &["create", &a.to_string_lossy(), "--json"]);
    cli.ok(&home, &["create", &b.to_string_lossy(), "--json"]);

    // c's first pack fits, its second does not: the repository is full, and the pack that
    // fitted is deleted again (no index names it; it would only hold room).
    let before = used_bytes(&net);
    let (code, out, err) = cli.run(&home, PASSWORD, &["create", &c.to_string_lossy()]);
    assert_eq!(code, 1, "{err}{out}");
    assert!(err.contains("the repository is full"), "{err}");
    let after = used_bytes(&net);
    assert!(
        after < before + (1 << 20),
        "the failed backup's packs hold no room: {before} -> {after}"
    );

    // A leftover pack fills every contract to the last byte: no room for an index, nor for
    // anything but an (empty) lock. prune deletes what nothing uses before it writes
    // anything.
    let repo = open_repo(&cli, &home);
    fill_with_a_leftover_pack(&repo, 0);
    let (code, _, err) = cli.run(&home, PASSWORD, &["create", &c.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the repository is full"), "{err}");
    let pruned = cli.ok(&home, &["prune", "--json"]);
    assert!(
        pruned["packs_deleted"].as_u64().expect("n") >= 1,
        "{pruned}"
    );

    // An index object written on three slots only (fewer than the four needed to read it)
    // does not hide the good ones: every command works, with a warning that names it.
    let good = index_objects(&repo);
    let half = half_write_an_index(&repo, &good[0]);
    for args in [
        &["stats", "--json"][..],
        &["check", "--read-data", "--json"],
    ] {
        let (code, out, err) = cli.run(&home, PASSWORD, args);
        assert_eq!(code, 0, "{args:?}: {err}{out}");
        assert!(err.contains(&half), "{args:?} names {half}: {err}");
    }
    let checked = cli.ok(&home, &["check", "--json"]);
    assert_eq!(
        checked["half_written"],
        serde_json::json!([half]),
        "{checked}"
    );
    cli.restore_exact(&home, &tmp.path().join("restored-b"), "b", &b);
    let fresh = tmp.path().join("config-fresh");
    let target = tmp.path().join("restored-fresh");
    let repository = cli.ok(&home, &["stats", "--json"])["repository"]
        .as_str()
        .expect("id")
        .to_owned();
    let args = cli.recover_args(&target, &repository);
    cli.ok(&fresh, &args.iter().map(String::as_str).collect::<Vec<_>>());
    same_tree(&target.join("b"), &b);
    // prune deletes it.
    let pruned = cli.ok(&home, &["prune", "--json"]);
    assert_eq!(
        pruned["objects_half_written"],
        serde_json::json!([half]),
        "{pruned}"
    );
    assert!(!index_objects(&repo).contains(&half));

    // The tool's own advice works: forget a snapshot and prune, and the backup that did not
    // fit fits.
    let listed = cli.ok(&home, &["snapshots", "--json"]);
    let first = listed[0]["id"].as_str().expect("id").to_owned();
    cli.ok(&home, &["forget", &first, "--prune", "--json"]);
    cli.ok(&home, &["create", &c.to_string_lossy(), "--json"]);
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored-c"), "c", &c);

    // An object that cannot be read because agents do not answer is named in the error.
    for slot in [0, 1, 2] {
        let agent = slot_agent(&net, &home, slot);
        net.kill(Which::Agent(agent)).expect("kill");
    }
    let (code, _, err) = cli.run(&home, PASSWORD, &["stats"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("only 3 of the 4 shards needed could be read")
            && (err.contains("i-") || err.contains("s-")),
        "{err}"
    );
}

/// Take the free space of devnet agent `agent` down below `leave` bytes with contracts of its
/// own (another buyer's data on a home agent).
fn crowd(net: &devnet::Devnet, cli: &Cli, agent: usize, leave: u64) {
    use clients::agent::AgentClient;
    runtime().block_on(async {
        let key = std::sync::Arc::new(node::keyfile::load(&cli.wallet).expect("key"));
        let http = reqwest::Client::new();
        let client = AgentClient::new(http.clone(), &net.agents[agent].url, key.clone());
        let wallet = clients::issuer::IssuerClient::new(
            http,
            &net.issuer.url,
            key.clone(),
            Some(node::client::CounterStore::beside_key(&cli.wallet)),
        );
        loop {
            let (_, offer) = client.offer().await.expect("offer");
            if offer.free_bytes < leave {
                break;
            }
            let block = (offer.free_bytes - leave / 2).min(offer.block_bytes_max);
            let issuer = offer.currencies[0].issuer.clone();
            let terms =
                AgentClient::terms_from_offer(&offer, key.entity(), &issuer, block, 86_400, vec![])
                    .expect("terms");
            client.buy(&wallet, &terms, 0).await.expect("buy");
        }
    });
}

/// Contracts that ended cannot be renewed on an agent now short of space: `create` says to
/// run `repair`, and `repair` renews that slot on a spare agent, rebuilding its shards there.
#[test]
fn ended_contracts_renew_on_a_spare_when_their_agent_is_full() {
    // Six agents hold the repository; the seventh is the spare.
    let (tmp, net, cli) = network(7);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "67108864", "--duration-s", "90"]);
    let src = tmp.path().join("data");
    std::fs::create_dir(&src).expect("dir");
    std::fs::write(src.join("file"), noise(5 << 20, 21)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    let full = slot_agent(&net, &home, 0);
    // Less than one more block free on slot 0's agent.
    crowd(&net, &cli, full, 32 << 20);
    let ends = open_repo(&cli, &home)
        .config
        .slots
        .iter()
        .map(|s| s.end_s)
        .max()
        .expect("slots");
    let wait = ends + 2 - i64::try_from(node::now_ms() / 1000).expect("now");
    std::thread::sleep(std::time::Duration::from_secs(wait.max(0) as u64));

    let (code, _, err) = cli.run(&home, PASSWORD, &["create", &src.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the contracts have ended: run backup repair"),
        "{err}"
    );
    let repaired = cli.ok(&home, &["repair", "--json"]);
    assert_eq!(
        repaired["slots_renewed"],
        serde_json::json!([0, 1, 2, 3, 4, 5]),
        "{repaired}"
    );
    assert_eq!(
        repaired["slots_renewed_elsewhere"],
        serde_json::json!([0]),
        "{repaired}"
    );
    assert_ne!(
        slot_agent(&net, &home, 0),
        full,
        "slot 0 moved to the spare"
    );
    std::fs::write(src.join("more"), noise(1 << 20, 23)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "data", &src);
}

/// A wallet client of the devnet's issuer for the key file `key`.
fn wallet_client(net: &devnet::Devnet, key: &Path) -> clients::issuer::IssuerClient {
    clients::issuer::IssuerClient::new(
        reqwest::Client::new(),
        &net.issuer.url,
        std::sync::Arc::new(node::keyfile::load(key).expect("key")),
        Some(node::client::CounterStore::beside_key(key)),
    )
}

/// `init` checks sizes before it buys anything; an `init` whose wallet runs dry half way
/// leaves the contracts it paid for recorded in the config directory (and says so), and
/// the retry uses them instead of buying them again.
#[test]
fn init_checks_sizes_before_paying_and_a_retry_uses_what_a_failed_init_bought() {
    let (tmp, net, cli) = network(6);
    let poor = tmp.path().join("poor.key");
    let key = node::keyfile::generate(&poor).expect("key");
    let rich = wallet_client(&net, &cli.wallet);
    let pay = |amount: u64| {
        runtime().block_on(async {
            rich.transfer(key.entity(), amount, None)
                .await
                .expect("fund");
        })
    };
    let balance = || {
        runtime()
            .block_on(async { wallet_client(&net, &poor).balance().await.expect("balance") })
            .balance
    };
    // Enough for two or three of the six contracts.
    pay(5_000);
    let home = tmp.path().join("config");
    let init = |slot_bytes: &str| {
        cli.run(
            &home,
            PASSWORD,
            &[
                "init",
                "--market",
                &cli.market,
                "--wallet",
                &poor.to_string_lossy(),
                "--slot-bytes",
                slot_bytes,
                "--json",
            ],
        )
    };
    let (code, _, err) = init("10");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("too small"), "{err}");
    assert_eq!(balance(), 5_000, "nothing paid");

    let (code, _, err) = init("67108864");
    assert_ne!(code, 0, "the wallet runs dry: {err}");
    assert!(err.contains("purchases.json"), "{err}");
    let code_of = runtime()
        .block_on(async { wallet_client(&net, &cli.wallet).currency().await })
        .expect("currency")
        .code;
    assert!(
        err.contains(&format!(" {code_of}; ")),
        "the note shows the amount in the currency: {err}"
    );
    let journal: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(home.join("purchases.json")).expect("the journal"))
            .expect("json");
    assert!(!journal.is_empty(), "{err}");
    assert!(
        journal.iter().all(|p| !p["signed"].is_null()),
        "accepted: {journal:?}"
    );
    assert!(balance() < 5_000);

    pay(100_000);
    let (code, out, err) = init("67108864");
    assert_eq!(code, 0, "{err}");
    let done: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    let slots = done["slots"].as_array().expect("slots");
    assert_eq!(slots.len(), 6, "{done}");
    let adopted: Vec<&str> = slots
        .iter()
        .filter(|s| s["adopted"] == true)
        .map(|s| s["contract"].as_str().expect("id"))
        .collect();
    let bought: Vec<&str> = journal
        .iter()
        .map(|p| p["terms"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(adopted.len(), bought.len(), "{done}");
    assert!(bought.iter().all(|id| adopted.contains(id)), "{done}");
    assert!(!home.join("purchases.json").exists(), "all in use now");
    // The human output names the agents and what they cost, in the currency.
    let src = tmp.path().join("data");
    std::fs::create_dir(&src).expect("dir");
    std::fs::write(src.join("f"), noise(1 << 20, 5)).expect("write");
    let (code, out, err) = cli.run(&home, PASSWORD, &["create", &src.to_string_lossy()]);
    assert_eq!(code, 0, "{err}{out}");
    cli.ok(&home, &["check", "--read-data", "--json"]);

    // Without --json, init names the agents and what each cost, in the currency.
    let (code, out, err) = cli.run(
        &tmp.path().join("config-human"),
        PASSWORD,
        &[
            "init",
            "--market",
            &cli.market,
            "--wallet",
            &cli.wallet.to_string_lossy(),
            "--slot-bytes",
            "67108864",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("agents chosen") && out.contains("slot 5: http://"),
        "{out}"
    );
    assert!(out.contains(&format!(" {code_of} + ")), "{out}");
    assert!(out.contains("paid ") && out.contains(" in all"), "{out}");
}

/// Two of six agents off, spares in the market: `create` moves their slots to spare agents
/// and the backup succeeds, saying so; `repair` then rebuilds the earlier backups' shards.
#[test]
fn a_backup_with_two_agents_off_moves_their_slots_to_spares() {
    // Six agents hold the repository; two are spares.
    let (tmp, mut net, cli) = network(8);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "67108864"]);
    let src = tmp.path().join("data");
    std::fs::create_dir(&src).expect("dir");
    std::fs::write(src.join("first"), noise(2 << 20, 31)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    let spent = |home: &Path| {
        cli.ok(home, &["stats", "--json"])["spent"]
            .as_u64()
            .expect("spent")
    };
    let spent_seen = spent(&home);
    let (a, b) = (slot_agent(&net, &home, 1), slot_agent(&net, &home, 4));
    net.kill(Which::Agent(a)).expect("kill");
    net.kill(Which::Agent(b)).expect("kill");
    // What was paid stays paid: stats does not forget the two agents that went silent.
    assert!(
        spent(&home) >= spent_seen,
        "spent shrank with two agents down"
    );
    std::fs::write(src.join("second"), noise(2 << 20, 33)).expect("write");
    let (code, out, err) = cli.run(
        &home,
        PASSWORD,
        &["create", &src.to_string_lossy(), "--json"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("moved to spare"), "{err}");
    let made: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(made["moved_slots"], serde_json::json!([1, 4]), "{made}");
    assert_ne!(slot_agent(&net, &home, 1), a);
    assert_ne!(slot_agent(&net, &home, 4), b);
    let repaired = cli.ok(&home, &["repair", "--json"]);
    assert!(
        repaired["shards_rewritten"].as_u64().expect("n") > 0,
        "{repaired}"
    );
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "data", &src);

    // Three agents off, more than the two the repository can lose: neither create nor
    // repair gives their contracts up (new, empty ones would strand every earlier backup,
    // and prune would then delete it as half written), and once they answer again
    // everything is there.
    let silent: Vec<usize> = [0, 2, 3]
        .iter()
        .map(|s| slot_agent(&net, &home, *s))
        .collect();
    let config_before = std::fs::read(home.join("repo.json")).expect("config");
    for &a in &silent {
        net.kill(Which::Agent(a)).expect("kill");
    }
    let src_arg = src.to_string_lossy().into_owned();
    for args in [vec!["create", src_arg.as_str()], vec!["repair"]] {
        let (code, _, err) = cli.run(&home, PASSWORD, &args);
        assert_ne!(code, 0, "{args:?}: {err}");
        assert!(
            err.contains("more than the 2 it can lose"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(home.join("repo.json")).expect("config"),
        config_before,
        "no slot was given up"
    );
    for &a in &silent {
        net.restart(Which::Agent(a)).expect("restart");
    }
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored-again"), "data", &src);
}

/// Messages a new user meets before any network is involved: forget with nothing to forget,
/// a market URL without its scheme, --key-file on init.
#[test]
fn usage_mistakes_say_what_is_needed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cli = Cli {
        wallet: tmp.path().join("wallet.key"),
        market: "127.0.0.1:7100".into(),
    };
    node::keyfile::generate(&cli.wallet).expect("key");
    let home = tmp.path().join("config");
    let (code, _, err) = cli.run(&home, PASSWORD, &["forget"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("which snapshots?") && err.contains("--keep-last"),
        "{err}"
    );
    let wallet = cli.wallet.to_string_lossy().into_owned();
    let (code, _, err) = cli.run(
        &home,
        PASSWORD,
        &["init", "--market", &cli.market, "--wallet", &wallet],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("write it as http://127.0.0.1:7100"), "{err}");
    let (code, _, err) = cli.run(
        &home,
        PASSWORD,
        &[
            "--key-file",
            &wallet,
            "init",
            "--market",
            "http://x",
            "--wallet",
            &wallet,
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--key-file opens an existing repository"),
        "{err}"
    );
    let (code, _, err) = cli.run(
        &home,
        PASSWORD,
        &[
            "init",
            "--key-file",
            &wallet,
            "--market",
            "http://x",
            "--wallet",
            &wallet,
        ],
    );
    assert_eq!(code, 2, "clap refuses it: {err}");
}

/// A full repository grows with `repair --grow`: every slot gets a larger contract holding
/// its shards, and the backup that did not fit fits; `stats` shows the contracts' cost and
/// what was spent, in the currency.
#[test]
fn a_full_repository_grows_and_stats_shows_spending() {
    let (tmp, net, cli) = network(6);
    let home = tmp.path().join("config");
    cli.init(&home, &["--slot-bytes", "16777216"]);
    // The configuration directory is its owner's: the wrapped key is an offline guessing
    // target for anyone who can read it.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&home), 0o700);
        for f in std::fs::read_dir(&home).expect("dir").flatten() {
            if f.path().is_file() {
                assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
            }
        }
    }
    let dir = |name: &str, mib: usize, seed: u64| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).expect("dir");
        std::fs::write(d.join("data"), noise(mib << 20, seed)).expect("write");
        d
    };
    let (a, b) = (dir("a", 40, 41), dir("b", 28, 43));
    cli.ok(&home, &["create", &a.to_string_lossy(), "--json"]);
    let (code, _, err) = cli.run(&home, PASSWORD, &["create", &b.to_string_lossy()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the repository is full"), "{err}");
    let before = cli.ok(&home, &["stats", "--json"]);
    assert_eq!(before["capacity_bytes"], 4 * 16777216u64, "{before}");
    // Sizes take units, as a restic user types them.
    let grown = cli.ok(&home, &["repair", "--grow", "64MiB", "--json"]);
    assert_eq!(
        grown["slots_renewed"],
        serde_json::json!([0, 1, 2, 3, 4, 5]),
        "{grown}"
    );
    let after = cli.ok(&home, &["stats", "--json"]);
    assert_eq!(
        after["capacity_bytes"],
        4 * (16777216u64 + 16777216),
        "{after}"
    );
    cli.ok(&home, &["create", &b.to_string_lossy(), "--json"]);
    cli.ok(&home, &["check", "--read-data", "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "b", &b);

    let stats = cli.ok(&home, &["stats", "--json"]);
    let cost = stats["contracts_cost"].as_u64().expect("cost");
    let spent = stats["spent"].as_u64().expect("spent");
    assert!(cost > 0, "{stats}");
    assert!(
        spent > cost + before["contracts_cost"].as_u64().expect("cost"),
        "the retired contracts count too: {stats}"
    );
    assert_eq!(stats["contracts_unanswered"], 0, "{stats}");
    let code_of = runtime()
        .block_on(async { wallet_client(&net, &cli.wallet).currency().await })
        .expect("currency")
        .code;
    let (code, out, err) = cli.run(&home, PASSWORD, &["stats"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("the contracts cost") && out.contains(&format!(" {code_of};")),
        "{out}"
    );

    // A second backup of the same files writes almost nothing, so it pays almost nothing:
    // credit ahead is topped up, not paid again (it used to pay a whole run's worth on every
    // slot, every time: at least 6 x 8 MiB at 1 per KiB here).
    let wallet = wallet_client(&net, &cli.wallet);
    let balance = || {
        runtime()
            .block_on(wallet.balance())
            .expect("balance")
            .balance
    };
    let before_again = balance();
    cli.ok(&home, &["create", &b.to_string_lossy(), "--json"]);
    let paid_again = before_again - balance();
    assert!(
        (0..8 * 1024).contains(&paid_again),
        "a backup with nothing new paid {paid_again}"
    );
}

/// The README's `backup init` with only its required flags works on the README's devnet
/// (issue 12, finding 14: the 1 GiB default block used to exceed every devnet agent's
/// largest block, and the refusal blamed durability).
#[test]
fn init_with_the_readme_defaults_works_on_the_default_devnet() {
    let (tmp, _net, cli) = network(6);
    let home = tmp.path().join("config");
    let made = cli.init(&home, &[]);
    assert_eq!(made["slots"].as_array().map(Vec::len), Some(6), "{made}");
    let src = tmp.path().join("docs");
    std::fs::create_dir(&src).expect("dir");
    std::fs::write(src.join("a.txt"), noise(300_000, 7)).expect("write");
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "docs", &src);
}

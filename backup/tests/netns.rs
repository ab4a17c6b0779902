//! The backup on a namespaced devnet (issue 20): agents on hosts of their own, cut off rather
//! than killed (their connections stall; nothing refuses them), and an issuer cut off for 30 s
//! while a backup paid by paywords runs. Needs root and iproute2 (skipped without them,
//! except under `CI=true`).

mod util;

use std::time::{Duration, Instant};

use devnet::Which;
use util::{netns_network, noise, slot_agent, PASSWORD};

/// How long the issuer stays cut off (the issue's figure).
const ISSUER_CUT_S: u64 = 30;

fn tree(root: &std::path::Path) {
    std::fs::create_dir_all(root.join("docs")).expect("dirs");
    for i in 0..40 {
        std::fs::write(
            root.join(format!("docs/note-{i:02}.txt")),
            format!("note {i}\n").repeat(i + 1),
        )
        .expect("write");
    }
    std::fs::write(root.join("big.bin"), noise(2 << 20, 5)).expect("write");
}

#[test]
fn a_backup_with_an_agent_cut_off_completes_and_heal_then_repair_fills_its_slot() {
    let Some((tmp, mut net, cli)) = netns_network(6) else {
        return;
    };
    let home = tmp.path().join("config");
    let repo = cli.init(&home, &[]);
    // The market placed the six slots on six /24s.
    let networks: std::collections::BTreeSet<String> = repo["slots"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|x| x["endpoint"].as_str())
                .map(|e| e.rsplit_once('.').map_or(e, |(net, _)| net).to_string())
                .collect()
        })
        .unwrap_or_default();
    let src = tmp.path().join("src");
    tree(&src);
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);

    // Slot 3's agent is cut off: its link is down, so requests to it stall (no refusal).
    let off = slot_agent(&net, &home, 3);
    net.cut(Which::Agent(off)).expect("cut");
    std::fs::write(src.join("new.bin"), noise(3 << 20, 11)).expect("write");
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
    assert_eq!(code, 4, "check reports the missing shards: {out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    for p in report["problems"].as_array().expect("problems") {
        assert_eq!(p["slots"], serde_json::json!([3]), "{p}");
    }

    // Healed, the agent answers again; repair rebuilds its missing shards on it.
    net.heal(Which::Agent(off)).expect("heal");
    let repaired = cli.ok(&home, &["repair", "--json"]);
    assert_eq!(
        repaired["slots_replaced"],
        serde_json::json!([]),
        "{repaired}"
    );
    assert!(
        repaired["shards_rewritten"].as_u64().expect("n") > 0,
        "{repaired}"
    );
    let (code, out, err) = cli.run(&home, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 0, "every shard is back: {out} {err}");
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    assert_eq!(networks.len(), 6, "six slots on six /24s: {repo}");
}

#[test]
fn a_backup_paid_by_paywords_completes_while_the_issuer_is_cut_off_for_30_s() {
    let Some((tmp, mut net, cli)) = netns_network(6) else {
        return;
    };
    let home = tmp.path().join("config");
    cli.init(&home, &[]);
    let src = tmp.path().join("src");
    tree(&src);
    // The first backup buys the wallet's chain while the issuer answers.
    cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);

    net.cut(Which::Issuer).expect("cut the issuer");
    let cut_at = Instant::now();
    std::fs::write(src.join("new.bin"), noise(4 << 20, 13)).expect("write");
    let created = cli.ok(&home, &["create", &src.to_string_lossy(), "--json"]);
    assert_eq!(
        created["unwritten_slots"],
        serde_json::json!([]),
        "{created}"
    );
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    let (code, out, err) = cli.run(&home, PASSWORD, &["check", "--json"]);
    assert_eq!(code, 0, "{out} {err}");
    // The issuer stays cut until here, however long the backup took (at least 30 s).
    std::thread::sleep(Duration::from_secs(ISSUER_CUT_S).saturating_sub(cut_at.elapsed()));
    net.heal(Which::Issuer).expect("heal the issuer");

    // Back, the issuer redeems every word the agents took while it was away.
    let chain = clients::wallet::Wallet::beside_key(&cli.wallet)
        .chains()
        .expect("chains")
        .remove(0);
    let spent = clients::wallet::Wallet::beside_key(&cli.wallet)
        .chain(&chain.chain)
        .expect("chain")
        .summary(node::now_s())
        .words_spent;
    let issuer = net.issuer.url.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let client = clients::issuer::IssuerClient::from_key_file(
            &issuer,
            &cli.wallet,
            &clients::ClientOptions::default(),
        )
        .expect("client");
        node::testing::eventually(90_000, "every word the agents took is redeemed", || async {
            client
                .chain(&chain.chain)
                .await
                .is_ok_and(|c| c.redeemed.iter().map(|r| r.to + 1 - r.from).sum::<u64>() == spent)
        })
        .await;
    });
}

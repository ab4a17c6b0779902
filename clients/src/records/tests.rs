use super::*;

fn setup() -> (tempfile::TempDir, PathBuf, Arc<KeyPair>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("wallet.key");
    (dir, key_path, Arc::new(KeyPair::generate().expect("key")))
}

fn other() -> String {
    KeyPair::generate().expect("key").entity().to_string()
}

#[test]
fn proposals_link_persist_and_survive_a_torn_last_line() {
    let (_dir, key_path, key) = setup();
    let agent = other();
    {
        let mut chain = RecordChain::open(&key_path, key.clone()).expect("open");
        assert!(!chain.known(), "no chain file yet: the head is unknown");
        let a = chain
            .propose(&agent, "contract", &serde_json::json!({"contract": "c1"}))
            .expect("first");
        let b = chain
            .propose(&agent, "contract", &serde_json::json!({"contract": "c2"}))
            .expect("second");
        assert_eq!((a.sequence_number, b.sequence_number), (1, 2));
        assert_eq!(a.previous_hash, GENESIS_HASH);
        assert_eq!(b.previous_hash, a.hash());
        assert_eq!(chain.unanswered().len(), 2);
        // A second process with the same key is kept out while this one holds the chain.
        assert!(RecordChain::open_waiting(&key_path, key.clone(), 0).is_err());
    }
    // A crash mid-append: the torn line was never sent, and is dropped.
    let file = RecordChain::dir_of(&key_path).join(CHAIN_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .expect("append");
    f.write_all(b"{\"public_key\":\"ed25").expect("torn");
    drop(f);
    let mut chain = RecordChain::open(&key_path, key.clone()).expect("reopen");
    assert!(chain.known());
    assert_eq!(chain.head().map(|h| h.sequence_number), Some(2));
    let c = chain
        .propose(&agent, "contract", &serde_json::json!({"contract": "c3"}))
        .expect("third");
    assert_eq!(c.sequence_number, 3);
    assert_eq!(c.previous_hash, chain.own()[1].hash());
    drop(chain);
    let chain = RecordChain::open(&key_path, key).expect("reopen after the repair");
    assert_eq!(chain.own().len(), 3);
    assert_eq!(chain.head(), Some(&c));
}

#[test]
fn a_chain_file_that_does_not_link_is_refused() {
    let (_dir, key_path, key) = setup();
    let agent = other();
    {
        let mut chain = RecordChain::open(&key_path, key.clone()).expect("open");
        for n in 0..3 {
            chain
                .propose(&agent, "contract", &serde_json::json!({ "n": n }))
                .expect("propose");
        }
    }
    // Drop the middle block: the third no longer links to the first.
    let file = RecordChain::dir_of(&key_path).join(CHAIN_FILE);
    let text = std::fs::read_to_string(&file).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&file, format!("{}\n{}\n", lines[0], lines[2])).expect("write");
    let e = RecordChain::open(&key_path, key).err().expect("refused");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn proposals_older_than_a_week_are_no_longer_sent_again() {
    let (_dir, key_path, key) = setup();
    let agent = other();
    let mut chain = RecordChain::open(&key_path, key.clone()).expect("open");
    let now = node::now_ms();
    // An old proposal (eight days), then a fresh one.
    let old = HalfBlock::sign(
        &key,
        BlockFields {
            sequence_number: 1,
            link_public_key: &agent,
            link_sequence_number: 0,
            previous_hash: GENESIS_HASH,
            kind: "contract",
            transaction: "{}",
            timestamp: now - 8 * 86_400_000,
        },
    );
    chain.append_line(&old).expect("append");
    chain.own.push(old.clone());
    let fresh = chain
        .propose(&agent, "contract", &serde_json::json!({"contract": "c2"}))
        .expect("fresh");
    assert_eq!(chain.unanswered(), vec![old, fresh.clone()], "both wait");
    assert_eq!(
        chain.to_resend(now),
        vec![fresh],
        "only the fresh one is sent again"
    );
}

use super::*;

fn key() -> KeyPair {
    KeyPair::generate().expect("key")
}

fn proposal(me: &KeyPair, to: &KeyPair, seq: u64, previous: &str, tx: &str) -> HalfBlock {
    HalfBlock::sign(
        me,
        BlockFields {
            sequence_number: seq,
            link_public_key: to.entity().as_str(),
            link_sequence_number: 0,
            previous_hash: previous,
            kind: kinds::CONTRACT,
            transaction: tx,
            timestamp: 1_700_000_000_000 + seq,
        },
    )
}

const TX: &str = r#"{"contract":"c1","event":"active","block_bytes":1048576,"contract_price":12}"#;

#[test]
fn a_proposal_and_its_agreement_validate_and_link() {
    let (buyer, agent) = (key(), key());
    let p1 = proposal(&buyer, &agent, 1, GENESIS_HASH, TX);
    assert_eq!(p1.validate().expect("valid"), *buyer.entity());
    assert!(p1.is_proposal());
    let a1 = HalfBlock::agree(&agent, &p1, 1, GENESIS_HASH, 5);
    assert_eq!(a1.validate().expect("valid"), *agent.entity());
    check_agreement(&p1, &a1).expect("agreement");
    // The proposer's next block links to its first.
    let p2 = proposal(&buyer, &agent, 2, &p1.hash(), TX);
    check_chain(&[p1.clone(), p2.clone()]).expect("chain");
    // An agreement to another proposal, or by another key, is not this one's.
    let other = HalfBlock::agree(&key(), &p1, 1, GENESIS_HASH, 5);
    assert_eq!(
        check_agreement(&p1, &other).expect_err("stranger").code(),
        "invalid_agreement"
    );
    let to_p2 = HalfBlock::agree(&agent, &p2, 2, &a1.hash(), 6);
    assert_eq!(
        check_agreement(&p1, &to_p2).expect_err("wrong link").code(),
        "invalid_agreement"
    );
    // The hash is SHA-256 of the signing string of DESIGN 11.
    assert!(p1.signing_string().starts_with("LCP-BLOCK-1\ned25519:"));
    assert_eq!(p1.hash(), crate::sha256_hex(p1.signing_string().as_bytes()));
}

/// Any field changed after signing is refused, with a stable code.
#[test]
fn a_tampered_block_is_refused_whatever_field_changed() {
    let (me, you) = (key(), key());
    let p = proposal(&me, &you, 2, &"ab".repeat(32), TX);
    p.validate().expect("valid");
    let tampered: Vec<(&str, HalfBlock)> = vec![
        (
            "public_key",
            HalfBlock {
                public_key: key().entity().to_string(),
                ..p.clone()
            },
        ),
        (
            "sequence_number",
            HalfBlock {
                sequence_number: 3,
                ..p.clone()
            },
        ),
        (
            "link_public_key",
            HalfBlock {
                link_public_key: key().entity().to_string(),
                ..p.clone()
            },
        ),
        (
            "link_sequence_number",
            HalfBlock {
                link_sequence_number: 7,
                ..p.clone()
            },
        ),
        (
            "previous_hash",
            HalfBlock {
                previous_hash: "cd".repeat(32),
                ..p.clone()
            },
        ),
        (
            "type",
            HalfBlock {
                kind: "view".into(),
                ..p.clone()
            },
        ),
        (
            "transaction",
            HalfBlock {
                transaction: TX.replace("12", "13"),
                ..p.clone()
            },
        ),
        (
            "timestamp",
            HalfBlock {
                timestamp: p.timestamp + 1,
                ..p.clone()
            },
        ),
        (
            "signature",
            HalfBlock {
                signature: key().sign_b64(p.signing_string().as_bytes()),
                ..p.clone()
            },
        ),
    ];
    for (field, block) in tampered {
        let e = block.validate().expect_err(field);
        assert_eq!(e.code(), "invalid_block_signature", "{field}: {e}");
    }
    // Malformed fields are refused before the signature is checked.
    let malformed: Vec<(&str, HalfBlock)> = vec![
        (
            "sequence 0",
            HalfBlock {
                sequence_number: 0,
                ..p.clone()
            },
        ),
        (
            "zeros after 1",
            HalfBlock {
                previous_hash: GENESIS_HASH.into(),
                ..p.clone()
            },
        ),
        (
            "short hash",
            HalfBlock {
                previous_hash: "ab".into(),
                ..p.clone()
            },
        ),
        (
            "upper-case type",
            HalfBlock {
                kind: "Contract".into(),
                ..p.clone()
            },
        ),
        (
            "line feed",
            HalfBlock {
                transaction: "{\n}".into(),
                ..p.clone()
            },
        ),
        (
            "not JSON",
            HalfBlock {
                transaction: "contract".into(),
                ..p.clone()
            },
        ),
        (
            "own chain",
            HalfBlock {
                link_public_key: p.public_key.clone(),
                ..p.clone()
            },
        ),
        (
            "signature",
            HalfBlock {
                signature: "***".into(),
                ..p.clone()
            },
        ),
    ];
    for (what, block) in malformed {
        let e = block.validate().expect_err(what);
        assert_eq!(e.code(), "invalid_block", "{what}: {e}");
    }
}

#[test]
fn two_blocks_at_one_sequence_are_a_proof_that_verifies_alone() {
    let (me, you) = (key(), key());
    let a = proposal(&me, &you, 4, &"ab".repeat(32), TX);
    let b = proposal(&me, &you, 4, &"ab".repeat(32), &TX.replace("12", "99"));
    let proof = RecordFraud::between(&b, &a).expect("a fork");
    assert_eq!(proof.kind, FraudKind::DoubleSign);
    assert_eq!(proof.verify().expect("verifies"), *me.entity());
    // Through JSON, as it travels.
    let back: RecordFraud =
        serde_json::from_str(&serde_json::to_string(&proof).expect("json")).expect("parse");
    assert_eq!(back.verify().expect("verifies"), *me.entity());
    // The same block twice, or blocks of two chains, prove nothing.
    assert!(RecordFraud::between(&a, &a).is_none());
    let theirs = proposal(&you, &me, 4, &"ab".repeat(32), TX);
    assert!(RecordFraud::between(&a, &theirs).is_none());
    // A forged proof fails: a block changed after signing, or blocks that do not conflict.
    let mut forged = proof.clone();
    forged.blocks[1].transaction = "{}".into();
    assert_eq!(
        forged.verify().expect_err("forged").code(),
        "invalid_block_signature"
    );
    let mut same = proof.clone();
    same.blocks[1] = same.blocks[0].clone();
    assert_eq!(same.verify().expect_err("same").code(), "invalid_proof");
}

#[test]
fn a_block_that_does_not_link_is_a_broken_chain_proof() {
    let (me, you) = (key(), key());
    let first = proposal(&me, &you, 1, GENESIS_HASH, TX);
    let linked = proposal(&me, &you, 2, &first.hash(), TX);
    let broken = proposal(&me, &you, 2, &"ef".repeat(32), TX);
    assert!(RecordFraud::between(&first, &linked).is_none());
    assert_eq!(
        check_link(&first, &broken).expect_err("broken").code(),
        "broken_link"
    );
    let proof = RecordFraud::between(&broken, &first).expect("broken chain");
    assert_eq!(proof.kind, FraudKind::BrokenChain);
    assert_eq!(proof.sequence_number, 1);
    assert_eq!(proof.verify().expect("verifies"), *me.entity());
    let mut wrong = proof.clone();
    wrong.kind = FraudKind::DoubleSign;
    assert_eq!(wrong.verify().expect_err("kind").code(), "invalid_proof");
}

#[test]
fn a_full_tokens_record_fits_in_a_transaction() {
    let tx = TokensRecord {
        tokens: (0..TOKENS_PER_RECORD_MAX)
            .map(|i| token_name(&format!("token-{i}")))
            .collect(),
        bytes: u64::MAX,
        bytes_total: u64::MAX,
    };
    let text = serde_json::to_string(&tx).expect("json");
    assert!(text.len() <= TRANSACTION_BYTES_MAX, "{} bytes", text.len());
    let name = token_name("abc");
    assert_eq!(name.len(), 32);
    assert!(crate::sha256_hex(b"abc").starts_with(&name));
}

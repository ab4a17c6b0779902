//! Issue 21: the issuer checks commands' signatures in batches. Over real HTTP, bad signatures
//! of every kind sent at the same moment as many good transfers are refused with
//! `invalid_signature` (the answer each gets alone), every good one is executed once, the
//! balances move by exactly the good ones, and the metrics show batches of more than one.

mod util;

use std::sync::Arc;

use lcp::config::IssuerConfig;
use protocol::{sign_request, KeyPair};
use util::{backends, TestIssuer};

/// How a signed request is spoiled before it is sent.
#[derive(Clone, Copy, Debug)]
enum Spoil {
    None,
    FlipR,
    FlipS,
    /// S + L: the same scalar, encoded without reduction (a malleated signature).
    UnreducedS,
    /// R with y >= p: a second encoding.
    UnreducedR,
    /// R the identity point (small order).
    SmallOrderR,
    /// Signed by one key, sent as another's.
    OtherEntity,
}

const SPOILS: [Spoil; 6] = [
    Spoil::FlipR,
    Spoil::FlipS,
    Spoil::UnreducedS,
    Spoil::UnreducedR,
    Spoil::SmallOrderR,
    Spoil::OtherEntity,
];

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn spoil(signature: &str, how: Spoil) -> String {
    let mut s = protocol::b64_decode(signature).expect("base64url");
    match how {
        Spoil::None | Spoil::OtherEntity => {}
        Spoil::FlipR => s[5] ^= 0x01,
        Spoil::FlipS => s[37] ^= 0x01,
        Spoil::UnreducedS => {
            let mut carry = 0u16;
            for i in 0..32 {
                let t = u16::from(s[32 + i]) + u16::from(L[i]) + carry;
                s[32 + i] = t as u8;
                carry = t >> 8;
            }
            assert_eq!(carry, 0, "S + L fits in 32 bytes");
        }
        Spoil::UnreducedR => s[..32].copy_from_slice(&[0xff; 32]),
        Spoil::SmallOrderR => {
            s[..32].fill(0);
            s[0] = 1;
        }
    }
    protocol::b64_encode(&s)
}

/// Send one transfer of 1 from `key` to `to`, spoiled as `how`: (status, error code).
#[allow(clippy::too_many_arguments)]
async fn send(
    http: &reqwest::Client,
    url: &str,
    audience: &str,
    key: &KeyPair,
    other: &KeyPair,
    to: &str,
    counter: u64,
    how: Spoil,
) -> (u16, String) {
    let body = serde_json::json!({"recipient": to, "amount": 1}).to_string();
    let auth = sign_request(
        key,
        audience,
        "POST",
        "/lcp/v1/transfers",
        node::now_ms(),
        Some(counter),
        body.as_bytes(),
    );
    let mut req = http
        .post(format!("{url}/lcp/v1/transfers"))
        .body(body.clone());
    for (name, value) in auth.headers() {
        let value = match (name, how) {
            ("LCP-Signature", _) => spoil(&value, how),
            ("LCP-Entity", Spoil::OtherEntity) => other.entity().to_string(),
            _ => value,
        };
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    let json: serde_json::Value = resp.json().await.expect("json");
    (
        status,
        json["error"]["code"].as_str().unwrap_or("").to_owned(),
    )
}

async fn metric(http: &reqwest::Client, issuer: &str, name: &str) -> u64 {
    node::client::metric(http, issuer, name)
        .await
        .unwrap_or_else(|| panic!("no {name} in the issuer's metrics")) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_among_many_good_ones_are_refused_and_the_good_paid_once() {
    /// Rounds of one burst each, until a batch of more than one has been seen.
    const ROUNDS_MAX: usize = 20;
    const SENDERS: usize = 24;
    for (backend, database) in backends("signatures") {
        let issuer = TestIssuer::start(database.url(), IssuerConfig::default());
        let audience = issuer.running.entity.to_string();
        let mint = issuer.mint();
        let mut senders = Vec::new();
        for _ in 0..SENDERS {
            let key = KeyPair::generate().expect("key");
            mint.transfer(key.entity(), 1_000, None)
                .await
                .unwrap_or_else(|e| panic!("{backend}: funding: {e}"));
            senders.push(Arc::new(key));
        }
        let sink = KeyPair::generate().expect("key");
        let other = Arc::new(KeyPair::generate().expect("key"));
        let mut good_total = 0u64;
        let mut batched = false;
        let mut counter = node::now_ms() * 1000;
        for round in 0..ROUNDS_MAX {
            let mut tasks = Vec::new();
            for (i, key) in senders.iter().enumerate() {
                // Every sender sends a good transfer; a few also a spoiled one, at once.
                let mut hows = vec![Spoil::None];
                if i < SPOILS.len() {
                    hows.push(SPOILS[(i + round) % SPOILS.len()]);
                }
                for how in hows {
                    counter += 1;
                    let (http, url, audience) = (
                        issuer.http.clone(),
                        issuer.url().to_owned(),
                        audience.clone(),
                    );
                    let (key, other, to) = (key.clone(), other.clone(), sink.entity().to_string());
                    let c = counter;
                    tasks.push(tokio::spawn(async move {
                        let answer = send(&http, &url, &audience, &key, &other, &to, c, how).await;
                        (how, answer)
                    }));
                }
            }
            for task in tasks {
                let (how, (status, code)) = task.await.expect("task");
                match how {
                    Spoil::None => {
                        assert_eq!((status, code.as_str()), (200, ""), "{backend}: good");
                        good_total += 1;
                    }
                    bad => assert_eq!(
                        (status, code.as_str()),
                        (401, "invalid_signature"),
                        "{backend}: {bad:?}"
                    ),
                }
            }
            let (signatures, batches) = (
                metric(&issuer.http, issuer.url(), "lcp_signatures_verified_total").await,
                metric(&issuer.http, issuer.url(), "lcp_signature_batches_total").await,
            );
            assert!(batches <= signatures);
            eprintln!("round {round}: {signatures} signatures in {batches} batches");
            if batches < signatures {
                batched = true;
                break;
            }
        }
        assert!(
            batched,
            "{backend}: {ROUNDS_MAX} bursts of {SENDERS} never made a batch of two"
        );
        let sink_balance = issuer
            .running
            .ledger
            .balance(sink.entity())
            .await
            .unwrap_or_else(|e| panic!("{backend}: balance: {e}"));
        assert_eq!(
            sink_balance,
            i64::try_from(good_total).expect("small"),
            "{backend}: exactly the good ones paid"
        );
        issuer.assert_sum_zero().await;
    }
}

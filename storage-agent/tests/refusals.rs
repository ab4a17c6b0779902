//! Every refusal gets its status and code, and none changes stored data or accounting.

mod util;

use clients::agent::{pay, AgentClient};
use protocol::market::{self, Contract};
use protocol::{Envelope, KeyPair};
use util::{eventually, stored_files, World};

const CAPACITY: u64 = 1 << 20;

async fn raw_status(
    client: &AgentClient,
    method: &str,
    path: &str,
    body: Vec<u8>,
    counter: Option<u64>,
) -> (u16, serde_json::Value) {
    let resp = client
        .signed()
        .send(method, path, body, counter, &[], 0)
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_codes_and_change_nothing() {
    for (backend, database) in util::backends("refusals") {
        eprintln!("backend: {backend}");
        refusals_have_codes_and_change_nothing_on(database.url()).await;
    }
}

async fn refusals_have_codes_and_change_nothing_on(database: Option<String>) {
    let world = World::start(CAPACITY, 60, database);
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let (_, offer) = client.offer().await.expect("offer");
    let issuer = world.issuer.entity.clone();
    let terms = |block: u64, duration: u64| {
        AgentClient::terms_from_offer(&offer, buyer.entity(), &issuer, block, duration, vec![])
            .expect("terms")
    };

    // Contract refusals.
    let propose_env = |env: Envelope| {
        let client = &client;
        async move {
            let body = serde_json::to_vec(&env).expect("json");
            raw_status(
                client,
                "POST",
                "/v1/contracts",
                body,
                Some(node::now_ms() * 1000),
            )
            .await
        }
    };
    let good = terms(64 * 1024, 3600);
    let mut forged = Envelope::sign_json(&buyer, market::CONTRACT_TYPE, &good).expect("sign");
    forged.payload = forged
        .payload
        .replace("\"block_bytes\":65536", "\"block_bytes\":65537");
    assert_eq!(
        code(&propose_env(forged).await.1),
        "invalid_contract_signature"
    );
    let stranger = KeyPair::generate().expect("key");
    let by_stranger = Envelope::sign_json(&stranger, market::CONTRACT_TYPE, &good).expect("sign");
    let (s, v) = propose_env(by_stranger).await;
    assert_eq!(
        (s, code(&v)),
        (401, "invalid_contract_signature"),
        "signed by someone other than the buyer"
    );
    let cases: Vec<(&str, Contract, u16)> = vec![
        (
            "price_below_offer",
            Contract {
                write_per_kib: 0,
                ..good.clone()
            },
            400,
        ),
        (
            "price_below_offer",
            Contract {
                read_per_kib: 0,
                ..good.clone()
            },
            400,
        ),
        (
            "contract_price_too_low",
            Contract {
                contract_price: 1,
                ..good.clone()
            },
            400,
        ),
        (
            "block_too_large",
            Contract {
                block_bytes: CAPACITY + 1,
                ..good.clone()
            },
            400,
        ),
        (
            "invalid_contract_id",
            Contract {
                id: "42".into(),
                ..good.clone()
            },
            400,
        ),
    ];
    for (expected, c, status) in cases {
        let env = Envelope::sign_json(&buyer, market::CONTRACT_TYPE, &c).expect("sign");
        let (s, v) = propose_env(env).await;
        assert_eq!((s, code(&v)), (status, expected), "{v}");
    }
    // Unpaid contracts may reserve half the capacity together, no more.
    let unpaid = CAPACITY / 100 * 40;
    client
        .propose(&terms(unpaid, 3600))
        .await
        .expect("unpaid contract within the pending share");
    let err = client
        .propose(&terms(CAPACITY / 100 * 20, 3600))
        .await
        .expect_err("pending share exceeded");
    assert_eq!(err.code(), Some("too_many_pending"));
    assert!(matches!(
        err,
        node::client::ClientError::Api { status: 503, .. }
    ));
    // Paid ahead, a contract is not pending: fill most of the rest, then ask for more than is
    // free.
    let big_terms = terms(CAPACITY - unpaid - 100 * 1024, 3600);
    let bought = client
        .buy(&wallet, &big_terms, 0)
        .await
        .expect("big contract paid ahead");
    assert_eq!(bought.value.status, "active");
    let big = bought.value.terms().expect("terms");
    let err = client
        .propose(&terms(200 * 1024, 3600))
        .await
        .expect_err("no space");
    assert_eq!(err.code(), Some("insufficient_space"));
    assert!(matches!(
        err,
        node::client::ClientError::Api { status: 507, .. }
    ));

    // A paid contract with little credit, and a short one to test the window.
    let c = client
        .propose(&terms(64 * 1024, 3600))
        .await
        .expect("contract")
        .value
        .terms()
        .expect("terms");
    pay(&wallet, client.signed().base_url(), &c, 100)
        .await
        .expect("pay");
    let short = client
        .propose(&terms(1024, 1))
        .await
        .expect("short")
        .value
        .terms()
        .expect("terms");
    pay(&wallet, client.signed().base_url(), &short, 100)
        .await
        .expect("pay");
    eventually(5_000, "contracts active", || async {
        client
            .contract(&c.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
    let stored = client
        .put(&c.id, "keep.bin", vec![9; 1024])
        .await
        .expect("first write");
    let before = client.contract(&c.id).await.expect("view");
    assert_eq!(before.credit, 100 - 2);

    // Object and request refusals.
    let put = |name: &str, size: usize| {
        let client = &client;
        let path = format!("/v1/contracts/{}/objects/{name}", c.id);
        async move {
            raw_status(
                client,
                "PUT",
                &path,
                vec![1; size],
                Some(node::now_ms() * 1000),
            )
            .await
        }
    };
    // `..` cannot be sent through a URL library (it normalizes dot segments), so it goes over a
    // raw connection, signed for the literal path.
    let dotdot = format!("/v1/contracts/{}/objects/..", c.id);
    let (s, body) = raw_http(
        &world.agent.url,
        &buyer,
        world.agent.agent.key.entity().as_str(),
        &dotdot,
        b"xx",
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid_name"), "{body}");
    for name in [".x", "a%2Fb", &"x".repeat(129), "%C3%A9", "a%20b"] {
        let (s, v) = put(name, 10).await;
        assert_eq!((s, code(&v)), (400, "invalid_name"), "name {name}: {v}");
    }
    let (s, v) = put("big.bin", 70 * 1024).await;
    assert_eq!((s, code(&v)), (413, "block_full"), "{v}");
    let (s, v) = put("dear.bin", 60 * 1024).await;
    assert_eq!((s, code(&v)), (402, "payment_required"), "{v}");
    assert_eq!(
        v["error"]["details"]["amount_due"],
        60 * 2 - 98,
        "amount_due says how much more is needed"
    );
    let (s, v) = raw_status(
        &client,
        "PUT",
        &format!(
            "/v1/contracts/{}/objects/x",
            "0b6f9c1e-3d2a-4f5b-9c8d-7e6f5a4b3c2d"
        ),
        vec![1],
        Some(node::now_ms() * 1000),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "unknown_contract"));
    let (s, v) = raw_status(
        &client,
        "GET",
        &format!("/v1/contracts/{}/objects/nothing", c.id),
        vec![],
        Some(node::now_ms() * 1000 + 1),
    )
    .await;
    assert_eq!((s, code(&v)), (404, "unknown_object"));
    // Signed reads are charged, so each needs a fresh counter: none, or a repeated one, is
    // refused.
    let read_path = format!("/v1/contracts/{}/objects/nothing", c.id);
    let (s, v) = raw_status(&client, "GET", &read_path, vec![], None).await;
    assert_eq!((s, code(&v)), (401, "missing_counter"));
    let counter = node::now_ms() * 1000 + 2;
    let (s, _) = raw_status(&client, "GET", &read_path, vec![], Some(counter)).await;
    assert_eq!(s, 404);
    let (s, v) = raw_status(&client, "GET", &read_path, vec![], Some(counter)).await;
    assert_eq!((s, code(&v)), (409, "counter_reused"));
    // Unsigned and wrongly signed requests.
    let unsigned = world
        .http
        .put(format!(
            "{}/v1/contracts/{}/objects/u.bin",
            world.agent.url, c.id
        ))
        .body(vec![1u8; 5])
        .send()
        .await
        .expect("send");
    assert_eq!(unsigned.status().as_u16(), 401);
    let other = AgentClient::new(
        world.http.clone(),
        &world.agent.url,
        std::sync::Arc::new(stranger),
    );
    let err = other
        .put(&c.id, "mine.bin", vec![1; 5])
        .await
        .expect_err("not the buyer");
    assert_eq!(err.code(), Some("forbidden"));
    let err = other
        .get(&c.id, "keep.bin", None)
        .await
        .expect_err("not the buyer");
    assert_eq!(err.code(), Some("forbidden"));
    let mut bad_sig = world
        .http
        .put(format!(
            "{}/v1/contracts/{}/objects/u.bin",
            world.agent.url, c.id
        ))
        .body(vec![1u8; 5]);
    let auth = protocol::sign_request(
        &buyer,
        world.agent.agent.key.entity().as_str(),
        "PUT",
        &format!("/v1/contracts/{}/objects/other.bin", c.id),
        node::now_ms(),
        Some(7),
        &[1u8; 5],
    );
    for (n, v) in auth.headers() {
        bad_sig = bad_sig.header(n, v);
    }
    let resp = bad_sig.send().await.expect("send");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "a signature for another path does not verify"
    );

    // Outside the window: the 1 s contract has ended (its data is kept for the grace period).
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let err = client
        .put(&short.id, "late.bin", vec![1; 10])
        .await
        .expect_err("after end");
    assert_eq!(err.code(), Some("contract_not_active"));

    // Nothing changed: same objects, same bytes, same accounting.
    let after = client.contract(&c.id).await.expect("view");
    assert_eq!(after, before, "refusals left the contract untouched");
    assert_eq!(
        client
            .get(&c.id, "keep.bin", None)
            .await
            .expect("get")
            .len(),
        1024
    );
    assert_eq!(stored.size, 1024);
    assert_eq!(
        stored_files(&world.objects_dir()).len(),
        1,
        "no stray bytes stored"
    );
    let big_view = client.contract(&big.id).await.expect("view");
    assert_eq!(big_view.status, "active", "paid ahead");
    assert_eq!(big_view.used_bytes, 0);
}

/// One signed PUT over a plain TCP connection, path sent exactly as given.
async fn raw_http(
    base: &str,
    key: &KeyPair,
    audience: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let auth = protocol::sign_request(
        key,
        audience,
        "PUT",
        path,
        node::now_ms(),
        Some(node::now_ms() * 1000),
        body,
    );
    let mut req = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in auth.headers() {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(req.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut out = String::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut out),
    )
    .await
    .expect("in time")
    .expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

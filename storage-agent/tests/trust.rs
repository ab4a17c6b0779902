//! What an attacker on the network tried against an agent (issue 12): a captured audit replayed
//! to drain the buyer's credit, auditors charged (or dodged with 402), forged and trickling
//! uploads holding every upload slot.

mod util;

use std::sync::Arc;
use std::time::Duration;

use clients::agent::AgentClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use util::{World, PRICES};

/// Send one signed audit request exactly as given (a captured request replays this way).
async fn send_audit(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    auth: &protocol::RequestAuth,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let mut req = http
        .post(format!("{url}{path}"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in auth.headers() {
        req = req.header(name, value);
    }
    let resp = req.send().await.expect("send audit");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_audit_is_charged_once_however_often_it_is_replayed() {
    let world = World::start(4 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let c = world
        .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, 1_000)
        .await;
    client
        .put(&c.id, "obj", vec![7u8; 20 * 1024])
        .await
        .expect("put");
    // The interval's free audit is used up first, so the captured one is charged.
    client.audit(&c.id, "obj", 0).await.expect("free audit");
    let before = client.contract(&c.id).await.expect("view").credit;

    let agent_id = world.agent.agent.key.entity().to_string();
    let path = format!("/v1/contracts/{}/audit", c.id);
    let body = br#"{"object":"obj","leaf":0}"#;
    let captured = protocol::sign_request(
        &buyer,
        &agent_id,
        "POST",
        &path,
        node::now_ms(),
        Some(4_242),
        body,
    );
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let (status, answer) =
            send_audit(&world.http, &world.agent.url, &path, &captured, body).await;
        if status != 200 {
            assert_eq!(answer["error"]["code"], "counter_reused", "{answer}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert!(statuses[1..].iter().all(|s| *s == 409), "{statuses:?}");
    let after = client.contract(&c.id).await.expect("view").credit;
    assert_eq!(
        before - after,
        (16 * PRICES.read_per_kib) as i64,
        "one charge of one 16 KiB leaf"
    );

    // A charged audit without a counter could be replayed: refused, nothing charged.
    let query =
        protocol::sign_request(&buyer, &agent_id, "POST", &path, node::now_ms(), None, body);
    let (status, answer) = send_audit(&world.http, &world.agent.url, &path, &query, body).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("missing_counter"))
    );
    assert_eq!(client.contract(&c.id).await.expect("view").credit, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_auditors_are_never_charged_and_are_rate_limited() {
    let world = World::start(4 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let auditor_key = Arc::new(protocol::KeyPair::generate().expect("key"));
    let (_, offer) = client.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        1 << 20,
        3600,
        vec![auditor_key.entity().clone()],
    )
    .expect("terms");
    // Credit for the write only: any charged audit would be refused 402.
    let write_cost = 20 * PRICES.write_per_kib;
    client.buy(&wallet, &terms, write_cost).await.expect("buy");
    util::eventually(5_000, "the contract to turn active", || async {
        client
            .contract(&terms.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
    client
        .put(&terms.id, "obj", vec![3u8; 20 * 1024])
        .await
        .expect("put");
    assert_eq!(client.contract(&terms.id).await.expect("view").credit, 0);

    let auditor = AgentClient::new(world.http.clone(), &world.agent.url, auditor_key);
    let max = storage_agent::agent::AUDITOR_AUDITS_PER_INTERVAL_MAX;
    for i in 0..max {
        let answer = auditor
            .audit(&terms.id, "obj", u64::from(i % 2))
            .await
            .unwrap_or_else(|e| panic!("auditor audit {i}: {e}"));
        assert!(clients::agent::verify_audit(
            &answer,
            &answer.root,
            u64::from(i % 2)
        ));
    }
    let refused = auditor
        .audit(&terms.id, "obj", 0)
        .await
        .expect_err("past the rate limit");
    assert_eq!(refused.code(), Some("rate_limited"), "{refused}");
    assert_eq!(
        client.contract(&terms.id).await.expect("view").credit,
        0,
        "auditors are never charged"
    );
    // The buyer itself still pays past its free audit: its one free audit, then 402.
    client.audit(&terms.id, "obj", 0).await.expect("free audit");
    let e = client
        .audit(&terms.id, "obj", 0)
        .await
        .expect_err("charged with no credit");
    assert_eq!(e.code(), Some("payment_required"), "{e}");
}

/// Open a connection and send a PUT's headers, then nothing more (or a trickle).
async fn start_upload(
    url: &str,
    path: &str,
    headers: &[(String, String)],
) -> tokio::net::TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!("PUT {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 500000\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(b"0123456789").await.expect("first bytes");
    stream
}

/// Read whatever the server answers on `stream` (until it closes or `wait_ms_max` passes).
async fn answer_of(stream: &mut tokio::net::TcpStream, wait_ms_max: u64) -> String {
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(wait_ms_max), stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Ok(Err(e)) => format!("closed: {e}"),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_trickling_uploads_do_not_block_signed_writes() {
    let world = World::start(8 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let c = world
        .active_contract(&client, &wallet, &buyer, 4 << 20, 3600, 100_000)
        .await;
    let path = format!("/v1/contracts/{}/objects/x.bin", c.id);
    let agent_id = world.agent.agent.key.entity().to_string();

    // Twelve uploads with a forged signature over a declared body hash: each is refused before
    // its body is read.
    let forger = protocol::KeyPair::generate().expect("key");
    let mut forged = Vec::new();
    for i in 0..12u64 {
        let mut auth = protocol::sign_request(
            &forger,
            &agent_id,
            "PUT",
            &path,
            node::now_ms(),
            Some(i + 1),
            &vec![0u8; 500_000],
        );
        // Claim to be the buyer: the signature is not the buyer's.
        auth.entity = buyer.entity().to_string();
        let headers: Vec<(String, String)> = auth
            .headers()
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .collect();
        forged.push(start_upload(&world.agent.url, &path, &headers).await);
    }
    for stream in &mut forged {
        let answer = answer_of(stream, 5_000).await;
        assert!(
            answer.starts_with("HTTP/1.1 401") && answer.contains("invalid_signature"),
            "a forged upload is answered 401 before its body: {answer:?}"
        );
    }

    // Eight trickling uploads that declare no body hash (so cannot be checked before their
    // body): they hold only the slots kept for such uploads.
    let mut trickling = Vec::new();
    for i in 0..8u64 {
        let auth = protocol::sign_request(
            &buyer,
            &agent_id,
            "PUT",
            &path,
            node::now_ms(),
            Some(1_000 + i),
            &vec![1u8; 500_000],
        );
        let headers: Vec<(String, String)> = [
            (protocol::HEADER_ENTITY, auth.entity.clone()),
            (protocol::HEADER_TIME, auth.time_ms.clone()),
            (protocol::HEADER_COUNTER, auth.counter.clone()),
            (protocol::HEADER_SIGNATURE, auth.signature.clone()),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), v))
        .collect();
        trickling.push(start_upload(&world.agent.url, &path, &headers).await);
    }
    // Genuine signed writes go through meanwhile (the client declares its body hash). Were they
    // queued behind the trickles they would get 503 overloaded after 10 s.
    for n in 0..3 {
        let info = client
            .put(&c.id, &format!("genuine-{n}.bin"), vec![n as u8; 300_000])
            .await
            .expect("a genuine write while uploads trickle");
        assert_eq!(info.size, 300_000);
    }
    // The trickles fall below the minimum body rate after the grace period and are dropped.
    let wait_ms = node::http::BODY_GRACE_MS + 20_000;
    for stream in &mut trickling {
        // Keep trickling until the server gives up on the connection.
        let mut gave_up = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        while tokio::time::Instant::now() < deadline {
            let answer = answer_of(stream, 2_500).await;
            if !answer.is_empty() {
                gave_up = answer;
                break;
            }
            if stream.write_all(b"0123456789").await.is_err() {
                gave_up = "closed".into();
                break;
            }
        }
        assert!(
            !gave_up.is_empty() && !gave_up.starts_with("HTTP/1.1 200"),
            "a trickling upload is dropped within {wait_ms} ms: {gave_up:?}"
        );
    }
    let view = client.contract(&c.id).await.expect("view");
    assert_eq!(
        view.used_bytes,
        3 * 300_000,
        "only the genuine writes were stored"
    );
}

/// Headers of a PUT of `len` bytes signed ahead by `key` (declaring the body's hash).
fn signed_put_headers(
    key: &protocol::KeyPair,
    agent_id: &str,
    path: &str,
    counter: u64,
    len: usize,
) -> Vec<(String, String)> {
    protocol::sign_request(
        key,
        agent_id,
        "PUT",
        path,
        node::now_ms(),
        Some(counter),
        &vec![5u8; len],
    )
    .headers()
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v))
    .collect()
}

/// From a review: one key cannot hold every upload slot with slow bodies (two at a time), an
/// unpaid contract takes no slot, and a contract's auditors share one rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_buyer_holds_two_upload_slots_and_an_unpaid_contract_none() {
    let world = World::start(8 << 20, 60, None);
    let agent_id = world.agent.agent.key.entity().to_string();
    let (client, wallet, buyer) = world.buyer(10_000_000).await;
    let c = world
        .active_contract(&client, &wallet, &buyer, 4 << 20, 3600, 100_000)
        .await;
    let path = format!("/v1/contracts/{}/objects/slow.bin", c.id);
    // Two slow signed uploads hold this buyer's share; a third waits for one of them (and
    // gets 503 overloaded after 10 s), not for anyone else's.
    let mut slow = Vec::new();
    for n in 0..2u64 {
        let h = signed_put_headers(&buyer, &agent_id, &path, 500 + n, 500_000);
        let mut stream = start_upload(&world.agent.url, &path, &h).await;
        // Slow but above the minimum rate (20 KiB/s): they keep their permits for 14 s.
        slow.push(tokio::spawn(async move {
            for _ in 0..14 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if stream.write_all(&[5u8; 20 * 1024]).await.is_err() {
                    break;
                }
            }
            stream
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h = signed_put_headers(&buyer, &agent_id, &path, 600, 500_000);
    let mut third = start_upload(&world.agent.url, &path, &h).await;
    let answer = answer_of(&mut third, 15_000).await;
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("overloaded"),
        "{answer:?}"
    );
    // Another buyer is not held up.
    let (other, wallet2, buyer2) = world.buyer(10_000_000).await;
    let c2 = world
        .active_contract(&other, &wallet2, &buyer2, 1 << 20, 3600, 100_000)
        .await;
    other
        .put(&c2.id, "fine.bin", vec![1; 100_000])
        .await
        .expect("another buyer's write");

    // An unpaid contract: refused before its body (402), holding nothing.
    let (_, offer) = client.offer().await.expect("offer");
    let terms = AgentClient::terms_from_offer(
        &offer,
        buyer2.entity(),
        &world.issuer.entity,
        1 << 20,
        3600,
        vec![],
    )
    .expect("terms");
    other.propose(&terms).await.expect("countersigned, unpaid");
    let unpaid = format!("/v1/contracts/{}/objects/x.bin", terms.id);
    let h = signed_put_headers(&buyer2, &agent_id, &unpaid, 700, 500_000);
    let mut s = start_upload(&world.agent.url, &unpaid, &h).await;
    let answer = answer_of(&mut s, 5_000).await;
    assert!(
        answer.starts_with("HTTP/1.1 402") && answer.contains("payment_required"),
        "{answer:?}"
    );
    for s in slow {
        s.abort();
    }

    // Two auditors of one contract share its limit of free audits.
    let (a1, a2) = (
        Arc::new(protocol::KeyPair::generate().expect("key")),
        Arc::new(protocol::KeyPair::generate().expect("key")),
    );
    let audited = AgentClient::terms_from_offer(
        &offer,
        buyer.entity(),
        &world.issuer.entity,
        1 << 20,
        3600,
        vec![a1.entity().clone(), a2.entity().clone()],
    )
    .expect("terms");
    client.buy(&wallet, &audited, 100_000).await.expect("buy");
    util::eventually(5_000, "active", || async {
        client
            .contract(&audited.id)
            .await
            .map(|v| v.status == "active")
            .unwrap_or(false)
    })
    .await;
    client
        .put(&audited.id, "o", vec![2; 20_000])
        .await
        .expect("put");
    let max = storage_agent::agent::AUDITOR_AUDITS_PER_INTERVAL_MAX;
    let (c1, c2) = (
        AgentClient::new(world.http.clone(), &world.agent.url, a1),
        AgentClient::new(world.http.clone(), &world.agent.url, a2),
    );
    for i in 0..max {
        let who = if i % 2 == 0 { &c1 } else { &c2 };
        who.audit(&audited.id, "o", 0)
            .await
            .expect("within the limit");
    }
    for who in [&c1, &c2] {
        let e = who
            .audit(&audited.id, "o", 0)
            .await
            .expect_err("shared limit");
        assert_eq!(e.code(), Some("rate_limited"), "{e}");
    }
}

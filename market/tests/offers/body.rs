//! The body policy (`node::service`), the same as at every service: a body over an endpoint's
//! limit is `413 body_too_large` (it was `400 invalid_json` before issue 13), and a body that
//! is not JSON is still `400 invalid_json`.

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json error body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_body_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let market = market::serve::start(market::serve::ServeOptions {
        data_dir: dir.path().join("market"),
        listen: "127.0.0.1:0".into(),
        database: None,
        allow_same_network: true,
        audit_interval_s: 3600,
        probe_interval_s: 3600,
        auditor_lease_ms: market::auditor::AUDITOR_LEASE_MS,
        crawl_interval_s: market::book::CRAWL_INTERVAL_S_DEFAULT,
        tls: None,
    })
    .expect("market");
    let http = reqwest::Client::new();
    // Over the 64 KiB of a match request, an offer or a report.
    let big = vec![b' '; 64 * 1024 + 1];
    for path in ["/v1/match", "/v1/offers", "/v1/reports"] {
        let (status, body) = post(&http, &format!("{}{path}", market.url), big.clone()).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["error"]["code"], "body_too_large", "{path}: {body}");
    }
    // Over the 4 MiB of a registration.
    let (status, body) = post(
        &http,
        &format!("{}/v1/contracts", market.url),
        vec![b' '; (4 << 20) + 1],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // A small body that is not JSON is still invalid_json.
    let (status, body) = post(&http, &format!("{}/v1/match", market.url), b"{".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
}

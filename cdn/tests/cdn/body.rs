//! The body policy (`node::service`), the same as at every service: a body over an endpoint's
//! limit is `413 body_too_large` at the publisher (it was `400 invalid_request` before issue 13),
//! and a signed body that is not the JSON an endpoint takes is still `400 invalid_request`.
//! The publisher runs in-process on SQLite; nothing here reaches its market or issuer.

use std::sync::Arc;

use clients::issuer::IssuerClient;
use node::client::{ClientError, ClockCounter, SignedClient};
use protocol::KeyPair;

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let resp = http
        .request(method, url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json error body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_413_body_too_large() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(KeyPair::generate().expect("key"));
    let db = db::Database::open(
        db::Location::sqlite_in(dir.path(), "cdn.db"),
        cdn::migrations(),
    )
    .expect("database");
    let http = reqwest::Client::new();
    // Nothing listens here: no request of this test reaches the market or the issuer.
    let nowhere = "http://127.0.0.1:9";
    let publisher = Arc::new(cdn::publisher::Publisher::new(
        key.clone(),
        db,
        http.clone(),
        nowhere,
        IssuerClient::new(http.clone(), nowhere, key.clone(), None),
        None,
        key.entity().clone(),
        nowhere.into(),
        cdn::publisher::PublisherOptions::default(),
    ));
    let server = node::http::spawn(
        "cdn-test",
        "127.0.0.1:0",
        None,
        1,
        move |cfg| cdn::server::routes(cfg, publisher.clone()),
        || {},
    )
    .expect("server");
    let url = &server.url;

    // Over the 8 MiB of a JSON command, and of a piece.
    let big = vec![b' '; (8 << 20) + 1];
    for (method, path) in [
        (reqwest::Method::POST, "/v1/uploads"),
        (reqwest::Method::POST, "/v1/views"),
        (reqwest::Method::PUT, "/v1/uploads/x/pieces/0"),
    ] {
        let (status, body) = send(&http, method, &format!("{url}{path}"), big.clone()).await;
        assert_eq!(status, 413, "{path}: {body}");
        assert_eq!(body["error"]["code"], "body_too_large", "{path}: {body}");
    }

    // A signed body that is not JSON is still invalid_request.
    let client = SignedClient::new(http.clone(), url, key.clone());
    let r = client
        .command::<serde_json::Value>(
            "POST",
            "/v1/views",
            b"{".to_vec(),
            ClockCounter::default().next(),
        )
        .await;
    match r {
        Err(ClientError::Api { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (400, "invalid_request"));
        }
        other => panic!("expected 400 invalid_request, got {other:?}"),
    }
}

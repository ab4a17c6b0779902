//! A transfer over TLS (rustls on both sides, a self-signed certificate made in the test).

mod util;

use std::sync::Arc;

use clients::issuer::IssuerClient;
use lcp::server::{ServeOptions, TlsFiles};
use node::client::{http_client, ClientOptions, CounterStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("cert");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).expect("write key");
    let running = lcp::server::start(ServeOptions {
        data_dir: dir.path().join("issuer"),
        listen: "127.0.0.1:0".into(),
        database: None,
        config: Default::default(),
        tls: Some(TlsFiles {
            cert: cert_path.clone(),
            key: key_path,
        }),
    })
    .expect("TLS issuer starts");
    assert!(running.url.starts_with("https://"), "{}", running.url);

    // Without trusting the certificate the client refuses to talk.
    let untrusting = http_client(&ClientOptions::default()).expect("http");
    let mint_key = dir.path().join("issuer/identity.key");
    let key = Arc::new(node::keyfile::load(&mint_key).expect("key"));
    let refused = IssuerClient::new(untrusting, &running.url, key.clone(), None)
        .balance()
        .await;
    assert!(
        matches!(refused, Err(node::client::ClientError::Unreachable { .. })),
        "{refused:?}"
    );

    let http = http_client(&ClientOptions {
        ca_cert: Some(cert_path),
        ..ClientOptions::default()
    })
    .expect("http");
    let mint = IssuerClient::new(
        http.clone(),
        &running.url,
        key,
        Some(CounterStore::beside_key(&mint_key)),
    );
    let wallet = Arc::new(protocol::KeyPair::generate().expect("key"));
    let answer = mint
        .transfer(wallet.entity(), 123, Some("tls"))
        .await
        .expect("transfer over TLS");
    assert_eq!(answer.value.seq, 1);
    let w = IssuerClient::new(http, &running.url, wallet, None);
    assert_eq!(w.balance().await.expect("balance").balance, 123);
}

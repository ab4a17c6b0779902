//! Test helpers that start an issuer and mint funds (behind the `testing` feature).

/// A real issuer for a test, with its data (SQLite) under `dir`, on a loopback port; stopped
/// when dropped.
pub fn start_issuer(dir: &std::path::Path) -> crate::server::RunningIssuer {
    crate::server::start(crate::server::ServeOptions {
        data_dir: dir.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        database: None,
        config: Default::default(),
        tls: None,
    })
    .expect("issuer")
}

/// A wallet on `issuer` holding the issuer's own key (the mint: it can fund anyone).
pub fn mint(
    issuer: &crate::server::RunningIssuer,
    issuer_dir: &std::path::Path,
    http: &reqwest::Client,
) -> clients::issuer::IssuerClient {
    let key_path = issuer_dir.join("identity.key");
    clients::issuer::IssuerClient::new(
        http.clone(),
        &issuer.url,
        std::sync::Arc::new(node::keyfile::load(&key_path).expect("mint key")),
        Some(node::client::CounterStore::beside_key(&key_path)),
    )
}

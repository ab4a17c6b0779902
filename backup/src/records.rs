//! `backup records`: the wallet's record chain (DESIGN 11), kept beside the wallet key
//! (`<key>.records/chain.jsonl`, `clients::records`). The backup writes a `contract` record
//! (event `active`) with each agent it buys a contract from; an agent that did not agree at
//! once is asked again after each `create` and by this command.

use std::path::Path;

use clients::records::{RecordChain, Shown};

use crate::error::Error;
use crate::repo::{read_json, RepoConfig, Wallet};

/// Send unanswered proposals again to the agents of the repository configured in `dir` (if
/// any), then read the chain.
pub async fn show(dir: &Path, wallet: &Wallet) -> Result<Shown, Error> {
    if let Ok(config) = read_json::<RepoConfig>(&dir.join("repo.json")) {
        let http = node::client::http_client(&node::client::ClientOptions::default())
            .map_err(|e| Error::Usage(e.to_string()))?;
        let agents: Vec<node::client::SignedClient> = config
            .slots
            .iter()
            .chain(&config.retired)
            .map(|s| node::client::SignedClient::new(http.clone(), &s.endpoint, wallet.key.clone()))
            .collect();
        crate::purchases::resend_records(&wallet.path, wallet.key.clone(), &agents).await;
        let slots: Vec<crate::repo::Slot> = config
            .slots
            .iter()
            .chain(&config.retired)
            .cloned()
            .collect();
        crate::purchases::record_ended(&wallet.path, wallet.key.clone(), &http, &slots).await;
    }
    let chain = RecordChain::open_async(&wallet.path, wallet.key.clone())
        .await
        .map_err(|e| Error::Usage(format!("the record chain: {e}")))?;
    Ok(chain.shown())
}

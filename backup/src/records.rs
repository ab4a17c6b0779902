//! `backup records`: the wallet's record chain (DESIGN 11), kept beside the wallet key
//! (`<key>.records/chain.jsonl`, `clients::records`). The backup writes a `contract` record
//! (event `active`) with each agent it buys a contract from; an agent that did not agree at
//! once is asked again after each `create` and by this command.

use std::path::Path;

use clients::records::RecordChain;
use serde::Serialize;

use crate::error::Error;
use crate::repo::{read_json, RepoConfig, Wallet};

/// One block of the wallet's chain, for people and `--json`.
#[derive(Debug, Serialize)]
pub struct ShownBlock {
    pub sequence_number: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub counterparty: String,
    pub transaction: serde_json::Value,
    pub timestamp_ms: u64,
    pub hash: String,
    /// The counter-party's agreement is held.
    pub agreed: bool,
    /// The counter-party's half-block, when held.
    pub agreement: Option<protocol::record::HalfBlock>,
}

/// The chain as `backup records` shows it.
#[derive(Debug, Serialize)]
pub struct Shown {
    pub entity: String,
    pub blocks: Vec<ShownBlock>,
    pub agreed: usize,
    pub waiting: usize,
}

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
    }
    let chain = RecordChain::open(&wallet.path, wallet.key.clone())
        .map_err(|e| Error::Usage(format!("the record chain: {e}")))?;
    let blocks: Vec<ShownBlock> = chain
        .own()
        .iter()
        .map(|b| {
            let agreement = chain.agreement(b.sequence_number).cloned();
            ShownBlock {
                sequence_number: b.sequence_number,
                kind: b.kind.clone(),
                counterparty: b.link_public_key.clone(),
                transaction: b.transaction_json(),
                timestamp_ms: b.timestamp,
                hash: b.hash(),
                agreed: agreement.is_some() || !b.is_proposal(),
                agreement,
            }
        })
        .collect();
    let agreed = blocks.iter().filter(|b| b.agreed).count();
    Ok(Shown {
        entity: wallet.key.entity().to_string(),
        waiting: blocks.len() - agreed,
        agreed,
        blocks,
    })
}

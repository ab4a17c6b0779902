//! PeerClient: the bid-solicitation overlay's calls (DESIGN 13), for peers soliciting their
//! neighbours and for the `peer find` / `peer get` CLI.
//!
//! Every charged call answers the seller's half of the buyer's tab, when it keeps one
//! (`LCP-Line: <id>;<seq>;<owed>;<signature>`, DESIGN 12), beside the value.

use std::sync::Arc;

use node::client::{check_status, ClientError, SignedClient};
use protocol::overlay::{Accept, Bids, Contest, ContestAnswer, Instructions, Solicit, Terms};
use protocol::KeyPair;

/// The header that carries the seller's half of a tab's state.
pub const LINE_HEADER: &str = "lcp-line";

/// Largest document `retrieve` reads (a peer serves no more either).
pub const DOCUMENT_BYTES_MAX: usize = 256 << 20;

pub use protocol::credit::LineHalf;

/// A charged call's answer and the tab state that came with it.
#[derive(Debug, Clone)]
pub struct Charged<T> {
    pub value: T,
    pub line: Option<LineHalf>,
}

#[derive(Clone)]
pub struct PeerClient {
    signed: SignedClient,
}

impl PeerClient {
    pub fn new(http: reqwest::Client, base_url: &str, key: Arc<KeyPair>) -> PeerClient {
        PeerClient {
            signed: SignedClient::new(http, base_url, key),
        }
    }

    pub fn base_url(&self) -> &str {
        self.signed.base_url()
    }

    pub fn signed(&self) -> &SignedClient {
        &self.signed
    }

    /// `GET /v1/terms` (public).
    pub async fn terms(&self) -> Result<Terms, ClientError> {
        let resp = self
            .signed
            .send("GET", "/v1/terms", Vec::new(), None, &[], 0)
            .await?;
        decode(check_status(resp).await?).await
    }

    /// `POST /v1/solicit`: this peer's bids, cheapest first.
    pub async fn solicit(&self, s: &Solicit, counter: u64) -> Result<Charged<Bids>, ClientError> {
        self.charged("/v1/solicit", s, counter, &[]).await
    }

    /// [`PeerClient::solicit`] paid with the payment headers `pay` (paywords).
    pub async fn solicit_paying(
        &self,
        s: &Solicit,
        counter: u64,
        pay: &[(&str, String)],
    ) -> Result<Charged<Bids>, ClientError> {
        self.charged("/v1/solicit", s, counter, pay).await
    }

    /// `POST /v1/accept`: the retrieval instructions for `bid`, usable by `buyer` once.
    pub async fn accept(
        &self,
        bid: &str,
        buyer: &str,
        counter: u64,
    ) -> Result<Charged<Instructions>, ClientError> {
        self.accept_paying(bid, buyer, counter, &[]).await
    }

    /// [`PeerClient::accept`] paid with the payment headers `pay` (paywords).
    pub async fn accept_paying(
        &self,
        bid: &str,
        buyer: &str,
        counter: u64,
        pay: &[(&str, String)],
    ) -> Result<Charged<Instructions>, ClientError> {
        let body = Accept {
            bid: bid.to_owned(),
            buyer: buyer.to_owned(),
        };
        self.charged("/v1/accept", &body, counter, pay).await
    }

    /// `POST /v1/contest`: `bid` could not be retrieved; answers what was refunded.
    pub async fn contest(
        &self,
        bid: &str,
        reason: &str,
        counter: u64,
    ) -> Result<Charged<ContestAnswer>, ClientError> {
        let body = Contest {
            bid: bid.to_owned(),
            reason: reason.to_owned(),
        };
        self.charged("/v1/contest", &body, counter, &[]).await
    }

    /// `GET /v1/status` (public): the peer's status as JSON.
    pub async fn status(&self) -> Result<serde_json::Value, ClientError> {
        let resp = self
            .signed
            .send("GET", "/v1/status", Vec::new(), None, &[], 0)
            .await?;
        decode(check_status(resp).await?).await
    }

    async fn charged<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        counter: u64,
        extra: &[(&str, String)],
    ) -> Result<Charged<T>, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Decode(e.to_string()))?;
        let (answer, headers) = self
            .signed
            .command_and_headers(path, body, counter, extra)
            .await?;
        let line = headers
            .get(LINE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(LineHalf::parse);
        Ok(Charged {
            value: answer.value,
            line,
        })
    }
}

/// Retrieve a document by its instructions, signed by `buyer` (the instructions' buyer), at
/// most [`DOCUMENT_BYTES_MAX`] bytes. The caller checks the bytes against the name.
pub async fn retrieve(
    http: &reqwest::Client,
    buyer: Arc<KeyPair>,
    instructions: &Instructions,
) -> Result<Vec<u8>, ClientError> {
    let base = instructions
        .base_url()
        .ok_or_else(|| ClientError::Config(format!("bad instructions URL {}", instructions.url)))?;
    let path = &instructions.url[base.len()..];
    let signed = SignedClient::new(http.clone(), &base, buyer);
    let resp = signed.send("GET", path, Vec::new(), None, &[], 0).await?;
    let resp = check_status(resp).await?;
    let bytes = node::client::body_capped(resp, DOCUMENT_BYTES_MAX).await?;
    Ok(bytes)
}

async fn decode<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
    let bytes = node::client::body_capped(resp, 1 << 20).await?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

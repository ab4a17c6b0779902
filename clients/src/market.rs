//! The typed client for buyers (and tests): the book, matches, contract registration and
//! outcome reports. Signed calls carry counters from the clock, like the agent client's.

use std::sync::Arc;

use node::client::{check_status, ClientError, CommandAnswer, SignedClient};
use protocol::{ErrorBody, KeyPair};

use protocol::book::{
    Listing, MatchAnswer, MatchRequest, RegisteredContract, Registration, Report,
};

/// The stable code of a match no choice meets.
pub const CANNOT_MEET_TARGET: &str = "cannot_meet_target";

/// What `POST /v1/match` answered.
#[derive(Debug, Clone)]
pub enum MatchOutcome {
    Met(MatchAnswer),
    /// `409 cannot_meet_target`: the whole error body, `details` included.
    CannotMeet(ErrorBody),
}

pub struct MarketClient {
    signed: SignedClient,
    http: reqwest::Client,
    base: String,
    counters: node::client::ClockCounter,
}

/// Listings asked for in one `GET /v1/offers` (the market answers at most 100,000).
pub const OFFERS_PAGE_LISTINGS: usize = 10_000;
/// Pages of a chain [`MarketClient::records`] reads at most (100,000 blocks).
pub const RECORD_PAGES_MAX: usize = 100;
/// Pages [`MarketClient::offers`] reads at most (a million listings).
pub const OFFERS_PAGES_MAX: usize = 100;

/// One page of `GET /v1/offers`.
#[derive(serde::Deserialize)]
struct OffersPage {
    offers: Vec<Listing>,
    #[serde(default)]
    next_offset: Option<usize>,
}

impl MarketClient {
    pub fn new(http: reqwest::Client, market_url: &str, key: Arc<KeyPair>) -> MarketClient {
        MarketClient {
            signed: SignedClient::new(http.clone(), market_url, key),
            http,
            base: market_url.trim_end_matches('/').to_owned(),
            counters: node::client::ClockCounter::default(),
        }
    }

    pub fn signed(&self) -> &SignedClient {
        &self.signed
    }

    /// Counters from the clock in microseconds: increasing across restarts without a file.
    fn next_counter(&self) -> u64 {
        self.counters.next()
    }

    /// A `404 not_found` from what should be a market: say what the URL is instead (an issuer,
    /// an agent), as the wallet does, so a swapped --market and --issuer is plain.
    async fn name_the_service(&self, e: ClientError) -> ClientError {
        if e.code() != Some("not_found") {
            return e;
        }
        match self.signed.descriptor().await {
            Ok(d) if d["role"] != "market" => {
                let role = d["role"].as_str().unwrap_or("server of another kind");
                let article = if role.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                ClientError::Config(format!(
                    "{} is {article} {role}, not a market: give the market's URL",
                    self.base
                ))
            }
            _ => e,
        }
    }

    async fn decode<T: serde::de::DeserializeOwned>(
        url: &str,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let resp = resp.map_err(|e| ClientError::Unreachable {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
        check_status(resp)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// The live offers, priced in `currency` (each offer's first currency when `None`),
    /// cheapest reliability-adjusted price first: every page of the book, at most
    /// [`OFFERS_PAGES_MAX`] of them.
    pub async fn offers(&self, currency: Option<&str>) -> Result<Vec<Listing>, ClientError> {
        let mut all = Vec::new();
        let mut offset = 0;
        for _ in 0..OFFERS_PAGES_MAX {
            let page = self.offers_page(currency, None, offset).await?;
            all.extend(page.offers);
            match page.next_offset {
                // A market that answers no further offset ends the list (older markets
                // answer the whole book at once).
                Some(next) if next > offset => offset = next,
                _ => break,
            }
        }
        Ok(all)
    }

    /// `agent`'s listing in `currency` (its first currency when `None`), if it has a live
    /// offer: one request, however large the book.
    pub async fn listing_of(
        &self,
        agent: &str,
        currency: Option<&str>,
    ) -> Result<Option<Listing>, ClientError> {
        let page = self.offers_page(currency, Some(agent), 0).await?;
        // A market that does not know the `agent` filter answers the book: look for it.
        Ok(page.offers.into_iter().find(|l| l.agent == agent))
    }

    async fn offers_page(
        &self,
        currency: Option<&str>,
        agent: Option<&str>,
        offset: usize,
    ) -> Result<OffersPage, ClientError> {
        let mut url = format!(
            "{}/v1/offers?offset={offset}&limit={OFFERS_PAGE_LISTINGS}",
            self.base
        );
        for (name, value) in [("currency", currency), ("agent", agent)] {
            if let Some(v) = value {
                url.push_str(&format!("&{name}={}", node::client::encode_query_value(v)));
            }
        }
        node::client::check_url(&self.base)?;
        match Self::decode(&url, self.http.get(&url).send().await).await {
            Ok(page) => Ok(page),
            Err(e) => Err(self.name_the_service(e).await),
        }
    }

    /// The blocks of `entity`'s record chain the market holds, in order (at most
    /// [`RECORD_PAGES_MAX`] pages).
    pub async fn records(
        &self,
        entity: &str,
    ) -> Result<Vec<protocol::record::HalfBlock>, ClientError> {
        node::client::check_url(&self.base)?;
        let mut blocks = Vec::new();
        let mut from = 1;
        for _ in 0..RECORD_PAGES_MAX {
            let url = format!(
                "{}/v1/records?public_key={}&from={from}",
                self.base,
                node::client::encode_query_value(entity)
            );
            let page: protocol::record::RecordsPage =
                match Self::decode(&url, self.http.get(&url).send().await).await {
                    Ok(p) => p,
                    Err(e) => return Err(self.name_the_service(e).await),
                };
            let Some(last) = page.blocks.last().map(|b| b.sequence_number) else {
                break;
            };
            blocks.extend(page.blocks);
            if last >= page.head {
                break;
            }
            from = last + 1;
        }
        Ok(blocks)
    }

    /// What the market's records say of `entity` (`GET /v1/reputation`).
    pub async fn reputation(
        &self,
        entity: &str,
    ) -> Result<protocol::book::EntityReputation, ClientError> {
        node::client::check_url(&self.base)?;
        let url = format!(
            "{}/v1/reputation?entity={}",
            self.base,
            node::client::encode_query_value(entity)
        );
        match Self::decode(&url, self.http.get(&url).send().await).await {
            Ok(r) => Ok(r),
            Err(e) => Err(self.name_the_service(e).await),
        }
    }

    /// Agents for k-of-n storage at the lowest price meeting the target; `409
    /// cannot_meet_target` as [`ClientError::Api`] when none does.
    pub async fn match_agents(&self, request: &MatchRequest) -> Result<MatchAnswer, ClientError> {
        node::client::check_url(&self.base)?;
        let url = format!("{}/v1/match", self.base);
        match Self::decode(&url, self.http.post(&url).json(request).send().await).await {
            Ok(answer) => Ok(answer),
            Err(e) => Err(self.name_the_service(e).await),
        }
    }

    /// Like [`Self::match_agents`], but a `409 cannot_meet_target` comes back whole, with the
    /// best achievable in `error.details` (`best_failure_probability`, `best`, `candidates`).
    pub async fn match_or_best(&self, request: &MatchRequest) -> Result<MatchOutcome, ClientError> {
        node::client::check_url(&self.base)?;
        let url = format!("{}/v1/match", self.base);
        let resp = self
            .http
            .post(&url)
            .json(request)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        if resp.status().as_u16() != 409 {
            return match Self::decode(&url, Ok(resp)).await {
                Ok(answer) => Ok(MatchOutcome::Met(answer)),
                Err(e) => Err(self.name_the_service(e).await),
            };
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) if body.error.code == CANNOT_MEET_TARGET => Ok(MatchOutcome::CannotMeet(body)),
            Ok(body) => Err(ClientError::Api {
                status: 409,
                code: body.error.code,
                message: body.error.message,
                details: body.error.details,
            }),
            Err(e) => Err(ClientError::Decode(e.to_string())),
        }
    }

    /// Register a dual-signed contract and its objects' roots, so the market audits the agent.
    pub async fn register(
        &self,
        registration: &Registration,
    ) -> Result<CommandAnswer<serde_json::Value>, ClientError> {
        let body =
            serde_json::to_vec(registration).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/v1/contracts", body, self.next_counter())
            .await
    }

    /// The running contracts this client's key registered, with their agents and objects.
    pub async fn my_contracts(&self) -> Result<Vec<RegisteredContract>, ClientError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            contracts: Vec<RegisteredContract>,
        }
        let a: Answer = self.signed.query("/v1/contracts", 0).await?;
        Ok(a.contracts)
    }

    /// Report how an agent served one of the sender's registered contracts.
    pub async fn report(
        &self,
        report: &Report,
    ) -> Result<CommandAnswer<serde_json::Value>, ClientError> {
        let body = serde_json::to_vec(report).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.signed
            .command("POST", "/v1/reports", body, self.next_counter())
            .await
    }
}

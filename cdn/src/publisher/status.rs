//! What the publisher shows: the catalog, manifests, and its status as one typed document that
//! the status page, `GET /v1/status` and `/metrics` all read.

use protocol::cdn::Catalog;
use protocol::ledger::Currency;
use protocol::Envelope;
use serde::{Deserialize, Serialize};

use super::*;

/// The publisher's status (`GET /v1/status`). Amounts are minor units of `currency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub publisher: EntityId,
    pub currency: EntityId,
    /// The currency's code and decimals, for people; `None` when the issuer did not answer.
    pub currency_units: Option<Currency>,
    pub issuer_url: String,
    /// The publisher's balance; `None` when the issuer did not answer.
    pub balance: Option<i64>,
    pub contents: Vec<ContentStatus>,
    /// Live contracts.
    pub contracts: Vec<ContractStatus>,
    /// Scaling and publishing events, newest first.
    pub events: Vec<Event>,
    /// Bytes of pieces the publisher itself read (replication); never for viewers.
    pub replication_bytes: u64,
    pub scaling: ScalingStatus,
    /// Viewers' paywords: accepted, redeemed and pending, per currency.
    #[serde(default)]
    pub paywords: Vec<node::paywords::Holdings>,
}

/// One content (published or still uploading).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContentStatus {
    pub content: String,
    pub title: String,
    pub size: i64,
    pub pieces: u64,
    pub published: bool,
    pub price_per_view: i64,
    pub replicas_base: i32,
    /// Fewest and most replicas of any piece.
    pub replicas_min: usize,
    pub replicas_max: usize,
    /// Views sold and what they paid.
    pub views: i64,
    pub income: i64,
    pub pieces_asked_this_round: u64,
}

/// One live contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContractStatus {
    pub id: String,
    pub agent: String,
    pub endpoint: String,
    pub read_per_kib: i64,
    pub used_bytes: i64,
    pub block_bytes: i64,
    /// The publisher's estimate of the contract's read credit, once known.
    pub credit_estimate: Option<i64>,
    pub ends: String,
}

/// The scaling rule in force.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingStatus {
    pub hot_reads_per_replica: u64,
    pub cold_after_s: u64,
    pub interval_s: u64,
}

/// A scaling or publishing event, for the status page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub content: String,
    pub what: String,
}

impl Status {
    /// Views sold, over every content.
    pub fn views_total(&self) -> i64 {
        self.contents.iter().map(|c| c.views).sum()
    }

    /// What the views paid, over every content.
    pub fn income_total(&self) -> i64 {
        self.contents.iter().map(|c| c.income).sum()
    }
}

impl Publisher {
    /// The publisher's currency (code and decimals), for showing prices; `None` when the
    /// issuer does not answer.
    pub async fn currency_units(&self) -> Option<protocol::ledger::Currency> {
        // Bounded: a status page must not wait on an issuer that does not answer.
        clients::issuer::currency_at(&self.issuer_url).await
    }

    /// `GET /v1/contents`: the published contents, with the currency's units for showing prices.
    pub async fn catalog(&self) -> Result<Catalog, Error> {
        let rows = self
            .db
            .run(|conn| {
                Ok::<_, Error>(
                    contents::table
                        .filter(contents::manifest.ne(""))
                        .order(contents::created_s)
                        .load::<ContentRow>(conn)?,
                )
            })
            .await?;
        let contents = rows
            .into_iter()
            .map(|r| CatalogEntry {
                pieces: manifest::piece_count(r.size as u64, r.piece_bytes as u64),
                content: r.id,
                title: r.title,
                mime: r.mime,
                size: r.size as u64,
                price_per_view: r.price_per_view as u64,
                currency: self.currency.to_string(),
                issuer_url: self.issuer_url.clone(),
            })
            .collect();
        Ok(Catalog {
            contents,
            currency_units: self.currency_units().await,
        })
    }

    /// The signed manifest of a published content.
    pub async fn manifest(&self, content: &str) -> Result<Envelope, Error> {
        let row = self.content(content).await?;
        if row.manifest.is_empty() {
            return Err(Error::UnknownContent(content.to_owned()));
        }
        serde_json::from_str(&row.manifest).map_err(|e| Error::InvalidRequest(e.to_string()))
    }

    /// Everything the status page shows.
    pub async fn status(&self) -> Result<Status, Error> {
        let rows = self
            .db
            .run(|conn| {
                Ok::<_, Error>(
                    contents::table
                        .order(contents::created_s)
                        .load::<ContentRow>(conn)?,
                )
            })
            .await?;
        let demand = self
            .demand
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut contents_out = Vec::new();
        for row in rows {
            let n = manifest::piece_count(row.size as u64, row.piece_bytes as u64);
            let cid = row.id.clone();
            let counts = self.db.run(move |conn| replica_counts(conn, &cid)).await?;
            let cid = row.id.clone();
            let (views_sold, income): (i64, i64) = self
                .db
                .run(move |conn| {
                    let rows: Vec<i64> = views::table
                        .filter(views::content_id.eq(&cid))
                        .select(views::paid)
                        .load(conn)?;
                    Ok::<_, Error>((rows.len() as i64, rows.iter().sum()))
                })
                .await?;
            let per_piece: Vec<usize> = (0..n)
                .map(|i| counts.get(&i).copied().unwrap_or(0))
                .collect();
            contents_out.push(ContentStatus {
                pieces_asked_this_round: demand.get(&row.id).map(|d| d.pieces_asked).unwrap_or(0),
                content: row.id,
                title: row.title,
                size: row.size,
                pieces: n,
                published: !row.manifest.is_empty(),
                price_per_view: row.price_per_view,
                replicas_base: row.replicas_base,
                replicas_min: per_piece.iter().min().copied().unwrap_or(0),
                replicas_max: per_piece.iter().max().copied().unwrap_or(0),
                views: views_sold,
                income,
            });
        }
        let contracts_rows = self.live_contracts().await?;
        let credit = self
            .credit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let contracts_out = contracts_rows
            .into_iter()
            .map(|c| ContractStatus {
                credit_estimate: credit.get(&c.id).copied(),
                ends: protocol::market::format_rfc3339(c.end_s),
                id: c.id,
                agent: c.agent,
                endpoint: c.endpoint,
                read_per_kib: c.read_per_kib,
                used_bytes: c.used_bytes,
                block_bytes: c.block_bytes,
            })
            .collect();
        let events: Vec<Event> = self
            .events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let balance = self.wallet.balance().await.map(|b| b.balance).ok();
        // For people: the code and decimals amounts are shown with (absent if the issuer
        // does not answer).
        let units = self.currency_units().await;
        Ok(Status {
            publisher: self.key.entity().clone(),
            currency: self.currency.clone(),
            currency_units: units,
            issuer_url: self.issuer_url.clone(),
            balance,
            contents: contents_out,
            contracts: contracts_out,
            events,
            replication_bytes: self
                .replication_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            scaling: ScalingStatus {
                hot_reads_per_replica: self.options.hot_reads_per_replica,
                cold_after_s: self.options.cold_after_s,
                interval_s: self.options.scale_interval_s,
            },
            paywords: self.payword_holdings().await?,
        })
    }
}

//! A trader's side of the exchange (`bank orders`, `bank trade`): place an order signed
//! with the trader's key, then take its turns in every trade it makes until each is done or
//! stopped: pay its slice with its own wallet at the slice's issuer (transaction id
//! `trade:step:t|m`) and claim it; confirm a slice paid to it once its own deposits show it.
//! The trader never pays a slice before the counter-party's previous one was confirmed, so
//! it risks at most one slice.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clients::issuer::IssuerClient;
use node::client::{ClientError, ClockCounter, CounterStore, SignedClient};
use protocol::{EntityId, KeyPair};

use super::store::{NewOrder, OrderView, Placed, TradeView};

/// Pause between looks at the trader's trades.
const POLL_MS: u64 = 200;
/// Longest one look for a slice in the trader's deposits.
const DEPOSIT_WAIT_MS: u64 = 2_000;

/// The exchange at `url`, as the trader with `key` sees it.
pub struct Trader {
    exchange: SignedClient,
    key_path: std::path::PathBuf,
    key: Arc<KeyPair>,
    http: reqwest::Client,
    counters: ClockCounter,
    /// Issuer entity -> URL, from the exchange's descriptor.
    currencies: Vec<(String, String)>,
}

/// How an order ended for this trader.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub order: String,
    /// What was left of the order to sell when it was cancelled at the end (0: filled).
    pub cancelled_left: u64,
    pub trades: Vec<TradeView>,
}

/// What [`Trader::trade`] tells as it goes.
pub enum Event<'a> {
    Placed(&'a Placed),
    /// This trader took its turn in a trade.
    Step(&'a TradeView),
    /// Something failed and is tried again.
    Retry(&'a str),
}

impl Trader {
    /// The exchange as a reader only (`bank orders`): a fresh key, which pays nothing.
    pub async fn reader(url: &str) -> anyhow::Result<Trader> {
        Trader::with_key(url, Path::new(""), Arc::new(KeyPair::generate()?)).await
    }

    pub async fn open(url: &str, key_path: &Path) -> anyhow::Result<Trader> {
        let key = Arc::new(node::keyfile::load(key_path)?);
        Trader::with_key(url, key_path, key).await
    }

    async fn with_key(url: &str, key_path: &Path, key: Arc<KeyPair>) -> anyhow::Result<Trader> {
        let http = node::client::http_client(&node::client::ClientOptions::default())?;
        let exchange = SignedClient::new(http.clone(), url, key.clone());
        let d = exchange.descriptor().await?;
        anyhow::ensure!(
            d["role"] == "bank" && d["exchange"].is_object(),
            "{url} runs no exchange (a bank started with --exchange has one)"
        );
        let currencies = d["currencies"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| {
                        Some((
                            c["issuer"].as_str()?.to_owned(),
                            c["url"].as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Trader {
            exchange,
            key_path: key_path.to_path_buf(),
            key,
            http,
            counters: ClockCounter::default(),
            currencies,
        })
    }

    pub fn entity(&self) -> &EntityId {
        self.key.entity()
    }

    /// The issuer entity of the currency at `url_or_id` (an issuer URL or its entity id), as
    /// the exchange lists it.
    pub fn issuer(&self, url_or_id: &str) -> anyhow::Result<String> {
        let wanted = url_or_id.trim_end_matches('/');
        self.currencies
            .iter()
            .find(|(id, url)| id == wanted || url.trim_end_matches('/') == wanted)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| anyhow::anyhow!("the exchange does not trade the currency {url_or_id}"))
    }

    /// A currency as people know it: its issuer's URL (else its id).
    pub fn shown<'a>(&'a self, issuer: &'a str) -> &'a str {
        self.currencies
            .iter()
            .find(|(id, _)| id == issuer)
            .map_or(issuer, |(_, url)| url.as_str())
    }

    fn wallet(&self, issuer: &str) -> anyhow::Result<IssuerClient> {
        let (_, url) = self
            .currencies
            .iter()
            .find(|(id, _)| id == issuer)
            .ok_or_else(|| anyhow::anyhow!("no currency {issuer} at the exchange"))?;
        Ok(IssuerClient::new(
            self.http.clone(),
            url,
            self.key.clone(),
            Some(CounterStore::beside_key(&self.key_path)),
        ))
    }

    pub async fn place(&self, order: &NewOrder) -> Result<Placed, ClientError> {
        let body = serde_json::to_vec(order).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(self
            .exchange
            .command("POST", "/v1/exchange/orders", body, self.counters.next())
            .await?
            .value)
    }

    pub async fn book(&self, a: &str, b: &str) -> Result<serde_json::Value, ClientError> {
        let pq = format!(
            "/v1/exchange/book?a={}&b={}",
            node::client::encode_query_value(a),
            node::client::encode_query_value(b)
        );
        self.exchange.query(&pq, 0).await
    }

    async fn trades(&self) -> Result<Vec<TradeView>, ClientError> {
        let pq = format!(
            "/v1/exchange/trades?trader={}",
            node::client::encode_query_value(self.entity().as_str())
        );
        let v: serde_json::Value = self.exchange.query(&pq, 0).await?;
        serde_json::from_value(v["trades"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Say this trader paid half `half` of `trade` (what [`Trader::trade`] does after paying).
    pub async fn claim(&self, trade: &str, half: u32) -> Result<TradeView, ClientError> {
        self.turn(trade, half, "claim").await
    }

    async fn turn(&self, trade: &str, half: u32, what: &str) -> Result<TradeView, ClientError> {
        let body = serde_json::to_vec(&serde_json::json!({ "half": half }))
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(self
            .exchange
            .command(
                "POST",
                &format!("/v1/exchange/trades/{trade}/{what}"),
                body,
                self.counters.next(),
            )
            .await?
            .value)
    }

    /// The command counter the slice `transaction_id` is paid with: reserved once and kept
    /// beside the key (`<key>.trades/`) before the transfer is sent, so a trader restarted
    /// half way sends the same command again and the issuer executes it at most once.
    async fn counter_for(
        &self,
        wallet: &IssuerClient,
        transaction_id: &str,
    ) -> anyhow::Result<u64> {
        let mut dir = self.key_path.clone().into_os_string();
        dir.push(".trades");
        let dir = std::path::PathBuf::from(dir);
        let file = dir.join(transaction_id.replace(':', "_"));
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(counter) = text.trim().parse() {
                return Ok(counter);
            }
        }
        let counter = wallet.next_counter().await?;
        std::fs::create_dir_all(&dir)?;
        node::client::write_durably(&file, counter.to_string().as_bytes())?;
        Ok(counter)
    }

    /// Take this trader's turn in `t`, if it has one now. Answers true when it did something.
    async fn step(&self, t: &TradeView) -> anyhow::Result<bool> {
        let Some(turn) = &t.turn else {
            return Ok(false);
        };
        let me = self.entity().as_str();
        if turn.payer == me && !turn.claimed {
            if turn.amount > 0 {
                let to = EntityId::parse(&turn.receiver)
                    .map_err(|_| anyhow::anyhow!("the trade names no receiver"))?;
                let wallet = self.wallet(&turn.issuer)?;
                let counter = self.counter_for(&wallet, &turn.transaction_id).await?;
                wallet
                    .transfer_with_counter(counter, &to, turn.amount, Some(&turn.transaction_id))
                    .await?;
            }
            self.turn(&t.id, turn.half, "claim").await?;
            return Ok(true);
        }
        if turn.receiver == me && turn.claimed {
            let arrived = turn.amount == 0 || {
                let page = self
                    .wallet(&turn.issuer)?
                    .deposits(0, DEPOSIT_WAIT_MS, Some(&turn.transaction_id))
                    .await?;
                page.deposits
                    .iter()
                    .filter(|d| d.from == turn.payer)
                    .map(|d| d.amount)
                    .sum::<u64>()
                    >= turn.amount
            };
            if arrived {
                self.turn(&t.id, turn.half, "confirm").await?;
                // The slice received, as a record the exchange agrees to (DESIGN 11): never
                // an error for the trade (an unanswered proposal is sent again later).
                let record = protocol::record::TradeRecord {
                    trade: t.id.clone(),
                    half: turn.half,
                    from: turn.payer.clone(),
                    to: turn.receiver.clone(),
                    issuer: turn.issuer.clone(),
                    amount: turn.amount,
                };
                let tx = serde_json::to_value(&record)?;
                if let clients::records::Agreed::Later(why) = clients::records::record_deal(
                    &self.key_path,
                    self.key.clone(),
                    &self.exchange,
                    protocol::record::kinds::TRADE,
                    &tx,
                )
                .await
                {
                    tracing::warn!(trade = %t.id, half = turn.half, why, "trade record not agreed yet");
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Cancel what is left of order `id`; answers it as it then stands.
    pub async fn cancel(&self, id: &str) -> Result<OrderView, ClientError> {
        Ok(self
            .exchange
            .command(
                "POST",
                &format!("/v1/exchange/orders/{id}/cancel"),
                b"{}".to_vec(),
                self.counters.next(),
            )
            .await?
            .value)
    }

    /// This order's trades, as the exchange has them now.
    async fn trades_of(&self, order: &str) -> Result<Vec<TradeView>, ClientError> {
        Ok(self
            .trades()
            .await?
            .into_iter()
            .filter(|t| t.taker_order == order || t.maker_order == order)
            .collect())
    }

    /// Place `order` and settle every trade it makes, until the order is filled and its
    /// trades are settled or stopped, or `wait` has passed. Then what is left of the order is
    /// cancelled, so no trade is made that nobody is there to settle (the same `--id` again
    /// continues trades still settling). A passing failure (an issuer or the exchange not
    /// answering once) is said and tried again within `wait`. `event` hears of each step.
    pub async fn trade(
        &self,
        order: &NewOrder,
        wait: Duration,
        mut event: impl FnMut(Event<'_>),
    ) -> anyhow::Result<Outcome> {
        let placed = self.place(order).await?;
        event(Event::Placed(&placed));
        let deadline = Instant::now() + wait;
        let mut filled = placed.order.state == super::store::FILLED;
        loop {
            let round = async {
                let mine = self.trades_of(&order.id).await?;
                for t in &mine {
                    if self.step(t).await? {
                        event(Event::Step(t));
                    }
                }
                Ok::<_, anyhow::Error>(mine)
            };
            match round.await {
                Ok(mine) => {
                    let settled = mine.iter().all(|t| t.state != super::store::SETTLING);
                    let sold: u64 = mine.iter().map(|t| t.amounts_for(&order.id).0).sum();
                    filled = filled || sold >= order.sell_amount;
                    if settled && filled {
                        break;
                    }
                }
                Err(e) => event(Event::Retry(&e.to_string())),
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        }
        let left = if filled {
            None
        } else {
            match self.cancel(&order.id).await {
                Ok(o) => Some(o),
                Err(e) => {
                    event(Event::Retry(&format!(
                        "cancelling the rest of the order: {e}"
                    )));
                    None
                }
            }
        };
        Ok(Outcome {
            order: order.id.clone(),
            cancelled_left: left.map_or(0, |o| o.sell_left),
            trades: self.trades_of(&order.id).await?,
        })
    }
}

//! Buying a view (seed 000 section 5.2 steps 1 to 3): the publisher's signed manifest, the
//! view paid by payword with the purchase, or by transfer (to the publisher, or to the bank
//! account it names as `pay_to`; from the viewer's wallet, or through its bank), then the
//! view recorded (DESIGN 11) and a session opened for its pieces.

use super::*;

/// How long the publisher's descriptor (its price per piece, where it is paid by transfer, its
/// currency) is used before it is read again.
pub const DESCRIPTOR_FRESH_MS: u64 = 30_000;

/// What paying in one currency takes, made once per issuer URL for the gateway's life: the
/// wallet's client (counters beside the key), the payword payer (which keeps the chain it
/// last paid from) and the currency's units for people.
#[derive(Clone)]
pub(super) struct Paying {
    wallet: IssuerClient,
    payer: Option<clients::paywords::PaywordPayer>,
    currency: Arc<OnceCell<protocol::ledger::Currency>>,
}

impl Gateway {
    /// The publisher's descriptor: read when the gateway starts, then again when older than
    /// [`DESCRIPTOR_FRESH_MS`]; callers at once share one read.
    pub(super) async fn publisher_descriptor(&self) -> Result<serde_json::Value, ClientError> {
        let mut held = self.descriptor.lock().await;
        if let Some((at, d)) = held.as_ref() {
            if at.elapsed() < Duration::from_millis(DESCRIPTOR_FRESH_MS) {
                return Ok(d.clone());
            }
        }
        let d = self.publisher.describe().await?;
        *held = Some((Instant::now(), d.clone()));
        Ok(d)
    }

    /// The wallet's client, payword payer and currency for the issuer at `issuer_url`, made on
    /// first use; an unusable URL is refused.
    fn paying(&self, issuer_url: &str) -> Result<Paying, Error> {
        node::client::check_url(issuer_url)
            .map_err(|e| Error::Upstream(format!("the manifest's issuer: {e}")))?;
        let mut map = self.paying.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map
            .entry(issuer_url.trim_end_matches('/').to_owned())
            .or_insert_with(|| {
                let wallet = IssuerClient::new(
                    self.http.clone(),
                    issuer_url,
                    self.key.clone(),
                    Some(node::client::CounterStore::beside_key(
                        &self.options.wallet_key,
                    )),
                );
                let payer = (paywords_on() && self.options.bank.is_none()).then(|| {
                    clients::paywords::PaywordPayer::new(
                        self.key.clone(),
                        clients::wallet::Wallet::beside_key(&self.options.wallet_key),
                        wallet.clone(),
                    )
                });
                Paying {
                    wallet,
                    payer,
                    currency: Arc::default(),
                }
            })
            .clone())
    }

    /// The currency's units for people, asked of its issuer once (at most
    /// `CURRENCY_WAIT_MS_MAX` a try); `None` while it does not answer (then minor units
    /// are shown, and it is asked again next time).
    async fn currency(paying: &Paying) -> Option<protocol::ledger::Currency> {
        paying
            .currency
            .get_or_try_init(|| async { paying.wallet.currency_for_people().await.ok_or(()) })
            .await
            .ok()
            .cloned()
    }

    /// Read ahead what a first view needs and a viewer would otherwise wait for: the
    /// publisher's descriptor (and a connection to it), its currency, and the wallet's chain
    /// in that currency. Failures are left for the purchase to meet and report.
    pub(super) async fn warm_up(&self) {
        let Ok(d) = self.publisher_descriptor().await else {
            return;
        };
        let Some(Ok(paying)) = d["issuer_url"].as_str().map(|url| self.paying(url)) else {
            return;
        };
        let chain = async {
            if let Some(payer) = &paying.payer {
                let _ = payer.warm().await;
            }
        };
        tokio::join!(Self::currency(&paying), chain);
    }

    pub(super) async fn buy(&self, content: &str) -> Result<Session, Error> {
        // The descriptor (usually read at start-up) and the manifest at once.
        let manifest_read = async {
            let resp = self
                .http
                .get(format!(
                    "{}/v1/contents/{content}",
                    self.options.publisher_url
                ))
                .send()
                .await
                .map_err(|e| Error::Upstream(format!("the publisher: {e}")))?;
            if resp.status().as_u16() == 404 {
                return Err(Error::UnknownContent(content.to_owned()));
            }
            resp.error_for_status()
                .map_err(|e| Error::Upstream(format!("the publisher: {e}")))?
                .json::<Envelope>()
                .await
                .map_err(|e| Error::Upstream(format!("the publisher's manifest: {e}")))
        };
        let (descriptor, env) = tokio::join!(self.publisher_descriptor(), manifest_read);
        let env = env?;
        let publisher = self
            .publisher
            .audience()
            .await
            .map_err(from_publisher)?
            .clone();
        self.count_publisher(&env);
        let manifest = Manifest::open(&env, &publisher).map_err(Error::Upstream)?;
        if manifest.content != content {
            return Err(Error::Upstream(
                "the publisher sent another content's manifest".into(),
            ));
        }
        let view = uuid::Uuid::new_v4().to_string();
        let paying = self.paying(&manifest.issuer_url)?;
        // For people: the view's price and spend in the currency's units (usually known
        // since start-up).
        let currency = Self::currency(&paying).await;
        let show = |amount: u64| crate::page::show_amount(currency.as_ref(), amount);
        let mut wallet = paying.wallet.clone();
        let mut payer_name = None;
        if let Some(link) = &self.options.bank {
            let access = link
                .access(self.http.clone())
                .map_err(|e| Error::Upstream(e.to_string()))?;
            let (name, issuer_url) = self
                .bank_account
                .get_or_try_init(|| async {
                    access.account().await.map(|a| (a.name, a.issuer_url))
                })
                .await
                .map_err(|e| Error::Upstream(format!("the bank: {e}")))?;
            // The token pays in one currency: it must be the one this content is sold in.
            if issuer_url.trim_end_matches('/') != manifest.issuer_url.trim_end_matches('/') {
                return Err(Error::CannotPay {
                    price: manifest.price_per_view,
                    shown: show(manifest.price_per_view),
                    reason: format!(
                        "the bank token pays in the currency of {issuer_url}, and this is sold \
                         in the currency of {}",
                        manifest.issuer_url
                    ),
                });
            }
            payer_name = Some(name.clone());
            wallet = wallet.through_bank(access);
        }
        let payer = paying.payer.clone();
        let body = serde_json::to_vec(&BuyView {
            content: content.to_owned(),
            view: view.clone(),
            payer: payer_name,
        })
        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        // By payword: the view's words go with the purchase, which the publisher checks on its
        // own (no deposit to wait for). A publisher that does not take them is paid below.
        // A publisher selling per piece sells the view itself for nothing.
        let per_piece = descriptor
            .as_ref()
            .map(|d| d["price_per_piece"].as_u64().unwrap_or(0) > 0)
            .unwrap_or(false);
        // Transfers go where the publisher is paid: its bank account when it names one. A
        // publisher whose descriptor cannot be read is not paid blind (its own key may not be
        // where it looks for payments).
        let described = descriptor
            .as_ref()
            .map_err(|e| Error::Upstream(format!("the publisher's descriptor: {e}")))?;
        let payee = match described["pay_to"].as_str() {
            Some(to) => clients::names::resolve_with(to, &self.http)
                .await
                .map_err(|e| Error::Upstream(format!("the publisher's pay_to: {e}")))?,
            None => clients::names::Payee::entity(publisher.clone()),
        };
        let view_price = if per_piece {
            0
        } else {
            manifest.price_per_view
        };
        let mut bought = None;
        if let (Some(payer), true) = (&payer, view_price > 0) {
            let payment =
                payer
                    .pay(&publisher, view_price)
                    .await
                    .map_err(|e| Error::CannotPay {
                        price: view_price,
                        shown: show(view_price),
                        reason: e.to_string(),
                    })?;
            let headers = payment
                .as_ref()
                .map(clients::paywords::PaywordPayment::headers)
                .unwrap_or_default();
            match self
                .publisher
                .command_with_headers::<ViewAnswer>(
                    "POST",
                    "/v1/views",
                    body.clone(),
                    "application/json",
                    self.counters.next(),
                    &headers,
                )
                .await
            {
                Ok(a) => bought = Some(a.value),
                Err(e) if clients::pay::payment_required(&e) => {}
                Err(e) => return Err(from_publisher(e)),
            }
        }
        if bought.is_none() && view_price > 0 {
            match wallet.transfer_to(&payee, view_price, Some(&view)).await {
                Ok(_) => {}
                Err(ClientError::Api { code, message, .. })
                    if code == "insufficient_funds" || code == "not_found" =>
                {
                    return Err(Error::CannotPay {
                        price: view_price,
                        shown: show(view_price),
                        reason: message,
                    });
                }
                Err(e) => return Err(Error::Upstream(format!("paying the publisher: {e}"))),
            }
        }
        let answer: ViewAnswer = match bought {
            Some(a) => a,
            None => match self
                .publisher
                .command("POST", "/v1/views", body.clone(), self.counters.next())
                .await
            {
                Ok(a) => a.value,
                // A free view refused to a free rider (DESIGN 11): pay its cost ahead, once.
                Err(e) if view_price == 0 && e.code() == Some("free_rider") => {
                    let due = e.amount_due().unwrap_or(0);
                    tracing::info!("the publisher asks {due} ahead for a free view (free rider)");
                    wallet
                        .transfer_to(&payee, due, Some(&view))
                        .await
                        .map_err(|e| Error::CannotPay {
                            price: due,
                            shown: show(due),
                            reason: e.to_string(),
                        })?;
                    self.publisher
                        .command("POST", "/v1/views", body, self.counters.next())
                        .await
                        .map_err(from_publisher)?
                        .value
                }
                Err(e) => return Err(from_publisher(e)),
            },
        };
        self.count_publisher(&answer);
        self.record_view(&answer);
        let expires_s = protocol::market::parse_rfc3339(&answer.expires_at).unwrap_or(0);
        tracing::info!(content, view = %answer.view, paid = answer.paid, "bought a view");
        Ok(Session {
            stats: Mutex::new(Stats {
                content: content.to_owned(),
                title: manifest.title.clone(),
                view: answer.view.clone(),
                size: manifest.size,
                spend: answer.paid,
                spend_shown: show(answer.paid),
                ..Default::default()
            }),
            manifest,
            view: answer,
            sources: Default::default(),
            instructing: Default::default(),
            pieces: Default::default(),
            expires_s,
            payer,
            paid_pieces: Default::default(),
            slow_agents: Default::default(),
        })
    }
}

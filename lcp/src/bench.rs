//! `lcp bench`: a load generator. Funds N fresh wallets from the issuer's key, then runs M signed
//! transfers over HTTP from N concurrent clients (each waits for its answer before sending the
//! next) and reports throughput and latency (per request: with `--batch B` each request is a
//! batch command of B transfers).

mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{fee_for, Amount, KeyPair};
use serde::Serialize;

use clients::issuer::IssuerClient;
use node::client::ClientOptions;

/// Amount of each benchmark transfer, in minor units.
const BENCH_AMOUNT: u64 = 1;
/// Longest the whole measured phase may run before the bench gives up.
const BENCH_S_MAX: u64 = 600;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub issuer_url: String,
    pub clients: usize,
    pub transfers: usize,
    pub client: ClientOptions,
    /// Check every receipt signature, as a wallet does. Off by default: on one machine the
    /// check's CPU comes out of the issuer being measured.
    pub verify_receipts: bool,
    /// Transfers per request: 1 sends single transfers; more sends batch commands
    /// (`POST /lcp/v1/transfers/batch`) of this many.
    pub batch: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub transfers: usize,
    /// Transfers per request (1: single transfers), and the requests made.
    pub batch: usize,
    pub requests: usize,
    pub clients: usize,
    pub verify_receipts: bool,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub transfers_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The issuer's CPU (user + system, all threads, from its `/metrics`
    /// `process_cpu_seconds_total`) over the measured phase, per transfer made; `None` when
    /// its metrics could not be read.
    pub issuer_cpu_us_per_transfer: Option<f64>,
    /// The same as a share of the machine: cores the issuer kept busy on average.
    pub issuer_cores: Option<f64>,
    /// This load generator's own CPU over the measured phase, per transfer and in cores: on
    /// one machine it comes out of what the issuer could have used.
    pub bench_cpu_us_per_transfer: f64,
    pub bench_cores: f64,
}

/// The issuer's `process_cpu_seconds_total`, or `None` when it does not answer one.
async fn issuer_cpu_s(http: &reqwest::Client, issuer_url: &str) -> Option<f64> {
    node::client::metric(http, issuer_url, "process_cpu_seconds_total").await
}

fn own_cpu_s() -> f64 {
    node::service::process_cpu_s(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

pub async fn run(
    options: BenchOptions,
    issuer_key: Arc<KeyPair>,
    issuer_counters: node::client::CounterStore,
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.clients >= 1, "--clients must be at least 1");
    anyhow::ensure!(
        options.transfers >= options.clients,
        "--transfers must be at least --clients"
    );
    let http = node::client::http_client(&options.client)?;
    let issuer = IssuerClient::new(
        http.clone(),
        &options.issuer_url,
        issuer_key,
        Some(issuer_counters),
    );
    let descriptor = issuer.signed().descriptor().await?;
    let fee_flat = descriptor["fees"]["transfer_flat"].as_u64().unwrap_or(0);
    let fee_bps = descriptor["fees"]["transfer_bps"].as_u64().unwrap_or(0);
    let per_transfer =
        Amount(BENCH_AMOUNT).checked_add(fee_for(Amount(BENCH_AMOUNT), fee_flat, fee_bps)?)?;
    let per_client = options.transfers.div_ceil(options.clients) as u64;
    let issuer_entity = descriptor["entity"]
        .as_str()
        .and_then(|e| protocol::EntityId::parse(e).ok())
        .ok_or_else(|| anyhow::anyhow!("the issuer's descriptor names no entity"))?;

    // Fund every wallet; each sends per_client transfers.
    let wallets: Vec<Arc<KeyPair>> = (0..options.clients)
        .map(|_| KeyPair::generate().map(Arc::new))
        .collect::<Result<_, _>>()?;
    for w in &wallets {
        let funding = per_transfer
            .0
            .checked_mul(per_client)
            .ok_or_else(|| anyhow::anyhow!("funding overflows"))?;
        issuer
            .transfer(w.entity(), funding, Some("bench-funding"))
            .await?;
    }

    let issuer_cpu_before = issuer_cpu_s(&http, &options.issuer_url).await;
    let bench_cpu_before = own_cpu_s();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(options.clients);
    let total = options.transfers;
    for (i, w) in wallets.iter().enumerate() {
        let mut client = IssuerClient::new(http.clone(), &options.issuer_url, w.clone(), None);
        if !options.verify_receipts {
            client = client.without_receipt_checks();
        }
        let to = wallets[(i + 1) % wallets.len()].entity().clone();
        // Spread M transfers over N clients as evenly as possible.
        let count = total / options.clients + usize::from(i < total % options.clients);
        let batch = options
            .batch
            .clamp(1, protocol::ledger::BATCH_TRANSFERS_MAX);
        // Single transfers over plain HTTP go through the lean client (see `wire`).
        let mut wire = if batch == 1 {
            wire::Wire::connect(&options.issuer_url, issuer_entity.as_str()).await?
        } else {
            None
        };
        let (verify, issuer_entity, key, url) = (
            options.verify_receipts,
            issuer_entity.clone(),
            w.clone(),
            options.issuer_url.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Counters as a wallet's CounterStore hands them out: the clock in microseconds,
            // or one more than the last when the clock has not moved.
            let mut counter = 0;
            let mut latencies = Vec::with_capacity(count.div_ceil(batch));
            let mut errors: Vec<String> = Vec::new();
            let mut done = 0usize;
            let mut left = count;
            while left > 0 {
                let n = batch.min(left);
                left -= n;
                counter = (counter + 1).max(node::now_ms() * 1000);
                let t = Instant::now();
                if let Some(wire) = wire.as_mut() {
                    let answer = wire
                        .transfer(&key, counter, to.as_str(), BENCH_AMOUNT)
                        .await;
                    if answer.as_ref().is_ok_and(|a| a.closing) {
                        // The server will close this connection: open the next one now.
                        *wire = match wire::Wire::connect(&url, issuer_entity.as_str()).await {
                            Ok(Some(w)) => w,
                            _ => break,
                        };
                    }
                    match answer {
                        Ok(a) if a.status == 200 => {
                            let receipt_ok = !verify
                                || a.signature.as_deref().is_some_and(|sig| {
                                    protocol::verify_response(
                                        &issuer_entity,
                                        key.entity().as_str(),
                                        counter,
                                        a.status,
                                        &a.body,
                                        sig,
                                    )
                                });
                            if receipt_ok {
                                latencies.push(t.elapsed());
                                done += 1;
                            } else {
                                errors.push("receipt signature does not verify".into());
                            }
                        }
                        Ok(a) => errors.push(format!(
                            "{}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body)
                        )),
                        Err(e) => {
                            errors.push(e.to_string());
                            // The connection is in an unknown state: start a new one.
                            *wire = match wire::Wire::connect(&url, issuer_entity.as_str()).await {
                                Ok(Some(w)) => w,
                                _ => break,
                            };
                        }
                    }
                    continue;
                }
                if batch == 1 {
                    match client
                        .transfer_with_counter(counter, &to, BENCH_AMOUNT, None)
                        .await
                    {
                        Ok(_) => {
                            latencies.push(t.elapsed());
                            done += 1;
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                    continue;
                }
                let item = protocol::ledger::BatchItem {
                    recipient: to.to_string(),
                    amount: BENCH_AMOUNT,
                    transaction_id: None,
                    userid: None,
                };
                match client
                    .transfer_batch_with_counter(counter, &vec![item; n])
                    .await
                {
                    Ok(a) => {
                        latencies.push(t.elapsed());
                        for r in &a.value.results {
                            if r.succeeded() {
                                done += 1;
                            } else {
                                errors.push(r.message.clone().unwrap_or_default());
                            }
                        }
                    }
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (latencies, errors, done)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(total);
    let (mut errors, mut done) = (0, 0);
    let mut first_error = None;
    for task in tasks {
        let (l, e, d) = tokio::time::timeout(Duration::from_secs(BENCH_S_MAX), task).await??;
        latencies.extend(l);
        errors += e.len();
        done += d;
        if first_error.is_none() {
            first_error = e.first().cloned();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bench_cpu_s = own_cpu_s() - bench_cpu_before;
    let issuer_cpu = match (
        issuer_cpu_before,
        issuer_cpu_s(&http, &options.issuer_url).await,
    ) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let per_transfer_us = |cpu_s: f64| cpu_s * 1e6 / (done.max(1) as f64);
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    Ok(BenchReport {
        transfers: done,
        batch: options
            .batch
            .clamp(1, protocol::ledger::BATCH_TRANSFERS_MAX),
        requests: latencies.len(),
        clients: options.clients,
        verify_receipts: options.verify_receipts,
        errors,
        first_error,
        elapsed_s: elapsed,
        transfers_per_s: done as f64 / elapsed.max(1e-9),
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
        issuer_cpu_us_per_transfer: issuer_cpu.map(per_transfer_us),
        issuer_cores: issuer_cpu.map(|c| c / elapsed.max(1e-9)),
        bench_cpu_us_per_transfer: per_transfer_us(bench_cpu_s),
        bench_cores: bench_cpu_s / elapsed.max(1e-9),
    })
}

//! Counters served at `GET /metrics` in Prometheus text format. Plain atomics: no registry needed.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub transfers: AtomicU64,
    pub rejected: AtomicU64,
    pub replayed: AtomicU64,
    pub overloaded: AtomicU64,
    pub batches: AtomicU64,
    pub commit_us: AtomicU64,
    pub queued: AtomicU64,
    /// Batch commands (`POST /lcp/v1/transfers/batch`) executed.
    pub batch_commands: AtomicU64,
}

impl Metrics {
    pub fn record_batch(&self, executed: u64, elapsed: Duration) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.transfers.fetch_add(executed, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.commit_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let rows: [(&str, &str, &str, u64); 9] = [
            (
                "lcp_http_requests_total",
                "counter",
                "HTTP requests received",
                get(&self.requests),
            ),
            (
                "lcp_transfers_total",
                "counter",
                "transfers executed and committed",
                get(&self.transfers),
            ),
            (
                "lcp_transfers_rejected_total",
                "counter",
                "transfers refused by the ledger (funds, counters)",
                get(&self.rejected),
            ),
            (
                "lcp_commands_replayed_total",
                "counter",
                "repeated commands answered from the stored answer",
                get(&self.replayed),
            ),
            (
                "lcp_overloaded_total",
                "counter",
                "transfers refused because the ledger queue was full",
                get(&self.overloaded),
            ),
            (
                "lcp_ledger_batches_total",
                "counter",
                "ledger batches committed (group commits)",
                get(&self.batches),
            ),
            (
                "lcp_ledger_busy_seconds_total",
                "counter",
                "seconds the ledger writer spent applying and committing batches",
                0,
            ),
            (
                "lcp_batch_commands_total",
                "counter",
                "batch commands executed (each counts its transfers in lcp_transfers_total)",
                get(&self.batch_commands),
            ),
            (
                "lcp_ledger_queue_depth",
                "gauge",
                "transfers waiting for the ledger writer",
                get(&self.queued),
            ),
        ];
        for (name, kind, help, value) in rows {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if name == "lcp_ledger_busy_seconds_total" {
                let _ = writeln!(out, "{name} {:.6}", get(&self.commit_us) as f64 / 1e6);
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

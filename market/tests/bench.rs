//! `market bench` against a real market in this process: a small, fast run (50 synthetic
//! agents on 50 loopback /24s, 20 matches) on SQLite (and PostgreSQL when TEST_DATABASE_URL is
//! set). The offers must be accepted, the matches met and checked, and the figures sane.

use std::time::Duration;

use market::bench::{self, Options};

/// Longest one bench run may take here (it takes about a second).
const BENCH_WAIT_S_MAX: u64 = 120;
const AGENTS: usize = 50;
const MATCHES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_bench_fills_the_book_heartbeats_and_matches() {
    for (backend, database) in db::testing::backends("bench") {
        let dir = tempfile::tempdir().expect("tempdir");
        // The market as `market serve` runs it: the one-agent-per-network rule on; its loops
        // slow, so the figures are the bench's.
        let running = market::serve::start(market::serve::ServeOptions {
            data_dir: dir.path().join("market"),
            listen: "127.0.0.1:0".into(),
            database: database.url(),
            allow_same_network: false,
            audit_interval_s: 3600,
            probe_interval_s: 3600,
            auditor_lease_ms: market::auditor::AUDITOR_LEASE_MS,
            crawl_interval_s: market::book::CRAWL_INTERVAL_S_DEFAULT,
            tls: None,
        })
        .expect("market");
        let options = Options {
            agents: AGENTS,
            networks: Some(AGENTS),
            heartbeats_per_s: Some(100.0),
            matches: MATCHES,
            concurrency: 2,
            post_concurrency: 8,
            // k = 4, 10 and 6: enough agents sell 30-day contracts for every n asked.
            k_max: 10,
            fill_s_max: 60,
            seconds_min: 1,
            seconds_max: 60,
            seed: 7,
            ..Options::new(&running.url)
        };
        let report =
            tokio::time::timeout(Duration::from_secs(BENCH_WAIT_S_MAX), bench::run(options))
                .await
                .expect("the bench finishes in time")
                .expect("the bench runs");
        eprintln!("{backend}:\n{}", report.show());

        let fill = &report.fill;
        assert_eq!(fill.accepted, AGENTS, "{backend}: {:?}", fill.errors);
        assert!(fill.offers_per_s > 0.0);
        assert!(fill.latency.p50_ms <= fill.latency.p99_ms);
        assert!(fill.latency.p99_ms <= fill.latency.max_ms);

        let m = &report.steady.matches;
        assert_eq!(m.met, MATCHES, "{backend}: {:?}", m.errors);
        assert_eq!(m.cut_at_deadline, 0);
        assert!(m.per_s > 0.0);
        assert!(m.latency.p50_ms > 0.0 && m.latency.p50_ms <= m.latency.p99_ms);
        assert!(m.latency.p99_ms <= m.latency.max_ms);
        assert_eq!(m.shapes.iter().map(|s| s.met).sum::<usize>(), MATCHES);
        // Every agent is live and online, so the 30-day shapes consider every agent selling
        // 30-day contracts: at least n of them.
        assert!(m.candidates_last >= 20, "{}", m.candidates_last);

        let h = &report.steady.heartbeats;
        assert!(h.accepted > 0, "{backend}: {:?}", h.errors);
        assert_eq!(h.errors.total(), 0, "{backend}: {:?}", h.errors);
        assert!(h.latency.p50_ms <= h.latency.p99_ms);

        // The book holds every synthetic agent, in the bench's currency.
        let http =
            node::client::http_client(&node::client::ClientOptions::default()).expect("http");
        let key = std::sync::Arc::new(protocol::KeyPair::generate().expect("key"));
        let book = clients::market::MarketClient::new(http, &running.url, key)
            .offers(Some(&report.currency))
            .await
            .expect("offers");
        assert_eq!(book.len(), AGENTS, "{backend}");
        // First posts checked every endpoint; each met match re-checked its chosen agents.
        assert!(report.endpoint_requests >= (AGENTS + MATCHES) as u64);
    }
}

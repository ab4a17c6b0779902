//! The auditor lease fails over (issue 14, "a documented leader for the auditor"): of two
//! `market serve` processes on one PostgreSQL, one audits and probes; when it is killed
//! (SIGKILL, no goodbye) the other takes the lease within its length and probes from then on.
//!
//! The agents are `market::bench`'s synthetic ones, their endpoints answered by a stand-in in
//! this process, which counts the descriptors it serves: after the offers are posted, those
//! are the probes. PostgreSQL only (`TEST_DATABASE_URL`); skipped with a note without it, a
//! failure under `CI=true`.

mod util;

use std::sync::Arc;
use std::time::Duration;

use util::{eventually, market_entity, metric, MarketProcess, Synth};

const AGENTS: usize = 4;
/// The lease's length here (the default is 30 s), so a takeover fits in a test.
const LEASE_MS: u64 = 1_500;
/// Longest wait for a process to say it holds the lease: a renewal (a third of the lease)
/// plus the old holder's lease running out, with room for a loaded machine.
const TAKEOVER_WAIT_MS_MAX: u64 = 20_000;
/// Longest wait for probes to reach the stand-in once a process holds the lease (probes run
/// every second here).
const PROBE_WAIT_MS_MAX: u64 = 15_000;
/// How long the process without the lease is watched while the holder lives.
const WATCH_MS: u64 = 3 * LEASE_MS;

async fn holds(http: &reqwest::Client, url: &str) -> bool {
    metric(http, url, "market_auditor_lease_held").await == Some(1.0)
}

fn probes_so_far(synth: &Synth) -> u64 {
    (0..AGENTS).map(|i| synth.standin.answered(i)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auditor_lease_moves_to_another_process_when_its_holder_dies() {
    let Some(base) = util::postgres_or_skip("the auditor lease between two markets") else {
        return;
    };
    let schema = db::testing::fresh_postgres(&base, "lease").expect("schema");
    let dir = tempfile::tempdir().expect("tempdir");
    let synth = Arc::new(Synth::start(AGENTS, AGENTS, 16, |i, a| a.network = i));
    let http = synth.http.clone();
    let lease = LEASE_MS.to_string();
    let args = ["--auditor-lease-ms", lease.as_str()];

    // A starts first (and migrates the schema): it takes the lease.
    let mut a = MarketProcess::start_with(&dir.path().join("a"), Some(&schema.url), 1, &args);
    eventually(TAKEOVER_WAIT_MS_MAX, "A to take the lease", || {
        holds(&http, &a.url)
    })
    .await;
    let b = MarketProcess::start_with(&dir.path().join("b"), Some(&schema.url), 1, &args);
    let audience = market_entity(&http, &a.url).await;
    let every: Vec<usize> = (0..AGENTS).collect();
    let refused = synth.post_all(&a.url, &audience, &every, AGENTS).await;
    assert!(refused.is_empty(), "offers refused: {refused:?}");

    // While A lives, B never holds the lease, and A probes.
    let before = probes_so_far(&synth);
    let watch_until = std::time::Instant::now() + Duration::from_millis(WATCH_MS);
    while std::time::Instant::now() < watch_until {
        assert!(
            !holds(&http, &b.url).await,
            "B holds the lease while A renews it: {}",
            std::fs::read_to_string(&b.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(holds(&http, &a.url).await, "A lost the lease while alive");
    eventually(PROBE_WAIT_MS_MAX, "A to probe the agents", || async {
        probes_so_far(&synth) > before
    })
    .await;

    // A dies without a word; B takes over within the lease's length, and probes.
    a.kill();
    eventually(
        TAKEOVER_WAIT_MS_MAX,
        "B to take the lease after A died",
        || holds(&http, &b.url),
    )
    .await;
    let before = probes_so_far(&synth);
    eventually(PROBE_WAIT_MS_MAX, "B to probe the agents", || async {
        probes_so_far(&synth) > before
    })
    .await;
}

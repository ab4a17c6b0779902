//! No reputation update is lost when two markets write the same agents at once (issue 14:
//! "reputation updates, now guarded by an in-process lock, move to row locks or conditional
//! updates"). Two `Market`s, each with its own connection pool on one database, as two
//! `market serve` processes would be, record audit outcomes for the same agents concurrently;
//! every outcome must be in the stored reputation. SQLite always, PostgreSQL when
//! `TEST_DATABASE_URL` is set (under `CI=true` it must be reachable).

use std::sync::Arc;

use diesel::prelude::*;
use market::book::{AgentRow, Market};
use market::reliability::{Outcome, Reputation};
use market::schema::agents;

const AGENTS: usize = 4;
/// Outcomes each market records for each agent.
const OUTCOMES_PER_MARKET: usize = 60;

fn row(i: usize) -> AgentRow {
    let prior = Reputation::default();
    AgentRow {
        entity: format!("ed25519:{i:064x}"),
        endpoint: format!("http://10.0.{i}.1:7300"),
        network: format!("10.0.{i}.0/24"),
        offer: "{}".into(),
        offer_expires_s: 0,
        last_heartbeat_s: 0,
        endpoint_checked_s: 0,
        alpha: prior.alpha,
        beta: prior.beta,
        audits_passed: 0,
        audits_failed: 0,
        online: 1,
        first_seen_s: 0,
        changed: 0,
        vouch: 0.0,
    }
}

fn open(location: &db::Location) -> Market {
    let database = db::Database::open(location.clone(), market::migrations()).expect("open");
    let key = Arc::new(protocol::KeyPair::generate().expect("key"));
    Market::new(key, database, reqwest::Client::new(), false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_markets_on_one_database_lose_no_reputation_update() {
    for (name, test_db) in db::testing::backends("reputation_race") {
        let dir = tempfile::tempdir().expect("dir");
        let location = match test_db.url() {
            Some(url) => db::Location::parse(&url),
            None => db::Location::sqlite_in(dir.path(), "market.sqlite"),
        };
        let (a, b) = (Arc::new(open(&location)), Arc::new(open(&location)));
        let rows: Vec<AgentRow> = (0..AGENTS).map(row).collect();
        {
            let rows = rows.clone();
            a.db.run(move |conn| {
                for r in &rows {
                    diesel::insert_into(agents::table)
                        .values(r)
                        .execute(conn)
                        .map_err(db::DbError::from)?;
                }
                Ok::<_, db::DbError>(())
            })
            .await
            .expect("insert agents");
        }
        // Both markets at once, every agent, passed and failed audits interleaved.
        let mut tasks = Vec::new();
        for market in [a.clone(), b.clone()] {
            for r in &rows {
                let (market, entity) = (market.clone(), r.entity.clone());
                tasks.push(tokio::spawn(async move {
                    for n in 0..OUTCOMES_PER_MARKET {
                        let outcome = if n % 3 == 0 {
                            Outcome::AuditFailed
                        } else {
                            Outcome::AuditPassed
                        };
                        market.observe(&entity, outcome).await.expect("observe");
                    }
                }));
            }
        }
        for t in tasks {
            t.await.expect("task");
        }
        let stored = a.agents().await.expect("agents");
        assert_eq!(stored.len(), AGENTS, "{name}");
        let failed_each = 2 * OUTCOMES_PER_MARKET.div_ceil(3);
        let passed_each = 2 * OUTCOMES_PER_MARKET - failed_each;
        for r in &stored {
            assert_eq!(
                (r.audits_passed as usize, r.audits_failed as usize),
                (passed_each, failed_each),
                "{name}: {} lost an update",
                r.entity
            );
            // Forgetting makes alpha + beta depend only on how many outcomes were applied.
            let mut expected = Reputation::default();
            for _ in 0..2 * OUTCOMES_PER_MARKET {
                expected.observe(Outcome::AuditPassed);
            }
            let weight = r.alpha + r.beta;
            let want = expected.alpha + expected.beta;
            assert!(
                (weight - want).abs() < 1e-9 * want,
                "{name}: {} holds the weight of another number of outcomes ({weight} vs {want})",
                r.entity
            );
            assert!(
                r.changed > 0,
                "{name}: a reputation write stamped no clock value"
            );
        }
    }
}

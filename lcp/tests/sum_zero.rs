//! Property test: the sum of all balances is zero after any sequence of transfers and fees.

use std::sync::Arc;

use lcp::config::IssuerConfig;
use lcp::ledger::{Ledger, TransferOrder};
use lcp::metrics::Metrics;
use proptest::prelude::*;
use protocol::KeyPair;

#[derive(Debug, Clone)]
struct Step {
    from: usize,
    to: usize,
    amount: u64,
    counter: u64,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (0usize..5, 0usize..5, 1u64..400, 1u64..30).prop_map(|(from, to, amount, counter)| Step {
            from,
            to,
            amount,
            counter,
        }),
        1..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn balances_sum_to_zero(steps in steps(), fee_flat in 0u64..5, fee_bps in 0u64..500) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let database = db::Database::open(db::Location::sqlite_in(dir.path(), "l.sqlite"), lcp::migrations()).expect("db");
            // Entity 0 is the issuer (the mint); the others are wallets.
            let keys: Vec<KeyPair> = (0..5).map(|_| KeyPair::generate().expect("key")).collect();
            let config = IssuerConfig { fee_flat, fee_bps, supply_cap: 2_000, ..IssuerConfig::default() };
            let ledger = Ledger::start(database, keys[0].entity().clone(), config, Arc::new(Metrics::default())).expect("ledger");
            let mut executed = 0;
            for s in &steps {
                if s.from == s.to { continue; }
                let order = TransferOrder {
                    sender: keys[s.from].entity().clone(),
                    counter: s.counter,
                    body_sha256: format!("{}-{}", s.to, s.amount),
                    recipient: keys[s.to].entity().clone(),
                    amount: s.amount,
                    transaction_id: None,
                };
                if ledger.transfer(order).await.is_ok() { executed += 1; }
                assert_eq!(ledger.sum_of_balances().await.expect("sum"), 0);
            }
            for k in &keys[1..] {
                assert!(ledger.balance(k.entity()).await.expect("balance") >= 0, "no wallet is overdrawn");
            }
            assert!(ledger.balance(keys[0].entity()).await.expect("balance") >= -2_000, "the mint respects its cap");
            let _ = executed;
        });
    }
}

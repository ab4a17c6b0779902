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
                    transaction_id: None, userid: None, from_name: None,
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

/// One step of the payword property test: transfers, chains bought, redemptions (any block,
/// overlapping or not: double spends included) and escrows returned.
#[derive(Debug, Clone)]
enum ChainStep {
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
    },
    Buy {
        payer: usize,
        length: u64,
        unit: u64,
    },
    Redeem {
        vendor: usize,
        chain: usize,
        from: u64,
        len: u64,
        paid: u64,
    },
    Close {
        chain: usize,
    },
}

fn chain_steps() -> impl Strategy<Value = Vec<ChainStep>> {
    let step = prop_oneof![
        (1usize..5, 1usize..5, 1u64..300).prop_map(|(from, to, amount)| ChainStep::Transfer {
            from,
            to,
            amount
        }),
        (1usize..5, 1u64..20, 1u64..30).prop_map(|(payer, length, unit)| ChainStep::Buy {
            payer,
            length,
            unit
        }),
        (1usize..5, 0usize..4, 1u64..20, 1u64..10, 1u64..10).prop_map(
            |(vendor, chain, from, len, paid)| ChainStep::Redeem {
                vendor,
                chain,
                from,
                len,
                paid
            }
        ),
        (0usize..4).prop_map(|chain| ChainStep::Close { chain }),
    ];
    prop::collection::vec(step, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With escrows counted, balances sum to zero after every step; no wallet and no escrow
    /// goes below zero, whatever the payers' blocks overlap.
    #[test]
    fn balances_sum_to_zero_with_escrow(steps in chain_steps(), fee_flat in 0u64..3, fee_bps in 0u64..300) {
        use lcp::ledger::broker::{ChainOrder, RedeemItem, RedeemOrder};
        use lcp::ledger::Order;
        use protocol::payword::{Payword, Word};
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let database = db::Database::open(db::Location::sqlite_in(dir.path(), "l.sqlite"), lcp::migrations()).expect("db");
            let keys: Vec<KeyPair> = (0..5).map(|_| KeyPair::generate().expect("key")).collect();
            let config = IssuerConfig { fee_flat, fee_bps, ..IssuerConfig::default() };
            let ledger = Ledger::start(database.clone(), keys[0].entity().clone(), config, Arc::new(Metrics::default())).expect("ledger");
            for (i, k) in keys[1..].iter().enumerate() {
                let order = TransferOrder {
                    sender: keys[0].entity().clone(), counter: i as u64 + 1, body_sha256: format!("fund-{i}"),
                    recipient: k.entity().clone(), amount: 500, transaction_id: None, userid: None, from_name: None,
                };
                ledger.transfer(order).await.expect("funding");
            }
            let mut chains: Vec<(String, u64)> = Vec::new();
            let mut counter = 100u64;
            for s in &steps {
                counter += 1;
                let order = match s {
                    ChainStep::Transfer { from, to, amount } if from != to => Order::Transfer(TransferOrder {
                        sender: keys[*from].entity().clone(), counter, body_sha256: format!("t{counter}"),
                        recipient: keys[*to].entity().clone(), amount: *amount, transaction_id: None, userid: None, from_name: None,
                    }),
                    ChainStep::Transfer { .. } => continue,
                    ChainStep::Buy { payer, length, unit } => {
                        let chain = format!("{:08x}-0000-4000-8000-000000000000", counter);
                        chains.push((chain.clone(), *length));
                        Order::BuyChain(ChainOrder {
                            payer: keys[*payer].entity().clone(), counter, body_sha256: format!("b{counter}"),
                            chain, root: Word([0; 32]), length: *length, unit: *unit,
                            expires_at_s: i64::MAX / 2,
                            touchstone: protocol::Envelope { signer: String::new(), kind: "touchstone".into(), payload: String::new(), signature: String::new() },
                        })
                    }
                    ChainStep::Redeem { vendor, chain, from, len, paid } => {
                        let Some((chain, length)) = chains.get(*chain).cloned() else { continue };
                        let from = (*from).min(length);
                        let end = (from + len - 1).min(length);
                        let to = (from + paid - 1).min(end);
                        let payword = Payword { chain, from, end, to, word: Word([1; 32]), signature: format!("s{from}-{end}") };
                        Order::Redeem(RedeemOrder {
                            vendor: keys[*vendor].entity().clone(), counter, body_sha256: format!("r{counter}"),
                            items: vec![RedeemItem::Checked(payword)],
                        })
                    }
                    ChainStep::Close { chain } => {
                        let Some((chain, _)) = chains.get(*chain).cloned() else { continue };
                        Order::CloseChain(chain)
                    }
                };
                let _ = ledger.execute(order).await;
                assert_eq!(ledger.sum_of_balances().await.expect("sum"), 0, "after {s:?}");
            }
            let issuer = keys[0].entity().to_string();
            let balances: Vec<(String, i64)> = database.run(|conn| {
                use diesel::prelude::*;
                lcp::schema::accounts::table
                    .select((lcp::schema::accounts::entity, lcp::schema::accounts::balance))
                    .load(conn)
                    .map_err(db::DbError::from)
            }).await.expect("accounts");
            for (entity, balance) in balances {
                assert!(entity == issuer || balance >= 0, "{entity} holds {balance}");
            }
        });
    }
}

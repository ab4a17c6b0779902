//! Tests of the offer index and pre-selection.

mod tests_support {
    use super::super::*;
    use protocol::market::{self, OfferCurrency};
    use protocol::KeyPair;

    pub fn issuer() -> protocol::EntityId {
        KeyPair::generate().expect("key").entity().clone()
    }

    /// A row for a fresh agent on `net` (10.0.net.1) pricing storage at `per_gib_day`.
    pub fn row(cur: &protocol::EntityId, net: u8, per_gib_day: u64, changed: i64) -> AgentRow {
        let key = KeyPair::generate().expect("key");
        let endpoint = format!("http://10.0.{net}.1:7300");
        let offer = Offer {
            agent: key.entity().clone(),
            endpoint: endpoint.clone(),
            issued_at: market::format_rfc3339(1_000),
            expires_at: market::format_rfc3339(2_000),
            free_bytes: 1 << 40,
            block_bytes_max: 1 << 30,
            duration_s_max: 90 * 86_400,
            currencies: vec![OfferCurrency {
                issuer: cur.clone(),
                issuer_url: "http://issuer".into(),
                storage_per_gib_day: per_gib_day,
                write_per_kib: 0,
                read_per_kib: 0,
                contract_min: 1,
                pay_to: None,
            }],
        };
        let env = Envelope::sign_json(&key, market::OFFER_TYPE, &offer).expect("sign");
        let rep = Reputation::default();
        AgentRow {
            entity: key.entity().to_string(),
            endpoint,
            network: format!("10.0.{net}.0/24"),
            offer: serde_json::to_string(&env).expect("json"),
            offer_expires_s: 2_000,
            last_heartbeat_s: 1_000,
            endpoint_checked_s: 1_000,
            alpha: rep.alpha,
            beta: rep.beta,
            audits_passed: 0,
            audits_failed: 0,
            online: 1,
            first_seen_s: 1_000,
            changed,
            vouch: 0.0,
        }
    }

    pub fn request(cur: &protocol::EntityId) -> MatchRequest {
        MatchRequest {
            currency: cur.to_string(),
            shard_bytes: 1 << 20,
            data_shards: 2,
            total_shards: None,
            duration_s: 86_400,
            expected_read_bytes: 0,
            max_failure_probability: 1e-3,
            exclude: Vec::new(),
        }
    }
}

mod unit {
    use super::super::refresh::rows_after;
    use super::super::scan::Narrow;
    use super::super::*;
    use super::tests_support::*;
    use crate::schema::agents;
    use diesel::prelude::*;

    #[test]
    fn pre_selection_is_deterministic_and_bounded_per_network() {
        let cur = issuer();
        let rows: Vec<AgentRow> = (0..600u64)
            .map(|i| row(&cur, (i % 200) as u8, 20 + i % 97, i as i64))
            .collect();
        let mut forward = Index::new();
        let mut backward = Index::new();
        for r in rows.iter().cloned() {
            forward.apply(r);
        }
        for r in rows.iter().rev().cloned() {
            backward.apply(r);
        }
        let req = request(&cur);
        let a = forward.pool(&req, 1_500, false).expect("currency known");
        let b = backward.pool(&req, 1_500, false).expect("currency known");
        let names =
            |p: &Pool| -> Vec<String> { p.candidates.iter().map(|c| c.agent.clone()).collect() };
        assert_eq!(names(&a), names(&b), "insertion order must not matter");
        let cap = PRESELECT_UNVETTED_MAX + PRESELECT_RELIABLE_MAX + PRESELECT_CHEAPEST_MAX;
        assert!(!a.candidates.is_empty() && a.candidates.len() <= cap);
        // Every list keeps at most two per network, and there are three lists.
        let mut per_net: HashMap<&str, usize> = HashMap::new();
        for c in &a.candidates {
            *per_net.entry(c.network.as_str()).or_default() += 1;
        }
        assert!(per_net
            .values()
            .all(|&n| n <= 3 * PRESELECT_PER_NETWORK_MAX));
        // The cheapest agent is always a candidate.
        let cheapest = a.candidates.iter().map(|c| c.price).min();
        let whole = forward.whole_pool(&req, 1_500, false).expect("known");
        assert_eq!(whole.candidates.len(), 600);
        assert_eq!(cheapest, whole.candidates.iter().map(|c| c.price).min());
        // Expired offers and unknown currencies leave the pool.
        assert!(forward.pool(&req, 2_000, false).is_none());
        assert!(forward.pool(&request(&issuer()), 1_500, false).is_none());
    }

    #[test]
    fn heaps_pick_what_whole_lists_pick() {
        let cur = issuer();
        let mut index = Index::new();
        for i in 0..3_000u64 {
            let mut r = row(&cur, (i % 40) as u8, 20 + (i * 7919) % 480, i as i64);
            r.audits_passed = (i % 13) as i64;
            let p30 = 1e-4 * 2000f64.powf(((i * 104_729) % 1000) as f64 / 1000.0);
            r.alpha = 100.0 * (1.0 - p30);
            r.beta = 100.0 * p30;
            index.apply(r);
        }
        // A clustered book: the 1,500 cheapest agents on three /24s, the rest spread.
        let mut clustered = Index::new();
        for i in 0..6_000u64 {
            let (net, price) = if i < 1_500 {
                ((i % 3) as u8, 20 + i % 50)
            } else {
                (
                    (3 + ((i * 2_654_435_761) >> 7) % 200) as u8,
                    100 + (i * 7919) % 400,
                )
            };
            let mut r = row(&cur, net, price, i as i64);
            r.audits_passed = (i % 13) as i64;
            clustered.apply(r);
        }
        for (index, same_network_ok) in [
            (&index, false),
            (&index, true),
            (&clustered, false),
            (&clustered, true),
        ] {
            let req = request(&cur);
            let names = |n: Narrow| -> Vec<String> {
                index
                    .pool_of(&req, 1_500, same_network_ok, n)
                    .expect("known")
                    .candidates
                    .into_iter()
                    .map(|c| c.agent)
                    .collect()
            };
            let heaps = names(Narrow::Heaps);
            assert!(!heaps.is_empty());
            assert_eq!(heaps, names(Narrow::Lists));
        }
    }

    #[test]
    fn refreshes_in_small_chunks_read_every_row_once_even_inside_a_group() {
        let cur = issuer();
        for (name, test_db) in db::testing::backends("index_chunks") {
            let dir = tempfile::tempdir().expect("dir");
            let location = match test_db.url() {
                Some(url) => db::Location::parse(&url),
                None => db::Location::sqlite_in(dir.path(), "market.sqlite"),
            };
            let database = db::Database::open(location, crate::migrations()).expect("open");
            let mut conn = database.get().expect("connection");
            // Ten rows of one transaction (one `changed`), then three of the next.
            let rows: Vec<AgentRow> = (0..13u8)
                .map(|i| row(&cur, i, 100, if i < 10 { 5 } else { 6 }))
                .collect();
            for r in &rows {
                diesel::insert_into(agents::table)
                    .values(r)
                    .execute(&mut conn)
                    .expect("insert");
            }
            let mut index = Index::new();
            let mut reads = 0;
            loop {
                let (chunk, more) = rows_after(&mut conn, &index.watermark, 3).expect("read");
                reads += 1;
                for r in chunk {
                    assert!(index.get(&r.entity).is_none(), "{name}: a row read twice");
                    index.apply(r);
                }
                if !more {
                    break;
                }
            }
            assert_eq!(index.agent_count(), 13, "{name}");
            assert_eq!(reads, 5, "{name}: 13 rows in chunks of 3");
            assert_eq!(index.watermark(), 6);
        }
    }

    /// A heartbeat's own row, applied once committed, does not move the watermark (rows of
    /// other processes before it are still to be read), and an entry never moves back to an
    /// older row.
    #[test]
    fn rows_applied_by_their_writer_stay_ahead_of_the_watermark() {
        let cur = issuer();
        let mut index = Index::new();
        let first = row(&cur, 1, 100, 10);
        index.apply(first.clone());
        assert_eq!(index.watermark(), 10);
        let mut newer = first.clone();
        newer.changed = 50;
        newer.endpoint_checked_s = 1_234;
        let (envelope, offer) = newer.offer().expect("offer");
        index.apply_written(newer.clone(), envelope, offer);
        assert_eq!(index.watermark(), 10, "the writer's own row is not a read");
        assert!(index.holds(&first.entity, 50));
        // A refresh then reads an older write of the same agent (another process's, at 40):
        // the entry stays at 50, and the watermark moves past it.
        let mut older = first.clone();
        older.changed = 40;
        older.endpoint_checked_s = 999;
        index.apply(older);
        assert_eq!(index.watermark(), 40);
        let held = index.get(&first.entity).expect("indexed");
        assert_eq!((held.changed, held.endpoint_checked_s), (50, 1_234));
    }

    #[test]
    fn the_scan_prices_exactly_as_the_protocol_does() {
        let cur = issuer();
        let base = row(&cur, 1, 100, 1);
        let mut index = Index::new();
        index.apply(base);
        let mut slot = index.books[&cur.to_string()].slots[0].clone();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |max: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % max.max(1)
        };
        let sizes = [1, 1023, 1024, 1 << 20, 1 << 40, u64::MAX / 3, u64::MAX];
        for _ in 0..20_000 {
            let mut req = request(&cur);
            req.shard_bytes = sizes[next(7) as usize].saturating_sub(next(3));
            req.duration_s = [1, 86_400, 30 * 86_400, u64::MAX / 2][next(4) as usize];
            req.expected_read_bytes = sizes[next(7) as usize];
            slot.storage_per_gib_day = [0, 1, 500, i64::MAX as u64 / 1024][next(4) as usize];
            slot.write_per_kib = next(3);
            slot.read_per_kib = [0, 2, i64::MAX as u64 / 1024][next(3) as usize];
            slot.contract_min = next(100);
            let terms = protocol::market::OfferCurrency {
                issuer: cur.clone(),
                issuer_url: String::new(),
                storage_per_gib_day: slot.storage_per_gib_day,
                write_per_kib: slot.write_per_kib,
                read_per_kib: slot.read_per_kib,
                contract_min: slot.contract_min,
                pay_to: None,
            };
            let want = market::request_price(
                &terms,
                req.shard_bytes,
                req.duration_s,
                req.expected_read_bytes,
            )
            .ok();
            assert_eq!(
                RequestPrices::new(&req).of(&slot),
                want,
                "{req:?} {terms:?}"
            );
        }
    }

    #[test]
    fn a_rewritten_row_replaces_its_slot_and_offline_agents_are_left_out() {
        let cur = issuer();
        let mut index = Index::new();
        let first = row(&cur, 1, 100, 1);
        let other = row(&cur, 2, 200, 2);
        index.apply(first.clone());
        index.apply(other.clone());
        let mut again = first.clone();
        again.online = 0;
        again.changed = 3;
        index.apply(again);
        assert_eq!(index.watermark(), 3);
        assert_eq!(index.agent_count(), 2);
        let pool = index.pool(&request(&cur), 1_500, false).expect("known");
        assert_eq!(pool.candidates.len(), 1);
        assert_eq!(pool.candidates[0].agent, other.entity);
        assert_eq!(pool.left_out.offline, 1);
        // An offer that no longer parses takes its agent out of the index.
        let mut broken = other.clone();
        broken.offer = "{".into();
        broken.changed = 4;
        index.apply(broken);
        assert_eq!(index.agent_count(), 1);
        let pool = index.pool(&request(&cur), 1_500, false).expect("known");
        assert!(pool.candidates.is_empty());
    }
}

mod kept_pools {
    use super::super::scan::Narrow;
    use super::super::*;
    use super::tests_support::*;

    fn names(p: &Pool) -> Vec<String> {
        p.candidates.iter().map(|c| c.agent.clone()).collect()
    }

    /// A pool kept between matches is the pool the scan computes, whatever changed since:
    /// unchanged heartbeats and changes that cannot enter it keep it; a change to a member,
    /// or a non-member scoring into a list, does not.
    #[test]
    fn a_kept_pool_is_always_the_pool_the_scan_computes() {
        let cur = issuer();
        let now = crate::book::now_s();
        let mut index = Index::new();
        let mut rows = Vec::new();
        for i in 0..2_000u64 {
            let mut r = row(&cur, (i % 250) as u8, 20 + (i * 7919) % 480, i as i64);
            r.offer_expires_s = now + 3_600;
            r.audits_passed = (i % 13) as i64;
            let p30 = 1e-4 * 2000f64.powf(((i * 104_729) % 1000) as f64 / 1000.0);
            r.alpha = 100.0 * (1.0 - p30);
            r.beta = 100.0 * p30;
            index.apply(r.clone());
            rows.push(r);
        }
        let mut req = request(&cur);
        req.duration_s = 30 * 86_400;
        let check = |index: &Index, what: &str| -> Arc<Pool> {
            let pool = index.pool(&req, now, false).expect("known");
            let fresh = index
                .pool_of(&req, now, false, Narrow::Heaps)
                .expect("known");
            assert_eq!(names(&pool), names(&fresh), "{what}");
            pool
        };
        let first = check(&index, "first");
        let members: HashSet<String> = names(&first).into_iter().collect();
        let member = rows
            .iter()
            .position(|r| members.contains(&r.entity))
            .expect("a member");
        let outsider = rows
            .iter()
            .position(|r| !members.contains(&r.entity))
            .expect("an outsider");
        let mut changed = 10_000;
        let mut again = |index: &mut Index, i: usize, edit: &dyn Fn(&mut AgentRow)| {
            changed += 1;
            let mut r = rows[i].clone();
            r.changed = changed;
            r.offer_expires_s += 60;
            edit(&mut r);
            index.apply(r);
        };

        // Heartbeats that change nothing a match reads: kept.
        again(&mut index, member, &|_| {});
        again(&mut index, outsider, &|_| {});
        let kept = check(&index, "unchanged heartbeats");
        assert!(Arc::ptr_eq(&first, &kept), "the pool was kept");
        // An outsider getting a little dearer cannot enter: kept.
        again(&mut index, outsider, &|r| r.offer = r.offer.clone());
        // A member's reliability moves: computed again (and the same as the scan's).
        again(&mut index, member, &|r| r.alpha += 5.0);
        let after_member = check(&index, "a member changed");
        assert!(!Arc::ptr_eq(&first, &after_member), "a member changed");
        // An outsider becomes the most reliable of all: it enters, computed again.
        again(&mut index, outsider, &|r| {
            r.alpha = 1e9;
            r.beta = 1.0;
        });
        let after_outsider = check(&index, "an outsider entered");
        assert!(names(&after_outsider).contains(&rows[outsider].entity));
        // A member goes offline: it leaves.
        again(&mut index, outsider, &|r| r.online = 0);
        let offline = check(&index, "a member went offline");
        assert!(!names(&offline).contains(&rows[outsider].entity));
    }
}

mod timing {
    use super::super::*;
    use super::tests_support::*;

    /// Not a test: `cargo test --release -p market --lib index_pool_timing -- --ignored
    /// --nocapture` prints how long pre-selection takes over 100,000 agents.
    #[test]
    #[ignore]
    fn index_pool_timing() {
        let cur = issuer();
        let mut index = Index::new();
        let started = std::time::Instant::now();
        for i in 0..100_000u64 {
            // Networks independent of price and reliability, as in the bench's books.
            let net = ((i * 2_654_435_761) >> 7) % 250;
            let mut r = row(&cur, net as u8, 20 + (i * 7919) % 480, i as i64);
            r.audits_passed = (i % 13) as i64;
            let p30 = 1e-4 * (2000f64).powf(((i * 104_729) % 1000) as f64 / 1000.0);
            r.alpha = 100.0 * (1.0 - p30);
            r.beta = 100.0 * p30;
            index.apply(r);
        }
        eprintln!("built in {:?}", started.elapsed());
        let mut req = request(&cur);
        req.data_shards = 10;
        req.max_failure_probability = 1e-6;
        req.duration_s = 30 * 86_400;
        for _ in 0..60 {
            let t = std::time::Instant::now();
            let pool = index.pool(&req, 1_500, false).expect("known");
            let picked = t.elapsed();
            let request = crate::select::Request {
                data_shards: 10,
                total_shards: None,
                max_failure_probability: 1e-6,
                same_network_ok: false,
            };
            let t = std::time::Instant::now();
            let outcome = crate::select::select(&pool.candidates, &request);
            eprintln!(
                "pool {:?} ({} candidates), select {:?}, met {}",
                picked,
                pool.candidates.len(),
                t.elapsed(),
                matches!(outcome, crate::select::Outcome::Met(_))
            );
        }
    }
}

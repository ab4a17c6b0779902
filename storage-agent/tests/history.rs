//! The agent's history (issue 22): what it earned by kind equals its books, to the unit, and
//! the same total by means of payment (deposit, tab); bytes read equal what was served;
//! `GET /v1/history` refuses bad queries; the page draws the charts in a real headless
//! Chromium at 1280 and 390 pixels wide. SQLite and PostgreSQL.

mod util;

use node::testing::{chromium, run_chromium, screenshot};
use protocol::agent::{History, HistoryPeriod};
use util::{World, PRICES};

async fn history(world: &World, query: &str) -> History {
    let resp = world
        .http
        .get(format!("{}/v1/history?{query}", world.agent.url))
        .send()
        .await
        .expect("history");
    assert_eq!(resp.status(), 200, "{query}");
    resp.json().await.expect("json")
}

/// The rows of one currency summed.
fn sum(periods: &[HistoryPeriod], currency: &str) -> HistoryPeriod {
    let mut out = HistoryPeriod::default();
    for p in periods.iter().filter(|p| p.currency == currency) {
        out.add_events(p);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_the_books_by_kind_and_by_means_and_the_page_draws_it() {
    for (backend, database) in util::backends("history") {
        eprintln!("backend: {backend}");
        let world = World::start_full(8 << 20, 60, database.url(), "file", (10_000, 5_000));
        let (client, wallet, buyer) = world.buyer(1_000_000).await;
        // One contract with credit paid ahead, one paid at its price only (its charges go on
        // the tab).
        let ahead = world
            .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, 100)
            .await;
        let on_tab = world
            .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, 0)
            .await;
        for (c, kib) in [(&ahead, 30usize), (&on_tab, 20)] {
            client
                .put(&c.id, "a", vec![5; kib * 1024])
                .await
                .unwrap_or_else(|e| panic!("{backend}: put: {e}"));
            let back = client.get(&c.id, "a", None).await.expect("read");
            assert_eq!(back.len(), kib * 1024);
            client
                .get(&c.id, "a", Some((0, 4095)))
                .await
                .expect("ranged read");
            // The first audit a minute is free; the second is charged as a read of its leaf.
            client.audit(&c.id, "a", 0).await.expect("free audit");
            client.audit(&c.id, "a", 1).await.expect("charged audit");
        }

        let mut books = HistoryPeriod::default();
        // From the contracts' own columns, not the usage books: what was spent, and the
        // prices of contracts paid for.
        let (mut spent, mut prices) = (0u64, 0u64);
        for c in [&ahead, &on_tab] {
            let v = client.contract(&c.id).await.expect("view");
            spent +=
                u64::try_from(v.paid as i64 - v.contract_price as i64 - v.credit).expect("spent");
            prices += v.contract_price;
            books.bytes_written += v.bytes_written;
            books.bytes_read += v.bytes_read;
            books.audits_answered += v.audits_answered;
            books.earned.contract += v.earned.contract;
            books.earned.writes += v.earned.writes;
            books.earned.reads += v.earned.reads;
            books.earned.audits += v.earned.audits;
            assert_eq!(
                v.earned.contract, c.contract_price,
                "{backend}: the price earned"
            );
        }
        assert_eq!(
            books.earned.writes,
            50 * PRICES.write_per_kib,
            "{backend}: 50 KiB written"
        );
        assert_eq!(
            books.earned.reads,
            (50 + 4 + 4) * PRICES.read_per_kib,
            "{backend}: two whole reads and two 4 KiB ranges"
        );
        assert!(books.earned.audits > 0, "{backend}: two charged audits");
        assert_eq!(
            books.earned.writes + books.earned.reads + books.earned.audits,
            spent,
            "{backend}: the books' charges are what the contracts spent"
        );
        assert_eq!(books.earned.contract, prices, "{backend}: prices earned");

        let currency = world.issuer.entity.to_string();
        for step in ["total", "day", "hour"] {
            let h = history(&world, &format!("step={step}")).await;
            let got = sum(&h.periods, &currency);
            assert_eq!(
                (
                    got.earned.contract,
                    got.earned.writes,
                    got.earned.reads,
                    got.earned.audits
                ),
                (
                    books.earned.contract,
                    books.earned.writes,
                    books.earned.reads,
                    books.earned.audits
                ),
                "{backend} {step}: earnings by kind are the books"
            );
            assert_eq!(
                got.earned.total,
                got.paid_by.deposit + got.paid_by.payword + got.paid_by.tab,
                "{backend} {step}: one total, two breakdowns"
            );
            assert_eq!(
                (got.bytes_written, got.bytes_read, got.audits_answered),
                (books.bytes_written, books.bytes_read, books.audits_answered),
                "{backend} {step}: bytes and audits are the books"
            );
            // The contract on the tab had no credit: what it earned beyond its price went on
            // the tab; the other's was paid ahead.
            assert!(
                got.paid_by.tab > 0 && got.paid_by.deposit > 0,
                "{backend} {step}: {:?}",
                got.paid_by
            );
        }
        // Space is sampled every minute, and when the history is read a few seconds after
        // the last sample.
        util::eventually(15_000, "the space sampled", || async {
            history(&world, "step=hour").await.periods.iter().any(|p| {
                p.currency.is_empty() && p.used_bytes == 50 * 1024 && p.reserved_bytes == 2 << 20
            })
        })
        .await;

        // Bad queries: a clear code, nothing else.
        for bad in ["step=week", "from=10&to=5", "from=x", "color=red"] {
            let resp = world
                .http
                .get(format!("{}/v1/history?{bad}", world.agent.url))
                .send()
                .await
                .expect("history");
            assert_eq!(resp.status(), 400, "{bad}");
            let body: serde_json::Value = resp.json().await.expect("json");
            assert_eq!(body["error"]["code"], "invalid_query", "{bad}: {body}");
        }

        // The page: a selector and the charts, with the figures as data.
        let page = world
            .http
            .get(format!("{}/?range=7d", world.agent.url))
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("html");
        for id in [
            "id=\"ranges\"",
            "id=\"chart-space\"",
            "id=\"chart-bandwidth\"",
            "id=\"chart-earned-0\"",
            "id=\"chart-rating\"",
            "id=\"month\"",
        ] {
            assert!(page.contains(id), "{backend}: {id} on the page");
        }
        assert!(
            page.contains(&format!(
                "data-series=\"writes\" data-period=\"{}\" data-value=\"{}\"",
                &protocol::market::format_rfc3339(node::now_s())[..10],
                books.earned.writes
            )),
            "{backend}: today's writes in the earnings chart"
        );
        if backend == "sqlite" {
            in_chromium(&world, books.earned.writes).await;
        }
    }
}

/// The page in headless Chromium at a desktop and a phone width: the charts are SVG with
/// their bars, and a screenshot of each is written (`HISTORY_SCREENSHOTS=DIR` keeps them).
async fn in_chromium(world: &World, writes: u64) {
    let Some(binary) = chromium() else {
        return;
    };
    let url = format!("{}/?range=7d", world.agent.url);
    for width in [1280, 390] {
        let profile = world.dir.path().join(format!("chromium-{width}"));
        let window = format!("--window-size={width},2400");
        let dom = tokio::task::spawn_blocking({
            let (profile, url, window) = (profile.clone(), url.clone(), window.clone());
            move || run_chromium(binary, &profile, &[&window, "--dump-dom", &url])
        })
        .await
        .expect("chromium task");
        assert!(
            dom.contains("<svg id=\"chart-earned-0\""),
            "{width}px: the earnings chart rendered: {dom}"
        );
        assert!(
            dom.contains("data-series=\"writes\"")
                && dom.contains(&format!("data-value=\"{writes}\"")),
            "{width}px: the bars carry their figures"
        );
        let shot = world.dir.path().join(format!("history-{width}.png"));
        let written = tokio::task::spawn_blocking({
            let (url, shot) = (url.clone(), shot.clone());
            move || screenshot(binary, &profile, &url, (width, 2400), &shot)
        })
        .await
        .expect("chromium task");
        assert!(written, "{width}px: screenshot written");
        if let Ok(dir) = std::env::var("HISTORY_SCREENSHOTS") {
            let _ = std::fs::copy(
                &shot,
                std::path::Path::new(&dir).join(format!("history-{width}.png")),
            );
        }
    }
}

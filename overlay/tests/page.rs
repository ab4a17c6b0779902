//! The peer's status page in headless Chromium (issue 18): neighbours by kind, tabs both
//! ways, solicitations, commissions and sales, at 1280 and 390 px (`PEER_SCREENSHOTS=DIR`
//! keeps the screenshots).

mod common;

use common::*;
use node::testing::{chromium, run_chromium, screenshot};

#[test]
fn the_status_page_shows_neighbours_tabs_and_earnings() {
    let net = Net::new();
    let share = net.tmp.path().join("share");
    let (doc, _) = document(&share, 3, 8_000);
    let share_s = share.display().to_string();
    let peers = line(&net, 3, |i| {
        let mut a: Vec<String> = vec!["--commission".into(), "3".into()];
        if i == 2 {
            a.extend(["--share".to_string(), share_s.clone()]);
        }
        a
    });
    for p in &peers {
        net.fund(&p.entity, 1_000);
    }
    settled(&net, &peers);
    let (wallet, _) = net.wallet("buyer", 1_000);
    let out = net.tmp.path().join("got");
    cli_json(&[
        "get",
        "--key",
        wallet.to_str().expect("path"),
        "--via",
        &peers[0].url,
        "--document",
        &doc,
        "--max-price",
        "100",
        "--out",
        out.to_str().expect("path"),
        "--json",
    ]);
    let a = net.status(&peers[0]);
    assert_eq!(n(&a, "commissions_earned"), 3);

    // The page as served (no browser needed for this part).
    let html = net.rt.block_on(async {
        reqwest::get(&peers[0].url)
            .await
            .expect("page")
            .text()
            .await
            .expect("html")
    });
    assert!(html.contains("commissions earned"), "{html}");
    assert!(
        html.contains("secondary") && html.contains("primary"),
        "both kinds of neighbour"
    );
    assert!(html.contains("I owe them"), "A owes B on its tab");

    let Some(binary) = chromium() else { return };
    let keep = std::env::var("PEER_SCREENSHOTS")
        .ok()
        .map(std::path::PathBuf::from);
    for width in [1280u32, 390] {
        let profile = net.tmp.path().join(format!("chromium-{width}"));
        let window = format!("--window-size={width},1600");
        let dom = run_chromium(binary, &profile, &[&window, "--dump-dom", &peers[0].url]);
        assert!(
            dom.contains("Neighbours") && dom.contains("Tabs"),
            "{width}px: {dom}"
        );
        assert!(
            dom.contains("<b>3</b><span>commissions earned</span>"),
            "{width}px: the commission card"
        );
        let dir = keep.clone().unwrap_or_else(|| net.tmp.path().to_path_buf());
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let shot = dir.join(format!("peer-{width}.png"));
        assert!(
            screenshot(binary, &profile, &peers[0].url, (width, 1600), &shot),
            "{width}px: screenshot written"
        );
    }
}

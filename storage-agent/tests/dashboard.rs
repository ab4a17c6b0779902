//! The home user's dashboard, rendered by a real headless Chromium (Debian's `chromium`, which
//! `.ci/run` installs). Without it the test is skipped, except under CI=true where it fails.

mod util;

use node::testing::{chromium, run_chromium, screenshot};
use util::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_in_a_browser() {
    let Some(binary) = chromium() else {
        return;
    };
    let world = World::start(4 << 20, 60, None);
    let (client, wallet, buyer) = world.buyer(1_000_000).await;
    let terms = world
        .active_contract(&client, &wallet, &buyer, 1 << 20, 3600, 5_000)
        .await;
    client
        .put(&terms.id, "photo.jpg", vec![7; 3 * 1024])
        .await
        .expect("put");

    let profile = world.dir.path().join("chromium-profile");
    let url = format!("{}/", world.agent.url);
    let dom = tokio::task::spawn_blocking({
        let profile = profile.clone();
        let url = url.clone();
        move || run_chromium(binary, &profile, &["--dump-dom", &url])
    })
    .await
    .expect("chromium task");
    assert!(
        dom.contains("<h1>Storage agent</h1>"),
        "the browser rendered the page: {dom}"
    );
    assert!(
        dom.contains(world.agent.agent.key.entity().as_str()),
        "entity shown"
    );
    assert!(dom.contains(&terms.id), "the contract is listed");
    assert!(
        dom.contains(r#"<b id="free">3.0 MiB</b>"#),
        "free space: 4 MiB less the 1 MiB block"
    );
    assert!(dom.contains(r#"<b id="used">3.0 KiB</b>"#), "used space");
    assert!(
        dom.contains(r#"<b id="active">1</b>"#),
        "one active contract"
    );
    // Amounts are shown with the currency's decimals and code, as the issuer states them.
    let currency = world.mint.currency().await.expect("currency");
    assert!(
        dom.contains(&format!(
            "<span class=\"income\">{}</span>",
            currency.show(terms.contract_price + 5_000)
        )),
        "earnings in the currency: {dom}"
    );
    let credit = client.contract(&terms.id).await.expect("view").credit;
    assert!(
        dom.contains(&format!("<td>{}</td>", currency.show(credit))),
        "the contract's credit in the currency: {dom}"
    );

    // A screenshot for people reviewing the page (not asserted beyond being written).
    let shot = world.dir.path().join("dashboard.png");
    let written = tokio::task::spawn_blocking({
        let shot = shot.clone();
        move || screenshot(binary, &profile, &url, (1000, 900), &shot)
    })
    .await
    .expect("chromium task");
    assert!(written, "screenshot written");
    if let Ok(keep) = std::env::var("DASHBOARD_SCREENSHOT") {
        let _ = std::fs::copy(&shot, keep);
    }
}

//! The bank's web page (issue 19) in headless Chromium, driven over the DevTools protocol
//! (`scripts/browser.py`): a wrong password refused, login, balances, a transfer, a token
//! granted and revoked. Over HTTP: a forged form (wrong CSRF token) and an expired session
//! are refused and move nothing.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{add_customer, serve, Net};
use node::client::ClientOptions;

/// Longest wait for a process to start or a deposit to be credited.
const WAIT_MS_MAX: u64 = 30_000;
const PASSWORD: &str = "correct horse battery";

/// Run the browser steps; answers each step's result.
fn browse(chromium: &str, profile: &Path, steps: serde_json::Value) -> Vec<serde_json::Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/browser.py");
    let mut child = Command::new("python3")
        .args([script, chromium])
        .arg(profile)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the browser driver");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(steps.to_string().as_bytes())
        .expect("steps");
    let out = child.wait_with_output().expect("driver output");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("browser: {text}");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("the driver's JSON");
    assert!(
        out.status.success(),
        "the browser run failed: {}",
        v["error"]
    );
    v["done"].as_array().expect("results").clone()
}

/// A client that keeps no cookies and follows no redirects: the test reads both.
fn raw_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http")
}

/// Log in over HTTP: the session cookie (`name=value`).
async fn login(http: &reqwest::Client, bank: &str, name: &str) -> String {
    let resp = http
        .post(format!("{bank}/login"))
        .form(&[("name", name), ("password", PASSWORD)])
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    cookie.split(';').next().expect("name=value").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_logs_in_pays_and_manages_tokens_and_refuses_forgeries() {
    let net = Net::start();
    let (tmp, issuer, mint) = (&net.tmp, &net.issuer, &net.mint);
    let alice = net.wallet("alice");
    let alice_id = alice.signed().key().entity().to_string();

    let data = tmp.path().join("bank");
    add_customer(&data, "bob", PASSWORD, None);
    let (_bank, bank_url) = serve(&data, &issuer.url, None, &["--session-ttl-s", "600"]);
    let host = bank_url.trim_start_matches("http://").to_owned();
    let bob = clients::names::resolve(&format!("bob@{host}"), &ClientOptions::default())
        .await
        .expect("bob resolves");
    mint.transfer_to(&bob, 1_000, Some("salary"))
        .await
        .expect("pay bob");
    // Wait for the bank to credit it: the page shows what is credited.
    let raw = raw_http();
    let cookie = login(&raw, &bank_url, "bob").await;
    node::testing::eventually(WAIT_MS_MAX, "bob's deposit credited", || {
        let (raw, bank_url, cookie) = (raw.clone(), bank_url.clone(), cookie.clone());
        async move {
            let page = raw
                .get(format!("{bank_url}/"))
                .header("cookie", cookie)
                .send()
                .await
                .expect("page")
                .text()
                .await
                .expect("text");
            page.contains(">1000<")
        }
    })
    .await;

    // A forged form: bob's cookie, a CSRF token that is not his session's.
    let forged = raw
        .post(format!("{bank_url}/transfer"))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", "00000000000000000000000000000000"),
            ("recipient", alice_id.as_str()),
            ("amount", "10"),
            ("issuer", issuer.entity.as_str()),
        ])
        .send()
        .await
        .expect("forged");
    assert_eq!(forged.status().as_u16(), 403);
    // Without any session: sent to log in.
    let anonymous = raw
        .post(format!("{bank_url}/transfer"))
        .form(&[
            ("csrf", "x"),
            ("recipient", "x"),
            ("amount", "1"),
            ("issuer", "x"),
        ])
        .send()
        .await
        .expect("anonymous");
    assert_eq!(anonymous.status().as_u16(), 303);
    assert_eq!(
        alice.balance().await.expect("balance").balance,
        0,
        "nothing moved"
    );

    if let Some(chromium) = node::testing::chromium() {
        let shot = std::env::var_os("BANK_PAGE_SHOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| tmp.path().join("account.png"));
        let steps = serde_json::json!([
            {"go": format!("{bank_url}/")},
            {"url": true},
            {"fill": {"input[name=name]": "bob", "input[name=password]": "not the password"}},
            {"submit": "form[action='/login']"},
            {"text": true},
            {"fill": {"input[name=name]": "bob", "input[name=password]": PASSWORD}},
            {"submit": "form[action='/login']"},
            {"text": true},
            {"fill": {"form[action='/transfer'] input[name=recipient]": alice_id, "form[action='/transfer'] input[name=amount]": "100"}},
            {"submit": "form[action='/transfer']"},
            {"text": true},
            {"fill": {"form[action='/tokens'] input[name=limit]": "500", "form[action='/tokens'] input[name=label]": "player"}},
            {"submit": "form[action='/tokens']"},
            {"eval": "document.getElementById('new-token').textContent"},
            {"submit": "#tokens tr:last-child form"},
            {"text": true},
            {"shot": shot.display().to_string(), "width": 1000, "height": 900},
        ]);
        let profile = tmp.path().join("chromium");
        let done = tokio::task::spawn_blocking(move || browse(chromium, &profile, steps))
            .await
            .expect("browser task");
        let text = |i: usize| done[i].as_str().unwrap_or_default().to_owned();
        assert!(
            text(1).ends_with("/login"),
            "no session: the login page, got {}",
            text(1)
        );
        assert!(text(4).contains("Wrong name or password"), "{}", text(4));
        assert!(text(7).contains(&format!("bob@{host}")), "{}", text(7));
        assert!(text(7).contains("1000"), "the balance shows: {}", text(7));
        assert!(text(10).contains("Sent 100"), "{}", text(10));
        let token = text(13);
        assert!(token.contains('.'), "a new token is shown: {token:?}");
        assert!(text(15).contains("revoked"), "{}", text(15));
        assert!(
            std::fs::metadata(&shot)
                .map(|m| m.len() > 1_000)
                .unwrap_or(false),
            "a screenshot of the account page"
        );

        // What the page did, seen from outside: alice was paid by bob@bank, the new token is
        // refused.
        let at_alice = alice.deposits(0, 0, None).await.expect("deposits");
        assert_eq!(at_alice.deposits.len(), 1);
        assert_eq!(at_alice.deposits[0].amount, 100);
        assert_eq!(
            at_alice.deposits[0].from_name.as_deref(),
            Some(format!("bob@{host}").as_str())
        );
        let refused = raw
            .get(format!("{bank_url}/lcp/v1/balance"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("balance");
        assert_eq!(
            refused.status().as_u16(),
            401,
            "the revoked token is refused"
        );

        // Erin signs up on the page for a transparent account: the bank makes her a key, the
        // page shows it, and her name resolves to that key (no customer named).
        let steps = serde_json::json!([
            {"go": format!("{bank_url}/signup")},
            {"fill": {"input[name=name]": "erin", "input[name=password]": PASSWORD}},
            {"eval": "document.querySelector('input[name=transparent]').checked = true"},
            {"submit": "form[action='/signup']"},
            {"eval": "document.getElementById('kind').textContent"},
        ]);
        let profile = tmp.path().join("chromium-erin");
        let done = tokio::task::spawn_blocking(move || browse(chromium, &profile, steps))
            .await
            .expect("browser task");
        let kind = done[4].as_str().unwrap_or_default().to_owned();
        assert!(kind.contains("transparent account"), "{kind}");
        let erin = clients::names::resolve(&format!("erin@{host}"), &ClientOptions::default())
            .await
            .expect("erin resolves");
        assert_eq!(erin.userid, None);
        assert!(
            kind.contains(erin.entity.as_str()),
            "the page shows her key: {kind}"
        );
        // Paid by name, the payment lands on her key and her page's statement shows it.
        mint.transfer_to(&erin, 700, Some("for-erin"))
            .await
            .expect("pay erin");
        let cookie = login(&raw, &bank_url, "erin").await;
        let page = raw
            .get(format!("{bank_url}/"))
            .header("cookie", cookie)
            .send()
            .await
            .expect("page")
            .text()
            .await
            .expect("text");
        assert!(
            page.contains("for-erin") && page.contains(">700<"),
            "her statement and balance: {page}"
        );
    }

    // An expired session: a bank whose sessions last one second.
    let short = tmp.path().join("short");
    add_customer(&short, "carol", PASSWORD, None);
    let (_short_bank, short_url) = serve(&short, &issuer.url, None, &["--session-ttl-s", "1"]);
    let cookie = login(&raw, &short_url, "carol").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let expired = raw
        .get(format!("{short_url}/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(expired.status().as_u16(), 303);
    assert_eq!(
        expired
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some("/login?expired=1")
    );
}

//! The `storage-agent` binary as a home user runs it: init, serve (with the market heartbeat),
//! status; one-line errors and exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};

fn agent(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_storage-agent"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run");
    eprintln!(
        "$ storage-agent {}\n-> {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn one_line_error(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err} should mention {needle}"
    );
}

/// A stand-in market: verifies the signed POST /v1/offers and keeps the envelopes.
struct FakeMarket {
    key: protocol::KeyPair,
    offers: Mutex<Vec<(String, protocol::Envelope)>>,
}

async fn post_offer(
    req: HttpRequest,
    body: web::Bytes,
    m: web::Data<Arc<FakeMarket>>,
) -> HttpResponse {
    let v = match node::http::authenticate(
        &req,
        &body,
        m.key.entity().as_str(),
        protocol::RequestKind::Command,
    ) {
        Ok(v) => v,
        Err(e) => return HttpResponse::Unauthorized().body(e.to_string()),
    };
    let Ok(env) = serde_json::from_slice::<protocol::Envelope>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    m.offers
        .lock()
        .expect("lock")
        .push((v.entity.to_string(), env));
    node::http::signed_response(&m.key, &v, 200, "{\"accepted\":true}".into())
}

#[test]
fn init_serve_status_and_heartbeat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let issuer = lcp::testing::start_issuer(&dir.path().join("issuer"));
    let market = Arc::new(FakeMarket {
        key: protocol::KeyPair::generate().expect("key"),
        offers: Mutex::default(),
    });
    let m = market.clone();
    let market_http = node::http::spawn(
        "fake-market",
        "127.0.0.1:0",
        None,
        1,
        move |cfg| {
            let m = m.clone();
            let entity = m.key.entity().to_string();
            cfg.app_data(web::Data::new(m))
                .route("/.well-known/lcp", web::get().to(move || {
                    let entity = entity.clone();
                    async move { HttpResponse::Ok().json(serde_json::json!({"protocol": "lcp/1", "role": "market", "entity": entity})) }
                }))
                .route("/v1/offers", web::post().to(post_offer));
        },
        || {},
    )
    .expect("fake market");

    let data = dir.path().join("agent");
    let d = data.to_str().expect("utf8");
    let out = agent(&[
        "init",
        "--data",
        d,
        "--issuer",
        &issuer.url,
        "--capacity",
        "1000000",
        "--storage-per-gib-day",
        "5",
        "--grace-s",
        "10",
    ]);
    assert!(out.status.success());
    let entity = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(protocol::EntityId::parse(&entity).is_ok(), "{entity}");
    let config = std::fs::read_to_string(data.join("config.toml")).expect("config");
    assert!(
        config.contains(issuer.entity.as_str()) && config.contains("storage_per_gib_day = 5"),
        "{config}"
    );
    one_line_error(
        &agent(&["init", "--data", d, "--issuer", &issuer.url]),
        "--force",
    );
    one_line_error(
        &agent(&[
            "init",
            "--data",
            dir.path().join("x").to_str().expect("utf8"),
            "--issuer",
            "http://127.0.0.1:1",
        ]),
        "cannot read the issuer descriptor",
    );
    assert!(
        !dir.path().join("x").exists(),
        "a refused init leaves no directory behind"
    );
    one_line_error(
        &agent(&[
            "serve",
            "--data",
            dir.path().join("nothing").to_str().expect("utf8"),
        ]),
        "storage-agent init",
    );

    let status: serde_json::Value =
        serde_json::from_slice(&agent(&["status", "--data", d, "--json"]).stdout).expect("json");
    assert_eq!(
        (
            status["capacity_bytes"].as_u64(),
            status["free_bytes"].as_u64(),
            status["contracts_active"].as_u64()
        ),
        (Some(1_000_000), Some(1_000_000), Some(0))
    );
    // Text output shows earnings in the currency (the issuer is up): decimals and code.
    let text = String::from_utf8_lossy(&agent(&["status", "--data", d]).stdout).into_owned();
    let earned = text
        .lines()
        .find(|l| l.starts_with("earned"))
        .unwrap_or_else(|| panic!("an earned line: {text}"));
    assert!(earned.contains("0.00 "), "{earned}");
    // The last 7 days as a table (issue 22): a header and a row per UTC day, today last.
    let today = &protocol::market::format_rfc3339(node::now_s())[..10];
    let table: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("last 7 days"))
        .collect();
    assert_eq!(table.len(), 9, "a title, a header and 7 days: {text}");
    assert!(table[8].starts_with(today), "{text}");
    assert_eq!(
        status["history"].as_array().map(Vec::len),
        Some(7),
        "--json carries the 7 days: {status}"
    );
    // A market URL without its scheme, or every interface with no endpoint to advertise:
    // refused at start, not discovered in the logs later.
    one_line_error(
        &agent(&["serve", "--data", d, "--market", "127.0.0.1:7200"]),
        "write it as http://127.0.0.1:7200",
    );
    one_line_error(
        &agent(&[
            "serve",
            "--data",
            d,
            "--listen",
            "0.0.0.0:0",
            "--market",
            "http://127.0.0.1:7200",
        ]),
        "add --endpoint http://",
    );
    // Output into a closed pipe (`status | head -1`) ends quietly, without a panic.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let closed = Command::new(env!("CARGO_BIN_EXE_storage-agent"))
        .args(["status", "--data", d])
        .stdout(writer)
        .output()
        .expect("status into a closed pipe");
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert!(
        closed.status.success() && !stderr.contains("panicked"),
        "{:?} {stderr}",
        closed.status
    );

    // serve, heartbeating every second to the market.
    let mut child = Command::new(env!("CARGO_BIN_EXE_storage-agent"))
        .args([
            "serve",
            "--data",
            d,
            "--listen",
            "127.0.0.1:0",
            "--market",
            &market_http.url,
            "--heartbeat-s",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect("listening line")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while market.offers.lock().expect("lock").len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let offers = market.offers.lock().expect("lock").clone();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        offers.len() >= 2,
        "the offer is posted at start and again each heartbeat"
    );
    for (sender, env) in &offers {
        let (signer, offer): (_, protocol::market::Offer) =
            env.open("offer").expect("a valid signed offer");
        assert_eq!(
            (sender.as_str(), signer.as_str(), offer.agent.as_str()),
            (entity.as_str(), entity.as_str(), entity.as_str())
        );
        assert_eq!(
            offer.endpoint, url,
            "the offer names the agent's real endpoint"
        );
        assert_eq!(offer.free_bytes, 1_000_000);
    }
}

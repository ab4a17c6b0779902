//! The `lcp` binary as a user runs it: exact command forms, `--json`, one-line errors, exit codes.

mod util;

use util::{lcp, spawn_issuer};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_owned()
}

fn json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", stdout(o)))
}

fn assert_one_line_error(o: &std::process::Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "exit code 1 on error");
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(
        err.starts_with("error: ") && err.contains(needle),
        "{err} should mention {needle}"
    );
}

#[test]
fn keygen_and_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.key");
    let p = path.to_str().expect("utf8");
    let out = lcp(&["keygen", "--out", p]);
    assert!(out.status.success());
    let id = stdout(&out);
    assert!(protocol::EntityId::parse(&id).is_ok(), "{id}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
    }
    assert_eq!(stdout(&lcp(&["id", "--key", p])), id);
    assert_eq!(
        json(&lcp(&["id", "--key", p, "--json"]))["entity"],
        id.as_str()
    );
    assert_one_line_error(&lcp(&["keygen", "--out", p]), "already exists");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_one_line_error(&lcp(&["id", "--key", p]), "chmod 600");
    }
    assert_one_line_error(
        &lcp(&["id", "--key", "/nonexistent/k.key"]),
        "cannot read key file",
    );
    assert_eq!(
        lcp(&["transfer"]).status.code(),
        Some(2),
        "usage errors exit 2"
    );
    let fraction = lcp(&[
        "transfer", "--key", "k", "--issuer", "http://x", "--to", "y", "--amount", "1.5",
    ]);
    assert_eq!(fraction.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&fraction.stderr).contains("whole minor units"));
}

#[test]
fn transfer_balance_and_deposits_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("issuer");
    let (_issuer, url) = spawn_issuer(&data, None, &["--currency", "EUR", "--fee-flat", "1"]);
    let mint = data.join("identity.key");
    let mint = mint.to_str().expect("utf8");
    let alice = dir.path().join("alice.key");
    let alice = alice.to_str().expect("utf8");
    let bob = dir.path().join("bob.key");
    let bob = bob.to_str().expect("utf8");
    let alice_id = stdout(&lcp(&["keygen", "--out", alice]));
    let bob_id = stdout(&lcp(&["keygen", "--out", bob]));

    let funded = json(&lcp(&[
        "transfer", "--key", mint, "--issuer", &url, "--to", &alice_id, "--amount", "1000",
        "--json",
    ]));
    assert_eq!(funded["result"], "success");
    assert_eq!(funded["fee"], 0, "the issuer pays no fee");
    let paid = json(&lcp(&[
        "transfer",
        "--key",
        alice,
        "--issuer",
        &url,
        "--to",
        &bob_id,
        "--amount",
        "250",
        "--transaction-id",
        "order-7",
        "--json",
    ]));
    assert_eq!(
        (paid["fee"].as_u64(), paid["balance"].as_i64()),
        (Some(1), Some(749))
    );
    assert!(paid["receipt"].as_str().is_some_and(|r| !r.is_empty()));

    let balance = json(&lcp(&["balance", "--key", bob, "--issuer", &url, "--json"]));
    assert_eq!(
        (balance["balance"].as_i64(), balance["currency"].as_str()),
        (Some(250), Some("EUR"))
    );
    // People read amounts with the currency's decimals (2 by default); --json keeps minor units.
    assert_eq!(
        stdout(&lcp(&["balance", "--key", bob, "--issuer", &url])),
        "2.50 EUR"
    );
    let listed = stdout(&lcp(&["deposits", "--key", bob, "--issuer", &url]));
    let row = listed
        .lines()
        .find(|l| l.contains("order-7"))
        .unwrap_or_else(|| panic!("a row for order-7: {listed}"));
    assert!(row.contains("2.50 EUR"), "{row}");
    let time = row.rsplit('\t').next().unwrap_or_default();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.contains('T'),
        "deposit times are RFC 3339, not epoch ms: {row}"
    );
    assert!(listed.contains("balance 2.50 EUR"), "{listed}");

    let deposits = json(&lcp(&[
        "deposits",
        "--key",
        bob,
        "--issuer",
        &url,
        "--transaction-id",
        "order-7",
        "--json",
    ]));
    let list = deposits["deposits"].as_array().expect("deposits");
    assert_eq!(list.len(), 1);
    assert_eq!(
        (list[0]["from"].as_str(), list[0]["amount"].as_u64()),
        (Some(alice_id.as_str()), Some(250))
    );
    let next = deposits["next"].as_u64().expect("next").to_string();
    let none = json(&lcp(&[
        "deposits",
        "--key",
        bob,
        "--issuer",
        &url,
        "--after",
        &next,
        "--wait-ms",
        "100",
        "--json",
    ]));
    assert_eq!(none["deposits"].as_array().map(Vec::len), Some(0));

    // Errors: one line, exit 1, nothing moved.
    assert_one_line_error(
        &lcp(&[
            "transfer", "--key", bob, "--issuer", &url, "--to", &alice_id, "--amount", "999999",
        ]),
        "insufficient funds: balance 2.50 EUR, needed 10000.00 EUR",
    );
    assert_one_line_error(
        &lcp(&[
            "transfer", "--key", bob, "--issuer", &url, "--to", "bob", "--amount", "1",
        ]),
        "--to must be an entity id",
    );
    assert_one_line_error(
        &lcp(&[
            "transfer", "--key", bob, "--issuer", &url, "--to", &alice_id, "--amount", "0",
        ]),
        "invalid_amount",
    );
    // Names (DESIGN 14): malformed, at a host that does not answer, at a host that is no
    // bank. Each a clear error; no money moves (the balance is checked below).
    assert_one_line_error(
        &lcp(&[
            "transfer", "--key", bob, "--issuer", &url, "--to", "bob@", "--amount", "1",
        ]),
        "is not a host",
    );
    assert_one_line_error(
        &lcp(&[
            "transfer",
            "--key",
            bob,
            "--issuer",
            &url,
            "--to",
            "Bob@127.0.0.1",
            "--amount",
            "1",
        ]),
        "is not a user name",
    );
    assert_one_line_error(
        &lcp(&[
            "transfer",
            "--key",
            bob,
            "--issuer",
            &url,
            "--to",
            "bob@127.0.0.1:1",
            "--amount",
            "1",
        ]),
        "cannot resolve bob@127.0.0.1:1",
    );
    assert_one_line_error(
        &lcp(&["balance", "--key", bob, "--issuer", "http://127.0.0.1:1"]),
        "cannot reach",
    );
    let bare = url.trim_start_matches("http://");
    assert_one_line_error(
        &lcp(&["balance", "--key", bob, "--issuer", bare]),
        &format!("write it as http://{bare}"),
    );
    // Pointed at a service that is not an issuer, the wallet says what it is.
    let (market_url, _server) = fake_service("market");
    assert_one_line_error(
        &lcp(&["balance", "--key", bob, "--issuer", &market_url]),
        "is a market, not an issuer",
    );
    let not_a_bank = format!("bob@{}", market_url.trim_start_matches("http://"));
    assert_one_line_error(
        &lcp(&[
            "transfer",
            "--key",
            bob,
            "--issuer",
            &url,
            "--to",
            &not_a_bank,
            "--amount",
            "1",
        ]),
        "not a name answer",
    );
    assert_eq!(
        json(&lcp(&["balance", "--key", bob, "--issuer", &url, "--json"]))["balance"],
        250
    );
}

/// A server that answers every request with a descriptor of `role` (a market, say): enough for a
/// wallet to find out it was pointed at the wrong thing. Serves until the test ends.
fn fake_service(role: &str) -> (String, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let body = format!(
        r#"{{"protocol":"lcp/1","role":"{role}","entity":"ed25519:{}"}}"#,
        "ab".repeat(32)
    );
    let server = std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, server)
}

#[test]
fn bench_reports_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("issuer");
    let (_issuer, url) = spawn_issuer(&data, None, &[]);
    let key = data.join("identity.key");
    let bench = |clients: &str, transfers: &str, extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--issuer",
            &url,
            "--key",
            key.to_str().expect("utf8"),
            "--clients",
            clients,
            "--transfers",
            transfers,
            "--json",
        ];
        args.extend_from_slice(extra);
        json(&lcp(&args))
    };
    let report = bench("4", "200", &[]);
    assert_eq!(report["transfers"], 200);
    assert_eq!(report["errors"], 0);
    for field in ["transfers_per_s", "p50_ms", "p99_ms"] {
        assert!(
            report[field].as_f64().is_some_and(|v| v > 0.0),
            "{field}: {report}"
        );
    }
    // The CPU figures are read from the issuer's /metrics and this process.
    for field in ["issuer_cpu_us_per_transfer", "issuer_cores", "bench_cores"] {
        assert!(
            report[field].as_f64().is_some_and(|v| v >= 0.0),
            "{field}: {report}"
        );
    }
    // The lean client checks every receipt when asked: all verify.
    let checked = bench("3", "60", &["--verify-receipts"]);
    assert_eq!(
        (&checked["transfers"], &checked["errors"]),
        (&serde_json::json!(60), &serde_json::json!(0)),
        "{checked}"
    );
}

#[test]
fn the_readme_demo_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = lcp(&["demo", "--dir", dir.path().to_str().expect("utf8")]);
    assert!(out.status.success());
    let text = stdout(&out);
    // Amounts in the currency's units: 250 minor units with 2 decimals.
    assert!(text.contains("2.50 LCU received"), "{text}");
    assert!(text.contains("alice 7.50 LCU"), "{text}");
}

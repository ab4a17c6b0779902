//! The bank end to end (issue 19, DESIGN 14), on SQLite and (with TEST_DATABASE_URL)
//! PostgreSQL: a real issuer, the `bank` binary, customers added and tokens granted from its
//! command line, payments by name through the issuer, and an app paying and reading
//! deposits with a bearer token.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use clients::issuer::IssuerClient;
use common::{bank_bin, serve, Net};
use node::client::ClientOptions;

/// Longest wait for the bank to print its address, and for any long poll here.
const WAIT_MS_MAX: u64 = 30_000;

/// Run `bank ARGS` (with `stdin` fed in); print everything, for a failing test's log.
fn bank(args: &[&str], database: Option<&str>, stdin: &str) -> Output {
    let mut cmd = Command::new(bank_bin());
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some(url) = database {
        cmd.args(["--database", url]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bank");
    // A command refused before it reads its input (a bad --name) may have exited already:
    // its answer, read below, is what the test checks, not this write.
    let written = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    let out = child.wait_with_output().expect("bank output");
    eprintln!(
        "$ bank {}\n-> {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn assert_one_line_error(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "exit 1 on error");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line on stderr: {err}");
    assert!(err.contains(needle), "{err} should mention {needle}");
}

struct App {
    http: reqwest::Client,
    bank: String,
    token: String,
}

impl App {
    async fn get(&self, pq: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(format!("{}{pq}", self.bank))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }

    async fn pay(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .post(format!("{}/lcp/v1/transfers", self.bank))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("send");
        (resp.status().as_u16(), resp.json().await.expect("json"))
    }
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_paid_by_name_and_apps_pay_within_their_tokens() {
    for (backend, database) in db::testing::backends("bank") {
        eprintln!("backend: {backend}");
        run(database.url().as_deref()).await;
    }
}

async fn run(database: Option<&str>) {
    let net = Net::start();
    let (tmp, issuer, http, mint) = (&net.tmp, &net.issuer, &net.http, &net.mint);
    let issuer_id = issuer.entity.to_string();
    let wallet = |name: &str| net.wallet(name);
    let payer = wallet("payer");
    let alice = wallet("alice");
    mint.transfer(payer.signed().key().entity(), 10_000, None)
        .await
        .expect("fund the payer");

    // Customers from the command line; the bank then serves.
    let data = tmp.path().join("bank");
    let data_s = data.display().to_string();
    for name in ["bob", "carol"] {
        let added = bank(
            &[
                "customer",
                "add",
                "--data",
                &data_s,
                "--name",
                name,
                "--password-stdin",
            ],
            database,
            "a long password\n",
        );
        assert!(added.status.success(), "customer add");
    }
    assert_one_line_error(
        &bank(
            &[
                "customer",
                "add",
                "--data",
                &data_s,
                "--name",
                "bob",
                "--password-stdin",
            ],
            database,
            "another password\n",
        ),
        "exists already",
    );
    assert_one_line_error(
        &bank(
            &[
                "customer",
                "add",
                "--data",
                &data_s,
                "--name",
                "Dave",
                "--password-stdin",
            ],
            database,
            "a long password\n",
        ),
        "--name",
    );
    let (_bank_process, bank_url) = serve(&data, &issuer.url, database, &[]);
    let host = bank_url.trim_start_matches("http://").to_owned();

    // Names: bob@host resolves to the bank's entity and userid bob.
    let options = ClientOptions::default();
    let bob = clients::names::resolve(&format!("bob@{host}"), &options)
        .await
        .expect("bob resolves");
    assert_eq!(bob.userid.as_deref(), Some("bob"));
    let descriptor: serde_json::Value = http
        .get(format!("{bank_url}/.well-known/lcp"))
        .send()
        .await
        .expect("descriptor")
        .json()
        .await
        .expect("json");
    assert_eq!(descriptor["role"], "bank");
    assert_eq!(
        bob.entity.as_str(),
        descriptor["entity"].as_str().expect("entity")
    );
    let unknown = clients::names::resolve(&format!("nobody@{host}"), &options)
        .await
        .expect_err("an unknown name");
    assert!(unknown.to_string().contains("no such name"), "{unknown}");
    let malformed = http
        .get(format!("{bank_url}/.well-known/lcp-names?name=Bad%20Name"))
        .send()
        .await
        .expect("send");
    assert_eq!(malformed.status().as_u16(), 400);
    let elsewhere = http
        .get(format!(
            "{bank_url}/.well-known/lcp-names?name=bob@other.example"
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(
        elsewhere.status().as_u16(),
        400,
        "a name at another host is not ours"
    );

    // The payer pays bob@bank; a deposit to carol carries the same transaction id.
    payer
        .transfer_to(&bob, 1_000, Some("order-1"))
        .await
        .expect("pay bob");
    let carol = clients::names::resolve(&format!("carol@{host}"), &options)
        .await
        .expect("carol resolves");
    payer
        .transfer_to(&carol, 50, Some("order-1"))
        .await
        .expect("pay carol");

    // Bob's app: a token from the command line, 600 at most.
    let granted = bank(
        &[
            "token",
            "grant",
            "--data",
            &data_s,
            "--customer",
            "bob",
            "--issuer",
            &issuer_id,
            "--limit",
            "600",
            "--label",
            "backup",
            "--json",
        ],
        database,
        "",
    );
    assert!(granted.status.success(), "token grant");
    let granted: serde_json::Value = serde_json::from_str(&stdout(&granted)).expect("json");
    let app = App {
        http: http.clone(),
        bank: bank_url.clone(),
        token: granted["token"].as_str().expect("token").to_owned(),
    };
    // The bank credits bob once its watcher sees the deposit: the long poll waits for it.
    let (status, page) = app
        .get(&format!("/lcp/v1/deposits?after=0&wait_ms={WAIT_MS_MAX}"))
        .await;
    assert_eq!(status, 200, "{page}");
    let deposits = page["deposits"].as_array().expect("deposits");
    assert_eq!(deposits.len(), 1, "only bob's deposit: {page}");
    assert_eq!(deposits[0]["amount"], 1_000);
    assert_eq!(deposits[0]["transaction_id"], "order-1");
    assert_eq!(deposits[0]["from"], payer.signed().key().entity().as_str());
    assert_eq!(page["balance"], 1_000);
    let (_, only) = app
        .get("/lcp/v1/deposits?after=0&transaction_id=order-1")
        .await;
    assert_eq!(
        only["deposits"].as_array().map(Vec::len),
        Some(1),
        "carol's deposit with the same transaction id is not bob's: {only}"
    );
    let (_, balance) = app.get("/lcp/v1/balance").await;
    assert_eq!(balance["balance"], 1_000);

    // The app pays alice 300 for bob; alice sees the bank paid, naming bob.
    let alice_id = alice.signed().key().entity().to_string();
    let (status, paid) = app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 300, "transaction_id": "t-1", "request_id": "r-1"}))
        .await;
    assert_eq!(status, 200, "{paid}");
    let fee = paid["fee"].as_u64().expect("fee");
    assert_eq!(paid["balance"], 1_000 - 300 - fee as i64);
    // Asked again with its request_id (an app whose answer was lost): the same answer, and
    // nothing more paid.
    let (status, again) = app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 300, "transaction_id": "t-1", "request_id": "r-1"}))
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        (again["seq"].clone(), again["fee"].clone()),
        (paid["seq"].clone(), paid["fee"].clone())
    );
    assert_eq!(again["balance"], 1_000 - 300 - fee as i64, "paid once");
    let (status, e) = app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 301, "request_id": "r-1"}))
        .await;
    assert_eq!((status, code(&e)), (400, "invalid_query"), "{e}");
    let at_alice = alice.deposits(0, 0, None).await.expect("alice's deposits");
    assert_eq!(at_alice.deposits.len(), 1);
    assert_eq!(at_alice.deposits[0].amount, 300);
    assert_eq!(at_alice.deposits[0].from, bob.entity.as_str());
    assert_eq!(
        at_alice.deposits[0].from_name.as_deref(),
        Some(format!("bob@{host}").as_str())
    );

    // Whose token this is, and what it may still spend.
    let (status, account) = app.get("/lcp/v1/account").await;
    assert_eq!(status, 200, "{account}");
    assert_eq!(account["name"], format!("bob@{host}"));
    assert_eq!(account["bank"], bob.entity.as_str());
    assert_eq!(account["issuer"], issuer_id.as_str());
    assert_eq!(account["allowance"], 600 - 300 - fee);

    // Bob pays carol, a customer of the same bank: a book entry, no fee, no issuer command.
    let (status, inside) = app
        .pay(serde_json::json!({"recipient": format!("carol@{host}"), "amount": 100, "transaction_id": "t-2"}))
        .await;
    assert_eq!(status, 200, "{inside}");
    assert_eq!(inside["fee"], 0);
    assert_eq!(inside["balance"], 1_000 - 300 - fee as i64 - 100);
    let carol_token = bank(
        &[
            "token",
            "grant",
            "--data",
            &data_s,
            "--customer",
            "carol",
            "--issuer",
            &issuer_id,
            "--limit",
            "0",
        ],
        database,
        "",
    );
    let carol_app = App {
        http: http.clone(),
        bank: bank_url.clone(),
        token: stdout(&carol_token),
    };
    let (_, page) = carol_app
        .get(&format!(
            "/lcp/v1/deposits?after=0&wait_ms={WAIT_MS_MAX}&transaction_id=t-2"
        ))
        .await;
    let from_bob = &page["deposits"][0];
    assert_eq!(from_bob["amount"], 100, "{page}");
    assert_eq!(from_bob["from_name"], format!("bob@{host}"), "{page}");
    let (_, carol_balance) = carol_app.get("/lcp/v1/balance").await;
    assert_eq!(carol_balance["balance"], 150);
    // A customer of the bank that does not exist: refused, nothing moves.
    let (status, e) = app
        .pay(serde_json::json!({"recipient": bob.entity.as_str(), "userid": "nobody", "amount": 5}))
        .await;
    assert_eq!(status / 100, 4, "{e}");
    let (_, balance) = app.get("/lcp/v1/balance").await;
    assert_eq!(balance["balance"], 1_000 - 300 - fee as i64 - 100);

    // Past the token's limit (400 + fee spent of 600): refused, nothing moves.
    let (status, refused) = app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 400}))
        .await;
    assert_eq!(
        (status, code(&refused)),
        (403, "limit_reached"),
        "{refused}"
    );
    // Bad input: the issuer's codes.
    for (body, expected) in [
        (
            serde_json::json!({"recipient": alice_id, "amount": 0}),
            "invalid_amount",
        ),
        (
            serde_json::json!({"recipient": "nobody", "amount": 5}),
            "invalid_recipient",
        ),
        (serde_json::json!({"recipient": alice_id}), "invalid_json"),
    ] {
        let (status, e) = app.pay(body).await;
        assert_eq!((status, code(&e)), (400, expected), "{e}");
    }
    let (_, balance) = app.get("/lcp/v1/balance").await;
    assert_eq!(balance["balance"], 1_000 - 300 - fee as i64 - 100);

    // Erin banks transparently: the bank keeps her own key. Her name resolves to that key
    // (no userid), a payment to her lands on it, and her app pays with it, naming her.
    let added = bank(
        &[
            "customer",
            "add",
            "--data",
            &data_s,
            "--name",
            "erin",
            "--transparent",
            "--password-stdin",
            "--json",
        ],
        database,
        "a long password\n",
    );
    assert!(added.status.success(), "transparent customer add");
    let added: serde_json::Value = serde_json::from_str(&stdout(&added)).expect("json");
    assert_eq!(added["kind"], "transparent");
    let erin = clients::names::resolve(&format!("erin@{host}"), &options)
        .await
        .expect("erin resolves");
    assert_eq!(
        erin.userid, None,
        "a transparent account is paid at its own key"
    );
    assert_eq!(Some(erin.entity.as_str()), added["entity"].as_str());
    assert_ne!(erin.entity, bob.entity, "not the bank's entity");
    payer
        .transfer_to(&erin, 500, Some("for-erin"))
        .await
        .expect("pay erin");
    let erin_app = App {
        http: http.clone(),
        bank: bank_url.clone(),
        token: stdout(&bank(
            &[
                "token",
                "grant",
                "--data",
                &data_s,
                "--customer",
                "erin",
                "--issuer",
                &issuer_id,
                "--limit",
                "150",
            ],
            database,
            "",
        )),
    };
    let (_, b) = erin_app.get("/lcp/v1/balance").await;
    assert_eq!(b["balance"], 500, "her key's balance at the issuer: {b}");
    let (_, page) = erin_app.get("/lcp/v1/deposits?after=0").await;
    assert_eq!(page["deposits"][0]["transaction_id"], "for-erin", "{page}");
    let (_, account) = erin_app.get("/lcp/v1/account").await;
    assert_eq!(account["bank"], erin.entity.as_str());
    let before_alice = alice
        .deposits(0, 0, None)
        .await
        .expect("deposits")
        .deposits
        .len();
    let (status, paid) = erin_app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 100, "transaction_id": "t-3"}))
        .await;
    assert_eq!(status, 200, "{paid}");
    let at_alice = alice.deposits(0, 0, None).await.expect("deposits").deposits;
    assert_eq!(at_alice.len(), before_alice + 1);
    let last = at_alice.last().expect("erin's payment");
    assert_eq!(last.from, erin.entity.as_str(), "paid from erin's own key");
    assert_eq!(
        last.from_name.as_deref(),
        Some(format!("erin@{host}").as_str())
    );
    // Her token's limit holds for her own key's money too (100 + fee spent of 150).
    let (status, e) = erin_app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 100}))
        .await;
    assert_eq!((status, code(&e)), (403, "limit_reached"), "{e}");

    // Every balance adds up: what the bank holds at the issuer is what its customers own
    // (erin's money is her own key's, not the bank's).
    let held = IssuerClient::new(
        http.clone(),
        &issuer.url,
        Arc::new(node::keyfile::load(&data.join("identity.key")).expect("bank key")),
        None,
    )
    .balance()
    .await
    .expect("the bank's balance");
    assert_eq!(held.balance, (1_000 - 300 - fee as i64 - 100) + 150);

    // Revoked: refused at once.
    let id = granted["id"].as_str().expect("id");
    assert!(
        bank(&["token", "revoke", "--data", &data_s, id], database, "")
            .status
            .success()
    );
    let (status, e) = app.get("/lcp/v1/balance").await;
    assert_eq!((status, code(&e)), (401, "invalid_token"));
    let (status, e) = app
        .pay(serde_json::json!({"recipient": alice_id, "amount": 1}))
        .await;
    assert_eq!((status, code(&e)), (401, "invalid_token"));
    let forged = App {
        token: "0123.abcd".into(),
        ..app
    };
    let (status, _) = forged.get("/lcp/v1/balance").await;
    assert_eq!(status, 401);
}

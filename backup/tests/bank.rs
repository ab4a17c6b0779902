//! A backup paid from a bank account (issue 19, DESIGN 14) on a devnet whose agents bank
//! there too (`devnet up --bank`): carol has no funded wallet key, only an account at the
//! bank and an app token; `backup init --bank URL --bank-token T` buys the contracts through
//! the bank (which pays the agents' accounts by book entries), the backup's own key signs
//! its requests to the agents, and the repository backs up and restores. A token's limit
//! stops spending past it; a revoked token is refused at once; and no money leaves the
//! backup's own key.

mod util;

use std::path::Path;

use clients::issuer::IssuerClient;
use devnet::{Devnet, Options};
use node::client::ClientOptions;
use util::{noise, Cli, PASSWORD};

/// `bank ARGS` on the devnet's bank; stdout, which must be a success.
fn bank(net: &Devnet, args: &[&str], stdin: &str) -> String {
    devnet::bank::cli(&net.dir, args, stdin).unwrap_or_else(|e| panic!("bank {args:?}: {e}"))
}

fn account(url: &str, token: &str, rt: &tokio::runtime::Runtime) -> protocol::name::AccountAnswer {
    rt.block_on(
        clients::bank::BankAccess::new(reqwest::Client::new(), url, token)
            .expect("token")
            .account(),
    )
    .expect("account")
}

fn key_balance(net: &Devnet, key: &Path, rt: &tokio::runtime::Runtime) -> i64 {
    rt.block_on(
        IssuerClient::from_key_file(&net.issuer.url, key, &ClientOptions::default())
            .expect("wallet")
            .balance(),
    )
    .expect("balance")
    .balance
}

#[test]
fn a_customer_without_a_funded_key_backs_up_through_an_app_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = 6;
    opts.heartbeat_s = 1;
    opts.bank = true;
    let net = Devnet::up(&opts).expect("devnet");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bank_url = net.bank.as_ref().expect("bank").url.clone();
    let host = bank_url.trim_start_matches("http://").to_owned();

    // Carol opens an account and is paid 5,000,000 by name from the devnet's wallet.
    bank(
        &net,
        &["customer", "add", "--name", "carol", "--password-stdin"],
        "a long password\n",
    );
    let carol = rt
        .block_on(clients::names::resolve(
            &format!("carol@{host}"),
            &ClientOptions::default(),
        ))
        .expect("carol resolves");
    rt.block_on(
        IssuerClient::from_key_file(&net.issuer.url, &net.wallet.key, &ClientOptions::default())
            .expect("wallet")
            .transfer_to(&carol, 5_000_000, Some("salary")),
    )
    .expect("pay carol");
    let token = bank(
        &net,
        &[
            "token",
            "grant",
            "--customer",
            "carol",
            "--issuer",
            &net.issuer.entity,
            "--limit",
            "2000000",
            "--label",
            "backup",
        ],
        "",
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while account(&bank_url, &token, &rt).balance != 5_000_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "carol's account was not credited"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // The backup's own key: it signs, it holds nothing.
    let key = tmp.path().join("backup.key");
    node::keyfile::generate(&key).expect("key");
    let cli = Cli {
        wallet: key.clone(),
        market: net.market.url.clone(),
    };
    let home = tmp.path().join("config");
    let init = cli.init(
        &home,
        &[
            "--slot-bytes",
            "8388608",
            "--bank",
            &bank_url,
            "--bank-token",
            &token,
        ],
    );
    let paid = init["paid"].as_u64().expect("paid");
    assert!(paid > 0, "{init}");
    let after_init = account(&bank_url, &token, &rt);
    assert_eq!(
        after_init.balance,
        5_000_000 - paid as i64,
        "paid from the account"
    );
    assert_eq!(after_init.allowance, 2_000_000 - paid, "and from the token");

    // Back up and restore, paid through the bank where anything is due.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("a.bin"), noise(300_000, 7)).expect("file");
    cli.ok(&home, &["create", src.to_str().expect("utf-8"), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    assert_eq!(
        key_balance(&net, &key, &rt),
        0,
        "the backup's key paid nothing"
    );
    // The agents were paid into their own accounts at the same bank.
    let agents_paid: i64 = (0..net.agents.len())
        .map(|i| {
            let config =
                storage_agent::config::AgentConfig::load(&net.agents[i].data).expect("cfg");
            let b = config.currencies[0].bank.clone().expect("banked agent");
            account(&b.url, &b.token, &rt).balance
        })
        .sum();
    let carol_now = account(&bank_url, &token, &rt).balance;
    assert_eq!(
        agents_paid,
        5_000_000 - carol_now,
        "what carol spent is what the agents hold"
    );

    // A token whose limit is below one contract's price: init stops at the limit, and the
    // account keeps its money.
    let small = bank(
        &net,
        &[
            "token",
            "grant",
            "--customer",
            "carol",
            "--issuer",
            &net.issuer.entity,
            "--limit",
            "5",
        ],
        "",
    );
    let before = account(&bank_url, &token, &rt).balance;
    let (code, _, err) = cli.run(
        &tmp.path().join("config-small"),
        PASSWORD,
        &[
            "init",
            "--market",
            &cli.market,
            "--wallet",
            key.to_str().expect("utf-8"),
            "--slot-bytes",
            "8388608",
            "--bank",
            &bank_url,
            "--bank-token",
            &small,
        ],
    );
    assert_ne!(code, 0, "init past the token's limit");
    assert!(err.contains("limit"), "{err}");
    assert_eq!(
        account(&bank_url, &token, &rt).balance,
        before,
        "nothing moved"
    );

    // Revoked: refused at once, by the next command.
    let id = token.split_once('.').expect("id").0;
    bank(&net, &["token", "revoke", id], "");
    let (code, _, err) = cli.run(
        &tmp.path().join("config-revoked"),
        PASSWORD,
        &[
            "init",
            "--market",
            &cli.market,
            "--wallet",
            key.to_str().expect("utf-8"),
            "--slot-bytes",
            "8388608",
            "--bank",
            &bank_url,
            "--bank-token",
            &token,
        ],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("invalid_token") || err.contains("refused the token"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

//! Many currencies (issue 19, DESIGN 14) on `devnet up --issuers 2`: every agent accepts
//! both at its own prices, the market matches in either, and a backup whose wallet holds
//! only the second currency pays in it without being told to.

mod util;

use std::path::Path;

use clients::issuer::IssuerClient;
use devnet::{Devnet, Options};
use node::client::ClientOptions;
use util::{noise, Cli};

fn balance(issuer_url: &str, key: &Path, rt: &tokio::runtime::Runtime) -> i64 {
    rt.block_on(
        IssuerClient::from_key_file(issuer_url, key, &ClientOptions::default())
            .expect("wallet")
            .balance(),
    )
    .expect("balance")
    .balance
}

#[test]
fn a_backup_pays_in_the_currency_its_wallet_holds() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut opts = Options::new(&tmp.path().join("net")).expect("options");
    opts.agents = 6;
    opts.heartbeat_s = 1;
    opts.issuers = 2;
    let net = Devnet::up(&opts).expect("devnet");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (first, second) = (&net.issuer, &net.other_issuers[0]);
    assert_ne!(first.entity, second.entity);

    // Every agent takes both currencies, at prices of its own in each.
    let http = reqwest::Client::new();
    let key = std::sync::Arc::new(protocol::KeyPair::generate().expect("key"));
    for a in &net.agents {
        let (_, offer) = rt
            .block_on(clients::agent::AgentClient::new(http.clone(), &a.url, key.clone()).offer())
            .expect("offer");
        let price = |issuer: &str| {
            let id = protocol::EntityId::parse(issuer).expect("id");
            offer.currency(&id).expect("accepted").storage_per_gib_day
        };
        assert_ne!(price(&first.entity), price(&second.entity), "{}", a.name);
    }

    // A wallet funded in the second currency only.
    let wallet = tmp.path().join("second-only.key");
    let id = node::keyfile::generate(&wallet)
        .expect("key")
        .entity()
        .clone();
    rt.block_on(
        IssuerClient::from_key_file(&second.url, &net.wallet.key, &ClientOptions::default())
            .expect("devnet wallet")
            .transfer(&id, 5_000_000, None),
    )
    .expect("fund");
    let cli = Cli {
        wallet: wallet.clone(),
        market: net.market.url.clone(),
    };
    let home = tmp.path().join("config");
    let init = cli.init(&home, &["--slot-bytes", "8388608"]);
    let paid = init["paid"].as_i64().expect("paid");
    assert!(paid > 0, "{init}");
    let repo: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("repo.json")).expect("repo.json"))
            .expect("json");
    assert_eq!(repo["issuer"], second.entity, "the repository pays in LC1");
    // The contracts, and the escrow of any payword chain bought for writes, in LC1.
    assert!(balance(&second.url, &wallet, &rt) <= 5_000_000 - paid);
    assert_eq!(balance(&first.url, &wallet, &rt), 0);

    // It backs up and restores, paid in the second currency throughout.
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("src");
    std::fs::write(src.join("a.bin"), noise(200_000, 3)).expect("file");
    cli.ok(&home, &["create", src.to_str().expect("utf-8"), "--json"]);
    cli.restore_exact(&home, &tmp.path().join("restored"), "src", &src);
    assert_eq!(balance(&first.url, &wallet, &rt), 0, "nothing in the first");
}

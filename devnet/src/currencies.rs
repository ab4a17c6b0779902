//! The devnet's currencies (`devnet up --issuers N`, DESIGN 14's "many currencies"): the
//! first issuer's currency and N - 1 more, each its own `lcp issuer serve` (`issuer-<k>`).
//! Every agent accepts every currency at its own prices (a currency's prices scale with its
//! index, so they differ between currencies), the wallet is funded in each by its mint, and
//! the bank, with `--bank`, takes them all.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{bail, Context};
use clients::issuer::IssuerClient;
use node::client::{ClientOptions, CounterStore};

use crate::{entity_of_key, path_arg, Devnet, Service, WALLET_FUNDS};

/// Most currencies a devnet runs.
pub const ISSUERS_MAX: usize = 4;

/// The service of issuer `k` (k >= 1; the first is `issuer`), not started.
pub(crate) fn issuer_service(
    lcp_bin: &Path,
    dir: &Path,
    k: usize,
    listen: String,
) -> anyhow::Result<Service> {
    let data = dir.join(format!("issuer-{k}"));
    Ok(Service {
        name: format!("issuer-{k}"),
        url: String::new(),
        entity: entity_of_key(&data.join("identity.key"))?,
        data: data.clone(),
        netns: None,
        program: lcp_bin.to_path_buf(),
        args: vec![
            "issuer".into(),
            "serve".into(),
            "--data".into(),
            path_arg(&data),
            "--listen".into(),
            listen,
            // Told apart from the first (LCU) in every listing: LC1, LC2...
            "--currency".into(),
            format!("LC{k}"),
        ],
        child: None,
    })
}

/// Agent `i`'s prices in currency `k`: storage from 100 to about 400 per GiB-day, writes 1
/// or 2 per KiB, reads 1 to 3 per KiB, each times `k + 1`.
fn prices(i: usize, k: usize) -> [u64; 3] {
    let scale = k as u64 + 1;
    [
        (100 + 61 * (i as u64 % 6) + 7 * (i as u64 / 6)) * scale,
        (1 + i as u64 % 2) * scale,
        (1 + i as u64 % 3) * scale,
    ]
}

/// `storage-agent init` for agent `i` in the first currency, at prices that vary by agent.
/// With `bank` (its URL and agent `i`'s token) the agent is paid into its account there.
pub(crate) fn init_agent(
    agent_bin: &Path,
    data: &Path,
    issuer_url: &str,
    i: usize,
    bank: Option<(String, String)>,
) -> anyhow::Result<()> {
    let [storage, write, read] = prices(i, 0);
    let mut cmd = Command::new(agent_bin);
    cmd.args(["init", "--data"])
        .arg(data)
        .args(["--issuer", issuer_url])
        .args(["--capacity", &crate::AGENT_CAPACITY_BYTES.to_string()])
        .args(["--storage-per-gib-day", &storage.to_string()])
        .args(["--write-per-kib", &write.to_string()])
        .args(["--read-per-kib", &read.to_string()])
        .args(["--contract-min", "10"])
        .args(["--grace-s", "3600"])
        // On a devnet, agents redeem paywords promptly: every 2 s, whatever they hold.
        .args(["--payword-redeem-threshold", "1"])
        .args(["--payword-redeem-interval-ms", "2000"]);
    if let Some((url, token)) = bank {
        // The token by the environment: not on a command line others can read.
        cmd.args(["--bank", &url]).env("AGENT_BANK_TOKEN", token);
    }
    run(cmd, "init", data)
}

/// `storage-agent currency add` for agent `i`: currency `k`'s issuer at its prices there.
pub(crate) fn add_currency(
    agent_bin: &Path,
    data: &Path,
    issuer_url: &str,
    i: usize,
    k: usize,
) -> anyhow::Result<()> {
    let [storage, write, read] = prices(i, k);
    let mut cmd = Command::new(agent_bin);
    cmd.args(["currency", "add", "--data"])
        .arg(data)
        .args(["--issuer", issuer_url])
        .args(["--storage-per-gib-day", &storage.to_string()])
        .args(["--write-per-kib", &write.to_string()])
        .args(["--read-per-kib", &read.to_string()])
        .args(["--contract-min", &(10 * (k + 1)).to_string()]);
    run(cmd, "currency add", data)
}

fn run(mut cmd: Command, what: &str, data: &Path) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run storage-agent {what}"))?;
    if !out.status.success() {
        bail!(
            "storage-agent {what} failed for {}: {}",
            data.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Devnet {
    /// Every issuer: the first, then `issuer-1`... in order.
    pub fn issuers(&self) -> impl Iterator<Item = &Service> {
        std::iter::once(&self.issuer).chain(self.other_issuers.iter())
    }

    /// Fund the wallet from each issuer's mint once (first start: its balance there is zero).
    pub(crate) async fn fund_wallet(&self) -> anyhow::Result<()> {
        let options = ClientOptions::default();
        let to = protocol::EntityId::parse(&self.wallet.entity)
            .map_err(|_| anyhow::anyhow!("wallet entity is malformed"))?;
        for issuer in self.issuers() {
            let wallet = IssuerClient::from_key_file(&issuer.url, &self.wallet.key, &options)?;
            if wallet.balance().await?.balance > 0 {
                continue;
            }
            let mint_key = issuer.data.join("identity.key");
            let mint = IssuerClient::new(
                self.http.clone(),
                &issuer.url,
                Arc::new(node::keyfile::load(&mint_key)?),
                Some(CounterStore::beside_key(&mint_key)),
            );
            mint.transfer(&to, WALLET_FUNDS, Some("devnet-funding"))
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_currency_has_its_own_prices() {
        for i in 0..12 {
            assert_ne!(super::prices(i, 0), super::prices(i, 1));
            assert!(super::prices(i, 0).iter().all(|p| *p > 0));
        }
    }
}

//! The overlay's peers on a devnet (`devnet up --peers N --topology T`, issue 18): N `peer`
//! processes, each the primary neighbour of the ones the topology links it to, taking the
//! devnet's currency, funded by the mint, each sharing `peers/peer-<i>/share/` (files
//! put there are sold after the peer's next start).
//!
//! Peers name each other before they start, so their ports are chosen first (the ones
//! `devnet.json` recorded when the directory had as many peers, free ones otherwise).

use std::path::Path;

use anyhow::Context;
use clients::issuer::IssuerClient;
use node::client::ClientOptions;
use protocol::overlay::topology::Topology;

use super::{bin, entity_of_key, path_arg, port_of, Devnet, DevnetFile, Service};

/// Peers a devnet may have.
pub const PEERS_MAX: usize = 256;
/// What each peer is funded with by the mint on first start (it settles its tabs and
/// pays ahead from this).
pub const PEER_FUNDS: u64 = 1_000_000;
/// The seed of random topologies: the same graph every time for the same size.
pub const TOPOLOGY_SEED: u64 = 18;

/// A free loopback port: bound, then released for the peer that will listen on it.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Devnet {
    /// Start `n` peers linked as `topology` says (see the module documentation).
    pub(crate) fn start_peers(
        &mut self,
        bin_dir: &Path,
        n: usize,
        topology: Topology,
        extra_args: &[String],
        previous: Option<&DevnetFile>,
        hosts: &[Option<super::netns::Host>],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(n <= PEERS_MAX, "--peers must be at most {PEERS_MAX}");
        if n == 0 {
            return Ok(());
        }
        let peer_bin = bin(bin_dir, "peer")?;
        let recorded: Vec<u16> = previous
            .filter(|p| p.peers.len() == n)
            .map(|p| p.peers.iter().filter_map(|s| port_of(&s.url)).collect())
            .unwrap_or_default();
        let ports: Vec<u16> = if recorded.len() == n {
            recorded
        } else if hosts.iter().all(Option::is_some) && hosts.len() == n {
            // Each peer has an address of its own.
            vec![super::netns::PORT; n]
        } else {
            (0..n).map(|_| free_port()).collect::<anyhow::Result<_>>()?
        };
        let graph = topology.neighbors(n, TOPOLOGY_SEED);
        let address = |i: usize| match hosts.get(i).and_then(Option::as_ref) {
            Some(h) => format!("{}:{}", h.address, ports[i]),
            None => format!("127.0.0.1:{}", ports[i]),
        };
        let logs = self.dir.join("logs");
        for (i, links) in graph.iter().enumerate() {
            let data = self.dir.join("peers").join(format!("peer-{i}"));
            let share = data.join("share");
            std::fs::create_dir_all(&share)
                .with_context(|| format!("cannot create {}", share.display()))?;
            let mut args = vec![
                "serve".into(),
                "--data".into(),
                path_arg(&data),
                "--listen".into(),
                address(i),
                "--issuer".into(),
                self.issuer.url.clone(),
                "--share".into(),
                path_arg(&share),
                // On a devnet, paywords are redeemed promptly, whatever they are worth.
                "--payword-redeem-threshold".into(),
                "1".into(),
            ];
            for &j in links {
                args.push("--neighbor".into());
                args.push(format!("http://{}", address(j)));
            }
            args.extend(extra_args.iter().cloned());
            let entity = entity_of_key(&data.join("identity.key"))?;
            self.fund_peer(&entity, &data)?;
            let mut peer = Service {
                name: format!("peer-{i}"),
                url: String::new(),
                entity,
                data,
                netns: hosts.get(i).cloned().flatten().map(|h| h.netns),
                program: peer_bin.clone(),
                args,
                child: None,
            };
            peer.start(&logs)?;
            self.peers.push(peer);
        }
        self.topology = Some(topology.to_string());
        Ok(())
    }

    /// Fund a peer from the wallet once (first start: its balance is zero).
    fn fund_peer(&self, entity: &str, data: &Path) -> anyhow::Result<()> {
        let options = ClientOptions::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let own = IssuerClient::from_key_file(
                &self.issuer.url,
                &data.join("identity.key"),
                &options,
            )?;
            if own.balance().await?.balance > 0 {
                return Ok(());
            }
            // From the mint, not the wallet: a transfer from the wallet would be the wallet's
            // payment ahead at that peer, and the wallet's purchases would draw on it.
            let mint_key = self.issuer.data.join("identity.key");
            // A client of this runtime's own (the devnet's belongs to another runtime).
            let mint = IssuerClient::new(
                node::client::http_client(&options)?,
                &self.issuer.url,
                std::sync::Arc::new(node::keyfile::load(&mint_key)?),
                Some(node::client::CounterStore::beside_key(&mint_key)),
            );
            let to = protocol::EntityId::parse(entity)
                .map_err(|_| anyhow::anyhow!("peer entity is malformed"))?;
            mint.transfer(&to, PEER_FUNDS, Some("devnet-peer-funding"))
                .await?;
            Ok::<_, anyhow::Error>(())
        })
    }
}

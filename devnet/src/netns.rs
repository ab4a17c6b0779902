//! Hosts of their own (DESIGN section 15, issue 20): `devnet up --netns` runs every service in
//! its own network namespace, joined by veth pairs to one bridge the devnet creates, so the
//! market's one-agent-per-/24 rule runs for real and a test can cut a host off, thin its
//! uplink and heal it.
//!
//! The plan, for a devnet whose range is `10.X.0.0/16`:
//! - the bridge `ld<tag>br` holds `10.X.0.1/16`: this machine (tests, CLIs, browsers) reaches
//!   every host through it;
//! - the issuer is `10.X.1.2`, the market `10.X.2.2`, the publisher `10.X.3.2`, agent `i`
//!   `10.X.(10 + i / per_network).(2 + i % per_network)` and peer `i` `10.X.(100 + i).2`,
//!   every one listening on [`PORT`];
//! - every host's address is a /16 on one layer-2 segment, so hosts reach each other without
//!   routing (no forwarding is turned on in this machine's namespace), while the market, which
//!   reads the /24 of an agent's endpoint, sees one network per /24.
//!
//! Invariants:
//! - Only names and addresses the devnet made are touched: namespaces `lcpdev-<tag>-<host>`,
//!   links `ld<tag>*`, a range no address or route of this machine overlaps when it is chosen
//!   (under a machine-wide lock, so two devnets starting at once never pick the same one).
//!   `<tag>` comes from the devnet's directory, so a directory's devnet finds what an earlier
//!   run of it left (after a kill -9) and removes it before it starts.
//! - Dropping the [`Net`] kills whatever still runs in its namespaces and removes them and
//!   the bridge (the veths go with their namespaces).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// The port every namespaced service listens on (each host has its own address).
pub const PORT: u16 = 8080;
/// The interface inside each namespace.
pub const IFACE: &str = "eth0";
/// The second octets a devnet's range may take (`10.X.0.0/16`).
pub const RANGE_OCTETS: std::ops::RangeInclusive<u8> = 64..=250;
/// Longest a devnet waits for the machine-wide lock while it picks its range.
pub const RANGE_LOCK_WAIT_MS_MAX: u64 = 30_000;
/// Agents on one /24 at most (addresses .2 upwards).
pub const AGENTS_PER_NETWORK_MAX: usize = 200;
/// Peers a namespaced devnet may have (one /24 each, from `10.X.100.0`).
pub const NETNS_PEERS_MAX: usize = 150;
/// The machine-wide lock under which ranges are chosen and bridges made.
const RANGE_LOCK: &str = "/run/lcp-devnet-netns.lock";
/// Longest a clean-up waits for killed processes to exit.
const KILL_WAIT_MS_MAX: u64 = 5_000;

/// What `devnet.json` records of a namespaced devnet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetnsInfo {
    /// Names made by this devnet contain it: `lcpdev-<tag>-*`, `ld<tag>*`.
    pub tag: String,
    /// `10.X.0.0/16`.
    pub range: String,
    pub bridge: String,
    /// This machine's address on the bridge (what tests and CLIs connect from).
    pub host_address: String,
    /// Agents per /24 (1: each agent on its own network).
    pub agents_per_network: usize,
}

/// One service's host: its namespace and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub netns: String,
    pub address: Ipv4Addr,
}

/// How a slowed host's link behaves (`devnet slow`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shape {
    pub delay_ms: u64,
    pub rate_kbit: Option<u64>,
    pub loss_pct: f64,
}

/// The namespaces and bridge of one running devnet.
#[derive(Debug)]
pub struct Net {
    pub info: NetnsInfo,
    octet: u8,
    hosts: Vec<String>,
}

/// Run `ip` (or `tc`) with `args`; a failure names the command and what it printed.
fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{program}` (is iproute2 installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Root and `ip` are needed; say which is missing.
pub fn check_can() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        bail!("devnet up --netns needs root (it creates network namespaces, veths and a bridge)");
    }
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        bail!("devnet up --netns needs the `ip` command (iproute2), which is not installed");
    }
    // Root without the capabilities (an unprivileged container) cannot make one: try.
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let probe = format!(
        "lcpdev-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    if let Err(e) = run("ip", &["netns", "add", &probe]) {
        bail!("devnet up --netns cannot make network namespaces here ({e})");
    }
    let _ = run("ip", &["netns", "del", &probe]);
    Ok(())
}

/// The tag of a devnet directory: six hex digits of its path's hash.
pub fn tag_of(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    protocol::sha256_hex(canonical.to_string_lossy().as_bytes())[..6].to_string()
}

fn netns_name(tag: &str, host: &str) -> String {
    format!("lcpdev-{tag}-{host}")
}

/// Remove whatever a devnet with `tag` left behind: processes in its namespaces, the
/// namespaces, the bridge.
pub fn clean_up(tag: &str) -> anyhow::Result<()> {
    let prefix = netns_name(tag, "");
    let listed = run("ip", &["netns", "list"])?;
    for ns in listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&prefix))
    {
        kill_all_in(ns);
        run("ip", &["netns", "del", ns])?;
    }
    // The veths' outer ends: gone with their namespaces once the kernel has torn them down
    // (after the killed processes exit), or never moved in when a start failed half-way.
    // Removed here, so names can be used again at once.
    let links = run("ip", &["-o", "link", "show"])?;
    let ours = format!("ld{tag}");
    for name in links.lines().filter_map(|l| {
        let name = l.split(": ").nth(1)?.split('@').next()?;
        name.starts_with(&ours).then(|| name.to_string())
    }) {
        // Already gone with its peer: fine.
        let _ = run("ip", &["link", "del", &name]);
    }
    allow_bridged(&format!("ld{tag}br"), false);
    Ok(())
}

/// SIGKILL every process still in namespace `ns` (an earlier devnet's orphans) and wait
/// until they are gone (at most [`KILL_WAIT_MS_MAX`]), so their data directories are free.
fn kill_all_in(ns: &str) {
    let pids = || {
        run("ip", &["netns", "pids", ns])
            .map(|p| p.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for pid in pids() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid])
            .stderr(Stdio::null())
            .status();
    }
    let deadline = Instant::now() + Duration::from_millis(KILL_WAIT_MS_MAX);
    while Instant::now() < deadline
        && pids()
            .iter()
            .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists() && !zombie(p))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Where bridged frames pass the host's iptables (`br_netfilter` with
/// `bridge-nf-call-iptables = 1`, as on Docker hosts whose FORWARD policy is DROP), traffic
/// between two hosts of the devnet would be dropped: accept what stays on our bridge
/// (`allow` true), or take that rule out again (false). Elsewhere, nothing to do.
fn allow_bridged(bridge: &str, allow: bool) -> bool {
    let filtered = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .is_ok_and(|v| v.trim() == "1");
    if !filtered || !has_iptables() {
        return !filtered;
    }
    let rule = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"];
    if allow {
        let mut args = vec!["-w", "-I"];
        args.extend(rule);
        return run("iptables", &args).is_ok();
    }
    // Every copy (a killed devnet's included).
    let mut args = vec!["-w", "-D"];
    args.extend(rule);
    while run("iptables", &args).is_ok() {}
    true
}

/// Does any address or route of this machine overlap `10.X.0.0/16` (a wider route such as a
/// VPN's `10.0.0.0/8` included)? `seen` is `ip -4 addr` and `ip -4 route` output: every
/// word that reads as `a.b.c.d` or `a.b.c.d/len` is a prefix.
fn range_in_use(octet: u8, seen: &str) -> bool {
    let ours = (u32::from(Ipv4Addr::new(10, octet, 0, 0)), 16u32);
    seen.split_whitespace()
        .filter_map(prefix_of)
        .any(|theirs| overlap(ours, theirs))
}

/// `a.b.c.d[/len]` as (address, length); a bare address is a /32.
fn prefix_of(word: &str) -> Option<(u32, u32)> {
    let (addr, len) = match word.split_once('/') {
        Some((a, l)) => (a, l.parse::<u32>().ok().filter(|l| *l <= 32)?),
        None => (word, 32),
    };
    Some((u32::from(addr.parse::<Ipv4Addr>().ok()?), len))
}

/// Two prefixes overlap when they agree on the shorter one's bits.
fn overlap((a, a_len): (u32, u32), (b, b_len): (u32, u32)) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == b & mask
}

/// A blocking lock on the machine-wide range file, bounded by [`RANGE_LOCK_WAIT_MS_MAX`].
fn range_lock() -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(RANGE_LOCK)
        .with_context(|| format!("cannot open {RANGE_LOCK}"))?;
    let deadline = Instant::now() + Duration::from_millis(RANGE_LOCK_WAIT_MS_MAX);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => bail!("cannot lock {RANGE_LOCK}: {e}"),
        }
    }
}

impl Net {
    /// Clean up what `dir`'s devnet left, then make its bridge on a free range (the one
    /// `previous` recorded when there is one: contracts name the agents' addresses).
    pub fn create(
        dir: &Path,
        previous: Option<&NetnsInfo>,
        agents_per_network: usize,
    ) -> anyhow::Result<Net> {
        check_can()?;
        anyhow::ensure!(
            (1..=AGENTS_PER_NETWORK_MAX).contains(&agents_per_network),
            "--agents-per-network must be 1 to {AGENTS_PER_NETWORK_MAX}"
        );
        let tag = tag_of(dir);
        clean_up(&tag)?;
        let _lock = range_lock()?;
        let seen = format!(
            "{}\n{}",
            run("ip", &["-4", "-o", "addr", "show"])?,
            run("ip", &["-4", "route", "show", "table", "all"])?
        );
        let wanted = previous.and_then(|p| {
            p.range
                .strip_prefix("10.")?
                .split('.')
                .next()?
                .parse::<u8>()
                .ok()
        });
        let octet = match wanted {
            Some(o) if !range_in_use(o, &seen) => o,
            Some(o) => bail!(
                "this devnet's range 10.{o}.0.0/16 is now used by something else on this \
                 machine; remove that, or start a new devnet in another --dir"
            ),
            None => {
                // Start where the tag points, so concurrent devnets rarely even compare.
                let span = (RANGE_OCTETS.end() - RANGE_OCTETS.start()) as usize + 1;
                let start = usize::from_str_radix(&tag[..2], 16).unwrap_or(0) % span;
                (0..span)
                    .map(|k| *RANGE_OCTETS.start() + ((start + k) % span) as u8)
                    .find(|o| !range_in_use(*o, &seen))
                    .context("no free 10.X.0.0/16 range on this machine")?
            }
        };
        let bridge = format!("ld{tag}br");
        let host_address = format!("10.{octet}.0.1");
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        let net = Net {
            info: NetnsInfo {
                tag,
                range: format!("10.{octet}.0.0/16"),
                bridge: bridge.clone(),
                host_address: host_address.clone(),
                agents_per_network,
            },
            octet,
            hosts: Vec::new(),
        };
        run(
            "ip",
            &["addr", "add", &format!("{host_address}/16"), "dev", &bridge],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        if !allow_bridged(&bridge, true) {
            bail!(
                "this machine filters bridged traffic through iptables \
                 (net.bridge.bridge-nf-call-iptables = 1), and iptables is not installed to \
                 let the devnet's own bridge through: apt-get install -y iptables, or \
                 sysctl net.bridge.bridge-nf-call-iptables=0"
            );
        }
        Ok(net)
    }

    pub fn issuer_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 1, 2)
    }

    pub fn market_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 2, 2)
    }

    pub fn cdn_address(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.octet, 3, 2)
    }

    pub fn agent_address(&self, i: usize) -> Ipv4Addr {
        let per = self.info.agents_per_network;
        // Bounded by AGENTS_MAX (64) and AGENTS_PER_NETWORK_MAX (200): the third octet is
        // at most 73 and the fourth at most 201.
        Ipv4Addr::new(10, self.octet, (10 + i / per) as u8, (2 + i % per) as u8)
    }

    pub fn peer_address(&self, i: usize) -> Ipv4Addr {
        // Bounded by NETNS_PEERS_MAX: at most 249.
        Ipv4Addr::new(10, self.octet, (100 + i) as u8, 2)
    }

    /// Make the namespace of host `name` with `address` on the bridge.
    pub fn add_host(&mut self, name: &str, address: Ipv4Addr) -> anyhow::Result<Host> {
        let ns = netns_name(&self.info.tag, name);
        let outside = format!("ld{}h{}", self.info.tag, self.hosts.len());
        let inside = format!("ld{}i{}", self.info.tag, self.hosts.len());
        run("ip", &["netns", "add", &ns])?;
        self.hosts.push(ns.clone());
        run(
            "ip",
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", &inside,
            ],
        )?;
        run("ip", &["link", "set", &inside, "netns", &ns])?;
        run(
            "ip",
            &["link", "set", &outside, "master", &self.info.bridge, "up"],
        )?;
        run(
            "ip",
            &["-n", &ns, "link", "set", &inside, "name", IFACE, "up"],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/16"),
                "dev",
                IFACE,
            ],
        )?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        Ok(Host { netns: ns, address })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Err(e) = clean_up(&self.info.tag) {
            eprintln!("devnet: cleaning up the namespaces failed: {e}");
        }
    }
}

/// `program` run inside namespace `ns`.
pub fn command_in(ns: &str, program: &Path) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Cut the host off: its link goes down, so nothing reaches it and it reaches nothing
/// (connections in flight stall as over a dead link; they are not reset).
pub fn cut(ns: &str) -> anyhow::Result<()> {
    run("ip", &["-n", ns, "link", "set", IFACE, "down"])?;
    Ok(())
}

/// Undo [`cut`] and [`slow`]: the link is up and unshaped.
pub fn heal(ns: &str) -> anyhow::Result<()> {
    run("ip", &["-n", ns, "link", "set", IFACE, "up"])?;
    unshape(ns);
    Ok(())
}

/// Remove every shaping of `ns`: the qdisc, the queue rule and its delay worker. Each may be
/// absent (no shaping is not an error).
fn unshape(ns: &str) {
    let _ = run(
        "ip",
        &[
            "netns", "exec", ns, "tc", "qdisc", "del", "dev", IFACE, "root",
        ],
    );
    if has_iptables() {
        let _ = run(
            "ip",
            &["netns", "exec", ns, "iptables", "-w", "-F", "OUTPUT"],
        );
    }
    let Ok(pids) = run("ip", &["netns", "pids", ns]) else {
        return;
    };
    for pid in pids.split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(DELAY_WORKER) {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The `devnet` subcommand that holds queued packets (crate::delay).
pub const DELAY_WORKER: &str = "delay-worker";
/// The netfilter queue the delay worker binds (one per namespace: each has its own).
const DELAY_QUEUE: &str = "0";
/// Longest the delay worker may take to bind its queue.
const DELAY_READY_WAIT_MS_MAX: u64 = 5_000;

fn has_iptables() -> bool {
    Command::new("iptables")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Delay and loss without netem: queue what the host sends to a worker in its namespace
/// (`devnet delay-worker`, see crate::delay) that holds each packet `delay_ms`.
fn delay_by_queue(ns: &str, shape: Shape, devnet_bin: &Path) -> anyhow::Result<()> {
    if !has_iptables() {
        bail!(
            "this kernel has no netem, and delay or loss then needs iptables (its NFQUEUE \
             target) to queue packets: apt-get install -y iptables; --rate-kbit alone works"
        );
    }
    let mut worker = command_in(ns, devnet_bin)
        .args([
            DELAY_WORKER,
            "--queue",
            DELAY_QUEUE,
            "--delay-ms",
            &shape.delay_ms.to_string(),
            "--loss-pct",
            &shape.loss_pct.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", devnet_bin.display()))?;
    let stdout = worker
        .stdout
        .take()
        .context("the delay worker has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let ready = rx.recv_timeout(Duration::from_millis(DELAY_READY_WAIT_MS_MAX));
    if ready.as_deref().map(str::trim) != Ok("ready") {
        let _ = worker.kill();
        let _ = worker.wait();
        bail!("the delay worker did not bind its queue within {DELAY_READY_WAIT_MS_MAX} ms");
    }
    // The worker runs on; `heal`, a new `slow` or the namespace's removal kills it, and this
    // thread reaps it then (no zombie is left while this process lives).
    std::thread::spawn(move || {
        let _ = worker.wait();
    });
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "iptables",
            "-w",
            "-A",
            "OUTPUT",
            "-o",
            IFACE,
            "-j",
            "NFQUEUE",
            "--queue-num",
            DELAY_QUEUE,
            "--queue-bypass",
        ],
    )?;
    Ok(())
}

/// Shape what the host sends (its uplink): `netem` for delay, rate and loss where the kernel
/// has it; where it does not, `tbf` for the rate and a netfilter queue held by a worker
/// (`devnet_bin delay-worker`, crate::delay) for delay and loss. A second `slow` replaces
/// the first.
pub fn slow(ns: &str, shape: Shape, devnet_bin: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..=100.0).contains(&shape.loss_pct),
        "--loss-pct must be 0 to 100"
    );
    anyhow::ensure!(
        shape.rate_kbit != Some(0),
        "--rate-kbit must be at least 1 (use `devnet cut` to stop traffic)"
    );
    unshape(ns);
    if shape.delay_ms > 0 || shape.loss_pct > 0.0 {
        let mut args: Vec<String> = ["netns", "exec", ns, "tc", "qdisc", "replace", "dev"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend([IFACE.into(), "root".into(), "netem".into()]);
        args.extend(["delay".into(), format!("{}ms", shape.delay_ms)]);
        if let Some(rate) = shape.rate_kbit {
            args.extend(["rate".into(), format!("{rate}kbit")]);
        }
        if shape.loss_pct > 0.0 {
            args.extend(["loss".into(), format!("{}%", shape.loss_pct)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        return match run("ip", &args) {
            Ok(_) => Ok(()),
            // A kernel without netem (CONFIG_NET_SCH_NETEM unset, or no sch_netem module):
            // "Specified qdisc kind is unknown".
            Err(e) if e.to_string().contains("unknown") => {
                delay_by_queue(ns, shape, devnet_bin)?;
                match shape.rate_kbit {
                    Some(rate) => thin(ns, rate),
                    None => Ok(()),
                }
            }
            Err(e) => Err(e),
        };
    }
    match shape.rate_kbit {
        Some(rate) => thin(ns, rate),
        // Nothing asked: unshaped.
        None => Ok(()),
    }
}

/// A thin uplink of `rate` kbit/s (`tbf`): a bucket of 20 ms of rate (at least two
/// full-size packets), and a queue of about 400 ms (a home router's buffer), past which
/// packets are dropped as there.
fn thin(ns: &str, rate: u64) -> anyhow::Result<()> {
    let burst_bytes = (rate * 1000 / 8 / 50).max(3_000);
    let limit_bytes = (rate * 1000 / 8 * 400 / 1000).max(burst_bytes * 2);
    let (rate_s, burst_s, limit_s) = (
        format!("{rate}kbit"),
        burst_bytes.to_string(),
        limit_bytes.to_string(),
    );
    run(
        "ip",
        &[
            "netns", "exec", ns, "tc", "qdisc", "replace", "dev", IFACE, "root", "tbf", "rate",
            &rate_s, "burst", &burst_s, "limit", &limit_s,
        ],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_range_is_in_use_when_an_address_or_route_is_inside_it() {
        let seen = "2: eth0    inet 10.64.3.4/24 brd 10.64.3.255 scope global eth0\n\
                    default via 172.16.0.1 dev eth0\n10.70.0.0/16 dev br0 proto kernel";
        assert!(super::range_in_use(64, seen));
        assert!(super::range_in_use(70, seen));
        assert!(!super::range_in_use(7, seen));
        assert!(!super::range_in_use(65, seen));
        // A wider route (a VPN's 10.0.0.0/8) covers every range; a default route none.
        assert!(super::range_in_use(99, "10.0.0.0/8 dev tun0"));
        assert!(!super::range_in_use(99, "default via 10.64.0.1 dev eth0"));
        assert!(!super::range_in_use(99, "172.16.0.0/12 dev br0"));
    }

    #[test]
    fn a_directory_has_one_tag() {
        let dir = std::path::Path::new("/tmp/some-devnet");
        assert_eq!(super::tag_of(dir), super::tag_of(dir));
        assert_eq!(super::tag_of(dir).len(), 6);
        assert_ne!(
            super::tag_of(dir),
            super::tag_of(std::path::Path::new("/tmp/other"))
        );
    }
}

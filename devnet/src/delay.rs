//! Delay and loss without netem (issue 20): kernels built without `sch_netem` (this project's
//! Firecracker machines) still have netfilter's packet queue. `devnet slow --delay-ms D
//! --loss-pct P` then adds an `iptables` rule in the host's namespace that queues every packet
//! it sends (`-j NFQUEUE --queue-bypass`), and runs this worker inside the namespace: it
//! reads each packet's id from the queue (metadata only, never the bytes), holds it for D ms
//! and accepts it (drops it with probability P). The kernel keeps the packet meanwhile, so
//! the order on the wire is kept and nothing is copied to user space.
//!
//! Invariants:
//! - Verdicts are given in arrival order, each at its arrival plus the delay (one delay for
//!   every packet: FIFO order is due order).
//! - At most [`QUEUE_PACKETS_MAX`] packets wait in the kernel; past that the kernel drops, as
//!   a full router buffer does. With `--queue-bypass`, a dead worker lets packets through
//!   undelayed rather than cutting the host off.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rustix::net::{netlink, AddressFamily, RecvFlags, SendFlags, SocketType};

/// Packets the kernel may hold for the worker (`NFQA_CFG_QUEUE_MAXLEN`).
pub const QUEUE_PACKETS_MAX: u32 = 8_192;
/// Bytes of the socket's receive buffer: room for every queued packet's notice.
const RECV_BUFFER_BYTES: usize = 8 << 20;
/// One read from the socket: many notices, each under 200 bytes (metadata only).
const READ_BYTES: usize = 64 * 1024;

// Netlink and nfnetlink_queue numbers (linux/netlink.h, linux/netfilter/nfnetlink_queue.h).
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
const NFQNL_CFG_CMD_BIND: u8 = 1;
const NFQNL_COPY_META: u8 = 1;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const AF_INET: u16 = 2;

/// Packets held, each with when it is due (FIFO: one delay for all), and the signal that
/// one arrived.
type Held = (Mutex<VecDeque<(Instant, u32)>>, Condvar);

/// One netlink message to the queue subsystem: header, nfgenmsg, attributes.
fn message(kind: u16, flags: u16, seq: u32, queue: u16, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = vec![0u8 /* AF_UNSPEC */, 0 /* version */];
    body.extend_from_slice(&queue.to_be_bytes());
    for (ty, payload) in attrs {
        let len = 4 + payload.len();
        body.extend_from_slice(&(len as u16).to_ne_bytes());
        body.extend_from_slice(&ty.to_ne_bytes());
        body.extend_from_slice(payload);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut out = Vec::with_capacity(16 + body.len());
    out.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    out.extend_from_slice(&((NFNL_SUBSYS_QUEUE << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend(body);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What one read held: packet ids queued, and the error code of any acknowledgement.
#[derive(Debug, Default, PartialEq, Eq)]
struct Read {
    packets: Vec<u32>,
    acks: Vec<i32>,
}

/// Parse the netlink messages of one read.
fn parse(buf: &[u8]) -> Read {
    let mut out = Read::default();
    let mut at = 0;
    while let (Some(len), Some(kind)) = (u32_at(buf, at), u16_at(buf, at + 4)) {
        let len = len as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        let msg = &buf[at..at + len];
        if kind == NLMSG_ERROR {
            if let Some(code) = u32_at(msg, 16) {
                out.acks.push(code as i32);
            }
        } else if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET {
            // Attributes follow the 16-byte header and the 4-byte nfgenmsg.
            let mut a = 20;
            while let (Some(alen), Some(aty)) = (u16_at(msg, a), u16_at(msg, a + 2)) {
                let alen = alen as usize;
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                if aty & 0x7fff == NFQA_PACKET_HDR {
                    if let Some(id) = msg.get(a + 4..a + 8) {
                        out.packets
                            .push(u32::from_be_bytes([id[0], id[1], id[2], id[3]]));
                    }
                }
                a += alen.div_ceil(4) * 4;
            }
        }
        at += len.div_ceil(4) * 4;
    }
    out
}

/// Send `msg` and, when it asked for one, wait for its acknowledgement.
fn send_acked(fd: &OwnedFd, msg: &[u8], what: &str) -> anyhow::Result<()> {
    rustix::net::send(fd, msg, SendFlags::empty()).with_context(|| format!("sending {what}"))?;
    let mut buf = vec![0u8; READ_BYTES];
    let (_, n) = rustix::net::recv(fd, &mut buf[..], RecvFlags::empty())
        .with_context(|| format!("reading the answer to {what}"))?;
    match parse(&buf[..n.min(buf.len())]).acks.first() {
        Some(0) => Ok(()),
        Some(code) => bail!("the kernel refused {what} (errno {})", -code),
        None => bail!("no answer to {what}"),
    }
}

/// Bind queue `queue` and hold every packet it gets for `delay_ms`, dropping `loss_pct` of
/// them. Prints `ready` once bound; runs until killed.
pub fn run(queue: u16, delay_ms: u64, loss_pct: f64) -> anyhow::Result<()> {
    let fd = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::RAW,
        Some(netlink::NETFILTER),
    )
    .context("cannot open a netfilter netlink socket (root needed)")?;
    rustix::net::bind(&fd, &netlink::SocketAddrNetlink::new(0, 0))
        .context("cannot bind the netlink socket")?;
    // Best effort: a smaller buffer only means the kernel drops sooner under a flood.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, RECV_BUFFER_BYTES);
    let configure = |seq: u32, attrs: &[(u16, Vec<u8>)], what: &str| {
        send_acked(
            &fd,
            &message(NFQNL_MSG_CONFIG, NLM_F_ACK, seq, queue, attrs),
            what,
        )
    };
    let mut cmd = vec![NFQNL_CFG_CMD_BIND, 0];
    cmd.extend_from_slice(&AF_INET.to_be_bytes());
    configure(1, &[(NFQA_CFG_CMD, cmd)], "binding the queue")?;
    let mut params = 0u32.to_be_bytes().to_vec();
    params.push(NFQNL_COPY_META);
    let maxlen = QUEUE_PACKETS_MAX.to_be_bytes().to_vec();
    configure(
        2,
        &[(NFQA_CFG_PARAMS, params), (NFQA_CFG_QUEUE_MAXLEN, maxlen)],
        "setting the copy mode",
    )?;
    node::outln!("ready");

    let fd = Arc::new(fd);
    let due: Arc<Held> = Arc::default();
    let delay = Duration::from_millis(delay_ms);
    let releaser = {
        let (fd, due) = (fd.clone(), due.clone());
        std::thread::spawn(move || release(&fd, &due, queue, loss_pct))
    };
    let mut buf = vec![0u8; READ_BYTES];
    loop {
        let n = match rustix::net::recv(fd.as_fd(), &mut buf[..], RecvFlags::empty()) {
            Ok((_, n)) => n,
            // The socket's buffer overflowed under a flood: the kernel dropped notices (and
            // their packets stay queued until bypassed or dropped); carry on.
            Err(rustix::io::Errno::NOBUFS) | Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).context("reading the queue"),
        };
        let read = parse(&buf[..n.min(buf.len())]);
        if read.packets.is_empty() {
            continue;
        }
        let at = Instant::now() + delay;
        let (lock, ready) = &*due;
        let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
        q.extend(read.packets.into_iter().map(|id| (at, id)));
        ready.notify_one();
        if releaser.is_finished() {
            bail!("the releasing thread stopped");
        }
    }
}

/// Give each held packet its verdict when it is due, in arrival order.
fn release(fd: &OwnedFd, due: &Held, queue: u16, loss_pct: f64) {
    let (lock, ready) = due;
    let mut rng = (std::process::id() as u64) << 32 | 0x9e37_79b9;
    let mut seq = 3u32;
    loop {
        let mut q = lock.lock().unwrap_or_else(|p| p.into_inner());
        let id = match q.front() {
            None => {
                drop(ready.wait(q));
                continue;
            }
            Some(&(at, id)) if at <= Instant::now() => id,
            Some(&(at, _)) => {
                let wait = at.saturating_duration_since(Instant::now());
                drop(ready.wait_timeout(q, wait));
                continue;
            }
        };
        q.pop_front();
        drop(q);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let lost = (rng % 10_000) as f64 / 100.0 < loss_pct;
        let mut hdr = (if lost { NF_DROP } else { NF_ACCEPT })
            .to_be_bytes()
            .to_vec();
        hdr.extend_from_slice(&id.to_be_bytes());
        seq = seq.wrapping_add(1);
        let msg = message(NFQNL_MSG_VERDICT, 0, seq, queue, &[(NFQA_VERDICT_HDR, hdr)]);
        // A failed verdict leaves the packet to the kernel's queue limits; nothing to retry.
        let _ = rustix::net::send(fd, &msg, SendFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_notice_and_an_ack_are_read() {
        // A packet notice: header, nfgenmsg, NFQA_PACKET_HDR {id 0x01020304, proto, hook}.
        let notice = message(
            NFQNL_MSG_PACKET,
            0,
            9,
            0,
            &[(NFQA_PACKET_HDR, vec![1, 2, 3, 4, 8, 0, 3])],
        );
        let mut ack = Vec::new();
        ack.extend_from_slice(&36u32.to_ne_bytes());
        ack.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack.extend_from_slice(&[0; 10]);
        ack.extend_from_slice(&0i32.to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        let mut both = notice.clone();
        both.extend_from_slice(&ack);
        let read = parse(&both);
        assert_eq!(read.packets, vec![0x0102_0304]);
        assert_eq!(read.acks, vec![0]);
        // A truncated read yields what it holds and no garbage.
        assert_eq!(
            parse(&notice[..notice.len() - 6]).packets,
            Vec::<u32>::new()
        );
    }
}

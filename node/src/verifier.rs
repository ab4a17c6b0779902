//! Request signatures verified in batches, off the HTTP workers (issue 21).
//!
//! Checking an Ed25519 signature is most of a small command's CPU. Checked together, many
//! signatures cost about half as much each ([`protocol::ed25519::verify_batch`]), and the
//! answers are the same as one by one. A [`Verifier`] is one thread that takes whatever
//! signatures queued up while it was busy (up to [`VERIFY_BATCH_MAX`]), checks them as one
//! batch and wakes each request: under load batches form by themselves; a request that
//! arrives alone is checked alone, at once, so nothing waits for company.
//!
//! Invariants: the queue is bounded ([`VERIFY_QUEUE_MAX`]; a full queue makes requests wait
//! for room, never grow memory); a request's verdict is exactly what
//! [`protocol::verify_request`] answers for it; if the thread is gone, requests are checked on
//! the blocking pool instead, never accepted unchecked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::{AuthError, PendingRequest, VerifiedRequest};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the verifier thread at most; more wait for room.
pub const VERIFY_QUEUE_MAX: usize = 4096;
/// Signatures checked as one batch at most: past a few dozen the saving per signature stops
/// growing, while the last request of a batch waits for all of it.
pub const VERIFY_BATCH_MAX: usize = 64;

struct Job {
    pending: PendingRequest,
    reply: oneshot::Sender<Result<VerifiedRequest, AuthError>>,
}

/// Counters a service can show in its metrics.
#[derive(Debug, Default)]
pub struct VerifierStats {
    /// Signatures checked.
    pub signatures: AtomicU64,
    /// Batches (including batches of one).
    pub batches: AtomicU64,
}

/// A handle to the verifier thread; clones share it. The thread stops when every handle is
/// dropped.
#[derive(Clone)]
pub struct Verifier {
    queue: mpsc::Sender<Job>,
    stats: Arc<VerifierStats>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// Start the thread (named `name`, as it shows in `top -H` and profiles). If the thread
    /// cannot be started, every request is checked on the blocking pool instead (logged).
    pub fn start(name: &str) -> Self {
        let (queue, mut jobs) = mpsc::channel::<Job>(VERIFY_QUEUE_MAX);
        let stats = Arc::new(VerifierStats::default());
        let thread_stats = stats.clone();
        let started = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut batch: Vec<Job> = Vec::with_capacity(VERIFY_BATCH_MAX);
                let mut keys = protocol::ed25519::KeyCache::new();
                // Blocks for the first; then takes what queued up meanwhile.
                while let Some(first) = jobs.blocking_recv() {
                    batch.push(first);
                    while batch.len() < VERIFY_BATCH_MAX {
                        match jobs.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    check(&mut batch, &mut keys, &thread_stats);
                }
            });
        if let Err(e) = started {
            // The receiver went with the closure: sends fail and `verify` checks inline.
            tracing::error!(error = %e, "no signature verifier thread; checking one by one");
        }
        Verifier { queue, stats }
    }

    /// The verdict on a prepared request: [`PendingRequest::finish`] with its signature
    /// checked in the next batch.
    pub async fn verify(&self, pending: PendingRequest) -> Result<VerifiedRequest, AuthError> {
        if pending.signature.is_none() {
            return pending.finish(false);
        }
        let (reply, verdict) = oneshot::channel();
        let job = Job { pending, reply };
        let pending = match self.queue.send(job).await {
            // A job dropped unanswered means the thread died with it: refused, not accepted.
            Ok(()) => return verdict.await.unwrap_or(Err(AuthError::InvalidSignature)),
            Err(mpsc::error::SendError(job)) => job.pending,
        };
        // The thread is gone (it never stops while handles live, but if it panicked): check
        // here, off the async workers.
        tokio::task::spawn_blocking(move || {
            let ok = pending.verify_signature();
            pending.finish(ok)
        })
        .await
        .unwrap_or(Err(AuthError::InvalidSignature))
    }

    pub fn stats(&self) -> &VerifierStats {
        &self.stats
    }
}

/// Check one batch and answer each job.
fn check(batch: &mut Vec<Job>, keys: &mut protocol::ed25519::KeyCache, stats: &VerifierStats) {
    let answers = {
        let items: Vec<protocol::ed25519::Item<'_>> = batch
            .iter()
            .map(|job| protocol::ed25519::Item {
                key: job.pending.key(),
                message: &job.pending.message,
                // Invariant: `verify` queues only requests with a decoded signature.
                signature: job.pending.signature.unwrap_or([0; 64]),
            })
            .collect();
        protocol::ed25519::verify_batch_cached(&items, keys)
    };
    stats
        .signatures
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    for (job, ok) in batch.drain(..).zip(answers) {
        // The request may have gone away; nothing to do then.
        let _ = job.reply.send(job.pending.finish(ok));
    }
}

//! One writer at a time per SQLite database, handed over at once.
//!
//! SQLite lets one connection write at a time. The others wait in its busy handler, which
//! sleeps between tries: 1, 2, 5, 10, 15, 20, 25 ms and so on (libsqlite3-sys builds it with
//! `HAVE_USLEEP`). A transaction of a tenth of a millisecond that finds the lock taken thus
//! waits a millisecond or more, and under load the waits pile up: a storage agent answering
//! paid reads from eight pooled connections spent most of its time asleep (issue 15's
//! payword benchmark, p99 about 90 ms).
//!
//! [`crate::Database::run`] marks its blocking thread with its database's gate; a write
//! transaction on such a thread passes the gate first, so the pool's writers queue here and
//! each is woken the moment the previous one commits. The lock SQLite takes stays the
//! authority: writers outside the gate (a dedicated writer thread, another process) still
//! meet SQLite's busy handler, as before.
//!
//! Bounds: a writer waits at most [`GATE_WAIT_MS_MAX`] here, then goes on to SQLite's own
//! wait (so a gate held too long, say by a transaction that itself waits on another task,
//! degrades to the old behaviour instead of stalling). A thread that already holds the gate
//! passes again without waiting.

use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// The longest a writer waits for the gate before going on to SQLite's busy handler. The
/// same as SQLite's own bound: a writer that waited this long would have failed there too.
pub const GATE_WAIT_MS_MAX: u64 = crate::SQLITE_BUSY_MS_MAX;

/// The gate of one database (shared by its clones).
#[derive(Debug, Default)]
pub struct WriteGate {
    holder: Mutex<Option<ThreadId>>,
    freed: Condvar,
}

thread_local! {
    /// The gate of the database whose pooled connection this thread is using, if any.
    static CURRENT: RefCell<Option<Arc<WriteGate>>> = const { RefCell::new(None) };
}

/// Mark this thread as working for `gate`'s database until the returned guard drops.
pub(crate) fn bind(gate: Arc<WriteGate>) -> Bound {
    let previous = CURRENT.with(|c| c.replace(Some(gate)));
    Bound { previous }
}

pub(crate) struct Bound {
    previous: Option<Arc<WriteGate>>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Pass this thread's gate (none bound: nothing to pass). Held until the pass drops.
pub(crate) fn enter() -> Pass {
    let Some(gate) = CURRENT.with(|c| c.borrow().clone()) else {
        return Pass { gate: None };
    };
    let me = std::thread::current().id();
    let deadline = Instant::now() + Duration::from_millis(GATE_WAIT_MS_MAX);
    // A poisoned lock only means a holder panicked; the Option inside is still meaningful.
    let mut holder = gate.holder.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        match *holder {
            None => {
                *holder = Some(me);
                drop(holder);
                return Pass { gate: Some(gate) };
            }
            // Already ours (a transaction inside a transaction): nothing more to hold.
            Some(owner) if owner == me => return Pass { gate: None },
            Some(_) => {
                let now = Instant::now();
                if now >= deadline {
                    tracing::warn!(
                        wait_ms = GATE_WAIT_MS_MAX,
                        "SQLite write gate held too long; waiting on SQLite's lock instead"
                    );
                    return Pass { gate: None };
                }
                holder = gate
                    .freed
                    .wait_timeout(holder, deadline - now)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
        }
    }
}

/// Holds the gate while alive.
pub(crate) struct Pass {
    gate: Option<Arc<WriteGate>>,
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            let mut holder = gate.holder.lock().unwrap_or_else(|p| p.into_inner());
            *holder = None;
            drop(holder);
            gate.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two threads bound to one gate never hold it together, a thread passes its own gate
    /// again at once, and an unbound thread passes without a gate.
    #[test]
    fn one_holder_at_a_time_and_a_holder_passes_again() {
        let gate = Arc::new(WriteGate::default());
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, inside, most) = (gate.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _bound = bind(gate);
                    for _ in 0..200 {
                        let _pass = enter();
                        let _again = enter();
                        let now = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        std::thread::yield_now();
                        inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(enter().gate.is_none(), "no gate bound on this thread");
        assert!(gate.holder.lock().expect("lock").is_none(), "released");
    }
}

//! Where matches spend their time, by phase, summed since start (`/metrics`:
//! `market_match_phase_seconds_total{phase=...}`): the index refresh, the scan and
//! pre-selection, the search, and the re-check that chosen agents answer. Two parts of the
//! refresh are also counted on their own: the wait for the refresh turn and the database
//! work (the rest of it is the wait for a blocking thread and a pooled connection).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub enum Phase {
    Refresh,
    Scan,
    Select,
    Recheck,
    RefreshWait,
    RefreshDb,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Refresh,
        Phase::Scan,
        Phase::Select,
        Phase::Recheck,
        Phase::RefreshWait,
        Phase::RefreshDb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Refresh => "refresh",
            Phase::Scan => "scan",
            Phase::Select => "select",
            Phase::Recheck => "recheck",
            Phase::RefreshWait => "refresh_wait",
            Phase::RefreshDb => "refresh_db",
        }
    }
}

/// Microseconds per phase, and how many times each ran.
#[derive(Debug, Default)]
pub struct MatchTimings {
    micros: [AtomicU64; Phase::ALL.len()],
    counts: [AtomicU64; Phase::ALL.len()],
}

impl MatchTimings {
    pub fn add(&self, phase: Phase, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.micros[phase as usize].fetch_add(us, Ordering::Relaxed);
        self.counts[phase as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// (phase, seconds, times) for each phase.
    pub fn totals(&self) -> Vec<(&'static str, f64, u64)> {
        Phase::ALL
            .iter()
            .map(|&p| {
                (
                    p.name(),
                    self.micros[p as usize].load(Ordering::Relaxed) as f64 / 1e6,
                    self.counts[p as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}

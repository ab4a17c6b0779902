//! When each agent is audited: `audits_per_agent_day` times a day, at instants a period apart
//! (`period = 1 day / audits_per_agent_day`), offset by a phase that depends only on the
//! agent's entity. Pure: no IO, no clock.
//!
//! Why a phase from the entity: the phases of many agents are spread uniformly over the
//! period, so each tick of the auditor finds about `agents x tick / period` of them due, not
//! all of them at once; and the phase is the same in every market process and after every
//! restart, so a restart neither bunches audits up nor needs a stored next-due time.

use std::time::Duration;

/// Milliseconds in a day.
pub const DAY_MS: u64 = 86_400_000;

/// Every agent's audit instants: `phase(agent) + j x period` (milliseconds since the epoch,
/// `j` any integer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    period_ms: u64,
}

impl Schedule {
    /// `audits` a day per agent (the period rounded down to a millisecond, so never fewer);
    /// `None` for 0: no audits.
    pub fn per_day(audits: u64) -> Option<Schedule> {
        (audits > 0).then(|| Schedule {
            period_ms: (DAY_MS / audits).max(1),
        })
    }

    /// One audit per agent every `period` (at least a millisecond).
    pub fn every(period: Duration) -> Schedule {
        Schedule {
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    pub fn period_ms(&self) -> u64 {
        self.period_ms
    }

    /// Audits per agent per day this schedule asks for.
    pub fn per_agent_day(&self) -> f64 {
        DAY_MS as f64 / self.period_ms as f64
    }

    /// The agent's offset within the period: the first 8 bytes of SHA-256 of its entity id,
    /// modulo the period. Stable across processes and restarts; uniform over the period.
    pub fn phase_ms(&self, agent: &str) -> u64 {
        let digest = ring::digest::digest(&ring::digest::SHA256, agent.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(first) % self.period_ms
    }

    /// The agent's first audit instant strictly after `after_ms`.
    pub fn next_due_ms(&self, agent: &str, after_ms: u64) -> u64 {
        let phase = self.phase_ms(agent);
        if after_ms < phase {
            return phase;
        }
        let periods = (after_ms - phase) / self.period_ms + 1;
        phase.saturating_add(periods.saturating_mul(self.period_ms))
    }

    /// Whether one of the agent's audit instants falls in `(from_ms, to_ms]`: windows that
    /// follow each other (each tick's `from` the last one's `to`) miss no instant and count
    /// none twice. A window at least a period long holds one for every agent (the agent is
    /// audited once in it, never more: an auditor that fell behind catches up one audit per
    /// agent per tick).
    pub fn due(&self, agent: &str, from_ms: u64, to_ms: u64) -> bool {
        to_ms > from_ms && self.next_due_ms(agent, from_ms) <= to_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agents(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ed25519:agent-{i:06}")).collect()
    }

    #[test]
    fn the_period_is_a_day_over_the_audits() {
        assert_eq!(Schedule::per_day(0), None);
        assert_eq!(Schedule::per_day(1).map(|s| s.period_ms()), Some(DAY_MS));
        assert_eq!(Schedule::per_day(288).map(|s| s.period_ms()), Some(300_000));
        // More audits than milliseconds in a day: one every millisecond.
        assert_eq!(Schedule::per_day(u64::MAX).map(|s| s.period_ms()), Some(1));
        assert_eq!(Schedule::every(Duration::from_secs(15)).period_ms(), 15_000);
        assert_eq!(Schedule::every(Duration::ZERO).period_ms(), 1);
        let s = Schedule::per_day(17_280).expect("schedule");
        assert_eq!(s.period_ms(), 5_000);
        assert!((s.per_agent_day() - 17_280.0).abs() < 1e-9);
    }

    #[test]
    fn the_phase_is_stable_and_within_the_period() {
        let s = Schedule::per_day(24).expect("schedule");
        let again = Schedule::per_day(24).expect("schedule");
        for a in agents(1_000) {
            let p = s.phase_ms(&a);
            assert!(p < s.period_ms());
            assert_eq!(p, again.phase_ms(&a), "the same phase every time");
        }
        // A fixed value: the phase is SHA-256, not a per-process hasher.
        let digest = ring::digest::digest(&ring::digest::SHA256, b"ed25519:agent-000000");
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        assert_eq!(
            s.phase_ms("ed25519:agent-000000"),
            u64::from_le_bytes(first) % 3_600_000
        );
    }

    #[test]
    fn due_instants_are_a_period_apart_and_each_window_counts_them_once() {
        let s = Schedule::every(Duration::from_secs(5));
        let start = 1_780_000_000_123;
        for a in agents(50) {
            let first = s.next_due_ms(&a, start);
            assert!(first > start && first <= start + 5_000);
            assert_eq!((first - s.phase_ms(&a)) % 5_000, 0);
            assert_eq!(s.next_due_ms(&a, first), first + 5_000);
            assert_eq!(s.next_due_ms(&a, first - 1), first);
            // Ticks of 1 s over a minute: due in exactly 12 of them, 5 ticks apart.
            let ticks: Vec<u64> = (0..60)
                .filter(|t| s.due(&a, start + t * 1_000, start + (t + 1) * 1_000))
                .collect();
            assert_eq!(ticks.len(), 12, "{a}: {ticks:?}");
            assert!(ticks.windows(2).all(|w| w[1] - w[0] == 5), "{a}: {ticks:?}");
            // Windows of any lengths that follow each other: a window shorter than the period
            // is due exactly when it holds an instant; a longer one holds several, due once.
            let phase = s.phase_ms(&a);
            let instants = |from: u64, to: u64| (to - phase) / 5_000 - (from - phase) / 5_000;
            let mut from = start;
            for len in [1, 7, 4_999, 5_000, 13, 12_345, 1, 2_635, 4_000, 999] {
                let held = instants(from, from + len);
                assert_eq!(s.due(&a, from, from + len), held > 0, "{a} {from} {len}");
                if len < 5_000 {
                    assert!(held <= 1);
                }
                from += len;
            }
            // A window a period long or longer holds every agent once; an empty one none.
            assert!(s.due(&a, start, start + 5_000));
            assert!(s.due(&a, start, start + 60_000));
            assert!(!s.due(&a, start, start));
        }
    }

    #[test]
    fn agents_are_spread_evenly_over_the_period() {
        // 100,000 agents, 24 audits a day (a period of an hour), ticks of a minute: each tick
        // holds about 100,000 / 60 = 1,667 of them.
        let s = Schedule::per_day(24).expect("schedule");
        let all = agents(100_000);
        let mut per_minute = [0usize; 60];
        for a in &all {
            per_minute[(s.phase_ms(a) / 60_000) as usize] += 1;
        }
        let mean = all.len() as f64 / 60.0;
        for (minute, n) in per_minute.iter().enumerate() {
            // Binomial(100,000, 1/60): sd about 40; 6 sd is 15% of the mean.
            assert!(
                (*n as f64 - mean).abs() < 0.15 * mean,
                "minute {minute}: {n} agents due, mean {mean:.0}"
            );
        }
        // And through `due`, over one period of ticks: every agent exactly once.
        let start = 1_780_000_000_000;
        let mut seen = std::collections::HashMap::<&str, usize>::new();
        for t in 0..60 {
            for a in &all[..2_000] {
                if s.due(a, start + t * 60_000, start + (t + 1) * 60_000) {
                    *seen.entry(a.as_str()).or_default() += 1;
                }
            }
        }
        assert_eq!(seen.len(), 2_000);
        assert!(seen.values().all(|n| *n == 1));
    }
}

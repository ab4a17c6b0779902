//! The reliability model: a beta reputation with forgetting, in the spirit of Storj's, fed by
//! audits and uptime probes, and from it `p_fail` for a duration. Pure: no IO.
//!
//! Model. Each agent carries `alpha` (weight of good outcomes) and `beta` (weight of bad
//! ones). Every outcome first multiplies both by [`FORGET`] (old evidence fades, so an agent that
//! turns bad is noticed), then adds its weight to one of them. The share of bad weight,
//! `beta / (alpha + beta)`, estimates the probability that an audit finds the agent failed;
//! the market reads it as the agent's failure probability over the reference period of 30 days
//! ([`protocol::market::REFERENCE_DURATION_S`]), and scales it to other durations assuming a
//! constant hazard: `p(d) = 1 - (1 - p30)^(d / 30 days)`.
//!
//! - New agents start pessimistic: the prior ([`PRIOR_GOOD`], [`PRIOR_BAD`]) says p30 = 0.1,
//!   and they count as unvetted until [`VETTING_AUDITS_MIN`] audits have passed.
//! - A failed audit adds its weight at once; an agent that stops answering probes is offline
//!   and its `p_fail` is at least [`OFFLINE_P_FAIL`] until it answers again.

use protocol::market::REFERENCE_DURATION_S;
use serde::{Deserialize, Serialize};

/// Weight kept by old evidence at each new outcome: an effective memory of ~500 outcomes (with
/// audits every 5 minutes, about two days), long enough that estimates of rare failures settle.
pub const FORGET: f64 = 0.998;
/// Prior weights of a new agent: p30 = 1 / (9 + 1) = 0.1.
pub const PRIOR_GOOD: f64 = 9.0;
pub const PRIOR_BAD: f64 = 1.0;
/// Weight of an audit's outcome.
pub const AUDIT_WEIGHT: f64 = 1.0;
/// Weight of a probe's outcome: probes are frequent and say less (up, not holding the data).
pub const PROBE_WEIGHT: f64 = 0.1;
/// Weight of a buyer's signed report: a buyer may lie, so a report counts less than an audit.
pub const REPORT_WEIGHT: f64 = 0.5;
/// Audits passed before an agent is vetted.
pub const VETTING_AUDITS_MIN: u64 = 5;
/// `p_fail` of an agent that does not answer, whatever its history.
pub const OFFLINE_P_FAIL: f64 = 0.5;
/// Bounds on any estimate: no agent is perfect, and 1 would make nines zero.
pub const P_FAIL_MIN: f64 = 1e-6;
pub const P_FAIL_MAX: f64 = 0.999_999;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reputation {
    pub alpha: f64,
    pub beta: f64,
    pub audits_passed: u64,
    pub audits_failed: u64,
    pub online: bool,
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation {
            alpha: PRIOR_GOOD,
            beta: PRIOR_BAD,
            audits_passed: 0,
            audits_failed: 0,
            online: true,
        }
    }
}

/// What was observed about an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AuditPassed,
    AuditFailed,
    ProbeAnswered,
    ProbeUnanswered,
    ReportGood,
    ReportBad,
}

impl Reputation {
    pub fn observe(&mut self, outcome: Outcome) {
        let (good, weight) = match outcome {
            Outcome::AuditPassed => (true, AUDIT_WEIGHT),
            Outcome::AuditFailed => (false, AUDIT_WEIGHT),
            Outcome::ProbeAnswered => (true, PROBE_WEIGHT),
            Outcome::ProbeUnanswered => (false, PROBE_WEIGHT),
            Outcome::ReportGood => (true, REPORT_WEIGHT),
            Outcome::ReportBad => (false, REPORT_WEIGHT),
        };
        self.alpha *= FORGET;
        self.beta *= FORGET;
        if good {
            self.alpha += weight;
        } else {
            self.beta += weight;
        }
        match outcome {
            Outcome::AuditPassed => self.audits_passed += 1,
            Outcome::AuditFailed => self.audits_failed += 1,
            Outcome::ProbeAnswered => self.online = true,
            Outcome::ProbeUnanswered => self.online = false,
            Outcome::ReportGood | Outcome::ReportBad => {}
        }
        debug_assert!(self.alpha >= 0.0 && self.beta >= 0.0);
    }

    /// Estimated failure probability over the 30-day reference period, history only.
    pub fn p30(&self) -> f64 {
        let total = self.alpha + self.beta;
        if total <= 0.0 {
            return PRIOR_BAD / (PRIOR_GOOD + PRIOR_BAD);
        }
        (self.beta / total).clamp(P_FAIL_MIN, P_FAIL_MAX)
    }

    /// Probability the agent loses or cannot serve data over `duration_s`.
    pub fn p_fail(&self, duration_s: u64) -> f64 {
        let periods = duration_s as f64 / REFERENCE_DURATION_S as f64;
        // 1 - (1 - p)^t, computed stably for small p.
        let p = -(periods * (-self.p30()).ln_1p()).exp_m1();
        let p = if self.online {
            p
        } else {
            p.max(OFFLINE_P_FAIL)
        };
        p.clamp(P_FAIL_MIN, P_FAIL_MAX)
    }

    pub fn vetted(&self) -> bool {
        self.audits_passed >= VETTING_AUDITS_MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_agents_start_pessimistic_and_unvetted() {
        let r = Reputation::default();
        assert!((r.p30() - 0.1).abs() < 1e-12);
        assert!(!r.vetted());
    }

    #[test]
    fn duration_scales_with_constant_hazard() {
        let r = Reputation::default();
        let p30 = r.p_fail(REFERENCE_DURATION_S);
        let p60 = r.p_fail(2 * REFERENCE_DURATION_S);
        assert!((p30 - 0.1).abs() < 1e-12);
        assert!((p60 - (1.0 - 0.9f64 * 0.9)).abs() < 1e-12);
        assert!(r.p_fail(REFERENCE_DURATION_S / 30) < p30);
    }

    #[test]
    fn a_failed_audit_or_going_offline_lowers_reliability_at_once() {
        let mut r = Reputation::default();
        for _ in 0..50 {
            r.observe(Outcome::AuditPassed);
        }
        let before = r.p_fail(REFERENCE_DURATION_S);
        let mut failed = r;
        failed.observe(Outcome::AuditFailed);
        assert!(failed.p_fail(REFERENCE_DURATION_S) > before * 1.5);
        let mut offline = r;
        offline.observe(Outcome::ProbeUnanswered);
        assert!(offline.p_fail(REFERENCE_DURATION_S) >= OFFLINE_P_FAIL);
        offline.observe(Outcome::ProbeAnswered);
        assert!(offline.p_fail(REFERENCE_DURATION_S) < OFFLINE_P_FAIL);
    }
}

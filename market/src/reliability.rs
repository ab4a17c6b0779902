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
/// A report the market's own audits contradict (a `lost` report on a contract whose latest
/// audit passed, or an `ok` one on a contract whose latest audit failed, within
/// [`AUDIT_CONTRADICTS_S`]) keeps this share of its weight.
pub const CONTRADICTED_REPORT_SHARE: f64 = 0.1;
/// How long an audit's outcome on a contract contradicts buyers' reports on it: a day.
pub const AUDIT_CONTRADICTS_S: i64 = 86_400;
/// Audits passed before an agent is vetted.
pub const VETTING_AUDITS_MIN: u64 = 5;
/// Audits passed before an agent the records vouch for ([`VOUCH_VETTING_MIN`]) is vetted.
pub const VETTING_AUDITS_VOUCHED_MIN: u64 = 2;
/// How much the records must vouch for an agent to vet it after
/// [`VETTING_AUDITS_VOUCHED_MIN`] audits.
pub const VOUCH_VETTING_MIN: f64 = 0.5;
/// Good weight a full vouch (1) adds to the prior of an agent audited fewer than
/// [`VETTING_AUDITS_MIN`] times: with the prior 9/1, p30 goes from 0.1 to 1/19 (0.053).
pub const VOUCH_PRIOR_GOOD_MAX: f64 = 9.0;
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
    /// How much the graph of agreed records vouches for the agent, 0 to 1
    /// (`market::ranking::vouch`): a prior while the market's own audits are few.
    #[serde(default)]
    pub vouch: f64,
}

impl Default for Reputation {
    fn default() -> Self {
        Reputation {
            alpha: PRIOR_GOOD,
            beta: PRIOR_BAD,
            audits_passed: 0,
            audits_failed: 0,
            online: true,
            vouch: 0.0,
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

    /// Record a buyer's report of weight `weight` (at most [`REPORT_WEIGHT`], see
    /// [`report_weight`]). Old evidence fades in proportion: a report of a tenth of the full
    /// weight forgets as much as a tenth of one outcome, so many small reports cannot wash out
    /// an agent's audits either.
    pub fn observe_report(&mut self, good: bool, weight: f64) {
        let weight = if weight.is_finite() {
            weight.clamp(0.0, REPORT_WEIGHT)
        } else {
            0.0
        };
        let forget = FORGET.powf(weight / REPORT_WEIGHT);
        self.alpha *= forget;
        self.beta *= forget;
        if good {
            self.alpha += weight;
        } else {
            self.beta += weight;
        }
    }

    /// Estimated failure probability over the 30-day reference period, history only.
    /// While the market's audits are fewer than [`VETTING_AUDITS_MIN`], the records' vouch
    /// adds up to [`VOUCH_PRIOR_GOOD_MAX`] of good weight to the prior.
    pub fn p30(&self) -> f64 {
        let alpha = self.alpha + self.vouch_bonus();
        let total = alpha + self.beta;
        if total <= 0.0 {
            return PRIOR_BAD / (PRIOR_GOOD + PRIOR_BAD);
        }
        (self.beta / total).clamp(P_FAIL_MIN, P_FAIL_MAX)
    }

    /// The good weight the records' vouch adds to the prior (0 once the agent is audited
    /// [`VETTING_AUDITS_MIN`] times: the market's own evidence then speaks).
    fn vouch_bonus(&self) -> f64 {
        if self.audits_passed >= VETTING_AUDITS_MIN || !self.vouch.is_finite() {
            return 0.0;
        }
        VOUCH_PRIOR_GOOD_MAX * self.vouch.clamp(0.0, 1.0)
    }

    /// Probability the agent loses or cannot serve data over `duration_s`.
    pub fn p_fail(&self, duration_s: u64) -> f64 {
        p_fail_of(self.log_survival_30(), self.online, duration_s)
    }

    /// Vetted after [`VETTING_AUDITS_MIN`] audits passed, or after
    /// [`VETTING_AUDITS_VOUCHED_MIN`] when the records vouch for it at least
    /// [`VOUCH_VETTING_MIN`].
    pub fn vetted(&self) -> bool {
        self.audits_passed >= VETTING_AUDITS_MIN
            || (self.audits_passed >= VETTING_AUDITS_VOUCHED_MIN && self.vouch >= VOUCH_VETTING_MIN)
    }

    /// `ln(1 - p30)`: what [`p_fail_of`] needs of the history, computed once per reputation
    /// (the match scan over a big book calls `p_fail_of` for every agent).
    pub fn log_survival_30(&self) -> f64 {
        (-self.p30()).ln_1p()
    }
}

/// [`Reputation::p_fail`] from the reputation's [`Reputation::log_survival_30`].
pub fn p_fail_of(log_survival_30: f64, online: bool, duration_s: u64) -> f64 {
    {
        let periods = duration_s as f64 / REFERENCE_DURATION_S as f64;
        // 1 - (1 - p)^t, computed stably for small p.
        let p = -(periods * log_survival_30).exp_m1();
        let p = if online { p } else { p.max(OFFLINE_P_FAIL) };
        p.clamp(P_FAIL_MIN, P_FAIL_MAX)
    }
}

/// What a contract was worth, as a share (0 to 1) of the agent's reference request (1 GiB for
/// 30 days, no reads): the larger of `contract_price / reference_price` (money: what the
/// buyer paid against what the reference request costs at this agent) and the contract's bytes
/// x seconds against the reference request's (storage: which the agent cannot shrink by
/// raising its prices after the fact), at most 1. `reference_price` is `None` when the agent's
/// offer no longer lists the contract's currency.
pub fn contract_worth(
    contract_price: u64,
    reference_price: Option<u64>,
    block_bytes: u64,
    duration_s: u64,
) -> f64 {
    let by_price = match reference_price {
        Some(r) if r > 0 => contract_price as f64 / r as f64,
        _ => 0.0,
    };
    let by_storage = (block_bytes as f64 / protocol::market::REFERENCE_BYTES as f64)
        * (duration_s as f64 / REFERENCE_DURATION_S as f64);
    let share = by_price.max(by_storage);
    if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The weight of a buyer's report: [`REPORT_WEIGHT`] scaled by what the contract was worth
/// ([`contract_worth`]), so ruining an agent's reputation costs about as much as the contracts
/// it takes, and by [`CONTRADICTED_REPORT_SHARE`] when the market's own audits contradict it.
pub fn report_weight(worth: f64, contradicted: bool) -> f64 {
    let worth = if worth.is_finite() {
        worth.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let share = if contradicted {
        CONTRADICTED_REPORT_SHARE
    } else {
        1.0
    };
    REPORT_WEIGHT * worth * share
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

    #[test]
    fn a_report_weighs_what_its_contract_was_worth() {
        // A contract priced like the reference request carries a full report's weight; one
        // at a thousandth of it, a thousandth; never more than the full weight.
        assert_eq!(
            report_weight(contract_worth(3000, Some(3000), 0, 0), false),
            REPORT_WEIGHT
        );
        assert_eq!(
            report_weight(contract_worth(9000, Some(3000), 0, 0), false),
            REPORT_WEIGHT
        );
        let small = report_weight(contract_worth(3, Some(3000), 0, 0), false);
        assert!((small - REPORT_WEIGHT / 1000.0).abs() < 1e-12);
        // Contradicted by the market's audits: a tenth of that.
        let contradicted = report_weight(contract_worth(3000, Some(3000), 0, 0), true);
        assert!((contradicted - REPORT_WEIGHT * CONTRADICTED_REPORT_SHARE).abs() < 1e-12);
        // Unknown reference price: the share of the reference bytes x seconds.
        let half = contract_worth(
            1,
            None,
            protocol::market::REFERENCE_BYTES / 2,
            REFERENCE_DURATION_S,
        );
        assert!((half - 0.5).abs() < 1e-12);
        assert_eq!(contract_worth(1, Some(0), 0, 0), 0.0);
        // An agent that raises its prices afterwards does not shrink what a contract of the
        // reference size and duration was worth.
        let whole = contract_worth(
            10,
            Some(u64::MAX),
            protocol::market::REFERENCE_BYTES,
            REFERENCE_DURATION_S,
        );
        assert_eq!(whole, 1.0);
    }

    #[test]
    fn many_small_reports_move_an_audited_agent_little() {
        let mut r = Reputation::default();
        for _ in 0..26 {
            r.observe(Outcome::AuditPassed);
        }
        let before = r.p30();
        let mut full = r;
        full.observe(Outcome::ReportBad);
        let mut reported = r;
        reported.observe_report(false, REPORT_WEIGHT);
        assert!(
            (reported.p30() - full.p30()).abs() < 1e-12,
            "a full report is a report"
        );
        // A thousand reports of a thousandth each forget about as much as one full report.
        let mut small = r;
        for _ in 0..1000 {
            small.observe_report(false, REPORT_WEIGHT / 1000.0);
        }
        assert!(
            (small.p30() - full.p30()).abs() < 1e-3,
            "{} vs {}",
            small.p30(),
            full.p30()
        );
        assert!(small.p30() > before);
        let mut junk = r;
        junk.observe_report(false, f64::NAN);
        junk.observe_report(false, -1.0);
        assert_eq!(junk, r);
    }
}

//! What a bench run reports: filling the book, heartbeats and matches (latency percentiles,
//! throughput, errors by code), as one serialisable [`Report`] and a few lines for people.

use serde::Serialize;

use super::stats::{Errors, Latency};
use super::synth::Shape;

/// Filling the book: every agent's first offer (each costs the market an endpoint check).
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    pub posted: usize,
    pub accepted: usize,
    pub seconds: f64,
    pub offers_per_s: f64,
    pub latency: Latency,
    pub errors: Errors,
}

#[derive(Debug, Clone, Serialize)]
pub struct HeartbeatReport {
    pub target_per_s: f64,
    pub sent: u64,
    pub accepted: usize,
    /// Due while [`super::HEARTBEATS_IN_FLIGHT_MAX`] were unanswered: the market was behind.
    pub skipped_behind: u64,
    /// Still unanswered when the phase ended and the drain wait ran out.
    pub unfinished: usize,
    /// Accepted heartbeats per second of the phase.
    pub per_s: f64,
    pub latency: Latency,
    pub errors: Errors,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShapeReport {
    pub shape: Shape,
    pub met: usize,
    /// Agents chosen in the last answer (n).
    pub chosen_last: usize,
    pub latency: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct MatchReport {
    pub concurrency: usize,
    pub requested: usize,
    /// Answered (met or refused) within the phase.
    pub answered: usize,
    pub met: usize,
    /// Still running when the phase's longest time ran out.
    pub cut_at_deadline: usize,
    /// Seconds from the first match sent to the last answered.
    pub seconds: f64,
    /// Met matches per second.
    pub per_s: f64,
    /// Latency of met matches.
    pub latency: Latency,
    pub errors: Errors,
    /// Candidates the last met match considered (the live book in the currency, less the
    /// agents whose limits or state left them out).
    pub candidates_last: usize,
    pub shapes: Vec<ShapeReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SteadyReport {
    pub seconds: f64,
    pub heartbeats: HeartbeatReport,
    pub matches: MatchReport,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub market: String,
    pub agents: usize,
    pub networks: usize,
    pub seed: u64,
    /// The issuer id the offers were priced in.
    pub currency: String,
    pub fill: FillReport,
    pub steady: SteadyReport,
    /// Descriptors the stand-in answered: the market's endpoint checks, the re-checks of
    /// matched agents and the prober's requests.
    pub endpoint_requests: u64,
}

impl Report {
    /// The report for people, a few lines.
    pub fn show(&self) -> String {
        let f = &self.fill;
        let h = &self.steady.heartbeats;
        let m = &self.steady.matches;
        let mut out = format!(
            "{} agents on {} networks against {}\n\
             fill: {}/{} offers accepted in {:.1} s = {:.0} offers/s; {}; errors: {}\n\
             heartbeats: {}/{} accepted at {:.0}/s (target {:.0}/s), {} skipped behind, {} unfinished; {}; errors: {}\n\
             matches: {}/{} met by {} clients in {:.1} s = {:.2} matches/s, {} cut at the deadline; {}; errors: {}\n",
            self.agents,
            self.networks,
            self.market,
            f.accepted,
            f.posted,
            f.seconds,
            f.offers_per_s,
            f.latency.show(),
            f.errors.show(),
            h.accepted,
            h.sent,
            h.per_s,
            h.target_per_s,
            h.skipped_behind,
            h.unfinished,
            h.latency.show(),
            h.errors.show(),
            m.met,
            m.requested,
            m.concurrency,
            m.seconds,
            m.per_s,
            m.cut_at_deadline,
            m.latency.show(),
            m.errors.show(),
        );
        for s in &m.shapes {
            out.push_str(&format!(
                "  {:<28} met {:>4}, n {:>2}: {}\n",
                s.shape.name,
                s.met,
                s.chosen_last,
                s.latency.show()
            ));
        }
        out.push_str(&format!(
            "candidates in the last match: {}; descriptors the stand-in served: {}",
            m.candidates_last, self.endpoint_requests
        ));
        out
    }
}

//! Matching (`POST /v1/match`): the pool of live, online offers that can take the request
//! (pre-selected from the in-memory index, `index::Index::pool`), selection over it, and a
//! re-check that the chosen agents answer.

use protocol::EntityId;

use super::index::LeftOut;
use super::timings::Phase;
use super::{
    now_s, Chosen, Considered, Market, MatchAnswer, MatchRequest, MATCH_ANSWERS_KEPT_MAX,
    MATCH_ANSWER_FRESH_MS, MATCH_PROBE_WAIT_MS_MAX, MATCH_RECHECKS_MAX,
};
use crate::error::Error;
use crate::select;

impl Market {
    /// `POST /v1/match` (DESIGN section 6).
    /// Choose agents for `req`, each of them answering now: the chosen are asked who they are
    /// (at once, [`MATCH_PROBE_WAIT_MS_MAX`] each), and one that does not answer is left out
    /// and the choice made again without it, at most [`MATCH_RECHECKS_MAX`] times. So an
    /// agent that died since the last probe round is not sold (DESIGN section 6).
    /// An agent whose endpoint answered in the last [`MATCH_ANSWER_FRESH_MS`] is not asked
    /// again: the cheapest agents are chosen by match after match, and anyone may ask for
    /// matches, so without it every match would cost each chosen agent a request.
    pub async fn match_agents(&self, req: &MatchRequest) -> Result<MatchAnswer, Error> {
        let mut req = req.clone();
        for _ in 0..MATCH_RECHECKS_MAX {
            let answer = self.match_once(&req).await?;
            let started = std::time::Instant::now();
            let checks = answer.agents.iter().map(|a| async move {
                if self.answered_lately(&a.agent, &a.endpoint) {
                    return None;
                }
                let entity = EntityId::parse(&a.agent).ok()?;
                let alive = tokio::time::timeout(
                    std::time::Duration::from_millis(MATCH_PROBE_WAIT_MS_MAX),
                    self.check_endpoint(&a.endpoint, &entity),
                )
                .await;
                match alive {
                    Ok(Ok(())) => {
                        self.note_answer(&a.agent, &a.endpoint);
                        None
                    }
                    _ => Some(a.agent.clone()),
                }
            });
            let dead: Vec<String> = futures_util::future::join_all(checks)
                .await
                .into_iter()
                .flatten()
                .collect();
            self.timings.add(Phase::Recheck, started.elapsed());
            if dead.is_empty() {
                return Ok(answer);
            }
            // Left out of this match only: anyone may ask for a match, so a silence seen here
            // does not count against the agent's reputation (the probe rounds judge that).
            for agent in dead {
                tracing::info!(
                    agent,
                    "a matched agent does not answer: matched again without it"
                );
                req.exclude.push(agent);
            }
        }
        // Agents kept dying under us; the last choice is as fresh as the probes allow.
        self.match_once(&req).await
    }

    /// Whether `agent` answered at `endpoint` in the last [`MATCH_ANSWER_FRESH_MS`].
    fn answered_lately(&self, agent: &str, endpoint: &str) -> bool {
        let answers = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.get(agent).is_some_and(|(at, url)| {
            url == endpoint
                && at.elapsed() < std::time::Duration::from_millis(MATCH_ANSWER_FRESH_MS)
        })
    }

    /// Remember that `agent` answered at `endpoint` now.
    fn note_answer(&self, agent: &str, endpoint: &str) {
        let mut answers = self
            .answers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if answers.len() >= MATCH_ANSWERS_KEPT_MAX && !answers.contains_key(agent) {
            // Bounded: forgetting costs one request per agent, nothing else.
            answers.clear();
        }
        answers.insert(
            agent.to_owned(),
            (std::time::Instant::now(), endpoint.to_owned()),
        );
    }

    async fn match_once(&self, req: &MatchRequest) -> Result<MatchAnswer, Error> {
        let k = check_match(req)?;
        let now = now_s();
        // The book as of now: offers answered before this match was asked are in it, from
        // whichever market process took them.
        let started = std::time::Instant::now();
        self.fresh_index_timed(0, Some(&self.timings)).await?;
        self.timings.add(Phase::Refresh, started.elapsed());
        let request = select::Request {
            data_shards: k,
            total_shards: req.total_shards.map(|n| n as usize),
            max_failure_probability: req.max_failure_probability,
            same_network_ok: self.same_network_ok,
        };
        // The scan of the book and the selection are CPU work: off the async workers.
        let (pool, outcome) = {
            let (index, mut asked, request) = (self.index.clone(), req.clone(), request.clone());
            // An entity that forked its record chain is never chosen (DESIGN 11).
            asked.exclude.extend(self.forked());
            let timings = self.timings.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let pool = index
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pool(&asked, now, request.same_network_ok)?;
                timings.add(Phase::Scan, started.elapsed());
                let started = std::time::Instant::now();
                let outcome = select::select(&pool.candidates, &request);
                timings.add(Phase::Select, started.elapsed());
                Some((pool, outcome))
            })
            .await
            .map_err(|e| Error::Db(db::DbError::Task(e.to_string())))?
            .ok_or_else(|| Error::UnknownCurrency(req.currency.clone()))?
        };
        let considered: Vec<Considered> = pool
            .candidates
            .iter()
            .map(|c| Considered {
                agent: c.agent.clone(),
                p_fail: c.p_fail,
                price: c.price,
                vetted: c.vetted,
            })
            .collect();
        let chosen_of = |choice: &select::Choice| -> Vec<Chosen> {
            choice
                .chosen
                .iter()
                .map(|&i| {
                    // The agent's latest signed offer and endpoint: a pool kept between
                    // matches holds the agent as of when it was computed (same terms).
                    let agent = self
                        .indexed(&pool.agents[i].entity)
                        .unwrap_or_else(|| pool.agents[i].clone());
                    Chosen {
                        agent: agent.entity.clone(),
                        endpoint: agent.endpoint.clone(),
                        offer: agent.envelope.clone(),
                        p_fail: pool.candidates[i].p_fail,
                        price: pool.candidates[i].price,
                    }
                })
                .collect()
        };
        let left_out = &pool.left_out;
        match outcome {
            select::Outcome::Met(choice) => Ok(MatchAnswer {
                agents: chosen_of(&choice),
                failure_probability: choice.failure_probability,
                total_price: choice.total_price,
                candidates: considered,
            }),
            select::Outcome::CannotMeet(best) => Err(Error::CannotMeetTarget {
                target: req.max_failure_probability,
                best: best.as_ref().map(|b| b.failure_probability),
                left_out: explain(left_out, req),
                details: serde_json::json!({
                    "best_failure_probability": best.as_ref().map(|b| b.failure_probability),
                    "best": best.as_ref().map(|b| serde_json::json!({
                        "agents": chosen_of(b),
                        "total_price": b.total_price,
                    })),
                    "candidates": considered,
                    "left_out": {
                        "offline": left_out.offline,
                        "blocks_too_small": left_out.small_blocks,
                        "largest_block_bytes": left_out.largest_block,
                        "durations_too_short": left_out.short_durations,
                        "longest_duration_s": left_out.longest_duration_s,
                    },
                }),
            }),
        }
    }
}

fn check_match(req: &MatchRequest) -> Result<usize, Error> {
    let bad = |m: &str| Err(Error::InvalidMatch(m.to_owned()));
    if req.data_shards == 0 {
        return bad("data_shards (k) must be at least 1");
    }
    if let Some(n) = req.total_shards {
        if n < req.data_shards {
            return bad("total_shards (n) must be at least data_shards (k)");
        }
        if n > select::TOTAL_SHARDS_MAX as u64 {
            return Err(Error::InvalidMatch(format!(
                "total_shards (n) must be at most {}",
                select::TOTAL_SHARDS_MAX
            )));
        }
    }
    if req.data_shards > select::TOTAL_SHARDS_MAX as u64 {
        return Err(Error::InvalidMatch(format!(
            "data_shards (k) must be at most {}",
            select::TOTAL_SHARDS_MAX
        )));
    }
    let p = req.max_failure_probability;
    if !(p > 0.0 && p < 1.0) {
        return bad("max_failure_probability must be strictly between 0 and 1");
    }
    if req.shard_bytes == 0 || req.duration_s == 0 {
        return bad("shard_bytes and duration_s must be positive");
    }
    if EntityId::parse(&req.currency).is_err() {
        return Err(Error::UnknownCurrency(req.currency.clone()));
    }
    Ok(req.data_shards as usize)
}

/// Why agents offering the match's currency were left out, in words for a refusal: a buyer
/// asking for blocks no agent sells learns that, not only that the target was missed.
fn explain(left_out: &LeftOut, req: &MatchRequest) -> String {
    let mut out = String::new();
    if left_out.small_blocks > 0 {
        out.push_str(&format!(
            "; {} agent(s) sell no block as large as the {} bytes asked for per shard \
             (the largest offered is {} bytes): ask for smaller shards",
            left_out.small_blocks, req.shard_bytes, left_out.largest_block
        ));
    }
    if left_out.short_durations > 0 {
        out.push_str(&format!(
            "; {} agent(s) sell no contract as long as {} s (the longest offered is {} s)",
            left_out.short_durations, req.duration_s, left_out.longest_duration_s
        ));
    }
    if left_out.offline > 0 {
        out.push_str(&format!(
            "; {} agent(s) were offline at the last probe",
            left_out.offline
        ));
    }
    out
}

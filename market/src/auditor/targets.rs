//! What the auditor and the prober read from the market's database: the agents with running
//! registered contracts, one audit target for each agent of a batch (a random contract, a
//! random object of it), and the agents with a live offer. Only the columns needed, never
//! whole rows (an agent row holds its offer envelope).

use std::collections::HashMap;

use db::AnyConnection;
use diesel::prelude::*;

use super::random_below;
use crate::book::{Market, RegisteredObject};
use crate::error::Error;
use crate::schema::{agents, registered, registered_objects};

/// Agents whose targets one database call reads (the auditor reads them batch by batch, as
/// the audits in flight need more).
pub const TARGETS_BATCH_MAX: usize = 256;

/// One challenge to send: `object` of `contract`, held by `agent` at `endpoint`.
#[derive(Debug, Clone)]
pub struct Target {
    pub agent: String,
    pub endpoint: String,
    pub contract: String,
    pub object: RegisteredObject,
}

/// Every agent with a registered contract running at `now_s`, each once, in entity order.
pub async fn agents_with_contracts(market: &Market, now_s: i64) -> Result<Vec<String>, Error> {
    market
        .db
        .run(move |conn| {
            Ok::<_, Error>(
                registered::table
                    .filter(registered::end_s.gt(now_s))
                    .select(registered::agent)
                    .distinct()
                    .order(registered::agent)
                    .load::<String>(conn)?,
            )
        })
        .await
}

/// Contracts with at most this many objects have them all read in one query per batch (the
/// common case: a few objects per contract); a larger one has its chosen object read alone.
pub const OBJECTS_READ_WHOLE_MAX: i64 = 64;
/// Longest list of ids in one `IN (...)` (SQLite binds each as a parameter).
const IN_LIST_MAX: usize = 512;

/// One target for each agent of `batch` (at most [`TARGETS_BATCH_MAX`]) that the market knows
/// and that has a running contract with objects: a random such contract, a random object of
/// it. Agents without one are left out. A few queries per batch, not per agent: the agents'
/// running contracts, their objects counted, the objects of the small chosen contracts; one
/// more per chosen contract with more than [`OBJECTS_READ_WHOLE_MAX`] objects.
pub async fn targets_of(
    market: &Market,
    batch: Vec<String>,
    now_s: i64,
) -> Result<Vec<Target>, Error> {
    debug_assert!(batch.len() <= TARGETS_BATCH_MAX);
    market
        .db
        .run(move |conn| {
            let rows: Vec<(String, String, String)> = registered::table
                .inner_join(agents::table.on(agents::entity.eq(registered::agent)))
                .filter(registered::agent.eq_any(&batch))
                .filter(registered::end_s.gt(now_s))
                .select((registered::agent, agents::endpoint, registered::id))
                .order((registered::agent, registered::id))
                .load(conn)?;
            let ids: Vec<String> = rows.iter().map(|r| r.2.clone()).collect();
            let counts = object_counts(conn, &ids)?;
            // Per agent, a random contract among those with objects, and a random index.
            let mut picks: Vec<(&str, &str, &str, i64, i64)> = Vec::with_capacity(batch.len());
            let mut rest = rows.as_slice();
            while let Some((agent, endpoint, _)) = rest.first() {
                let n = rest.iter().take_while(|r| &r.0 == agent).count();
                let auditable: Vec<(&str, i64)> = rest[..n]
                    .iter()
                    .filter_map(|r| Some((r.2.as_str(), *counts.get(&r.2)?)))
                    .filter(|(_, count)| *count > 0)
                    .collect();
                if !auditable.is_empty() {
                    let (id, count) = auditable[random_below(auditable.len() as u64) as usize];
                    let index = i64::try_from(random_below(count.unsigned_abs())).unwrap_or(0);
                    picks.push((agent, endpoint, id, index, count));
                }
                rest = &rest[n..];
            }
            let small: Vec<String> = picks
                .iter()
                .filter(|p| p.4 <= OBJECTS_READ_WHOLE_MAX)
                .map(|p| p.2.to_owned())
                .collect();
            let whole = objects_of(conn, &small)?;
            let mut out = Vec::with_capacity(picks.len());
            for (agent, endpoint, id, index, count) in picks {
                let object = if count <= OBJECTS_READ_WHOLE_MAX {
                    whole
                        .get(id)
                        .and_then(|objects| objects.get(usize::try_from(index).ok()?))
                        .cloned()
                } else {
                    object_at(conn, id, index)?
                };
                if let Some(object) = object {
                    out.push(Target {
                        agent: agent.to_owned(),
                        endpoint: endpoint.to_owned(),
                        contract: id.to_owned(),
                        object,
                    });
                }
            }
            Ok::<_, Error>(out)
        })
        .await
}

/// How many objects each of `contracts` has (those without any are absent).
fn object_counts(
    conn: &mut AnyConnection,
    contracts: &[String],
) -> Result<HashMap<String, i64>, Error> {
    let mut out = HashMap::with_capacity(contracts.len());
    for chunk in contracts.chunks(IN_LIST_MAX) {
        let rows: Vec<(String, i64)> = registered_objects::table
            .filter(registered_objects::contract_id.eq_any(chunk))
            .group_by(registered_objects::contract_id)
            .select((registered_objects::contract_id, diesel::dsl::count_star()))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// Every object of each of `contracts`, in name order.
fn objects_of(
    conn: &mut AnyConnection,
    contracts: &[String],
) -> Result<HashMap<String, Vec<RegisteredObject>>, Error> {
    let mut out: HashMap<String, Vec<RegisteredObject>> = HashMap::new();
    for chunk in contracts.chunks(IN_LIST_MAX) {
        let rows: Vec<(String, String, String, i64, i64)> = registered_objects::table
            .filter(registered_objects::contract_id.eq_any(chunk))
            .order((registered_objects::contract_id, registered_objects::name))
            .select((
                registered_objects::contract_id,
                registered_objects::name,
                registered_objects::merkle_root,
                registered_objects::leaf_count,
                registered_objects::size,
            ))
            .load(conn)?;
        for (contract, name, merkle_root, leaf_count, size) in rows {
            out.entry(contract).or_default().push(RegisteredObject {
                name,
                merkle_root,
                leaf_count: leaf_count.unsigned_abs(),
                size: size.unsigned_abs(),
            });
        }
    }
    Ok(out)
}

/// Object `index` (in name order) of `contract`, if it has that many.
fn object_at(
    conn: &mut AnyConnection,
    contract: &str,
    index: i64,
) -> Result<Option<RegisteredObject>, Error> {
    let row: Option<(String, String, i64, i64)> = registered_objects::table
        .filter(registered_objects::contract_id.eq(contract))
        .order(registered_objects::name)
        .offset(index)
        .limit(1)
        .select((
            registered_objects::name,
            registered_objects::merkle_root,
            registered_objects::leaf_count,
            registered_objects::size,
        ))
        .first(conn)
        .optional()?;
    Ok(
        row.map(|(name, merkle_root, leaf_count, size)| RegisteredObject {
            name,
            merkle_root,
            leaf_count: leaf_count.unsigned_abs(),
            size: size.unsigned_abs(),
        }),
    )
}

/// An agent with a live offer, as the prober sees it.
#[derive(Debug, Clone)]
pub struct Live {
    pub entity: String,
    pub endpoint: String,
    pub last_heartbeat_s: i64,
    pub online: bool,
}

/// Every agent whose offer is live at `now_s`.
pub async fn live_agents(market: &Market, now_s: i64) -> Result<Vec<Live>, Error> {
    market
        .db
        .run(move |conn| {
            let rows: Vec<(String, String, i64, i32)> = agents::table
                .filter(agents::offer_expires_s.gt(now_s))
                .select((
                    agents::entity,
                    agents::endpoint,
                    agents::last_heartbeat_s,
                    agents::online,
                ))
                .order(agents::entity)
                .load(conn)?;
            Ok::<_, Error>(
                rows.into_iter()
                    .map(|(entity, endpoint, last_heartbeat_s, online)| Live {
                        entity,
                        endpoint,
                        last_heartbeat_s,
                        online: online != 0,
                    })
                    .collect(),
            )
        })
        .await
}

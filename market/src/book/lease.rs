//! Leases: work that one market process does for all the processes sharing a database (the
//! auditor and the prober), so that two processes do not audit every agent twice and count
//! each outcome twice in its reputation (issue 14).
//!
//! Invariants:
//! - At most one process holds a lease at a time, as far as clocks agree: a lease is taken
//!   by one conditional UPDATE (holder is us, or the lease expired), so two processes never
//!   both see themselves holding an unexpired lease. Clocks of the hosts must agree within a
//!   small part of the lease's length; a process whose clock runs ahead takes over early, and
//!   the cost is a round of audits done twice, never a lost one.

use diesel::prelude::*;

use super::Market;
use crate::error::Error;
use crate::schema::market_leases;

/// The auditor's lease (audits and probes).
pub const AUDITOR_LEASE: &str = "auditor";

impl Market {
    /// Take or renew the lease `name` for `for_ms`; answers whether this process holds it.
    pub async fn hold_lease(&self, name: &str, for_ms: u64) -> Result<bool, Error> {
        let (name, me) = (name.to_owned(), self.instance.clone());
        let now_ms = i64::try_from(node::now_ms()).unwrap_or(i64::MAX);
        let until_ms = now_ms.saturating_add(i64::try_from(for_ms).unwrap_or(i64::MAX));
        self.db
            .run(move |conn| {
                let taken = diesel::update(
                    market_leases::table.find(&name).filter(
                        market_leases::holder
                            .eq(&me)
                            .or(market_leases::expires_ms.lt(now_ms)),
                    ),
                )
                .set((
                    market_leases::holder.eq(&me),
                    market_leases::expires_ms.eq(until_ms),
                ))
                .execute(conn)?;
                Ok::<_, Error>(taken == 1)
            })
            .await
    }

    /// This process's name as a lease holder (random, per start).
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

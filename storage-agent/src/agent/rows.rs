//! The diesel rows of the agent's tables (contracts, objects) and what a contract row answers
//! by itself: its status, credit, debt and whether a charge can be drawn.

use super::*;

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = contracts)]
pub(super) struct ContractRow {
    pub(super) id: String,
    pub(super) buyer: String,
    pub(super) issuer: String,
    pub(super) block_bytes: i64,
    pub(super) start_s: i64,
    pub(super) end_s: i64,
    pub(super) contract_price: i64,
    pub(super) write_per_kib: i64,
    pub(super) read_per_kib: i64,
    pub(super) auditors: String,
    pub(super) envelope: String,
    pub(super) agent_signature: String,
    pub(super) paid: i64,
    pub(super) spent: i64,
    pub(super) used_bytes: i64,
    pub(super) reaped: i32,
    pub(super) created_s: i64,
}

impl ContractRow {
    pub(super) fn status(&self, now: i64) -> &'static str {
        if self.reaped != 0 || now >= self.end_s {
            "ended"
        } else if self.paid < self.contract_price {
            "pending_payment"
        } else {
            "active"
        }
    }

    pub(super) fn credit(&self) -> i64 {
        self.paid - self.contract_price - self.spent
    }

    /// What the buyer owes on this contract (only active contracts run a tab).
    pub(super) fn debt(&self) -> u64 {
        if self.paid < self.contract_price {
            0
        } else {
            (-self.credit()).max(0).unsigned_abs()
        }
    }

    pub(super) fn auditors(&self) -> Vec<String> {
        serde_json::from_str(&self.auditors).unwrap_or_default()
    }

    /// Check that `charge` can be drawn now, with `tab_room` of the buyer's tab left; answers
    /// the new `spent`.
    pub(super) fn draw(&self, charge: u64, tab_room: u64) -> Result<i64, Error> {
        let charge =
            i64::try_from(charge).map_err(|_| Error::PaymentRequired { amount_due: charge })?;
        if self.paid < self.contract_price {
            let due = (self.contract_price - self.paid).saturating_add(charge);
            return Err(Error::PaymentRequired {
                amount_due: due.unsigned_abs(),
            });
        }
        let available = self
            .credit()
            .saturating_add(i64::try_from(tab_room).unwrap_or(i64::MAX));
        if charge > available {
            return Err(Error::PaymentRequired {
                amount_due: (charge - available).unsigned_abs(),
            });
        }
        Ok(self.spent + charge)
    }
}

#[derive(Queryable, Insertable, Clone, Debug)]
#[diesel(table_name = objects)]
pub(super) struct ObjectRow {
    pub(super) contract_id: String,
    pub(super) name: String,
    pub(super) path: String,
    pub(super) size: i64,
    pub(super) sha256: String,
    pub(super) merkle_root: String,
    pub(super) leaf_count: i64,
}

impl From<&ObjectRow> for ObjectInfo {
    fn from(r: &ObjectRow) -> Self {
        ObjectInfo {
            name: r.name.clone(),
            size: r.size.unsigned_abs(),
            sha256: r.sha256.clone(),
            merkle_root: r.merkle_root.clone(),
        }
    }
}

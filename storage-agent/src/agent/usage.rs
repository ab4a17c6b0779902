//! What each contract delivered by the agent's own books: bytes written, bytes read and
//! audits answered (`contract_usage`). Counted inside the transaction that writes an object,
//! charges a read or answers an audit, so a count commits with what it counts. A `completed`
//! record (DESIGN 11) carries these figures, and the agent agrees only to its own.

use db::AnyConnection;
use diesel::prelude::*;

use crate::schema::contract_usage;

/// A contract's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub bytes_written: u64,
    pub bytes_read: u64,
    pub audits_answered: u64,
}

fn to_i64(n: u64) -> i64 {
    // Bytes and audits of one contract stay far below 2^63; saturate rather than wrap.
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Add to contract `id`'s figures (inside the caller's transaction).
pub fn count(
    conn: &mut AnyConnection,
    id: &str,
    written: u64,
    read: u64,
    audits: u64,
) -> QueryResult<()> {
    let (w, r, a) = (to_i64(written), to_i64(read), to_i64(audits));
    let updated = diesel::update(contract_usage::table.find(id))
        .set((
            contract_usage::bytes_written.eq(contract_usage::bytes_written + w),
            contract_usage::bytes_read.eq(contract_usage::bytes_read + r),
            contract_usage::audits_answered.eq(contract_usage::audits_answered + a),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(contract_usage::table)
            .values((
                contract_usage::contract_id.eq(id),
                contract_usage::bytes_written.eq(w),
                contract_usage::bytes_read.eq(r),
                contract_usage::audits_answered.eq(a),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Contract `id`'s figures (zeros when nothing was counted).
pub fn of(conn: &mut AnyConnection, id: &str) -> QueryResult<Usage> {
    let row: Option<(i64, i64, i64)> = contract_usage::table
        .find(id)
        .select((
            contract_usage::bytes_written,
            contract_usage::bytes_read,
            contract_usage::audits_answered,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map_or(Usage::default(), |(w, r, a)| Usage {
        bytes_written: w.unsigned_abs(),
        bytes_read: r.unsigned_abs(),
        audits_answered: a.unsigned_abs(),
    }))
}

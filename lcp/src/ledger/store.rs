//! How the ledger writer stores a batch's rows: its transfers and its new balances.
//!
//! Both backends get statements that are prepared once per connection (issue 21's profile):
//! - diesel never caches an `UPDATE` it builds (its `UpdateStatement` marks itself unsafe to
//!   cache), so the balance update is written here as a fragment with a static query id;
//! - on SQLite each row is its own statement: there is no round trip, and a single-row
//!   statement needs no statement journal, which a multi-row one does;
//! - on PostgreSQL every statement is a network round trip and a multi-row `VALUES` list is
//!   parsed and planned anew for each count, so rows go as arrays through `UNNEST`: one
//!   statement for all transfers, one for all changed balances, the same SQL every time.

use std::collections::HashMap;

use db::AnyConnection;
use diesel::backend::Backend;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, BigInt, Nullable, Text};

use crate::schema::{accounts, transfers};

/// Most rows one multi-row INSERT of new accounts carries on PostgreSQL.
const INSERT_ROWS_MAX: usize = 500;

/// One executed transfer, as stored.
#[derive(Debug, Insertable)]
#[diesel(table_name = transfers)]
pub struct NewTransfer {
    pub seq: i64,
    pub sender: String,
    pub recipient: String,
    pub amount: i64,
    pub fee: i64,
    pub transaction_id: Option<String>,
    pub time_ms: i64,
    pub userid: Option<String>,
    pub from_name: Option<String>,
}

/// Store a batch's transfers.
pub fn insert_transfers(conn: &mut AnyConnection, rows: &[NewTransfer]) -> Result<(), db::DbError> {
    match conn {
        AnyConnection::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(transfers::table)
                    .values(row)
                    .execute(c)?;
            }
        }
        AnyConnection::Postgresql(c) => {
            if rows.is_empty() {
                return Ok(());
            }
            let stored = InsertTransfers::of(rows).execute(c)?;
            // Invariant: UNNEST makes one row per element; anything else is rolled back.
            if stored != rows.len() {
                return Err(db::DbError::Task(format!(
                    "{} transfers to store, {stored} stored: rolled back",
                    rows.len()
                )));
            }
        }
    }
    Ok(())
}

/// Store a batch's new balances: an UPDATE for accounts with a row (every one in `cached`
/// has one), an INSERT for new ones.
pub fn write_balances(
    conn: &mut AnyConnection,
    overlay: &HashMap<String, i64>,
    cached: &HashMap<String, i64>,
) -> Result<(), db::DbError> {
    type Rows<'a> = Vec<(&'a String, &'a i64)>;
    let (known, new): (Rows<'_>, Rows<'_>) = overlay
        .iter()
        .partition(|(entity, _)| cached.contains_key(*entity));
    match conn {
        AnyConnection::Sqlite(c) => {
            for (entity, balance) in &known {
                SetBalance {
                    entity,
                    balance: **balance,
                }
                .execute(c)?;
            }
            for (entity, balance) in &new {
                diesel::insert_into(accounts::table)
                    .values((
                        accounts::entity.eq(*entity),
                        accounts::balance.eq(**balance),
                    ))
                    .execute(c)?;
            }
        }
        AnyConnection::Postgresql(c) => {
            if !known.is_empty() {
                let update = SetBalances {
                    entities: known.iter().map(|(e, _)| e.as_str()).collect(),
                    balances: known.iter().map(|(_, b)| **b).collect(),
                };
                let found = update.execute(c)?;
                // Invariant: every cached account has a row; a batch that finds fewer is
                // rolled back rather than committed with balances missing.
                if found != known.len() {
                    return Err(db::DbError::Task(format!(
                        "{} balances to update, {found} accounts found: rolled back",
                        known.len()
                    )));
                }
            }
            let rows: Vec<_> = new
                .iter()
                .map(|(entity, balance)| {
                    (
                        accounts::entity.eq(entity.as_str()),
                        accounts::balance.eq(**balance),
                    )
                })
                .collect();
            for chunk in rows.chunks(INSERT_ROWS_MAX) {
                diesel::insert_into(accounts::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

/// `UPDATE accounts SET balance = ? WHERE entity = ?`, prepared once (the row must exist).
#[derive(Debug, Clone, Copy)]
struct SetBalance<'a> {
    entity: &'a str,
    balance: i64,
}

impl QueryId for SetBalance<'_> {
    type QueryId = SetBalance<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<DB> QueryFragment<DB> for SetBalance<'_>
where
    DB: Backend,
    i64: ToSql<BigInt, DB>,
    str: ToSql<Text, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE accounts SET balance = ");
        out.push_bind_param::<BigInt, i64>(&self.balance)?;
        out.push_sql(" WHERE entity = ");
        out.push_bind_param::<Text, str>(self.entity)?;
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for SetBalance<'_> {}

/// PostgreSQL: every changed balance of a batch in one statement.
#[derive(Debug, Default)]
struct SetBalances<'a> {
    entities: Vec<&'a str>,
    balances: Vec<i64>,
}

impl QueryId for SetBalances<'_> {
    type QueryId = SetBalances<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for SetBalances<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE accounts SET balance = v.balance FROM UNNEST(");
        out.push_bind_param::<Array<Text>, Vec<&str>>(&self.entities)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, Vec<i64>>(&self.balances)?;
        out.push_sql(") AS v(entity, balance) WHERE accounts.entity = v.entity");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for SetBalances<'_> {}

/// PostgreSQL: a batch's transfers in one statement, column by column.
#[derive(Debug, Default)]
struct InsertTransfers<'a> {
    seq: Vec<i64>,
    sender: Vec<&'a str>,
    recipient: Vec<&'a str>,
    amount: Vec<i64>,
    fee: Vec<i64>,
    transaction_id: Vec<Option<&'a str>>,
    time_ms: Vec<i64>,
    userid: Vec<Option<&'a str>>,
    from_name: Vec<Option<&'a str>>,
}

impl<'a> InsertTransfers<'a> {
    fn of(rows: &'a [NewTransfer]) -> Self {
        let mut columns = InsertTransfers::default();
        for row in rows {
            columns.seq.push(row.seq);
            columns.sender.push(&row.sender);
            columns.recipient.push(&row.recipient);
            columns.amount.push(row.amount);
            columns.fee.push(row.fee);
            columns.transaction_id.push(row.transaction_id.as_deref());
            columns.time_ms.push(row.time_ms);
            columns.userid.push(row.userid.as_deref());
            columns.from_name.push(row.from_name.as_deref());
        }
        columns
    }
}

impl QueryId for InsertTransfers<'_> {
    type QueryId = InsertTransfers<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for InsertTransfers<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO transfers (seq, sender, recipient, amount, fee, transaction_id, \
             time_ms, userid, from_name) SELECT * FROM UNNEST(",
        );
        out.push_bind_param::<Array<BigInt>, Vec<i64>>(&self.seq)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, Vec<&str>>(&self.sender)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, Vec<&str>>(&self.recipient)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, Vec<i64>>(&self.amount)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, Vec<i64>>(&self.fee)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, Vec<Option<&str>>>(&self.transaction_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, Vec<i64>>(&self.time_ms)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, Vec<Option<&str>>>(&self.userid)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, Vec<Option<&str>>>(&self.from_name)?;
        out.push_sql(")");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for InsertTransfers<'_> {}

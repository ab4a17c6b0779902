//! The idempotent command log every service that executes signed commands keeps (DESIGN
//! section 3): the answer to each successful (sender, counter) is stored with the hash of its
//! request, so a repetition replays the answer byte for byte and a reused counter with another
//! body is refused. One table, `commands`, in each service's own database.
//!
//! Invariant: [`record`] runs inside the caller's transaction, so a command's effects and its
//! stored answer commit together or not at all (the issuer writes its rows in the same group
//! commit as the transfers they answer).

use db::AnyConnection;
use diesel::prelude::*;
use protocol::EntityId;

diesel::table! {
    commands (counter, entity) {
        counter -> BigInt,
        entity -> Text,
        body_sha256 -> Text,
        status -> Integer,
        response -> Text,
    }
}

/// Rows per multi-row INSERT on PostgreSQL (each statement is a network round trip; its
/// parameters stay far below PostgreSQL's 65,535 limit).
pub const INSERT_ROWS_MAX: usize = 500;

/// A command's answer as first sent: replayed byte for byte on repetition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: String,
}

/// What the log knows of (sender, counter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The same request was answered before: send this again.
    Answered(StoredAnswer),
    /// The counter was used with a different body (`409 counter_reused`).
    CounterReused,
}

/// A counter too large for the log's BIGINT column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("counter {0} is too large")]
pub struct CounterTooLarge(pub u64);

/// One answered command, ready to insert.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = commands)]
pub struct CommandRow {
    counter: i64,
    entity: String,
    body_sha256: String,
    status: i32,
    response: String,
}

impl CommandRow {
    pub fn new(
        sender: &EntityId,
        counter: u64,
        body_sha256: &str,
        answer: &StoredAnswer,
    ) -> Result<CommandRow, CounterTooLarge> {
        Ok(CommandRow {
            counter: i64::try_from(counter).map_err(|_| CounterTooLarge(counter))?,
            entity: sender.to_string(),
            body_sha256: body_sha256.to_owned(),
            status: i32::from(answer.status),
            response: answer.body.clone(),
        })
    }
}

/// What the log holds for (sender, counter), if anything, judged against this request's
/// `body_sha256`.
pub fn lookup(
    conn: &mut AnyConnection,
    sender: &str,
    counter: u64,
    body_sha256: &str,
) -> QueryResult<Option<Seen>> {
    // A counter beyond BIGINT was never stored.
    let Ok(counter) = i64::try_from(counter) else {
        return Ok(None);
    };
    let row: Option<(String, i32, String)> = commands::table
        .find((counter, sender))
        .select((commands::body_sha256, commands::status, commands::response))
        .first(conn)
        .optional()?;
    Ok(row.map(|(hash, status, body)| {
        if hash == body_sha256 {
            Seen::Answered(StoredAnswer {
                status: u16::try_from(status).unwrap_or(200),
                body,
            })
        } else {
            Seen::CounterReused
        }
    }))
}

/// Why a command cannot be looked up or replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The counter was used with a different body (`409 counter_reused`).
    #[error("counter {0} was already used with a different body")]
    CounterReused(u64),
    /// Too large for the log: refused before any other check.
    #[error(transparent)]
    CounterTooLarge(#[from] CounterTooLarge),
    #[error(transparent)]
    Db(#[from] db::DbError),
}

/// Before executing a command: its stored answer if this very request was answered before
/// (send it again), `None` if the command is new, or an error for a reused or oversized
/// counter. Runs on the database's blocking pool.
pub async fn replay(
    database: &db::Database,
    sender: &EntityId,
    counter: u64,
    body_sha256: &str,
) -> Result<Option<StoredAnswer>, ReplayError> {
    i64::try_from(counter).map_err(|_| CounterTooLarge(counter))?;
    let (sender, hash) = (sender.to_string(), body_sha256.to_owned());
    let seen = database
        .run(move |conn| lookup(conn, &sender, counter, &hash).map_err(db::DbError::Query))
        .await?;
    match seen {
        None => Ok(None),
        Some(Seen::Answered(answer)) => Ok(Some(answer)),
        Some(Seen::CounterReused) => Err(ReplayError::CounterReused(counter)),
    }
}

/// Store answered commands, inside the caller's transaction.
pub fn record(conn: &mut AnyConnection, rows: &[CommandRow]) -> QueryResult<()> {
    match conn {
        // One row per statement: a single-row INSERT needs no statement journal, which a
        // multi-row one does (it costs more than the per-statement overhead saved).
        AnyConnection::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(commands::table)
                    .values(row)
                    .execute(c)?;
            }
        }
        AnyConnection::Postgresql(c) => {
            for chunk in rows.chunks(INSERT_ROWS_MAX) {
                diesel::insert_into(commands::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
    }
    Ok(())
}

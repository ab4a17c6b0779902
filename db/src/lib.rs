//! The one place that knows database connections.
//!
//! A [`Database`] is SQLite (the default: a file under the service's `--data` directory) or
//! PostgreSQL (`--database postgres://...`), behind one connection type, [`AnyConnection`], and one
//! pool. Each service embeds its own migrations (`migrations/<service>/{sqlite,postgres}`) and hands
//! them to [`Database::open`], which runs the pending ones before anything else touches the schema.
//!
//! Invariants:
//! - No domain logic lives here: no table of any service is named in this crate.
//! - Blocking database work never runs on async worker threads: [`Database::run`] moves the
//!   closure to tokio's blocking pool; dedicated writers get their own connection
//!   ([`Database::connect`]) and run on their own thread.
//! - SQLite connections are in WAL mode with `synchronous=FULL`, so a committed transaction
//!   survives a crash or power loss (ledgers rely on it).

mod cached;
mod gate;
pub use cached::{cached, Cached};

use std::path::Path;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

pub use diesel;

/// Readers in the pool; the ledger writer has its own connection on top.
pub const POOL_SIZE_MAX: u32 = 8;
/// How long a caller waits for a pooled connection before `pool_timeout`.
pub const POOL_WAIT_MS_MAX: u64 = 5_000;
/// How long SQLite waits on a lock held by another connection before `SQLITE_BUSY`.
pub const SQLITE_BUSY_MS_MAX: u64 = 5_000;

/// Page cache per SQLite connection, in KiB (SQLite's default is 2 MiB).
pub const SQLITE_CACHE_KIB: u64 = 64 * 1024;

/// The page cache per SQLite connection: [`SQLITE_CACHE_KIB`], or `LCP_SQLITE_CACHE_KIB` when
/// set to a number (a soak sets it small, so caches filling as databases grow do not hide a
/// leak; a small machine may too: each pooled connection may hold this much).
pub fn sqlite_cache_kib() -> u64 {
    std::env::var("LCP_SQLITE_CACHE_KIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(SQLITE_CACHE_KIB)
}
/// How often the background checkpointer copies the WAL back into a SQLite database. Commits
/// never checkpoint themselves (`wal_autocheckpoint = 0`): a checkpoint inside the ledger
/// writer's commit stalled every transfer waiting on it.
pub const SQLITE_CHECKPOINT_INTERVAL_MS: u64 = 250;
/// Past this WAL size the checkpointer runs a TRUNCATE checkpoint, which briefly blocks the
/// writer but resets the WAL: PASSIVE ones alone never catch up under constant load.
pub const SQLITE_WAL_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// One connection type over both backends; the diesel query builder works on it directly.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("no database connection free within the pool wait: {0}")]
    Pool(String),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("the blocking database task failed: {0}")]
    Task(String),
}

/// Which backend a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A service's migrations, one set per backend (SQL dialects differ). Build it where the
/// `embed_migrations!` constants are: `EmbeddedMigrations` is neither `Clone` nor `Debug`.
pub struct Migrations {
    pub sqlite: EmbeddedMigrations,
    pub postgres: EmbeddedMigrations,
}

/// Where the database is: a PostgreSQL URL, or a SQLite file path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub backend: Backend,
    /// The URL for PostgreSQL; the file path for SQLite.
    pub target: String,
    /// The page size a new SQLite file is created with; `None`: SQLite's default (4 KiB).
    /// Ignored for PostgreSQL and for SQLite files that already exist.
    pub sqlite_page_bytes: Option<u32>,
}

impl Location {
    /// `postgres://` and `postgresql://` are PostgreSQL; `sqlite://PATH` or a bare path is SQLite.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location {
                backend: Backend::Postgres,
                target: text.to_owned(),
                sqlite_page_bytes: None,
            }
        } else {
            Location {
                backend: Backend::Sqlite,
                target: text.strip_prefix("sqlite://").unwrap_or(text).to_owned(),
                sqlite_page_bytes: None,
            }
        }
    }

    /// The SQLite file `name` inside `data_dir`.
    pub fn sqlite_in(data_dir: &Path, name: &str) -> Location {
        Location {
            backend: Backend::Sqlite,
            target: data_dir.join(name).to_string_lossy().into_owned(),
            sqlite_page_bytes: None,
        }
    }

    /// Create a new SQLite file with `bytes`-byte pages (a power of two from 512 to 65536).
    /// Small pages suit a database whose commits each touch many pages a row at a time (the
    /// ledger: [`LEDGER_SQLITE_PAGE_BYTES`]), since a commit writes every page it touched whole.
    pub fn with_sqlite_page_bytes(mut self, bytes: u32) -> Location {
        self.sqlite_page_bytes = Some(bytes);
        self
    }

    /// For logs: the URL without any password.
    pub fn redacted(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite {}", self.target),
            Backend::Postgres => match (self.target.find("://"), self.target.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    format!("{}://***{}", &self.target[..scheme_end], &self.target[at..])
                }
                _ => self.target.clone(),
            },
        }
    }
}

/// Opens connections for the pool and for dedicated writers, with the per-backend settings.
#[derive(Debug, Clone)]
pub struct Manager {
    location: Location,
}

/// The page size of the issuer's ledger file (see [`Location::with_sqlite_page_bytes`]):
/// a third of the bytes written per transfer of 4 KiB pages (issue 21, docs/BENCHMARKS.md).
pub const LEDGER_SQLITE_PAGE_BYTES: u32 = 1024;

impl Manager {
    fn open(&self) -> Result<AnyConnection, DbError> {
        match self.location.backend {
            Backend::Postgres => PgConnection::establish(&self.location.target)
                .map(AnyConnection::Postgresql)
                .map_err(|e| DbError::Connect(format!("{}: {e}", self.location.redacted()))),
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.location.target)
                    .map_err(|e| DbError::Connect(format!("{}: {e}", self.location.redacted())))?;
                // WAL lets readers run beside the one writer; FULL sync makes every commit durable.
                // The page size must come first: it applies to a new file only, and setting
                // WAL writes the file's first page.
                let page_size = match self.location.sqlite_page_bytes {
                    Some(bytes) if bytes.is_power_of_two() && (512..=65_536).contains(&bytes) => {
                        format!("PRAGMA page_size = {bytes};")
                    }
                    Some(bytes) => {
                        // SQLite would ignore it too; say so rather than leave it unexplained.
                        tracing::warn!(bytes, "not a SQLite page size (a power of two from 512 to 65536): SQLite's default kept");
                        String::new()
                    }
                    None => String::new(),
                };
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_MS_MAX};
                     {page_size}
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = FULL;
                     PRAGMA foreign_keys = ON;
                     PRAGMA cache_size = -{};
                     PRAGMA wal_autocheckpoint = 0;",
                    sqlite_cache_kib()
                ))
                .map_err(|e| DbError::Connect(format!("sqlite settings: {e}")))?;
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = AnyConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, r2d2::Error> {
        self.open().map_err(|e| {
            r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(e.to_string()))
        })
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

pub type PooledConnection = ::r2d2::PooledConnection<Manager>;

/// A migrated database with a pool of connections.
#[derive(Clone)]
pub struct Database {
    manager: Manager,
    pool: ::r2d2::Pool<Manager>,
    /// The SQLite checkpointer runs while any clone of this is alive.
    _alive: std::sync::Arc<()>,
    /// Pooled writers take turns here rather than in SQLite's sleeping busy handler.
    gate: std::sync::Arc<gate::WriteGate>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", self.manager.location.redacted())
    }
}

impl Database {
    /// Connect, run pending migrations, and build the pool. Blocking: call before serving, or
    /// from a blocking thread.
    pub fn open(location: Location, migrations: Migrations) -> Result<Database, DbError> {
        let manager = Manager { location };
        let mut conn = manager.open()?;
        run_migrations(&mut conn, migrations)?;
        drop(conn);
        // r2d2 checks a connection (`SELECT 1`) each time it is taken from the pool. A
        // PostgreSQL connection can break (a server restart) and the check replaces it
        // unseen; a SQLite connection is a file handle that does not, so there the check
        // would only be one more statement parsed per `run`.
        let check_connections = manager.location.backend != Backend::Sqlite;
        let pool = ::r2d2::Pool::builder()
            .max_size(POOL_SIZE_MAX)
            .min_idle(Some(1))
            .test_on_check_out(check_connections)
            .connection_timeout(Duration::from_millis(POOL_WAIT_MS_MAX))
            .build(manager.clone())
            .map_err(|e| DbError::Pool(e.to_string()))?;
        let alive = std::sync::Arc::new(());
        if manager.location.backend == Backend::Sqlite {
            let wal = std::path::PathBuf::from(format!("{}-wal", manager.location.target));
            start_checkpointer(manager.open()?, wal, std::sync::Arc::downgrade(&alive))?;
        }
        Ok(Database {
            manager,
            pool,
            _alive: alive,
            gate: std::sync::Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.manager.location.backend
    }

    pub fn location(&self) -> &Location {
        &self.manager.location
    }

    /// A connection of its own, outside the pool: for a dedicated writer thread.
    pub fn connect(&self) -> Result<AnyConnection, DbError> {
        self.manager.open()
    }

    /// A pooled connection. Blocking: only from blocking threads.
    pub fn get(&self) -> Result<PooledConnection, DbError> {
        self.pool.get().map_err(|e| DbError::Pool(e.to_string()))
    }

    /// Run `work` with a pooled connection on tokio's blocking pool.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, E> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.get()?;
            // Write transactions on this thread take turns at the database's gate (SQLite).
            let _bound = (db.backend() == Backend::Sqlite).then(|| gate::bind(db.gate.clone()));
            work(&mut conn)
        })
        .await
        .map_err(|e| E::from(DbError::Task(e.to_string())))?
    }
}

/// Run `work` in a write transaction: `BEGIN IMMEDIATE` on SQLite, so the write lock is taken
/// up front. A deferred transaction that reads first fails at once with SQLITE_BUSY_SNAPSHOT
/// when a checkpoint resets the WAL before its first write; an immediate one waits its turn.
/// Commits when `work` succeeds; rolls back otherwise.
pub fn write_transaction<T, E>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbError>,
{
    let (begin, _pass) = match conn {
        // Held until the transaction ends: see `gate`.
        AnyConnection::Sqlite(_) => ("BEGIN IMMEDIATE", Some(gate::enter())),
        AnyConnection::Postgresql(_) => ("BEGIN", None),
    };
    conn.batch_execute(begin)
        .map_err(|e| E::from(DbError::Query(e)))?;
    match work(conn) {
        Ok(value) => {
            if let Err(e) = conn.batch_execute("COMMIT") {
                // A failed COMMIT may leave the transaction open; close it so the next one starts clean.
                let _ = conn.batch_execute("ROLLBACK");
                return Err(E::from(DbError::Query(e)));
            }
            Ok(value)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

/// Inside a write transaction: wait until no other transaction holds the turn named `name`,
/// then hold it until this one ends. For decisions made from several reads that another
/// transaction could change in between (an accept of a payword chain, a record chain's next
/// block). On SQLite a write transaction already runs alone (`BEGIN IMMEDIATE`), so this
/// does nothing; on PostgreSQL (READ COMMITTED, each statement reads the latest commit) it
/// takes a transaction-scoped advisory lock on the name's hash (two names sharing a hash
/// only take turns they did not need).
pub fn take_turn(conn: &mut AnyConnection, name: &str) -> Result<(), DbError> {
    if let AnyConnection::Postgresql(pg) = conn {
        use diesel::RunQueryDsl;
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(name)
            .execute(pg)?;
    }
    Ok(())
}

/// Run `insert` inside the caller's transaction, in a savepoint: `Ok(false)` when it hit a
/// unique constraint (another transaction inserted the row first: the savepoint is rolled
/// back and the caller's transaction goes on, to update that row instead), `Ok(true)` when
/// it inserted. For a row made on first use that two PostgreSQL connections may both make.
pub fn insert_unless_taken(
    conn: &mut AnyConnection,
    insert: impl FnOnce(&mut AnyConnection) -> diesel::QueryResult<usize>,
) -> diesel::QueryResult<bool> {
    use diesel::result::{DatabaseErrorKind, Error};
    conn.batch_execute("SAVEPOINT insert_unless_taken")?;
    match insert(conn) {
        Ok(_) => {
            conn.batch_execute("RELEASE SAVEPOINT insert_unless_taken")?;
            Ok(true)
        }
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
            conn.batch_execute("ROLLBACK TO SAVEPOINT insert_unless_taken")?;
            conn.batch_execute("RELEASE SAVEPOINT insert_unless_taken")?;
            Ok(false)
        }
        Err(e) => {
            // The caller's transaction rolls back on this error; the savepoint goes with it.
            Err(e)
        }
    }
}

/// [`write_transaction`] whose commit survives the process being killed but may be lost with
/// the last moments before a power cut: SQLite commits it with `synchronous = NORMAL` (the WAL
/// is written, not fsynced), PostgreSQL with `synchronous_commit = off`. For records whose loss
/// costs only their owner a little and never another party, such as a storage agent's charge
/// for a read (a lost one is a read the buyer got free).
pub fn relaxed_write_transaction<T, E>(
    conn: &mut AnyConnection,
    work: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<DbError>,
{
    match conn {
        AnyConnection::Sqlite(_) => {
            conn.batch_execute("PRAGMA synchronous = NORMAL")
                .map_err(|e| E::from(DbError::Query(e)))?;
            let result = write_transaction(conn, work);
            // Every other transaction on this pooled connection must stay fully durable.
            if let Err(e) = conn.batch_execute("PRAGMA synchronous = FULL") {
                // Not restored: poison the connection's use rather than hand out a weaker one.
                return Err(E::from(DbError::Query(e)));
            }
            result
        }
        AnyConnection::Postgresql(_) => write_transaction(conn, |conn| {
            conn.batch_execute("SET LOCAL synchronous_commit = off")
                .map_err(|e| E::from(DbError::Query(e)))?;
            work(conn)
        }),
    }
}

/// Copy the WAL back into the database file in the background until every `Database` clone is
/// dropped: PASSIVE (never blocks the writer or readers) while the WAL is small, TRUNCATE when it
/// passes `SQLITE_WAL_BYTES_MAX`.
fn start_checkpointer(
    mut conn: AnyConnection,
    wal: std::path::PathBuf,
    alive: std::sync::Weak<()>,
) -> Result<(), DbError> {
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS));
                let wal_bytes = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                let mode = if wal_bytes > SQLITE_WAL_BYTES_MAX {
                    "TRUNCATE"
                } else {
                    "PASSIVE"
                };
                if let Err(e) = conn.batch_execute(&format!("PRAGMA wal_checkpoint({mode})")) {
                    tracing::warn!(error = %e, "SQLite checkpoint failed; will retry");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| DbError::Connect(format!("cannot start the SQLite checkpointer: {e}")))
}

fn run_migrations(conn: &mut AnyConnection, migrations: Migrations) -> Result<(), DbError> {
    let result = match conn {
        AnyConnection::Sqlite(c) => c.run_pending_migrations(migrations.sqlite).map(|v| v.len()),
        AnyConnection::Postgresql(c) => c
            .run_pending_migrations(migrations.postgres)
            .map(|v| v.len()),
    };
    let applied = result.map_err(|e| DbError::Migration(e.to_string()))?;
    if applied > 0 {
        tracing::info!(applied, "database migrations applied");
    }
    Ok(())
}

#[cfg(any(test, feature = "testing"))]
pub mod testing {
    //! Helpers for tests that run against SQLite and, when `TEST_DATABASE_URL` is set, PostgreSQL.

    use super::*;

    /// The PostgreSQL URL for tests, or `None` to skip PostgreSQL variants. When `CI=true` and
    /// `TEST_DATABASE_URL` is set but unreachable, panics so CI fails instead of skipping.
    pub fn postgres_url() -> Option<String> {
        let url = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        match PgConnection::establish(&url) {
            Ok(_) => Some(url),
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true and TEST_DATABASE_URL is unreachable: {e}");
                }
                eprintln!("skipping PostgreSQL: TEST_DATABASE_URL unreachable: {e}");
                None
            }
        }
    }

    /// A test's database: SQLite (`None`: the service's default file), or a fresh PostgreSQL
    /// schema dropped with it.
    pub struct TestDb(Option<PgTestSchema>);

    impl TestDb {
        /// The `--database` URL to pass, or `None` for SQLite.
        pub fn url(&self) -> Option<String> {
            self.0.as_ref().map(|s| s.url.clone())
        }
    }

    /// SQLite always; PostgreSQL too when TEST_DATABASE_URL is set (under CI=true it must be
    /// reachable: `postgres_url` panics otherwise).
    pub fn backends(label: &str) -> Vec<(&'static str, TestDb)> {
        let mut out = vec![("sqlite", TestDb(None))];
        if let Some(base) = postgres_url() {
            let schema = fresh_postgres(&base, label)
                .unwrap_or_else(|e| panic!("cannot make a PostgreSQL schema for {label}: {e}"));
            out.push(("postgres", TestDb(Some(schema))));
        }
        out
    }

    /// A fresh, empty PostgreSQL schema for one test, dropped (with everything in it) when this
    /// guard is dropped. Its URL pins `search_path` to the schema, so tests never see each
    /// other's tables.
    pub struct PgTestSchema {
        pub url: String,
        base_url: String,
        schema: String,
    }

    impl Drop for PgTestSchema {
        fn drop(&mut self) {
            if let Ok(mut conn) = PgConnection::establish(&self.base_url) {
                let _ =
                    conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        }
    }

    pub fn fresh_postgres(base_url: &str, label: &str) -> Result<PgTestSchema, DbError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let clean: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(30)
            .collect();
        let schema = format!(
            "t_{}_{}_{}",
            clean.to_lowercase(),
            std::process::id(),
            nanos % 1_000_000_000
        );
        let mut conn =
            PgConnection::establish(base_url).map_err(|e| DbError::Connect(e.to_string()))?;
        conn.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
        let sep = if base_url.contains('?') { '&' } else { '?' };
        Ok(PgTestSchema {
            url: format!("{base_url}{sep}options=-csearch_path%3D{schema}"),
            base_url: base_url.to_owned(),
            schema,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_and_redact() {
        let pg = Location::parse("postgres://user:secret@127.0.0.1:5432/db");
        assert_eq!(pg.backend, Backend::Postgres);
        assert!(!pg.redacted().contains("secret"));
        assert_eq!(Location::parse("sqlite:///tmp/x.db").target, "/tmp/x.db");
        assert_eq!(Location::parse("/tmp/x.db").backend, Backend::Sqlite);
    }

    #[test]
    fn sqlite_connections_are_wal_and_full_sync() {
        use diesel::sql_types::{BigInt, Text};
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Mode {
            #[diesel(sql_type = Text)]
            journal_mode: String,
        }
        #[derive(diesel::QueryableByName)]
        struct Sync {
            #[diesel(sql_type = BigInt)]
            synchronous: i64,
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let manager = Manager {
            location: Location::sqlite_in(dir.path(), "t.sqlite"),
        };
        let AnyConnection::Sqlite(mut conn) = manager.open().expect("open") else {
            panic!("expected sqlite");
        };
        let mode: Mode = diesel::sql_query("PRAGMA journal_mode")
            .get_result(&mut conn)
            .expect("pragma");
        assert_eq!(mode.journal_mode, "wal");
        let sync: Sync = diesel::sql_query("PRAGMA synchronous")
            .get_result(&mut conn)
            .expect("pragma");
        assert_eq!(sync.synchronous, 2, "2 = FULL");
    }

    #[test]
    fn a_new_file_takes_the_page_size_asked_and_an_old_one_keeps_its_own() {
        use diesel::sql_types::BigInt;
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Page {
            #[diesel(sql_type = BigInt)]
            page_size: i64,
        }
        let page_size = |location: Location| {
            let AnyConnection::Sqlite(mut conn) = (Manager { location }).open().expect("open")
            else {
                panic!("expected sqlite");
            };
            diesel::sql_query("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                .execute(&mut conn)
                .expect("create");
            diesel::sql_query("PRAGMA page_size")
                .get_result::<Page>(&mut conn)
                .expect("pragma")
                .page_size
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let small = Location::sqlite_in(dir.path(), "small.sqlite").with_sqlite_page_bytes(1024);
        assert_eq!(page_size(small.clone()), 1024);
        let plain = Location::sqlite_in(dir.path(), "plain.sqlite");
        assert_eq!(page_size(plain.clone()), 4096, "SQLite's default");
        // An existing file keeps its pages whatever is asked later (WAL cannot change them).
        assert_eq!(page_size(plain.with_sqlite_page_bytes(1024)), 4096);
        // Not a power of two: not asked at all.
        let odd = Location::sqlite_in(dir.path(), "odd.sqlite").with_sqlite_page_bytes(1000);
        assert_eq!(page_size(odd), 4096);
    }
}

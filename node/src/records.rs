//! Records (DESIGN section 11) for every server: its own chain of half-blocks, the blocks of
//! others it signed with or was shown, and the fraud proofs it found; the HTTP side
//! (`POST /v1/records`, `GET /v1/records`, `GET /v1/frauds`: [`routes`]).
//!
//! Tables (each service's migrations make them): `record_blocks` (every half-block held,
//! ours and others', keyed by chain and sequence number) and `record_frauds` (proofs, in the
//! order found, `seq` their cursor).
//!
//! Invariants:
//! - Our own chain never forks: appends take [`RecordBook`]'s turn and then the head in one
//!   write transaction, and the primary key refuses a second block at one place.
//! - Every block kept was validated (signature and fields) before; a block that conflicts
//!   with one held (another block at its place, or a link that does not hold with a neighbour)
//!   is not kept: the pair becomes a proof instead.
//! - We agree to a proposal once: the same proposal again answers the same agreement, so a
//!   proposer retrying after a lost answer never makes us write twice.
//! - We agree only to what our own books say: the service's check runs in the transaction
//!   that writes the agreement. A refused proposal of a counter-party we deal with is kept
//!   (it is in the proposer's chain); a stranger's is not.

use std::sync::Arc;

use db::{AnyConnection, DbError};
use diesel::prelude::*;
use protocol::record::{
    check_agreement, BlockFields, HalfBlock, RecordError, RecordFraud, RecordFraudsPage,
    RecordsPage, GENESIS_HASH, RECORDS_PAGE_MAX, RECORD_FRAUDS_PAGE_MAX,
};
use protocol::KeyPair;

diesel::table! {
    record_blocks (public_key, sequence_number) {
        public_key -> Text,
        sequence_number -> BigInt,
        link_public_key -> Text,
        link_sequence_number -> BigInt,
        previous_hash -> Text,
        kind -> Text,
        transaction -> Text,
        timestamp_ms -> BigInt,
        signature -> Text,
        hash -> Text,
    }
}

diesel::table! {
    record_frauds (seq) {
        seq -> BigInt,
        public_key -> Text,
        sequence_number -> BigInt,
        kind -> Text,
        proof -> Text,
    }
}

/// Why a record operation failed; each maps to a status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The proposal is not what this party's books say (or not addressed to it).
    #[error("refused to agree: {0}")]
    Refused(String),
    /// The proposer forked its chain; the proof is kept and served.
    #[error("the proposer's chain forks at sequence {0}: refused, and the proof kept")]
    Fork(u64),
    #[error("a number is out of range: {0}")]
    Range(&'static str),
    #[error("{0}")]
    Query(String),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error(transparent)]
    Body(#[from] crate::http::BodyError),
    #[error(transparent)]
    Auth(#[from] protocol::AuthError),
    #[error("database: {0}")]
    Db(#[from] DbError),
}

impl From<crate::service::InvalidJson> for RecordsError {
    fn from(e: crate::service::InvalidJson) -> Self {
        RecordsError::InvalidJson(e.0)
    }
}

impl From<diesel::result::Error> for RecordsError {
    fn from(e: diesel::result::Error) -> Self {
        RecordsError::Db(DbError::Query(e))
    }
}

impl crate::service::ServiceError for RecordsError {
    fn status(&self) -> actix_web::http::StatusCode {
        use actix_web::http::StatusCode;
        match self {
            RecordsError::Record(_)
            | RecordsError::Range(_)
            | RecordsError::Query(_)
            | RecordsError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            RecordsError::Refused(_) | RecordsError::Fork(_) => StatusCode::CONFLICT,
            RecordsError::Body(e) => e.status(),
            RecordsError::Auth(protocol::AuthError::InvalidHeader(_)) => StatusCode::BAD_REQUEST,
            RecordsError::Auth(_) => StatusCode::UNAUTHORIZED,
            RecordsError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            RecordsError::Record(e) => e.code(),
            RecordsError::Refused(_) => "record_refused",
            RecordsError::Fork(_) => "record_fork",
            RecordsError::Range(_) | RecordsError::Query(_) => "invalid_query",
            RecordsError::InvalidJson(_) => "invalid_json",
            RecordsError::Body(e) => e.code(),
            RecordsError::Auth(e) => e.code(),
            RecordsError::Db(_) => "unavailable",
        }
    }
}

fn to_i64(n: u64, what: &'static str) -> Result<i64, RecordsError> {
    i64::try_from(n).map_err(|_| RecordsError::Range(what))
}

type Row = (
    String,
    i64,
    String,
    i64,
    String,
    String,
    String,
    i64,
    String,
    String,
);

fn block_of(row: Row) -> HalfBlock {
    let (pk, seq, link_pk, link_seq, previous_hash, kind, transaction, ts, signature, _hash) = row;
    HalfBlock {
        public_key: pk,
        sequence_number: seq.unsigned_abs(),
        link_public_key: link_pk,
        link_sequence_number: link_seq.unsigned_abs(),
        previous_hash,
        kind,
        transaction,
        timestamp: ts.unsigned_abs(),
        signature,
    }
}

fn insert(conn: &mut AnyConnection, b: &HalfBlock) -> Result<(), RecordsError> {
    diesel::insert_into(record_blocks::table)
        .values((
            record_blocks::public_key.eq(&b.public_key),
            record_blocks::sequence_number.eq(to_i64(b.sequence_number, "sequence_number")?),
            record_blocks::link_public_key.eq(&b.link_public_key),
            record_blocks::link_sequence_number
                .eq(to_i64(b.link_sequence_number, "link_sequence_number")?),
            record_blocks::previous_hash.eq(&b.previous_hash),
            record_blocks::kind.eq(&b.kind),
            record_blocks::transaction.eq(&b.transaction),
            record_blocks::timestamp_ms.eq(to_i64(b.timestamp, "timestamp")?),
            record_blocks::signature.eq(&b.signature),
            record_blocks::hash.eq(b.hash()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The block of chain `public_key` at `sequence`, if held.
pub fn block_at(
    conn: &mut AnyConnection,
    public_key: &str,
    sequence: u64,
) -> Result<Option<HalfBlock>, RecordsError> {
    let row: Option<Row> = record_blocks::table
        .find((public_key, to_i64(sequence, "sequence_number")?))
        .first(conn)
        .optional()?;
    Ok(row.map(block_of))
}

/// The highest block of chain `public_key` held here.
pub fn head(conn: &mut AnyConnection, public_key: &str) -> Result<Option<HalfBlock>, RecordsError> {
    let row: Option<Row> = record_blocks::table
        .filter(record_blocks::public_key.eq(public_key))
        .order(record_blocks::sequence_number.desc())
        .first(conn)
        .optional()?;
    Ok(row.map(block_of))
}

/// What [`keep`] did with a block.
#[derive(Debug)]
pub enum Kept {
    /// Stored.
    New,
    /// Already held, the same.
    Known,
    /// It conflicts with a block held: not stored; the proof is kept.
    Fork(Box<RecordFraud>),
}

/// Keep `block` (validated by the caller), unless it conflicts with a block held: then keep
/// the proof instead.
pub fn keep(conn: &mut AnyConnection, block: &HalfBlock) -> Result<Kept, RecordsError> {
    // The chain's blocks around `seq` are read, then one is written: blocks of one chain kept
    // at once (the crawl reads several agents together; market replicas share a database)
    // must see each other, or two that conflict are both stored and no proof is made.
    take_chains_turn(conn, &block.public_key)?;
    let seq = block.sequence_number;
    let mut neighbours = Vec::with_capacity(3);
    if let Some(same) = block_at(conn, &block.public_key, seq)? {
        if &same == block {
            return Ok(Kept::Known);
        }
        neighbours.push(same);
    }
    if seq > 1 {
        neighbours.extend(block_at(conn, &block.public_key, seq - 1)?);
    }
    neighbours.extend(block_at(conn, &block.public_key, seq.saturating_add(1))?);
    for other in &neighbours {
        if let Some(proof) = RecordFraud::between(other, block) {
            note_fraud(conn, &proof)?;
            return Ok(Kept::Fork(Box::new(proof)));
        }
    }
    insert(conn, block)?;
    Ok(Kept::New)
}

/// The turn of `public_key`'s record chain ([`db::take_turn`]). Taken before the turn of the
/// fraud proofs whenever a transaction takes both.
fn take_chains_turn(conn: &mut AnyConnection, public_key: &str) -> Result<(), DbError> {
    db::take_turn(conn, &format!("record chain {public_key}"))
}

/// Keep `proof` (verified by the caller) unless one of its kind at its place is kept. Inside
/// a write transaction: the proof's number is read, then written.
pub fn note_fraud(conn: &mut AnyConnection, proof: &RecordFraud) -> Result<bool, RecordsError> {
    let kind = serde_json::to_value(proof.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let at = to_i64(proof.sequence_number, "sequence_number")?;
    // Proofs are numbered MAX(seq) + 1: two noted at once must not take the same number.
    db::take_turn(conn, "record frauds")?;
    let known: i64 = record_frauds::table
        .filter(record_frauds::public_key.eq(&proof.public_key))
        .filter(record_frauds::sequence_number.eq(at))
        .filter(record_frauds::kind.eq(&kind))
        .count()
        .get_result(conn)?;
    if known > 0 {
        return Ok(false);
    }
    let last: Option<i64> = record_frauds::table
        .select(diesel::dsl::max(record_frauds::seq))
        .first(conn)?;
    let text = serde_json::to_string(proof).map_err(|e| DbError::Task(e.to_string()))?;
    diesel::insert_into(record_frauds::table)
        .values((
            record_frauds::seq.eq(last.unwrap_or(0) + 1),
            record_frauds::public_key.eq(&proof.public_key),
            record_frauds::sequence_number.eq(at),
            record_frauds::kind.eq(kind),
            record_frauds::proof.eq(text),
        ))
        .execute(conn)?;
    tracing::warn!(
        entity = proof.public_key,
        sequence = proof.sequence_number,
        kind = ?proof.kind,
        "a record fraud proof: the entity forked its chain"
    );
    Ok(true)
}

/// Whether a proof against `public_key` is kept here.
pub fn convicted(conn: &mut AnyConnection, public_key: &str) -> Result<bool, RecordsError> {
    let n: i64 = record_frauds::table
        .filter(record_frauds::public_key.eq(public_key))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Every entity with a proof kept against it.
pub fn convicts(conn: &mut AnyConnection) -> Result<Vec<String>, RecordsError> {
    Ok(record_frauds::table
        .select(record_frauds::public_key)
        .distinct()
        .load(conn)?)
}

/// The blocks of `public_key` held here from sequence `from` on, at most `limit`.
pub fn page(
    conn: &mut AnyConnection,
    public_key: &str,
    from: u64,
    limit: usize,
) -> Result<RecordsPage, RecordsError> {
    let rows: Vec<Row> = record_blocks::table
        .filter(record_blocks::public_key.eq(public_key))
        .filter(record_blocks::sequence_number.ge(to_i64(from, "from")?))
        .order(record_blocks::sequence_number)
        .limit(limit.min(RECORDS_PAGE_MAX) as i64)
        .load(conn)?;
    let head = head(conn, public_key)?.map_or(0, |b| b.sequence_number);
    Ok(RecordsPage {
        blocks: rows.into_iter().map(block_of).collect(),
        head,
    })
}

/// The proofs kept after cursor `after`, at most [`RECORD_FRAUDS_PAGE_MAX`].
pub fn frauds_page(conn: &mut AnyConnection, after: u64) -> Result<RecordFraudsPage, RecordsError> {
    let rows: Vec<(i64, String)> = record_frauds::table
        .select((record_frauds::seq, record_frauds::proof))
        .filter(record_frauds::seq.gt(to_i64(after, "after")?))
        .order(record_frauds::seq)
        .limit(RECORD_FRAUDS_PAGE_MAX as i64)
        .load(conn)?;
    let next = rows.last().map_or(after, |(s, _)| s.unsigned_abs());
    let frauds = rows
        .into_iter()
        .filter_map(|(_, text)| serde_json::from_str(&text).ok())
        .collect();
    Ok(RecordFraudsPage { frauds, next })
}

/// Our agreement to `proposal`, if we gave one.
fn agreement_to(
    conn: &mut AnyConnection,
    me: &str,
    proposal: &HalfBlock,
) -> Result<Option<HalfBlock>, RecordsError> {
    let row: Option<Row> = record_blocks::table
        .filter(record_blocks::public_key.eq(me))
        .filter(record_blocks::link_public_key.eq(&proposal.public_key))
        .filter(
            record_blocks::link_sequence_number
                .eq(to_i64(proposal.sequence_number, "sequence_number")?),
        )
        .first(conn)
        .optional()?;
    Ok(row.map(block_of))
}

/// Append a block to `key`'s own chain (inside the caller's write transaction, holding the
/// book's turn).
fn append(
    conn: &mut AnyConnection,
    key: &KeyPair,
    make: impl FnOnce(u64, &str) -> HalfBlock,
) -> Result<HalfBlock, RecordsError> {
    let head = head(conn, key.entity().as_str())?;
    let (seq, previous) = match &head {
        Some(h) => (h.sequence_number + 1, h.hash()),
        None => (1, GENESIS_HASH.to_owned()),
    };
    let block = make(seq, &previous);
    debug_assert_eq!(block.public_key, key.entity().as_str());
    insert(conn, &block)?;
    Ok(block)
}

/// Why a service does not agree to a proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    /// Keep the proposal anyway (it is a valid block of the proposer's chain): for a
    /// counter-party the service deals with, so that its copy of the proposer's chain has no
    /// hole (a proposer on a fresh machine continues from it). Strangers' blocks are not kept.
    pub keep_block: bool,
}

/// How a service checks a proposal against its own books before agreeing (in the agreeing
/// transaction).
pub type BooksCheck =
    Arc<dyn Fn(&mut AnyConnection, &HalfBlock) -> Result<(), Refusal> + Send + Sync>;

/// What the agreeing transaction decided; each commits.
enum Decision {
    Agreed(HalfBlock),
    Fork(u64),
    Refused(String),
}

/// A service's record book whose check is `books` (the service's own books: `Err` says why
/// it does not agree), keeping a refused proposal when `deals_with` the proposer (see
/// [`Refusal::keep_block`]).
pub fn book_checking(
    db: db::Database,
    key: Arc<KeyPair>,
    books: fn(&mut AnyConnection, &HalfBlock) -> Result<(), String>,
    deals_with: fn(&mut AnyConnection, &str) -> bool,
) -> Arc<RecordBook> {
    Arc::new(RecordBook::checking(db, key, books, deals_with))
}

/// What a service writes to its own books when it agrees (in the agreeing transaction, after
/// the agreement is appended): an error rolls the agreement back.
pub type AgreeHook = fn(&mut AnyConnection, &HalfBlock) -> diesel::QueryResult<()>;

/// A server's records: its key, its database and how it checks what it agrees to.
pub struct RecordBook {
    pub db: db::Database,
    pub key: Arc<KeyPair>,
    /// Read-only: a refused or forked proposal must leave the service's books as they were.
    check: BooksCheck,
    /// Writes that go with an agreement ([`RecordBook::on_agree`]).
    on_agree: Option<AgreeHook>,
    /// One append to our own chain at a time (the head is read, then written).
    turn: tokio::sync::Mutex<()>,
}

impl RecordBook {
    pub fn new(db: db::Database, key: Arc<KeyPair>, check: BooksCheck) -> RecordBook {
        RecordBook {
            db,
            key,
            check,
            on_agree: None,
            turn: tokio::sync::Mutex::new(()),
        }
    }

    /// A record book whose check is `books` (see [`book_checking`]).
    pub fn checking(
        db: db::Database,
        key: Arc<KeyPair>,
        books: fn(&mut AnyConnection, &HalfBlock) -> Result<(), String>,
        deals_with: fn(&mut AnyConnection, &str) -> bool,
    ) -> RecordBook {
        let check: BooksCheck = Arc::new(move |conn, proposal| {
            books(conn, proposal).map_err(|reason| Refusal {
                keep_block: deals_with(conn, &proposal.public_key),
                reason,
            })
        });
        RecordBook::new(db, key, check)
    }

    /// Run `hook` in every agreeing transaction once the agreement is appended (an agent
    /// marking the tokens a `tokens` record claims): it commits with the agreement and only
    /// with it, never with a refusal or a fork proof.
    pub fn on_agree(mut self, hook: AgreeHook) -> RecordBook {
        self.on_agree = Some(hook);
        self
    }

    /// Agree to `proposal` (`POST /v1/records`): check it (valid, addressed to us, not from a
    /// convicted entity, consistent with the proposer's blocks we hold, what our books say)
    /// and answer our agreement, written to our chain. The same proposal again answers the
    /// same agreement.
    pub async fn agree(&self, proposal: HalfBlock) -> Result<HalfBlock, RecordsError> {
        let me = self.key.entity().to_string();
        if proposal.link_public_key != me {
            return Err(RecordsError::Refused(
                "the proposal is addressed to another entity".into(),
            ));
        }
        if !proposal.is_proposal() {
            return Err(RecordsError::Refused(
                "an agreement is not answered (link_sequence_number must be 0)".into(),
            ));
        }
        let _turn = self.turn.lock().await;
        let (key, check, on_agree) = (self.key.clone(), self.check.clone(), self.on_agree);
        let decision = self
            .db
            .run(move |conn| {
                proposal.validate()?;
                db::write_transaction(conn, |conn| -> Result<Decision, RecordsError> {
                    if let Some(given) = agreement_to(conn, &me, &proposal)? {
                        let held = block_at(conn, &proposal.public_key, proposal.sequence_number)?;
                        if held.as_ref() == Some(&proposal) {
                            return Ok(Decision::Agreed(given));
                        }
                    }
                    if convicted(conn, &proposal.public_key)? {
                        return Ok(Decision::Refused(
                            "the proposer forked its chain before (a proof is kept)".into(),
                        ));
                    }
                    let refusal = match check(conn, &proposal) {
                        Ok(()) => None,
                        Err(r) if !r.keep_block => return Ok(Decision::Refused(r.reason)),
                        Err(r) => Some(r.reason),
                    };
                    match keep(conn, &proposal)? {
                        Kept::Fork(proof) => return Ok(Decision::Fork(proof.sequence_number)),
                        Kept::New | Kept::Known => {}
                    }
                    if let Some(reason) = refusal {
                        return Ok(Decision::Refused(reason));
                    }
                    let now = crate::now_ms();
                    let agreed = append(conn, &key, |seq, previous| {
                        HalfBlock::agree(&key, &proposal, seq, previous, now)
                    })?;
                    if let Some(hook) = on_agree {
                        hook(conn, &proposal)?;
                    }
                    Ok(Decision::Agreed(agreed))
                })
            })
            .await?;
        match decision {
            Decision::Agreed(block) => Ok(block),
            Decision::Fork(seq) => Err(RecordsError::Fork(seq)),
            Decision::Refused(reason) => Err(RecordsError::Refused(reason)),
        }
    }

    /// Append a proposal of `kind` and `transaction` to `link_public_key` to our chain
    /// (a vendor proposing to its issuer). Durable before it is answered.
    pub async fn propose(
        &self,
        link_public_key: &str,
        kind: &str,
        transaction: &str,
    ) -> Result<HalfBlock, RecordsError> {
        let _turn = self.turn.lock().await;
        let key = self.key.clone();
        let (link, kind, transaction) = (
            link_public_key.to_owned(),
            kind.to_owned(),
            transaction.to_owned(),
        );
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let now = crate::now_ms();
                    append(conn, &key, |seq, previous| {
                        HalfBlock::sign(
                            &key,
                            BlockFields {
                                sequence_number: seq,
                                link_public_key: &link,
                                link_sequence_number: 0,
                                previous_hash: previous,
                                kind: &kind,
                                transaction: &transaction,
                                timestamp: now,
                            },
                        )
                    })
                })
            })
            .await
    }

    /// Keep a counter-party's `agreement` to our `proposal`.
    pub async fn note_agreement(
        &self,
        proposal: &HalfBlock,
        agreement: HalfBlock,
    ) -> Result<(), RecordsError> {
        let proposal = proposal.clone();
        self.db
            .run(move |conn| {
                agreement.validate()?;
                check_agreement(&proposal, &agreement)?;
                db::write_transaction(conn, |conn| match keep(conn, &agreement)? {
                    Kept::Fork(proof) => Err(RecordsError::Fork(proof.sequence_number)),
                    Kept::New | Kept::Known => Ok(()),
                })
            })
            .await
    }

    /// Check and keep blocks of others (a crawl): answers the proofs found.
    pub async fn keep_blocks(
        &self,
        blocks: Vec<HalfBlock>,
    ) -> Result<(usize, Vec<RecordFraud>), RecordsError> {
        self.db
            .run(move |conn| {
                let valid: Vec<HalfBlock> = blocks
                    .into_iter()
                    .filter(|b| b.validate().is_ok())
                    .collect();
                db::write_transaction(conn, |conn| {
                    // Every chain's turn at once, in one order (`keep` takes it again, which
                    // PostgreSQL grants at once to the holder): two crawls holding each
                    // other's counter-party chains would otherwise wait on each other.
                    let mut chains: Vec<&str> =
                        valid.iter().map(|b| b.public_key.as_str()).collect();
                    chains.sort_unstable();
                    chains.dedup();
                    for chain in chains {
                        take_chains_turn(conn, chain)?;
                    }
                    let (mut new, mut proofs) = (0, Vec::new());
                    for b in &valid {
                        match keep(conn, b)? {
                            Kept::New => new += 1,
                            Kept::Known => {}
                            Kept::Fork(proof) => proofs.push(*proof),
                        }
                    }
                    Ok((new, proofs))
                })
            })
            .await
    }

    /// `GET /v1/records?public_key=X&from=S`.
    pub async fn page(&self, public_key: String, from: u64) -> Result<RecordsPage, RecordsError> {
        self.db
            .run(move |conn| page(conn, &public_key, from, RECORDS_PAGE_MAX))
            .await
    }

    /// `GET /v1/frauds?after=S`.
    pub async fn frauds(&self, after: u64) -> Result<RecordFraudsPage, RecordsError> {
        self.db.run(move |conn| frauds_page(conn, after)).await
    }

    /// Our own proposals that have no agreement held yet (to send again), oldest first.
    pub async fn unanswered(&self, limit: usize) -> Result<Vec<HalfBlock>, RecordsError> {
        let me = self.key.entity().to_string();
        self.db
            .run(move |conn| {
                let mine: Vec<Row> = record_blocks::table
                    .filter(record_blocks::public_key.eq(&me))
                    .filter(record_blocks::link_sequence_number.eq(0))
                    .order(record_blocks::sequence_number)
                    .load(conn)?;
                let mut out = Vec::new();
                for p in mine.into_iter().map(block_of) {
                    let answered: i64 = record_blocks::table
                        .filter(record_blocks::public_key.eq(&p.link_public_key))
                        .filter(record_blocks::link_public_key.eq(&me))
                        .filter(
                            record_blocks::link_sequence_number
                                .eq(to_i64(p.sequence_number, "sequence_number")?),
                        )
                        .count()
                        .get_result(conn)?;
                    if answered == 0 {
                        out.push(p);
                        if out.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }
}

/// Propose a deal of `kind` with `transaction` to the server `to` (a vendor to its issuer)
/// from `book`'s chain, send it, and keep the agreement. The proposal is in the chain before
/// it is sent; one not agreed now stays unanswered for [`resend_unanswered`].
pub async fn record_with(
    book: &RecordBook,
    to: &crate::client::SignedClient,
    kind: &str,
    transaction: &serde_json::Value,
) -> Result<HalfBlock, String> {
    let who = to.audience().await.map_err(|e| e.to_string())?.to_string();
    let proposal = book
        .propose(&who, kind, &transaction.to_string())
        .await
        .map_err(|e| e.to_string())?;
    send(book, to, &proposal).await
}

/// Send `book`'s unanswered proposals to `to` again (those whose counter-party it is, at
/// most [`RESEND_PER_CALL_MAX`]); answers how many are agreed now.
pub async fn resend_unanswered(
    book: &RecordBook,
    to: &crate::client::SignedClient,
) -> Result<usize, String> {
    let who = to.audience().await.map_err(|e| e.to_string())?.to_string();
    let mut agreed = 0;
    for p in book
        .unanswered(RESEND_PER_CALL_MAX)
        .await
        .map_err(|e| e.to_string())?
    {
        if p.link_public_key == who && send(book, to, &p).await.is_ok() {
            agreed += 1;
        }
    }
    Ok(agreed)
}

/// Record a payword redemption with `issuer` (DESIGN 11): a `redemption` proposal
/// (`counter`, `words`, `value`) the issuer agrees to from its command log, after sending
/// earlier unanswered ones again. Never fails the redemption: what is not agreed now waits.
pub async fn record_redemption(
    book: &RecordBook,
    issuer: &crate::client::SignedClient,
    redeemed: &crate::paywords::Redeemed,
) {
    if let Err(e) = resend_unanswered(book, issuer).await {
        tracing::debug!(error = %e, "redemption records not sent again");
    }
    if redeemed.words == 0 {
        return;
    }
    let tx = serde_json::json!({
        "counter": redeemed.counter,
        "words": redeemed.words,
        "value": redeemed.value,
    });
    if let Err(e) = record_with(book, issuer, protocol::record::kinds::REDEMPTION, &tx).await {
        tracing::warn!(error = %e, "the redemption's record is not agreed yet (sent again later)");
    }
}

/// Unanswered proposals sent again per [`resend_unanswered`] call.
pub const RESEND_PER_CALL_MAX: usize = 32;

async fn send(
    book: &RecordBook,
    to: &crate::client::SignedClient,
    proposal: &HalfBlock,
) -> Result<HalfBlock, String> {
    let body = serde_json::to_vec(proposal).map_err(|e| e.to_string())?;
    let agreement: HalfBlock = to
        .command("POST", "/v1/records", body, RECORD_COUNTERS.next())
        .await
        .map_err(|e| e.to_string())?
        .value;
    book.note_agreement(proposal, agreement.clone())
        .await
        .map_err(|e| e.to_string())?;
    Ok(agreement)
}

/// Counters of record commands (servers only need them unique per sender).
static RECORD_COUNTERS: std::sync::LazyLock<crate::client::ClockCounter> =
    std::sync::LazyLock::new(crate::client::ClockCounter::default);

mod http;
pub use http::routes;

//! Reads: a buyer's signed reads and reads through retrieval tokens, charged once each; the
//! fast path that opens local files inside the charging transaction; retrieval tokens.

use super::paywords::PaywordWork;
use super::*;

impl Agent {
    /// Where reads may take the fast path of [`Agent::local_read`]: objects on the local disk
    /// and no running tabs (a tab's room depends on the buyer's other contracts, which the
    /// general path checks under the buyer's lock).
    fn fast_read_root(&self) -> Option<std::path::PathBuf> {
        if self.config.tab_limit > 0 {
            return None;
        }
        self.store.local_root().map(std::path::Path::to_path_buf)
    }

    /// A read on the local disk in one blocking task and without the contract's lock: resolve,
    /// open the file and charge in one transaction, then read from the open file. An open file
    /// keeps its bytes when a concurrent PUT, DELETE or reap unlinks it, so the bytes served are
    /// always those of the object the read was charged for.
    ///
    /// `payword`: the words the read carries, noted first in the same transaction (so they
    /// and the charge they pay commit together; a read that fails leaves them unheld, and
    /// the buyer's next words, which count from the last ones held, cover them).
    async fn local_read(
        &self,
        root: std::path::PathBuf,
        of: ReadOf,
        range: Option<RangeSpec>,
        payword: Option<PaywordWork>,
    ) -> Result<Read, Error> {
        let now = now_s();
        let cache = self.read_cache.clone();
        let (read, taken) = self
            .db
            .run(move |conn| {
                let mut payword = payword;
                let mut taken = None;
                // A retry happens only on PostgreSQL, when a PUT replaces the object between
                // the row being read and the file being opened; the next try sees the new row.
                for _ in 0..LOCAL_READ_TRIES_MAX {
                    // Relaxed durability: a power cut may forget the last few charges, in the
                    // buyer's favour; a kill -9 forgets none. Fsyncing every read's charge
                    // would bound reads by the disk's fsync rate.
                    let opened = db::relaxed_write_transaction(conn, |conn| {
                        if let Some(work) = &payword {
                            taken = Some((work.id().to_owned(), work.apply(conn)?));
                        }
                        resolve_and_charge(conn, &root, &cache, &of, range, now)
                    })?;
                    // Noted and committed: a retry must not count them again.
                    payword = None;
                    match opened {
                        Some((Source::Cached(whole), mut read)) => {
                            let r = &read.range;
                            // Both ends are within the object's size: `resolve` checked them.
                            read.bytes = whole.slice(r.start as usize..r.end as usize);
                            return Ok((read, taken));
                        }
                        Some((Source::File(file, key), read)) => {
                            let whole = read.range.start == 0 && read.range.end == read.size;
                            let read = read_at(&file, read)?;
                            if whole {
                                cache.insert(&key, &read.bytes);
                            }
                            return Ok((read, taken));
                        }
                        None => {}
                    }
                }
                Err(Error::Store("object kept changing during the read".into()))
            })
            .await?;
        if let Some((id, accepted)) = taken {
            self.payword_taken(&id, &accepted);
        }
        Ok(read)
    }

    /// Charge a read of `range` (and use up one use of `token`, when reading through one) in one
    /// transaction, then read the bytes.
    async fn charged_read(
        &self,
        row: &ContractRow,
        obj: &ObjectRow,
        range: Option<RangeSpec>,
        token: Option<&str>,
    ) -> Result<Read, Error> {
        let size = obj.size.unsigned_abs();
        let range = match range {
            Some(r) => r.resolve(size)?,
            None => 0..size,
        };
        let charge =
            market::per_kib_charge(row.read_per_kib.unsigned_abs(), range.end - range.start)
                .unwrap_or(u64::MAX);
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(row, charge).await?;
        let read_len = range.end - range.start;
        let settle = drawn.settle;
        let id = row.id.clone();
        let token = token.map(str::to_owned);
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<(), Error> {
                    if let Some(t) = &token {
                        use_token(conn, t, read_len)?;
                    }
                    // An error here rolls the token use back too: the read did not happen.
                    charge_contract(conn, &id, &drawn)?;
                    let served = usage::Served {
                        read: read_len,
                        by_token: token.is_some(),
                        charge: Some((usage::Kind::Reads, drawn.charge)),
                        ..Default::default()
                    };
                    Ok(usage::count(conn, &id, served)?)
                })
            })
            .await?;
        let bytes = self.store.get_range(&obj.path, range.clone()).await?;
        Ok(Read {
            bytes,
            range,
            size,
            settle,
        })
    }

    /// A buyer's signed read of `name`, or of `range` of it. Reads carry a counter like
    /// commands (their answers are not stored): each is charged, so each is served once.
    ///
    /// `payword`: the words the read carries ([`Agent::payword_work`]), noted before it is
    /// charged: in the charging transaction on the fast path, in one of their own otherwise.
    pub async fn read_object(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        time_ms: u64,
        range: Option<RangeSpec>,
        payword: Option<PaywordWork>,
    ) -> Result<Read, Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        let who = cmd.sender;
        self.seen_reads.admit(who, cmd.counter, time_ms)?;
        if let Some(root) = self.fast_read_root() {
            let of = ReadOf::Object {
                id: id.to_owned(),
                name: name.to_owned(),
                who: who.clone(),
            };
            return self.local_read(root, of, range, payword).await;
        }
        if let Some(work) = payword {
            self.note_payword(work, true).await?;
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, false)?;
        if row.reaped != 0 {
            return Err(Error::ContractNotActive);
        }
        let obj = objs
            .iter()
            .find(|o| o.name == name)
            .ok_or(Error::UnknownObject)?;
        self.charged_read(&row, obj, range, None).await
    }

    /// Retrieval tokens for `objects` (one each). `batch` answers `{"retrievals": [...]}`;
    /// otherwise the one retrieval. Tokens commit with relaxed durability: one lost in a power
    /// cut costs nothing but the buyer asking again.
    pub async fn create_retrievals(
        &self,
        id: &str,
        cmd: Cmd<'_>,
        objects: &[String],
        uses: u64,
        expires_in_s: u64,
        batch: bool,
    ) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if objects.is_empty()
            || objects.len() > RETRIEVALS_PER_REQUEST_MAX
            || !objects.iter().all(|o| valid_name(o))
        {
            return Err(Error::InvalidName);
        }
        if !(1..=RETRIEVAL_USES_MAX).contains(&uses)
            || !(1..=RETRIEVAL_TTL_S_MAX).contains(&expires_in_s)
        {
            return Err(Error::InvalidJson(format!(
                "uses must be 1..={RETRIEVAL_USES_MAX} and expires_in_s 1..={RETRIEVAL_TTL_S_MAX}"
            )));
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        if !objects.iter().all(|o| objs.iter().any(|x| &x.name == o)) {
            return Err(Error::UnknownObject);
        }
        let expires_s = now_s().saturating_add(to_i64(expires_in_s)?);
        let rng = ring::rand::SystemRandom::new();
        let mut made = Vec::with_capacity(objects.len());
        for object in objects {
            let mut raw = [0u8; 32];
            ring::rand::SecureRandom::fill(&rng, &mut raw)
                .map_err(|_| Error::Store("no randomness".into()))?;
            let token = protocol::b64_encode(&raw);
            made.push((
                object.clone(),
                Retrieval {
                    url: format!("{}/v1/r/{token}", self.endpoint()),
                    token,
                    expires_at: market::format_rfc3339(expires_s),
                },
            ));
        }
        let answer = if batch {
            let list: Vec<&Retrieval> = made.iter().map(|(_, r)| r).collect();
            serde_json::json!({ "retrievals": list }).to_string()
        } else {
            serde_json::to_string(&made[0].1).unwrap_or_default()
        };
        let cmd = command_row(sender, counter, body_sha256, 201, &answer)?;
        let (contract_id, uses_i) = (id.to_owned(), to_i64(uses)?);
        self.commit_command_as(
            cmd,
            move |conn| {
                for (object, r) in &made {
                    diesel::insert_into(retrievals::table)
                        .values((
                            retrievals::token.eq(&r.token),
                            retrievals::token_sha256.eq(protocol::record::token_name(&r.token)),
                            retrievals::contract_id.eq(&contract_id),
                            retrievals::object.eq(object),
                            retrievals::uses_left.eq(uses_i),
                            retrievals::expires_s.eq(expires_s),
                        ))
                        .execute(conn)?;
                }
                Ok(())
            },
            true,
        )
        .await?;
        Ok(Answer {
            status: 201,
            body: answer,
            settle: None,
        })
    }

    /// Read through a retrieval token: one use, charged to the contract.
    pub async fn redeem(&self, token: &str, range: Option<RangeSpec>) -> Result<Read, Error> {
        if let Some(root) = self.fast_read_root() {
            return self
                .local_read(root, ReadOf::Token(token.to_owned()), range, None)
                .await;
        }
        let t = token.to_owned();
        let found: Option<(String, String, i64, i64)> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    retrievals::table
                        .find(&t)
                        .select((
                            retrievals::contract_id,
                            retrievals::object,
                            retrievals::uses_left,
                            retrievals::expires_s,
                        ))
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        let (id, object, _, _) = found
            .filter(|(_, _, uses, exp)| *uses > 0 && *exp > now_s())
            .ok_or(Error::UnknownToken)?;
        let lock = self.locks.get(&id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(&id).await?;
        if row.reaped != 0 {
            return Err(Error::UnknownToken);
        }
        let obj = objs
            .iter()
            .find(|o| o.name == object)
            .ok_or(Error::UnknownObject)?;
        self.charged_read(&row, obj, range, Some(token)).await
    }
}

/// What a read names.
enum ReadOf {
    Token(String),
    Object {
        id: String,
        name: String,
        who: EntityId,
    },
}

/// Tries of a local read whose object is replaced under it (PostgreSQL only).
const LOCAL_READ_TRIES_MAX: usize = 3;

/// In a write transaction: find what `of` names, check it may be read, open its file, use the
/// token and charge the contract. `None` when the file is gone because the object was just
/// replaced (nothing is charged then).
fn resolve_and_charge(
    conn: &mut AnyConnection,
    root: &std::path::Path,
    cache: &ReadCache,
    of: &ReadOf,
    range: Option<RangeSpec>,
    now: i64,
) -> Result<Option<(Source, Read)>, Error> {
    let (id, name) = match of {
        ReadOf::Token(token) => {
            let found: Option<(String, String, i64, i64)> = retrievals::table
                .find(token)
                .select((
                    retrievals::contract_id,
                    retrievals::object,
                    retrievals::uses_left,
                    retrievals::expires_s,
                ))
                .first(conn)
                .optional()?;
            let (id, name, _, _) = found
                .filter(|(_, _, uses, exp)| *uses > 0 && *exp > now)
                .ok_or(Error::UnknownToken)?;
            (id, name)
        }
        ReadOf::Object { id, name, .. } => (id.clone(), name.clone()),
    };
    let row: ContractRow = contracts::table
        .find(&id)
        .first(conn)
        .optional()?
        .ok_or(match of {
            ReadOf::Token(_) => Error::UnknownToken,
            ReadOf::Object { .. } => Error::UnknownContract,
        })?;
    match of {
        ReadOf::Token(_) if row.reaped != 0 => return Err(Error::UnknownToken),
        ReadOf::Object { who, .. } => {
            Agent::require_buyer(&row, who, false)?;
            if row.reaped != 0 {
                return Err(Error::ContractNotActive);
            }
        }
        ReadOf::Token(_) => {}
    }
    let obj: ObjectRow = objects::table
        .find((&id, &name))
        .first(conn)
        .optional()?
        .ok_or(Error::UnknownObject)?;
    let size = obj.size.unsigned_abs();
    let range = match range {
        Some(r) => r.resolve(size)?,
        None => 0..size,
    };
    let source = match cache.get(&obj.path) {
        Some(bytes) => Source::Cached(bytes),
        None => match std::fs::File::open(root.join(&obj.path)) {
            Ok(f) => Source::File(f, obj.path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Store(format!("open {}: {e}", obj.path))),
        },
    };
    let charge = market::per_kib_charge(row.read_per_kib.unsigned_abs(), range.end - range.start)
        .unwrap_or(u64::MAX);
    row.draw(charge, 0)?;
    if let ReadOf::Token(token) = of {
        use_token(conn, token, range.end - range.start)?;
    }
    // An error here rolls the token use back.
    charge_contract(
        conn,
        &id,
        &Drawn {
            charge,
            tab_room: 0,
            settle: None,
            tab: None,
        },
    )?;
    let served = usage::Served {
        read: range.end - range.start,
        by_token: matches!(of, ReadOf::Token(_)),
        charge: Some((usage::Kind::Reads, charge)),
        ..Default::default()
    };
    usage::count(conn, &id, served)?;
    let read = Read {
        bytes: Bytes::new(),
        range,
        size,
        settle: None,
    };
    Ok(Some((source, read)))
}

/// Where a local read's bytes come from: the whole object from the read cache, or an open file
/// (with its store key, to cache it).
enum Source {
    Cached(Bytes),
    File(std::fs::File, String),
}

/// Fill `read.bytes` with its range of `file`, in a recycled buffer.
fn read_at(file: &std::fs::File, mut read: Read) -> Result<Read, Error> {
    use std::io::{Read as _, Seek as _};
    let len = read.range.end - read.range.start;
    let mut buf = ReadBuf::take(usize::try_from(len).unwrap_or(usize::MAX));
    let mut reader = file;
    reader
        .seek(std::io::SeekFrom::Start(read.range.start))
        .map_err(|e| Error::Store(format!("seek: {e}")))?;
    // `read_to_end` reads into spare capacity without zeroing it first.
    let got = reader
        .take(len)
        .read_to_end(&mut buf.0)
        .map_err(|e| Error::Store(format!("read: {e}")))?;
    if got as u64 != len {
        return Err(Error::Store(format!(
            "object file is {got} bytes short of its recorded size"
        )));
    }
    read.bytes = Bytes::from_owner(buf);
    Ok(read)
}

/// A read buffer that goes back to [`READ_BUFS`] when the response that owns it is sent:
/// allocating, page-faulting and freeing a fresh megabyte per read costs more CPU than the
/// read itself.
struct ReadBuf(Vec<u8>);

/// Idle read buffers kept for reuse.
static READ_BUFS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
/// Idle buffers kept at most; beyond it they are freed.
const READ_BUFS_IDLE_MAX: usize = 64;
/// Buffers larger than this are freed rather than kept.
const READ_BUF_KEPT_BYTES_MAX: usize = 4 << 20;
/// Bytes of idle buffers kept at most: a bound on the pool's memory (64 buffers of 4 MiB
/// would be 256 MiB, too much for a home machine).
const READ_BUFS_IDLE_BYTES_MAX: usize = 16 << 20;

impl ReadBuf {
    fn take(len: usize) -> ReadBuf {
        let mut idle = READ_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        // The smallest buffer that fits: a small read must not take a large one, which the
        // next large read would then have to allocate again.
        let best = idle
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        let mut buf = match best {
            Some(i) => idle.swap_remove(i),
            None => Vec::new(),
        };
        drop(idle);
        buf.clear();
        buf.reserve_exact(len);
        ReadBuf(buf)
    }
}

impl AsRef<[u8]> for ReadBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        if self.0.capacity() > READ_BUF_KEPT_BYTES_MAX {
            return;
        }
        let mut idle = READ_BUFS.lock().unwrap_or_else(|p| p.into_inner());
        let idle_bytes: usize = idle.iter().map(Vec::capacity).sum();
        if idle.len() < READ_BUFS_IDLE_MAX
            && idle_bytes + self.0.capacity() <= READ_BUFS_IDLE_BYTES_MAX
        {
            idle.push(std::mem::take(&mut self.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_read_buffers_stay_within_their_byte_bound_and_small_reads_take_small_ones() {
        let big: Vec<ReadBuf> = (0..16).map(|_| ReadBuf::take(3 << 20)).collect();
        let small = ReadBuf::take(4096);
        drop(big);
        drop(small);
        let idle_bytes: usize = READ_BUFS
            .lock()
            .expect("lock")
            .iter()
            .map(Vec::capacity)
            .sum();
        assert!(
            idle_bytes <= READ_BUFS_IDLE_BYTES_MAX,
            "{idle_bytes} idle bytes kept"
        );
        // A small read takes the small idle buffer, not a 3 MiB one.
        let again = ReadBuf::take(4096);
        assert!(again.0.capacity() < 1 << 20, "{}", again.0.capacity());
    }
}

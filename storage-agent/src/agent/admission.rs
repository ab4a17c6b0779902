//! Admission: the signed offer, checking a buyer-signed contract against it (space, the share
//! unpaid contracts may hold, payments made ahead), and the reservations both are judged by.

use super::*;

impl Agent {
    fn currencies(&self) -> Vec<OfferCurrency> {
        self.config
            .currencies
            .iter()
            .filter_map(|c| {
                Some(OfferCurrency {
                    issuer: EntityId::parse(&c.issuer).ok()?,
                    issuer_url: c.issuer_url.clone(),
                    storage_per_gib_day: c.storage_per_gib_day,
                    write_per_kib: c.write_per_kib,
                    read_per_kib: c.read_per_kib,
                    contract_min: c.contract_min,
                    pay_to: c.bank.as_ref().map(|b| b.name.clone()),
                })
            })
            .collect()
    }

    /// The offer with `free_bytes` free; blocks are capped at the free space and at the room
    /// unpaid contracts have left (`pending_bytes` are reserved by them now).
    fn offer_doc(&self, free_bytes: u64, pending_bytes: u64, now: i64) -> Offer {
        let pending_room = self.pending_max().saturating_sub(pending_bytes);
        Offer {
            agent: self.key.entity().clone(),
            endpoint: self.endpoint().to_owned(),
            issued_at: market::format_rfc3339(now),
            expires_at: market::format_rfc3339(now + OFFER_TTL_S),
            free_bytes,
            block_bytes_max: self
                .config
                .block_bytes_max
                .min(free_bytes)
                .min(pending_room),
            duration_s_max: self.config.duration_s_max,
            currencies: self.currencies(),
        }
    }

    /// Most bytes unpaid contracts may reserve together.
    fn pending_max(&self) -> u64 {
        self.config.capacity_bytes / 100 * PENDING_SHARE_PCT_MAX
    }

    /// The current signed offer.
    pub async fn offer(&self) -> Result<Envelope, Error> {
        let now = now_s();
        let capacity = self.config.capacity_bytes;
        let store = self.store.clone();
        let (r, disk) = self
            .db
            .run(move |c| Ok::<_, Error>((reservations(c, now)?, store.available_bytes())))
            .await?;
        let doc = self.offer_doc(free_to_sell(capacity, r, disk), r.pending, now);
        Envelope::sign_json(&self.key, market::OFFER_TYPE, &doc)
            .map_err(|e| Error::InvalidJson(e.to_string()))
    }

    /// Check a buyer-signed contract against the offer and free space, countersign and record it.
    pub async fn create_contract(&self, cmd: Cmd<'_>, envelope: Envelope) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (signer, contract): (EntityId, Contract) =
            envelope.open(market::CONTRACT_TYPE).map_err(|e| match e {
                protocol::EnvelopeError::InvalidPayload(m) => Error::InvalidJson(m),
                other => Error::BadContractSignature(other.to_string()),
            })?;
        if signer != contract.buyer {
            return Err(Error::BadContractSignature(
                "the envelope is not signed by the contract's buyer".into(),
            ));
        }
        if &contract.buyer != sender {
            return Err(Error::NotYourContract { auditors: false });
        }
        let _admit = self.admit_lock.lock().await;
        let now = now_s();
        let (prepaid_id, prepaid_issuer) = (contract.id.clone(), contract.issuer.to_string());
        let store = self.store.clone();
        let buyer = contract.buyer.clone();
        let (r, disk, prepaid_amount, fraud) = self
            .db
            .run(move |c| {
                Ok::<_, Error>((
                    reservations(c, now)?,
                    store.available_bytes(),
                    prepaid_of(c, &prepaid_id, &prepaid_issuer)?,
                    node::paywords::is_fraudster(c, &buyer)?,
                ))
            })
            .await?;
        // An issuer proved this buyer double spent paywords: no more business with it.
        if fraud {
            return Err(Error::PayerFraud);
        }
        let pending = r.pending;
        // A block that does not fit on the disk is refused even when the capacity (set by the
        // owner, perhaps larger than the disk) would allow it.
        let free = free_to_sell(self.config.capacity_bytes, r, disk);
        let mut offer = self.offer_doc(free, pending, now);
        // The published offer caps blocks at the free space; here the configured maximum
        // applies, so a block that fits the agent but not its free space says so.
        offer.block_bytes_max = self.config.block_bytes_max;
        market::check_contract(&contract, &offer, now, free)?;
        // A contract paid in advance is not pending: only unpaid ones count against the share.
        let paid_ahead = prepaid_amount >= contract.contract_price;
        if !paid_ahead && pending.saturating_add(contract.block_bytes) > self.pending_max() {
            return Err(Error::TooManyPending {
                retry_after_s: PENDING_TTL_S.unsigned_abs(),
            });
        }
        let (start_s, end_s) = market::contract_window(&contract)?;
        let agent_signature = envelope.countersign(&self.key);
        let envelope_json =
            serde_json::to_string(&envelope).map_err(|e| Error::InvalidJson(e.to_string()))?;
        let answer = serde_json::to_string(&serde_json::json!({
            "contract": envelope, "agent_signature": agent_signature,
            "status": if paid_ahead { "active" } else { "pending_payment" },
        }))
        .map_err(|e| Error::InvalidJson(e.to_string()))?;
        let row = ContractRow {
            id: contract.id.clone(),
            buyer: contract.buyer.to_string(),
            issuer: contract.issuer.to_string(),
            block_bytes: to_i64(contract.block_bytes)?,
            start_s,
            end_s,
            contract_price: to_i64(contract.contract_price)?,
            write_per_kib: to_i64(contract.write_per_kib)?,
            read_per_kib: to_i64(contract.read_per_kib)?,
            auditors: serde_json::to_string(&contract.auditors).unwrap_or_else(|_| "[]".into()),
            envelope: envelope_json,
            agent_signature,
            paid: 0,
            spent: 0,
            used_bytes: 0,
            reaped: 0,
            created_s: now,
        };
        let cmd = command_row(sender, counter, body_sha256, 201, &answer)?;
        let body = answer.clone();
        self.commit_command(cmd, move |conn| {
            let exists: i64 = contracts::table
                .filter(contracts::id.eq(&row.id))
                .count()
                .get_result(conn)?;
            if exists > 0 {
                return Err(Error::Refused(market::ContractRefusal::InvalidId));
            }
            // Claimed in the transaction that records the contract, so it is counted once.
            let claimed = prepaid_of(conn, &row.id, &row.issuer)?;
            diesel::delete(prepaid::table.find((&row.id, &row.issuer))).execute(conn)?;
            let id = row.id.clone();
            diesel::insert_into(contracts::table)
                .values(&ContractRow { paid: 0, ..row })
                .execute(conn)?;
            // Through the books: a contract paid for ahead earns its price now.
            let noted = usage::credit_paid(conn, &id, to_i64(claimed)?, false)?;
            usage::note_paid(conn, noted)?;
            Ok(())
        })
        .await?;
        Ok(Answer {
            status: 201,
            body,
            settle: None,
        })
    }
}

/// Whether a contract's data is due for deletion: past end + grace, or unpaid past its TTL.
pub(super) fn is_due(c: &ContractRow, now: i64, grace: i64) -> bool {
    now >= c.end_s.saturating_add(grace)
        || (c.paid < c.contract_price && now >= c.created_s + PENDING_TTL_S)
}

/// Blocks held by contracts that still hold (or may still receive) data.
pub(super) fn reserved_of(rows: &[ContractRow], now: i64) -> u64 {
    rows.iter()
        .filter(|r| {
            r.reaped == 0 && !(r.paid < r.contract_price && now >= r.created_s + PENDING_TTL_S)
        })
        .map(|r| r.block_bytes.unsigned_abs())
        .sum()
}

/// What was paid ahead for the contract `id` in the currency of `issuer`.
fn prepaid_of(conn: &mut AnyConnection, id: &str, issuer: &str) -> Result<u64, Error> {
    let amount: Option<i64> = prepaid::table
        .find((id, issuer))
        .select(prepaid::amount)
        .first(conn)
        .optional()?;
    Ok(amount.unwrap_or(0).unsigned_abs())
}

pub(super) fn add_prepaid(
    conn: &mut AnyConnection,
    id: &str,
    issuer: &str,
    amount: i64,
) -> Result<(), Error> {
    let n = diesel::update(prepaid::table.find((id, issuer)))
        .set(prepaid::amount.eq(prepaid::amount + amount))
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(prepaid::table)
            .values((
                prepaid::transaction_id.eq(id),
                prepaid::issuer.eq(issuer),
                prepaid::amount.eq(amount),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// What live contracts hold of the agent's space.
#[derive(Debug, Clone, Copy)]
struct Reservations {
    /// Blocks of live contracts.
    reserved: u64,
    /// Of those, blocks of contracts still unpaid.
    pending: u64,
    /// Bytes written into live contracts (already on the disk).
    used: u64,
}

fn reservations(conn: &mut AnyConnection, now: i64) -> Result<Reservations, Error> {
    let rows: Vec<ContractRow> = contracts::table
        .filter(contracts::reaped.eq(0))
        .load(conn)?;
    let pending: Vec<ContractRow> = rows
        .iter()
        .filter(|r| r.paid < r.contract_price)
        .cloned()
        .collect();
    Ok(Reservations {
        reserved: reserved_of(&rows, now),
        pending: reserved_of(&pending, now),
        used: rows.iter().map(|r| r.used_bytes.unsigned_abs()).sum(),
    })
}

/// Bytes left on the disk for objects: the agent keeps this much free for its database, logs
/// and the filesystem's own needs.
pub const DISK_HEADROOM_BYTES: u64 = 16 << 20;

/// Free space to sell: the configured capacity less what live contracts reserve, and never more
/// than the disk can still take once the blocks already sold but not yet written are written
/// (`disk_available` is `None` when objects are not on a local disk).
fn free_to_sell(capacity: u64, r: Reservations, disk_available: Option<u64>) -> u64 {
    let by_capacity = capacity.saturating_sub(r.reserved);
    match disk_available {
        Some(disk) => {
            let promised_unwritten = r.reserved.saturating_sub(r.used);
            let by_disk = disk
                .saturating_sub(DISK_HEADROOM_BYTES)
                .saturating_sub(promised_unwritten);
            by_capacity.min(by_disk)
        }
        None => by_capacity,
    }
}

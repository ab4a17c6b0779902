//! Audits: the buyer's (one free an interval, then charged and counted) and the listed
//! auditors' (never charged, rate limited per contract).

use super::*;

impl Agent {
    /// Whether this audit of contract `id` is its free one for the current interval.
    fn take_free_audit(&self, id: &str) -> bool {
        let now = now_s();
        // Entries are independent; a panic elsewhere leaves the map usable.
        let mut map = self.free_audits.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= FREE_AUDITS_TRACKED_MAX {
            map.retain(|_, t| now - *t < AUDIT_FREE_INTERVAL_S);
        }
        match map.get(id) {
            Some(t) if now - *t < AUDIT_FREE_INTERVAL_S => false,
            _ => {
                map.insert(id.to_owned(), now);
                true
            }
        }
    }

    /// Count one audit by a listed auditor; `429 rate_limited` past
    /// [`AUDITOR_AUDITS_PER_INTERVAL_MAX`] per contract per interval.
    fn admit_auditor_audit(&self, id: &str) -> Result<(), Error> {
        let now = now_s();
        // Entries are independent; a panic elsewhere leaves the map usable.
        let mut map = self
            .auditor_audits
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= FREE_AUDITS_TRACKED_MAX {
            map.retain(|_, (t, _)| now - *t < AUDIT_FREE_INTERVAL_S);
        }
        let entry = map.entry(id.to_owned()).or_insert((now, 0));
        if now - entry.0 >= AUDIT_FREE_INTERVAL_S {
            *entry = (now, 0);
        }
        if entry.1 >= AUDITOR_AUDITS_PER_INTERVAL_MAX {
            let retry_after_s = (entry.0 + AUDIT_FREE_INTERVAL_S - now)
                .max(1)
                .unsigned_abs();
            return Err(Error::RateLimited { retry_after_s });
        }
        entry.1 += 1;
        Ok(())
    }

    /// Answer an audit from the stored bytes: leaf `leaf` of `object` and its Merkle proof.
    ///
    /// A listed auditor (the market) is never charged; it is rate limited instead. The buyer's
    /// first audit of a contract in an interval is free; past it an audit is charged as a read
    /// of its leaf and must carry a counter (`auth` is `(counter, LCP-Time)`), served once like
    /// a read, so a captured audit cannot be replayed to drain the contract's credit.
    pub async fn audit(
        &self,
        id: &str,
        who: &EntityId,
        auth: Option<(u64, u64)>,
        object: &str,
        leaf: u64,
    ) -> Result<AuditAnswer, Error> {
        if let Some((counter, time_ms)) = auth {
            self.seen_reads.admit(who, counter, time_ms)?;
        }
        let _slot = self
            .audit_slots
            .acquire()
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        // Under the contract's lock, so a rewrite cannot remove the bytes mid-audit (which
        // would look like a failed audit of an honest agent).
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, who, true)?;
        let auditor = row.buyer != who.as_str();
        if auditor {
            self.admit_auditor_audit(id)?;
        }
        let obj = objs
            .iter()
            .find(|o| o.name == object)
            .ok_or(Error::UnknownObject)?;
        // Recomputed from the bytes on every audit: a precomputed answer would pass after the
        // data is gone.
        let bytes = self.store.get(&obj.path).await?;
        let answer = tokio::task::spawn_blocking(move || {
            let tree = protocol::merkle::MerkleTree::from_bytes(&bytes);
            let proof = tree.proof(leaf)?;
            let start = usize::try_from(leaf).ok()? * protocol::merkle::LEAF_BYTES;
            let end = (start + protocol::merkle::LEAF_BYTES).min(bytes.len());
            use base64::Engine;
            Some(AuditAnswer {
                leaf_data: base64::engine::general_purpose::STANDARD
                    .encode(&bytes[start.min(end)..end]),
                proof: proof.iter().map(hex::encode).collect(),
                leaf_count: tree.leaf_count(),
                root: tree.root_hex(),
            })
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?
        .ok_or(Error::InvalidJson(format!(
            "leaf must be below {}",
            obj.leaf_count
        )))?;
        // The leaf is data the buyer receives: past one free audit a minute, charged as a read
        // of it, or audits would be a free way to download an object leaf by leaf.
        if auditor || self.take_free_audit(id) {
            let id = id.to_owned();
            self.db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| {
                        let served = usage::Served {
                            audits: 1,
                            ..Default::default()
                        };
                        usage::count(conn, &id, served)?;
                        bump_stat(conn, "audits_answered")
                    })
                })
                .await?;
            return Ok(answer);
        }
        let leaf_bytes = protocol::merkle::LEAF_BYTES as u64;
        let leaf_len = obj
            .size
            .unsigned_abs()
            .saturating_sub(leaf.saturating_mul(leaf_bytes))
            .min(leaf_bytes);
        let charge =
            market::per_kib_charge(row.read_per_kib.unsigned_abs(), leaf_len).unwrap_or(u64::MAX);
        // Charged, so it must be one that cannot be replayed.
        if auth.is_none() {
            return Err(Error::Auth(protocol::AuthError::MissingCounter));
        }
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(&row, charge).await?;
        let id = row.id.clone();
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    charge_contract(conn, &id, &drawn)?;
                    let served = usage::Served {
                        audits: 1,
                        charge: Some((usage::Kind::Audits, drawn.charge)),
                        ..Default::default()
                    };
                    usage::count(conn, &id, served)?;
                    bump_stat(conn, "audits_answered")
                })
            })
            .await?;
        Ok(answer)
    }
}

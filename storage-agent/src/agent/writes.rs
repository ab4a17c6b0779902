//! Writes: uploads (the per-sender permits, the checks before a body is read, storing and
//! charging) and deletes.

use super::*;

impl Agent {
    /// One of `sender`'s [`PUTS_PER_SENDER_MAX`] upload permits, held until the upload ends;
    /// waits at most `wait_ms_max` for one of its own uploads to finish, then
    /// `503 overloaded`.
    pub async fn upload_of(
        &self,
        sender: &EntityId,
        wait_ms_max: u64,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        let permits = {
            let mut map = self
                .puts_by_sender
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if map.len() >= PUT_SENDERS_TRACKED_MAX {
                map.retain(|_, s| s.available_permits() < PUTS_PER_SENDER_MAX);
            }
            map.entry(sender.as_str().to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PUTS_PER_SENDER_MAX)))
                .clone()
        };
        tokio::time::timeout(
            std::time::Duration::from_millis(wait_ms_max),
            permits.acquire_owned(),
        )
        .await
        .map_err(|_| Error::Overloaded)?
        .map_err(|_| Error::Overloaded)
    }

    /// What a PUT must pass before its body is read, once its signature verified against the
    /// body hash it declared: a valid name, a contract whose buyer signed, inside its window,
    /// and a declared size that fits the object limit and the block. So a forged or hopeless
    /// upload is refused before it takes an upload slot. A repeated command passes (it replays).
    pub async fn precheck_put(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        declared_bytes: Option<u64>,
    ) -> Result<(), Error> {
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        if self
            .replay(cmd.sender, cmd.counter, cmd.body_sha256)
            .await?
            .is_some()
        {
            return Ok(());
        }
        if declared_bytes.is_some_and(|n| n > OBJECT_BYTES_MAX) {
            return Err(Error::BodyTooLarge {
                limit: OBJECT_BYTES_MAX,
            });
        }
        let row = self.load_contract(id).await?;
        Self::require_buyer(&row, cmd.sender, false)?;
        let now = now_s();
        if row.reaped != 0 || now < row.start_s || now >= row.end_s {
            return Err(Error::ContractNotActive);
        }
        // An unpaid contract costs nothing to make: it must not hold an upload slot either.
        if row.paid < row.contract_price {
            return Err(Error::PaymentRequired {
                amount_due: (row.contract_price - row.paid).unsigned_abs(),
            });
        }
        if declared_bytes.is_some_and(|n| n > row.block_bytes.unsigned_abs()) {
            return Err(Error::BlockFull {
                block_bytes: row.block_bytes.unsigned_abs(),
            });
        }
        Ok(())
    }

    /// Store an object under a contract, charged `write_per_kib` per KiB.
    pub async fn put_object(
        &self,
        id: &str,
        name: &str,
        cmd: Cmd<'_>,
        bytes: Bytes,
    ) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        if bytes.len() as u64 > OBJECT_BYTES_MAX {
            return Err(Error::BodyTooLarge {
                limit: OBJECT_BYTES_MAX,
            });
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        let now = now_s();
        if row.reaped != 0 || now < row.start_s || now >= row.end_s {
            return Err(Error::ContractNotActive);
        }
        let size = bytes.len() as u64;
        let old = objs.iter().find(|o| o.name == name).cloned();
        // Invariant (used bytes = the sum of the objects' sizes), O(1) on the rows loaded: the
        // object replaced is counted in `used_bytes`.
        assert!(
            old.as_ref().map_or(0, |o| o.size) <= row.used_bytes,
            "contract {id}: used_bytes {} is less than object {name}'s size",
            row.used_bytes
        );
        let new_used = row.used_bytes - old.as_ref().map(|o| o.size).unwrap_or(0) + to_i64(size)?;
        let written = size;
        if new_used > row.block_bytes {
            return Err(Error::BlockFull {
                block_bytes: row.block_bytes.unsigned_abs(),
            });
        }
        let charge = market::per_kib_charge(row.write_per_kib.unsigned_abs(), size)
            .map_err(|_| Error::BlockFull { block_bytes: 0 })?;
        let _tab = self.tab_guard(&row.buyer).await;
        let drawn = self.draw(&row, charge).await?;
        let settle = drawn.settle;
        // Hash off the async workers: a 64 MiB object is tens of milliseconds of CPU.
        let hashed = bytes.clone();
        let (sha256, tree) = tokio::task::spawn_blocking(move || {
            (
                protocol::sha256_hex(&hashed),
                protocol::merkle::MerkleTree::from_bytes(&hashed),
            )
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))?;
        let key = Store::new_key(id, name);
        self.store.put(&key, bytes).await?;
        let info = ObjectInfo {
            name: name.to_owned(),
            size,
            sha256,
            merkle_root: tree.root_hex(),
        };
        let answer = serde_json::to_string(&info).map_err(|e| Error::InvalidJson(e.to_string()))?;
        let obj = ObjectRow {
            contract_id: id.to_owned(),
            name: name.to_owned(),
            path: key.clone(),
            size: to_i64(size)?,
            sha256: info.sha256.clone(),
            merkle_root: info.merkle_root.clone(),
            leaf_count: to_i64(tree.leaf_count())?,
        };
        let cmd = command_row(sender, counter, body_sha256, 200, &answer)?;
        let contract_id = id.to_owned();
        let committed = self
            .commit_command(cmd, move |conn| {
                diesel::delete(objects::table.find((&obj.contract_id, &obj.name))).execute(conn)?;
                diesel::insert_into(objects::table)
                    .values(&obj)
                    .execute(conn)?;
                diesel::update(contracts::table.find(&contract_id))
                    .set(contracts::used_bytes.eq(new_used))
                    .execute(conn)?;
                debug_assert_used_bytes(conn, &contract_id)?;
                charge_contract(conn, &contract_id, &drawn)?;
                let served = usage::Served {
                    written,
                    charge: Some((usage::Kind::Writes, drawn.charge)),
                    ..Default::default()
                };
                Ok(usage::count(conn, &contract_id, served)?)
            })
            .await;
        if let Err(e) = committed {
            // The row still names the old bytes; the new ones are garbage.
            let _ = self.store.delete(&key).await;
            return Err(e);
        }
        if let Some(old) = old {
            if let Err(e) = self.store.delete(&old.path).await {
                tracing::warn!(error = %e, path = old.path, "old object version not deleted; the start-up sweep will");
            }
        }
        Ok(Answer {
            status: 200,
            body: answer,
            settle,
        })
    }

    pub async fn delete_object(&self, id: &str, name: &str, cmd: Cmd<'_>) -> Result<Answer, Error> {
        let Cmd {
            sender,
            counter,
            body_sha256,
        } = cmd;
        if !valid_name(name) {
            return Err(Error::InvalidName);
        }
        let lock = self.locks.get(id);
        let _guard = lock.lock().await;
        if let Some(a) = self.replay(sender, counter, body_sha256).await? {
            return Ok(a);
        }
        let (row, objs) = self.load(id).await?;
        Self::require_buyer(&row, sender, false)?;
        let obj = objs
            .into_iter()
            .find(|o| o.name == name)
            .ok_or(Error::UnknownObject)?;
        // Invariant (used bytes = the sum of the objects' sizes), O(1) on the rows loaded: the
        // object deleted is counted in `used_bytes`.
        assert!(
            obj.size <= row.used_bytes,
            "contract {id}: used_bytes {} is less than object {name}'s size",
            row.used_bytes
        );
        let answer =
            serde_json::to_string(&serde_json::json!({"deleted": name, "freed_bytes": obj.size}))
                .unwrap_or_default();
        let cmd = command_row(sender, counter, body_sha256, 200, &answer)?;
        let path = obj.path.clone();
        self.commit_command(cmd, move |conn| {
            diesel::delete(objects::table.find((&obj.contract_id, &obj.name))).execute(conn)?;
            diesel::update(contracts::table.find(&obj.contract_id))
                .set(contracts::used_bytes.eq(contracts::used_bytes - obj.size))
                .execute(conn)?;
            debug_assert_used_bytes(conn, &obj.contract_id)
        })
        .await?;
        self.store.delete(&path).await?;
        Ok(Answer {
            status: 200,
            body: answer,
            settle: None,
        })
    }
}

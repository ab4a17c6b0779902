//! Demand scaling: replicate hot content agent to agent, drop cold replicas, and replace a
//! piece a viewer reported bad.

use super::*;

impl Publisher {
    /// One scaling round: a replica more of every piece of hot content; extra replicas of
    /// cold content lapse (deleted from the agents, their space freed).
    pub async fn scale_round(&self) -> Result<(), Error> {
        let asked: HashMap<String, Demand> = {
            let mut demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
            let snapshot = demand.clone();
            for d in demand.values_mut() {
                d.pieces_asked = 0;
            }
            snapshot
        };
        let rows = self
            .db
            .run(|conn| {
                Ok::<_, Error>(
                    contents::table
                        .filter(contents::manifest.ne(""))
                        .load::<ContentRow>(conn)?,
                )
            })
            .await?;
        let live = self.live_contracts().await?.len();
        for row in rows {
            let n = manifest::piece_count(row.size as u64, row.piece_bytes as u64);
            let cid = row.id.clone();
            let counts = self.db.run(move |conn| replica_counts(conn, &cid)).await?;
            let replicas_now = (0..n)
                .map(|i| counts.get(&i).copied().unwrap_or(0))
                .min()
                .unwrap_or(0);
            let d = asked.get(&row.id).cloned().unwrap_or_default();
            // Whole-content reads per replica this round: piece reads / pieces / replicas.
            let reads_per_replica = d.pieces_asked / n.max(1) / (replicas_now.max(1) as u64);
            let hot = reads_per_replica >= self.options.hot_reads_per_replica;
            if hot && replicas_now < live {
                let target = replicas_now + 1;
                let mut done = 0;
                for i in 0..n {
                    if self.replicate(&row.id, i, target).await.is_ok() {
                        done += 1;
                    }
                }
                self.event(
                    &row.id,
                    format!(
                        "hot ({} piece reads last round): replicas {replicas_now} -> {target} on {done} of {n} pieces",
                        d.pieces_asked
                    ),
                );
                continue;
            }
            let cold = d
                .last_demand
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(self.options.cold_after_s))
                && d.pieces_asked == 0;
            if cold && replicas_now > row.replicas_base.max(1) as usize {
                let target = replicas_now - 1;
                let mut freed = 0u64;
                for i in 0..n {
                    freed += self.drop_replica(&row.id, i, target).await.unwrap_or(0);
                }
                self.event(
                    &row.id,
                    format!("cold: replicas {replicas_now} -> {target}, {freed} bytes freed"),
                );
            }
        }
        Ok(())
    }

    /// Copy piece `i` from a holder (verified) onto a new agent, up to `target` replicas.
    async fn replicate(&self, content: &str, i: u64, target: usize) -> Result<usize, Error> {
        let holders = self.holders(content, i).await?;
        if holders.len() >= target {
            return Ok(holders.len());
        }
        let row = self.content(content).await?;
        let pieces = row.piece_hashes()?;
        let name = object_name(content, i);
        for h in &holders {
            if let Ok(bytes) = self.read_paying(h, &name).await {
                if pieces.get(i as usize) == Some(&protocol::sha256_hex(&bytes)) {
                    self.replication_bytes
                        .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    return self.add_replicas(content, i, bytes, target).await;
                }
            }
        }
        Err(Error::Upstream(format!("no holder of piece {i} answered")))
    }

    /// Delete the newest replica of piece `i` while it has more than `target`.
    async fn drop_replica(&self, content: &str, i: u64, target: usize) -> Result<u64, Error> {
        let holders = self.holders(content, i).await?;
        if holders.len() <= target {
            return Ok(0);
        }
        let Some(victim) = holders.last() else {
            return Ok(0);
        };
        self.delete_replica(content, i, victim).await
    }

    /// Delete piece `i` from `holder` and forget the replica. Answers the bytes freed.
    async fn delete_replica(
        &self,
        content: &str,
        i: u64,
        holder: &ContractRow,
    ) -> Result<u64, Error> {
        let name = object_name(content, i);
        let answer = self.agent(&holder.endpoint).delete(&holder.id, &name).await;
        match answer {
            Ok(_) => {}
            Err(e) if e.code() == Some("unknown_object") => {}
            Err(e) => return Err(Error::Upstream(format!("deleting {name}: {e}"))),
        }
        let row = self.content(content).await?;
        // What this publisher placed, whatever the agent says it freed.
        let len = row.piece_len(i);
        let (cid, contract, piece) = (
            content.to_owned(),
            holder.id.clone(),
            i32::try_from(i).unwrap_or(i32::MAX),
        );
        let size = i64::try_from(len).unwrap_or(0);
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let gone = diesel::delete(
                        replicas::table
                            .filter(replicas::content_id.eq(&cid))
                            .filter(replicas::piece.eq(piece))
                            .filter(replicas::contract_id.eq(&contract)),
                    )
                    .execute(conn)?;
                    if gone > 0 {
                        diesel::update(contracts::table.find(&contract))
                            .set(contracts::used_bytes.eq(contracts::used_bytes - size))
                            .execute(conn)?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
        Ok(len)
    }

    /// A viewer reports that `agent` served piece `i` with bytes that do not match the
    /// manifest. The publisher checks for itself (a paid read); when the replica is bad it is
    /// deleted and the piece is placed again from a good holder. Answers whether it was bad.
    pub async fn report_bad_piece(
        &self,
        viewer: &EntityId,
        view: &str,
        i: u64,
        agent: &str,
    ) -> Result<bool, Error> {
        let v = self.view_of(viewer, view).await?;
        {
            let mut asked = self.view_pieces.lock().unwrap_or_else(|p| p.into_inner());
            // Reports count against the same per-piece bound as instructions.
            let times = asked.entry((format!("report:{view}"), i)).or_insert(0);
            if *times >= PIECE_REQUESTS_PER_VIEW_MAX {
                return Err(Error::TooManyRequests {
                    piece: i,
                    times: *times,
                });
            }
            *times += 1;
        }
        let content = v.content_id.clone();
        let holders = self.holders(&content, i).await?;
        let Some(suspect) = holders.iter().find(|h| h.agent == agent).cloned() else {
            return Ok(false);
        };
        let row = self.content(&content).await?;
        let pieces = row.piece_hashes()?;
        let expected = pieces
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .ok_or_else(|| Error::InvalidRequest(format!("piece {i} is out of range")))?;
        let name = object_name(&content, i);
        let bytes = self.read_paying(&suspect, &name).await?;
        if &protocol::sha256_hex(&bytes) == expected {
            return Ok(false);
        }
        let want = holders.len();
        self.delete_replica(&content, i, &suspect).await?;
        let now = self.replicate(&content, i, want).await?;
        self.event(
            &content,
            format!("repaired piece {i}: agent {agent} served bad bytes; {now} good replicas"),
        );
        Ok(true)
    }
}

//! Placement: uploads started and resumed, pieces checked and placed on several agents,
//! and the manifest signed and listed once every piece is stored.

use super::*;

impl Publisher {
    /// Start (or resume) an upload: the content row, the contracts, and which pieces are missing.
    pub async fn create_upload(&self, req: UploadRequest) -> Result<UploadAnswer, Error> {
        if !(manifest::PIECE_BYTES_MIN..=manifest::PIECE_BYTES_MAX).contains(&req.piece_bytes) {
            return Err(Error::InvalidRequest(format!(
                "piece_bytes must be {} to {}",
                manifest::PIECE_BYTES_MIN,
                manifest::PIECE_BYTES_MAX
            )));
        }
        if req.size == 0 || req.size > manifest::CONTENT_BYTES_MAX {
            return Err(Error::InvalidRequest(format!(
                "size must be 1 to {} bytes",
                manifest::CONTENT_BYTES_MAX
            )));
        }
        if manifest::piece_count(req.size, req.piece_bytes) != req.pieces.len() as u64 {
            return Err(Error::InvalidRequest(
                "the number of piece hashes does not match size / piece_bytes".into(),
            ));
        }
        if !req.pieces.iter().all(|p| manifest::valid_sha256_hex(p)) {
            return Err(Error::InvalidRequest(
                "piece hashes must be 64 lowercase hex digits".into(),
            ));
        }
        if req.replicas == 0 || req.replicas as usize > self.options.agents {
            return Err(Error::InvalidRequest(format!(
                "replicas must be 1 to {} (the publisher's --agents)",
                self.options.agents
            )));
        }
        if req.title.len() > 200 || req.mime.len() > 100 || !req.mime.contains('/') {
            return Err(Error::InvalidRequest(
                "title or mime type is not acceptable".into(),
            ));
        }
        let live = self.ensure_contracts().await?;
        if (req.replicas as usize) > live {
            return Err(Error::NoStorage(format!(
                "{} replicas asked, but only {live} agents are under contract",
                req.replicas
            )));
        }
        let id = manifest::content_id(req.size, req.piece_bytes, &req.pieces);
        let pieces_json =
            serde_json::to_string(&req.pieces).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let row = (
            contents::id.eq(id.clone()),
            contents::title.eq(req.title.clone()),
            contents::mime.eq(req.mime.clone()),
            contents::size.eq(i64_of(req.size)?),
            contents::piece_bytes.eq(i64_of(req.piece_bytes)?),
            contents::pieces.eq(pieces_json),
            contents::price_per_view.eq(i64_of(req.price_per_view)?),
            contents::replicas_base.eq(i32::try_from(req.replicas).unwrap_or(1)),
            contents::manifest.eq(String::new()),
            contents::created_s.eq(now_s()),
        );
        let cid = id.clone();
        let counts = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let exists: Option<String> = contents::table
                        .find(&cid)
                        .select(contents::id)
                        .first(conn)
                        .optional()?;
                    if exists.is_none() {
                        diesel::insert_into(contents::table)
                            .values(row)
                            .execute(conn)?;
                    }
                    replica_counts(conn, &cid)
                })
            })
            .await?;
        let missing = (0..req.pieces.len() as u64)
            .filter(|i| counts.get(i).copied().unwrap_or(0) < req.replicas as usize)
            .collect();
        Ok(UploadAnswer {
            content: id,
            missing,
        })
    }

    /// Store piece `i` of an upload on as many agents as the content's replicas ask for.
    pub async fn put_piece(
        &self,
        content: &str,
        i: u64,
        bytes: bytes::Bytes,
    ) -> Result<usize, Error> {
        let row = self.content(content).await?;
        let pieces = row.piece_hashes()?;
        let expected = pieces
            .get(usize::try_from(i).unwrap_or(usize::MAX))
            .ok_or_else(|| Error::InvalidRequest(format!("piece {i} is out of range")))?;
        let len = row.piece_len(i);
        let b = bytes.clone();
        let digest = tokio::task::spawn_blocking(move || protocol::sha256_hex(&b))
            .await
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if bytes.len() as u64 != len || &digest != expected {
            return Err(Error::PieceMismatch { piece: i });
        }
        let want = row.replicas_base.max(1) as usize;
        self.add_replicas(content, i, bytes, want).await
    }

    /// Place piece `i` on more agents until it has `want` replicas. Answers the count.
    pub(super) async fn add_replicas(
        &self,
        content: &str,
        i: u64,
        bytes: bytes::Bytes,
        want: usize,
    ) -> Result<usize, Error> {
        let holders = self.holders(content, i).await?;
        if holders.len() >= want {
            return Ok(holders.len());
        }
        let candidates: Vec<ContractRow> = self
            .live_contracts()
            .await?
            .into_iter()
            .filter(|c| !holders.iter().any(|h| h.id == c.id))
            .filter(|c| c.used_bytes + bytes.len() as i64 <= c.block_bytes)
            .collect();
        // Least used first; ties broken by a rotation on the piece index, to spread pieces.
        let n = candidates.len().max(1);
        let mut keyed: Vec<(i64, usize, ContractRow)> = candidates
            .into_iter()
            .enumerate()
            .map(|(k, c)| (c.used_bytes, (k + n - (i as usize % n)) % n, c))
            .collect();
        keyed.sort_by_key(|(used, r, _)| (*used / (1 << 20), *r));
        let chosen: Vec<ContractRow> = keyed
            .into_iter()
            .map(|(_, _, c)| c)
            .take(want - holders.len())
            .collect();
        if chosen.is_empty() {
            return Err(Error::NoStorage(format!(
                "no contract has room for piece {i} ({} bytes)",
                bytes.len()
            )));
        }
        let name = object_name(content, i);
        let puts = chosen.iter().map(|c| {
            let bytes = bytes.clone();
            let name = name.clone();
            async move {
                self.put_paying(c, &name, bytes.to_vec()).await?;
                Ok::<_, Error>(c.id.clone())
            }
        });
        let mut placed = Vec::new();
        let mut last_error = None;
        for r in join_all(puts).await {
            match r {
                Ok(id) => placed.push(id),
                Err(e) => last_error = Some(e),
            }
        }
        let (cid, size) = (content.to_owned(), bytes.len() as i64);
        let count = placed.len();
        let piece = i32::try_from(i).map_err(|_| Error::InvalidRequest("piece index".into()))?;
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    for contract in &placed {
                        diesel::insert_into(replicas::table)
                            .values((
                                replicas::content_id.eq(&cid),
                                replicas::piece.eq(piece),
                                replicas::contract_id.eq(contract),
                                replicas::added_s.eq(now_s()),
                            ))
                            .execute(conn)?;
                        diesel::update(contracts::table.find(contract))
                            .set(contracts::used_bytes.eq(contracts::used_bytes + size))
                            .execute(conn)?;
                    }
                    Ok::<_, Error>(())
                })
            })
            .await?;
        match last_error {
            Some(e) if count == 0 => Err(e),
            _ => Ok(holders.len() + count),
        }
    }

    /// The contracts holding piece `i`, oldest replica first.
    pub(super) async fn holders(&self, content: &str, i: u64) -> Result<Vec<ContractRow>, Error> {
        let (cid, piece) = (content.to_owned(), i32::try_from(i).unwrap_or(i32::MAX));
        self.db
            .run(move |conn| {
                Ok::<_, Error>(
                    replicas::table
                        .inner_join(contracts::table.on(contracts::id.eq(replicas::contract_id)))
                        .filter(replicas::content_id.eq(&cid))
                        .filter(replicas::piece.eq(piece))
                        .order((replicas::added_s, replicas::contract_id))
                        .select(contracts::all_columns)
                        .load::<ContractRow>(conn)?,
                )
            })
            .await
    }

    /// Sign and list the manifest once every piece is stored.
    pub async fn publish(&self, content: &str) -> Result<protocol::cdn::Published, Error> {
        let row = self.content(content).await?;
        let pieces = row.piece_hashes()?;
        let cid = content.to_owned();
        let counts = self.db.run(move |conn| replica_counts(conn, &cid)).await?;
        let missing = (0..pieces.len() as u64)
            .filter(|i| counts.get(i).copied().unwrap_or(0) == 0)
            .count();
        if missing > 0 {
            return Err(Error::Incomplete { missing });
        }
        let m = Manifest {
            content: row.id.clone(),
            publisher: self.key.entity().clone(),
            title: row.title.clone(),
            mime: row.mime.clone(),
            size: row.size as u64,
            piece_bytes: row.piece_bytes as u64,
            pieces_root: manifest::pieces_root(&pieces),
            pieces,
            price_per_view: row.price_per_view as u64,
            currency: self.currency.clone(),
            issuer_url: self.issuer_url.clone(),
        };
        let env = m
            .sign(&self.key)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let text = serde_json::to_string(&env).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let cid = content.to_owned();
        self.db
            .run(move |conn| {
                diesel::update(contents::table.find(&cid))
                    .set(contents::manifest.eq(text))
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.event(content, format!("published \"{}\"", row.title));
        Ok(protocol::cdn::Published {
            content: content.to_owned(),
            manifest: env,
        })
    }
}

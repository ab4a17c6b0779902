//! Views: selling a view and handing out retrieval instructions a window at a time, with the
//! agents paid ahead for the reads.

use super::*;

impl Publisher {
    /// Sell a view: the viewer pays `price_per_view` by paywords sent with the request, or
    /// paid it to the publisher with transaction id `view` (seed 000 section 5.2 steps 2 and
    /// 3). With `--price-per-piece` the view costs nothing up front: pieces are paid with
    /// their instructions. Repeating the call answers the same view.
    pub async fn buy_view(
        &self,
        who: Viewer<'_>,
        content: &str,
        view: &str,
        words: &node::paywords::PaywordHeaders,
    ) -> Result<ViewAnswer, Error> {
        let viewer = who.entity;
        if uuid::Uuid::parse_str(view).is_err() {
            return Err(Error::InvalidRequest("view must be a UUID".into()));
        }
        let row = self.content(content).await?;
        if row.manifest.is_empty() {
            return Err(Error::UnknownContent(content.to_owned()));
        }
        if let Some(v) = self.view(view).await? {
            if v.viewer != viewer.as_str() || v.content_id != content {
                return Err(Error::InvalidRequest("this view id is taken".into()));
            }
            return Ok(ViewAnswer {
                price_per_piece: self.options.price_per_piece,
                view: view.to_owned(),
                content: content.to_owned(),
                paid: v.paid as u64,
                expires_at: protocol::market::format_rfc3339(v.expires_s),
            });
        }
        let mut price = if self.options.price_per_piece > 0 {
            0
        } else {
            row.price_per_view as u64
        };
        // A free view is the publisher's gift (it pays the agents' reads): not to a free rider,
        // who pays their cost ahead.
        let free_rider = price == 0
            && self.options.price_per_piece == 0
            && self
                .free_riders
                .is_free_rider(&self.http, Some(&self.market_url), viewer.as_str())
                .await;
        if free_rider {
            price = self.read_cost(&row).await?;
        }
        if price > 0 && words.payword.is_some() {
            let (paid, expires_s) = self
                .sell_view_for_words(viewer, content, view, price, words)
                .await?;
            self.event(content, format!("sold a view for {paid} in paywords"));
            return Ok(ViewAnswer {
                price_per_piece: 0,
                view: view.to_owned(),
                content: content.to_owned(),
                paid,
                expires_at: protocol::market::format_rfc3339(expires_s),
            });
        }
        let paid = if price == 0 {
            0
        } else {
            // Paid through a bank: the deposit comes from the entity the payer's name
            // resolves to (its bank), naming the payer. Resolved only now, for a view that
            // is to be paid by transfer.
            let banked = match who.name {
                Some(name) => Some((
                    clients::names::resolve_with(name, &self.http)
                        .await
                        .map_err(|e| Error::InvalidRequest(format!("payer {name:?}: {e}")))?
                        .entity
                        .to_string(),
                    name.to_owned(),
                )),
                None => None,
            };
            let page = self
                .wallet
                .deposits(0, VIEW_PAYMENT_WAIT_MS, Some(view))
                .await
                .map_err(upstream("the issuer"))?;
            page.deposits
                .iter()
                .filter(|d| d.transaction_id.as_deref() == Some(view))
                .filter(|d| {
                    d.from == viewer.as_str()
                        || banked.as_ref().is_some_and(|(bank, name)| {
                            d.from == *bank && d.from_name.as_deref() == Some(name)
                        })
                })
                .map(|d| d.amount)
                .fold(0u64, u64::saturating_add)
        };
        if paid < price {
            let (amount_due, pay_to, issuer_url, transaction_id) = (
                price - paid,
                self.pay_to
                    .clone()
                    .unwrap_or_else(|| self.key.entity().to_string()),
                self.issuer_url.clone(),
                view.to_owned(),
            );
            return Err(if free_rider {
                Error::FreeRider {
                    amount_due,
                    pay_to,
                    issuer_url,
                    transaction_id,
                }
            } else {
                Error::PaymentRequired {
                    amount_due,
                    pay_to,
                    issuer_url,
                    transaction_id,
                }
            });
        }
        let expires_s = now_s() + VIEW_TTL_S;
        let values = (
            views::id.eq(view.to_owned()),
            views::content_id.eq(content.to_owned()),
            views::viewer.eq(viewer.to_string()),
            views::paid.eq(i64_of(paid)?),
            views::created_s.eq(now_s()),
            views::expires_s.eq(expires_s),
            views::pieces_paid.eq("[]".to_owned()),
        );
        self.db
            .run(move |conn| {
                diesel::insert_into(views::table)
                    .values(values)
                    .execute(conn)?;
                Ok::<_, Error>(())
            })
            .await?;
        self.event(content, format!("sold a view for {paid}"));
        Ok(ViewAnswer {
            price_per_piece: self.options.price_per_piece,
            view: view.to_owned(),
            content: content.to_owned(),
            paid,
            expires_at: protocol::market::format_rfc3339(expires_s),
        })
    }

    /// What the agents charge to serve the whole content once, at the dearest read price of
    /// the contracts holding it (at least 1): a free view's price for a free rider.
    async fn read_cost(&self, row: &ContentRow) -> Result<u64, Error> {
        let cid = row.id.clone();
        let dearest: Option<i64> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    replicas::table
                        .inner_join(contracts::table.on(contracts::id.eq(replicas::contract_id)))
                        .filter(replicas::content_id.eq(&cid))
                        .select(diesel::dsl::max(contracts::read_per_kib))
                        .first(conn)?,
                )
            })
            .await?;
        let per_kib = dearest.unwrap_or(0).unsigned_abs();
        Ok(
            protocol::market::per_kib_charge(per_kib, row.size.unsigned_abs())
                .unwrap_or(u64::MAX)
                .max(1),
        )
    }

    async fn view(&self, id: &str) -> Result<Option<ViewRow>, Error> {
        let id = id.to_owned();
        self.db
            .run(move |conn| {
                Ok::<_, Error>(views::table.find(&id).first::<ViewRow>(conn).optional()?)
            })
            .await
    }

    /// The view `id` if `viewer` bought it (another's view is as unknown as a missing one).
    pub(super) async fn view_of(&self, viewer: &EntityId, id: &str) -> Result<ViewRow, Error> {
        match self.view(id).await? {
            Some(v) if v.viewer == viewer.as_str() => Ok(v),
            _ => Err(Error::UnknownView(id.to_owned())),
        }
    }

    /// Retrieval instructions for pieces `from .. from + count` of a bought view (seed 000
    /// section 5.2 step 4): the agents' read price is paid ahead, and every replica gets a
    /// one-use token.
    pub async fn instructions(
        &self,
        viewer: &EntityId,
        view: &str,
        from: u64,
        count: u64,
        words: &node::paywords::PaywordHeaders,
    ) -> Result<Vec<PieceInstructions>, Error> {
        let v = self.view_of(viewer, view).await?;
        if v.expires_s <= now_s() {
            return Err(Error::ViewExpired);
        }
        let row = self.content(&v.content_id).await?;
        let pieces = row.piece_hashes()?;
        let n = pieces.len() as u64;
        if from >= n || count == 0 {
            return Err(Error::InvalidRequest(format!(
                "pieces {from}+{count} of {n}"
            )));
        }
        let to = from.saturating_add(count.min(WINDOW_PIECES_MAX)).min(n);
        // Per-piece sales: the window's unpaid pieces are paid first.
        self.charge_pieces(viewer, view, from, to, words).await?;
        {
            let mut asked = self.view_pieces.lock().unwrap_or_else(|p| p.into_inner());
            if asked.len() > VIEW_COUNTERS_MAX {
                asked.clear();
            }
            for i in from..to {
                let times = asked.entry((view.to_owned(), i)).or_insert(0);
                if *times >= PIECE_REQUESTS_PER_VIEW_MAX {
                    return Err(Error::TooManyRequests {
                        piece: i,
                        times: *times,
                    });
                }
                *times += 1;
            }
        }
        // Which contracts hold which pieces.
        let (cid, lo, hi) = (
            v.content_id.clone(),
            i32::try_from(from).unwrap_or(i32::MAX),
            i32::try_from(to).unwrap_or(i32::MAX),
        );
        let placed: Vec<(i32, ContractRow)> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    replicas::table
                        .inner_join(contracts::table.on(contracts::id.eq(replicas::contract_id)))
                        .filter(replicas::content_id.eq(&cid))
                        .filter(replicas::piece.ge(lo))
                        .filter(replicas::piece.lt(hi))
                        .order((replicas::piece, replicas::added_s, replicas::contract_id))
                        .select((replicas::piece, contracts::all_columns))
                        .load::<(i32, ContractRow)>(conn)?,
                )
            })
            .await?;
        let mut need: HashMap<String, (ContractRow, u64)> = HashMap::new();
        for (p, c) in &placed {
            let len = row.piece_len(*p as u64);
            let charge = protocol::market::per_kib_charge(c.read_per_kib as u64, len).unwrap_or(0);
            need.entry(c.id.clone()).or_insert((c.clone(), 0)).1 += charge;
        }
        self.cover_reads(&need).await?;
        // One command per agent for the whole window.
        let mut per_contract: HashMap<String, (ContractRow, Vec<u64>)> = HashMap::new();
        for (p, c) in &placed {
            per_contract
                .entry(c.id.clone())
                .or_insert_with(|| (c.clone(), Vec::new()))
                .1
                .push(*p as u64);
        }
        let content = v.content_id.clone();
        let tokens = per_contract.into_values().map(|(c, pieces)| {
            let names: Vec<String> = pieces.iter().map(|p| object_name(&content, *p)).collect();
            async move {
                let agent = self.agent(&c.endpoint);
                let mut r = agent.retrievals(&c.id, &names, 1, TOKEN_TTL_S).await;
                if matches!(r, Err(ClientError::Unreachable { .. })) {
                    // Once more: a pooled connection to an agent that restarted fails once.
                    r = agent.retrievals(&c.id, &names, 1, TOKEN_TTL_S).await;
                }
                (pieces, c.agent.clone(), r)
            }
        });
        let mut by_piece: HashMap<u64, Vec<Source>> = HashMap::new();
        for (pieces, agent, r) in join_all(tokens).await {
            match r {
                Ok(list) => {
                    for (p, t) in pieces.into_iter().zip(list) {
                        by_piece.entry(p).or_default().push(Source {
                            agent: agent.clone(),
                            url: t.url,
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, agent, "no tokens from an agent"),
            }
        }
        // Holders in a stable order before the per-piece choice of who goes first.
        for sources in by_piece.values_mut() {
            sources.sort_by(|a, b| a.agent.cmp(&b.agent));
        }
        // Which replica a viewer tries first is a hash of (view, piece): load spreads over
        // every holder, independently per piece (a fixed rotation can leave a holder never
        // first when placement repeats with an even period).
        let mut out = Vec::with_capacity((to - from) as usize);
        for i in from..to {
            let mut sources = by_piece.remove(&i).unwrap_or_default();
            if sources.is_empty() {
                return Err(Error::Upstream(format!(
                    "no agent holding piece {i} answered"
                )));
            }
            let k = sources.len();
            let h = protocol::sha256_hex(format!("{view}/{i}").as_bytes());
            let first = u64::from_str_radix(&h[..8], 16).unwrap_or(0) % k as u64;
            sources.rotate_left(first as usize);
            out.push(PieceInstructions {
                index: i,
                sha256: pieces[i as usize].clone(),
                size: row.piece_len(i),
                sources,
            });
        }
        let mut demand = self.demand.lock().unwrap_or_else(|p| p.into_inner());
        let d = demand.entry(v.content_id.clone()).or_default();
        d.pieces_asked += to - from;
        d.last_demand = Some(Instant::now());
        Ok(out)
    }
}

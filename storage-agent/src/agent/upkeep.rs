//! Upkeep: deposits from the issuers, the reaper of ended contracts, the start-up sweep, and
//! the owner's summary (dashboard, `status`).

use super::*;

/// Credit payments to the agent (DESIGN 12): a payment whose `transaction_id` names a
/// contract in the payment's currency credits it as an LCP deposit would, in the transaction
/// that commits the payment, and counts as income; one naming no such contract is refused
/// when its first path arrives (nothing is held). A payment with no `transaction_id` is
/// income only (the line's balance is the agent's to use).
pub fn credit_payment_hook(key: Arc<KeyPair>, config: AgentConfig) -> node::credit::CommitHook {
    std::sync::Arc::new(
        move |conn: &mut AnyConnection, arrived: &node::credit::Arrived<'_>, complete: bool| {
            // Outer error: the database; inner: the refusal to send back.
            let run = |conn: &mut AnyConnection| -> Result<Result<(), String>, Error> {
                let amount = to_i64(arrived.total)?;
                if let Some(t) = arrived.transaction_id {
                    let contract = contracts::table
                        .filter(contracts::id.eq(t))
                        .filter(contracts::issuer.eq(arrived.currency));
                    let found: i64 = contract.count().get_result(conn)?;
                    if found == 0 {
                        return Ok(Err(format!("no contract {t} in this currency here")));
                    }
                    if complete {
                        let noted = usage::credit_paid(conn, t, amount, false)?;
                        if config.tab_limit > 0 {
                            // Paying a contract down lowers the buyer's tab, as a deposit does.
                            let buyer: String = contracts::table
                                .find(t)
                                .select(contracts::buyer)
                                .first(conn)?;
                            let tab = tab::TabRef::of(&key, &config, buyer, arrived.currency);
                            tab::mirror(conn, &tab, true)?;
                        }
                        // The history's rows last: one lock order in every transaction.
                        usage::note_paid(conn, noted)?;
                    }
                }
                if complete {
                    diesel::update(payment_cursors::table.find(arrived.currency))
                        .set(payment_cursors::income.eq(payment_cursors::income + amount))
                        .execute(conn)?;
                }
                Ok(Ok(()))
            };
            run(conn).unwrap_or_else(|e| Err(e.to_string()))
        },
    )
}

impl Agent {
    /// Apply one page of deposits from `issuer`: credit contracts named by `transaction_id`,
    /// count income, and move the cursor, all in one transaction.
    pub async fn apply_deposits(
        &self,
        issuer: &str,
        page: protocol::ledger::DepositsPage,
    ) -> Result<u64, Error> {
        let issuer = issuer.to_owned();
        let (key, config) = (self.key.clone(), self.config.clone());
        // Serialised with contract admission: on PostgreSQL, a deposit that finds no contract
        // (so is held as prepaid) and a contract committed meanwhile (which found nothing held)
        // would otherwise miss each other.
        let _admit = self.admit_lock.lock().await;
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| -> Result<u64, Error> {
                    let mut credited = 0;
                    let mut income: i64 = 0;
                    // Tabs the page moved, mirrored once its contracts are paid (`tab::mirror`
                    // locks each line after every contract change, as a charge does).
                    let mut tabs: Vec<tab::TabRef> = Vec::new();
                    // What the page earned, noted in the history last (after the tabs).
                    let mut noted: Vec<usage::Noted> = Vec::new();
                    for d in &page.deposits {
                        let amount = to_i64(d.amount)?;
                        income = income.saturating_add(amount);
                        if let Some(t) = &d.transaction_id {
                            // A tab's settlement (transaction_id = the line id).
                            if let Some(moved) = tab::settle_deposit(
                                conn,
                                (&key, &config),
                                t,
                                &issuer,
                                amount,
                                &mut noted,
                            )? {
                                tab::note_tab(&mut tabs, moved);
                                credited += 1;
                                continue;
                            }
                            let n: i64 = contracts::table
                                .filter(contracts::id.eq(t))
                                .filter(contracts::issuer.eq(&issuer))
                                .count()
                                .get_result(conn)?;
                            if n > 0 {
                                noted.extend(usage::credit_paid(conn, t, amount, false)?);
                            }
                            credited += n as u64;
                            if n > 0 && config.tab_limit > 0 {
                                // Paying a contract down lowers the buyer's tab too.
                                let buyer: String = contracts::table
                                    .find(t)
                                    .select(contracts::buyer)
                                    .first(conn)?;
                                tab::note_tab(
                                    &mut tabs,
                                    tab::TabRef::of(&key, &config, buyer, &issuer),
                                );
                            }
                            if n == 0 && market::is_uuid_v4(t) {
                                // Paid before proposing: held for the contract with this id.
                                add_prepaid(conn, t, &issuer, amount)?;
                            }
                        }
                    }
                    for moved in &tabs {
                        tab::mirror(conn, moved, true)?;
                    }
                    for n in noted {
                        usage::note_paid(conn, Some(n))?;
                    }
                    let next = to_i64(page.next)?;
                    let updated = diesel::update(payment_cursors::table.find(&issuer))
                        .set((
                            payment_cursors::next.eq(next),
                            payment_cursors::income.eq(payment_cursors::income + income),
                        ))
                        .execute(conn)?;
                    if updated == 0 {
                        diesel::insert_into(payment_cursors::table)
                            .values((
                                payment_cursors::issuer.eq(&issuer),
                                payment_cursors::next.eq(next),
                                payment_cursors::income.eq(income),
                            ))
                            .execute(conn)?;
                    }
                    Ok(credited)
                })
            })
            .await
    }

    pub async fn cursor(&self, issuer: &str) -> Result<u64, Error> {
        let issuer = issuer.to_owned();
        let next: Option<i64> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    payment_cursors::table
                        .find(&issuer)
                        .select(payment_cursors::next)
                        .first(conn)
                        .optional()?,
                )
            })
            .await?;
        Ok(next.unwrap_or(0).unsigned_abs())
    }

    /// Delete the objects of contracts past `end + grace` (and unpaid ones past their TTL) and
    /// release their space. Answers how many contracts were reaped.
    pub async fn reap(&self) -> Result<usize, Error> {
        let now = now_s();
        let grace = to_i64(self.config.grace_s)?;
        let due: Vec<ContractRow> = self
            .db
            .run(move |conn| {
                Ok::<_, Error>(
                    contracts::table
                        .filter(contracts::reaped.eq(0))
                        .load::<ContractRow>(conn)?,
                )
            })
            .await?
            .into_iter()
            .filter(|c| is_due(c, now, grace))
            .collect();
        let mut reaped = 0;
        for c in &due {
            let lock = self.locks.get(&c.id);
            let _guard = lock.lock().await;
            // Re-check under the lock: a payment may have landed since the snapshot.
            let (fresh, _) = self.load(&c.id).await?;
            if fresh.reaped != 0 || !is_due(&fresh, now, grace) {
                continue;
            }
            reaped += 1;
            let id = c.id.clone();
            let paths: Vec<String> = self
                .db
                .run(move |conn| {
                    Ok::<_, Error>(
                        objects::table
                            .filter(objects::contract_id.eq(&id))
                            .select(objects::path)
                            .load(conn)?,
                    )
                })
                .await?;
            for p in &paths {
                self.store.delete(p).await?;
            }
            let id = c.id.clone();
            self.db
                .run(move |conn| {
                    db::write_transaction(conn, |conn| -> Result<(), Error> {
                        diesel::delete(objects::table.filter(objects::contract_id.eq(&id)))
                            .execute(conn)?;
                        diesel::delete(retrievals::table.filter(retrievals::contract_id.eq(&id)))
                            .execute(conn)?;
                        diesel::update(contracts::table.find(&id))
                            .set((contracts::reaped.eq(1), contracts::used_bytes.eq(0)))
                            .execute(conn)?;
                        debug_assert_used_bytes(conn, &id)
                    })
                })
                .await?;
            self.locks.forget(&c.id);
            tracing::info!(contract = %c.id, objects = paths.len(), "contract ended; objects deleted, space released");
        }
        Ok(reaped)
    }

    /// Remove stored bytes no object row names (leftovers of a crash mid-write).
    pub async fn sweep(&self) -> Result<usize, Error> {
        let keep: HashSet<String> = self
            .db
            .run(|conn| Ok::<_, Error>(objects::table.select(objects::path).load::<String>(conn)?))
            .await?
            .into_iter()
            .collect();
        self.store.sweep(&keep).await
    }

    pub async fn summary(&self) -> Result<Summary, Error> {
        let recent: Vec<String> = self
            .recent_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .cloned()
            .collect();
        let mut s = summarize(&self.db, &self.config, self.key.entity()).await?;
        s.recent_errors = recent;
        Ok(s)
    }
}

/// The summary the dashboard and `storage-agent status` show, straight from the database.
pub async fn summarize(
    db: &Database,
    config: &AgentConfig,
    entity: &EntityId,
) -> Result<Summary, Error> {
    let now = now_s();
    let (rows, objs, cursors, audits, used) = db
        .run(move |conn| {
            let rows: Vec<ContractRow> = contracts::table
                .order(contracts::created_s.desc())
                .load(conn)?;
            let objs: Vec<ObjectRow> = objects::table.load(conn)?;
            let cursors: Vec<(String, i64)> = payment_cursors::table
                .select((payment_cursors::issuer, payment_cursors::income))
                .load(conn)?;
            let audits: Option<i64> = stats::table
                .find("audits_answered")
                .select(stats::value)
                .first(conn)
                .optional()?;
            let used = usage::all(conn)?;
            Ok::<_, Error>((rows, objs, cursors, audits, used))
        })
        .await?;
    let reserved = reserved_of(&rows, now);
    let mut by_contract: HashMap<&str, Vec<ObjectRow>> = HashMap::new();
    for o in &objs {
        by_contract
            .entry(o.contract_id.as_str())
            .or_default()
            .push(o.clone());
    }
    let count = |s: &str| rows.iter().filter(|r| r.status(now) == s).count() as u64;
    let earnings = config
        .currencies
        .iter()
        .map(|c| Earning {
            issuer: c.issuer.clone(),
            issuer_url: c.issuer_url.clone(),
            income: cursors
                .iter()
                .find(|(i, _)| i == &c.issuer)
                .map(|(_, v)| v.unsigned_abs())
                .unwrap_or(0),
        })
        .collect();
    Ok(Summary {
        entity: entity.to_string(),
        capacity_bytes: config.capacity_bytes,
        reserved_bytes: reserved,
        used_bytes: rows.iter().map(|r| r.used_bytes.unsigned_abs()).sum(),
        free_bytes: config.capacity_bytes.saturating_sub(reserved),
        contracts_pending: count("pending_payment"),
        contracts_active: count("active"),
        contracts_ended: count("ended"),
        objects: objs.len() as u64,
        earnings,
        audits_answered: audits.unwrap_or(0).unsigned_abs(),
        recent_errors: Vec::new(),
        contracts: rows
            .iter()
            .map(|r| {
                let u = used.get(&r.id).copied().unwrap_or_default();
                ContractView {
                    bytes_written: u.bytes_written,
                    bytes_read: u.bytes_read,
                    audits_answered: u.audits_answered,
                    earned: u.earned,
                    ..view(
                        r,
                        by_contract
                            .get(r.id.as_str())
                            .map(Vec::as_slice)
                            .unwrap_or(&[]),
                        now,
                    )
                }
            })
            .collect(),
    })
}

/// How old the history's last sample may be when it is read before a new one is taken.
pub const HISTORY_SAMPLE_FRESH_S: i64 = 5;

impl Agent {
    /// Write the history's sample (space, probes answered since the last one, the market's
    /// rating) and drop rows past their keeping. Run by the sampler task, and before the
    /// history is read, so it shows the present.
    pub async fn sample_history(&self) -> Result<(), Error> {
        let (used_bytes, reserved_bytes) = self.space().await?;
        let probes = self.probes.swap(0, std::sync::atomic::Ordering::Relaxed);
        let sample = history::Sample {
            used_bytes,
            reserved_bytes,
            probes,
            rating: self
                .standing()
                .map(|m| (m.p_fail, m.audits_passed, m.audits_failed)),
        };
        let written = self
            .db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let now = node::now_s();
                    history::sample(conn, now, &sample)?;
                    history::prune(conn, now).map_err(Error::from)
                })
            })
            .await;
        match &written {
            Ok(_) => self
                .last_sample_s
                .store(node::now_s(), std::sync::atomic::Ordering::Relaxed),
            // Not lost: counted again at the next sample.
            Err(_) => {
                self.probes
                    .fetch_add(probes, std::sync::atomic::Ordering::Relaxed);
            }
        }
        written.map(|_| ())
    }

    /// Bytes used by objects and reserved by contracts now (the contracts only: no objects
    /// are read).
    async fn space(&self) -> Result<(u64, u64), Error> {
        let rows: Vec<ContractRow> = self
            .db
            .run(|conn| Ok::<_, Error>(contracts::table.load(conn)?))
            .await?;
        let used = rows.iter().map(|r| r.used_bytes.unsigned_abs()).sum();
        Ok((used, reserved_of(&rows, now_s())))
    }

    /// `GET /v1/history`: the `step` periods starting in [from_s, to_s) (`total`: one per
    /// currency, everything since the agent began keeping history). Sampled first when the
    /// last sample is older than [`HISTORY_SAMPLE_FRESH_S`], so the page shows the present
    /// without a write per read; a failed sample is logged, and the history answered.
    pub async fn history(
        &self,
        step: &str,
        from_s: u64,
        to_s: u64,
    ) -> Result<protocol::agent::History, Error> {
        let now = node::now_s();
        let last = self
            .last_sample_s
            .load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) > HISTORY_SAMPLE_FRESH_S {
            if let Err(e) = self.sample_history().await {
                tracing::warn!(error = %e, "history sample");
            }
        }
        let (step_c, from, to) = (
            step.to_owned(),
            i64::try_from(from_s).unwrap_or(i64::MAX),
            i64::try_from(to_s).unwrap_or(i64::MAX),
        );
        let periods = self
            .db
            .run(move |conn| {
                if step_c == "total" {
                    history::totals(conn)
                } else {
                    history::periods(conn, &step_c, from, to)
                }
                .map_err(Error::from)
            })
            .await?;
        Ok(protocol::agent::History {
            step: step.to_owned(),
            from_s,
            to_s,
            periods,
        })
    }
}

//! A repository's objects as shards on its slots: sharded and replicated writes (paying on
//! `402`, tolerating slots that do not answer), reads that try the data shards first and
//! rebuild from any k that verify, pay-ahead for bulk writes and reads.

use super::*;
use clients::pay::Failure;

/// What reading shards needs, owned, so a spawned task can read ahead while the caller works
/// (`restore`'s prefetch). Cheap to make: [`Repo::reader`].
#[derive(Clone)]
pub struct Reader {
    agents: Vec<Arc<AgentClient>>,
    slots: Vec<Slot>,
    wallet: IssuerClient,
    words: Option<clients::paywords::PaywordPayer>,
    k: usize,
    m: usize,
    /// Slots whose agent did not answer a read: later reads go straight to the rebuilding
    /// path instead of trying the data shards alone first.
    down: Arc<[AtomicBool]>,
}

impl Reader {
    /// Remember slot `i` as down when `got` says its agent did not answer.
    fn note_unreachable<T>(&self, i: usize, got: &Result<T, Error>) {
        if let Err(Error::Remote { source, .. }) = got {
            if unreachable(source) {
                self.down[i].store(true, Ordering::Relaxed);
            }
        }
    }

    /// Read the k data shards of `name` straight into `into`, joined: the framed object, in
    /// one buffer of exactly its size, with no per-shard copies (a restore's peak memory is
    /// a few packs, not packs plus their shards). False when a shard is missing or its agent
    /// is known to be down, when the shards' lengths differ, or when a body does not fill
    /// its place; `into` is then unspecified.
    async fn fetch_data_into(&self, name: &str, into: &mut Vec<u8>) -> bool {
        let k = self.k;
        if self.down.iter().take(k).any(|d| d.load(Ordering::Relaxed)) {
            return false;
        }
        let opens = (0..k).map(|i| {
            let (agent, slot) = (&self.agents[i], &self.slots[i]);
            async move {
                let got = open_paying(
                    agent,
                    &slot.contract,
                    &format!("{name}-{i}"),
                    Some((&self.wallet, slot)),
                    self.words.as_ref(),
                )
                .await;
                self.note_unreachable(i, &got);
                got.ok()
            }
        });
        let Some(bodies) = join_all(opens)
            .await
            .into_iter()
            .collect::<Option<Vec<reqwest::Response>>>()
        else {
            return false;
        };
        let lens: Vec<Option<u64>> = bodies
            .iter()
            .map(reqwest::Response::content_length)
            .collect();
        let shard_len = match lens.first().copied().flatten() {
            Some(l)
                if l > 0
                    && lens.iter().all(|x| *x == Some(l))
                    && l.saturating_mul(k as u64) <= OBJECT_BYTES_MAX =>
            {
                // Fits: bounded by OBJECT_BYTES_MAX just above.
                l as usize
            }
            _ => return false,
        };
        into.clear();
        // Exactly the object's size: `reserve` would double a reused buffer that is a
        // little short (heaptrack showed two 34 MiB buffers where 17 MiB were needed).
        into.reserve_exact(shard_len * k);
        into.resize(shard_len * k, 0);
        let reads = into
            .chunks_mut(shard_len)
            .zip(bodies)
            .map(|(place, body)| read_body_into(body, place));
        join_all(reads).await.into_iter().all(|filled| filled)
    }

    /// Fetch every shard of `name` (missing ones as `None`).
    pub async fn fetch_shards(&self, name: &str) -> Vec<Option<Vec<u8>>> {
        let gets = (0..self.k + self.m).map(|i| {
            let (a, slot) = (&self.agents[i], &self.slots[i]);
            async move {
                // An agent that did not answer before is not waited for again.
                if self.down[i].load(Ordering::Relaxed) {
                    return None;
                }
                let got = get_paying(
                    a,
                    &slot.contract,
                    &format!("{name}-{i}"),
                    Some((&self.wallet, slot)),
                    self.words.as_ref(),
                )
                .await;
                self.note_unreachable(i, &got);
                got.ok()
            }
        });
        join_all(gets).await
    }

    /// Read `name`, accepting only data that `verify` accepts. The k data shards are read
    /// first: when all arrive and their join verifies, that is the object (no decoding, no
    /// parity read). Otherwise every shard is read and the object is rebuilt from any k
    /// that verify. Answers the data and the shards that were missing or damaged (of
    /// those read).
    pub async fn get<F>(&self, name: &str, verify: F) -> Result<(Vec<u8>, Vec<usize>), Error>
    where
        F: Fn(&[u8]) -> bool,
    {
        self.get_into(name, verify, Vec::new()).await
    }

    /// [`Reader::get`], building the object in `into` (a buffer the caller is done with).
    pub async fn get_into<F>(
        &self,
        name: &str,
        verify: F,
        into: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<usize>), Error>
    where
        F: Fn(&[u8]) -> bool,
    {
        let mut framed = into;
        if self.fetch_data_into(name, &mut framed).await {
            if let Ok(object) = erasure::unframe_in_place(framed) {
                if verify(&object) {
                    return Ok((object, vec![]));
                }
            }
        }
        // The rare path (an agent lost or a shard damaged): read every shard and name the
        // bad ones precisely. The data shards are read again: they were streamed into one
        // buffer and cannot be told apart once joined.
        let shards = self.fetch_shards(name).await;
        rebuild_verified(shards, self.k, self.m, verify, true).map_err(|e| e.naming(name))
    }
}

impl Repo {
    /// Store `bytes` under `name` on every slot (small objects: key file, config).
    pub async fn put_replicated(&self, name: &str, bytes: Vec<u8>) -> Result<Vec<String>, Error> {
        let puts = self.agents.iter().enumerate().map(|(i, a)| {
            let bytes = bytes.clone();
            async move { self.put_paying(i, a, name, bytes).await }
        });
        join_all(puts).await.into_iter().collect()
    }

    /// Erasure-code `data` and store shard `i` as `<name>-<i>` on slot `i`. Answers the
    /// shards' length and Merkle roots.
    pub async fn put_sharded(&self, name: &str, data: &[u8]) -> Result<ShardRoots, Error> {
        let (k, m) = (self.k(), self.config.parity_shards);
        let shards = erasure::encode(data, k, m)?;
        let roots = shard_roots(&shards);
        self.put_shards(name, shards, roots, &|i| erasure::shard(data, k, m, i))
            .await
    }

    /// Store shard `i` of `shards` (from [`erasure::encode`]) as `<name>-<i>` on slot `i`.
    /// `roots` are the shards' own (see [`shard_roots`]); an agent that acknowledges another
    /// root stored other bytes, and the write fails. Each shard is handed over, not copied;
    /// `again(i)` makes shard `i` anew in the rare case that a write must be repeated (the
    /// agent asked for payment first).
    pub async fn put_shards(
        &self,
        name: &str,
        shards: Vec<Vec<u8>>,
        roots: ShardRoots,
        again: &(dyn Fn(usize) -> Result<Vec<u8>, Error> + Sync),
    ) -> Result<ShardRoots, Error> {
        assert_eq!(shards.len(), roots.roots.len(), "a root per shard");
        let skipped = self.unwritten();
        let puts = shards.into_iter().enumerate().map(|(i, shard)| {
            let a = &self.agents[i];
            let name = format!("{name}-{i}");
            let want = &roots.roots[i];
            let skip = skipped.contains(&i);
            let silent = self.silent[i].load(Ordering::Relaxed);
            async move {
                if skip {
                    return Ok(());
                }
                if silent {
                    // Known not to answer in this command: not waited for again.
                    return Err(remote(format!("writing {name}"))(
                        node::client::ClientError::Unreachable {
                            url: self.config.slots[i].endpoint.clone(),
                            message: "it did not answer earlier in this command".into(),
                        },
                    ));
                }
                let got = self
                    .put_paying_with(i, a, &name, shard, &|| again(i))
                    .await?;
                if got != *want {
                    return Err(Error::Corrupt(format!(
                        "{} acknowledged {name} with Merkle root {got}, not the {want} sent",
                        self.config.slots[i].endpoint
                    )));
                }
                Ok(())
            }
        });
        let mut failed = Vec::new();
        for (i, put) in join_all(puts).await.into_iter().enumerate() {
            if let Err(e) = put {
                failed.push((i, e));
            }
        }
        let down = |e: &Error| matches!(e, Error::Remote { source, .. } if unreachable(source));
        for (i, e) in &failed {
            if down(e) {
                self.silent[*i].store(true, Ordering::Relaxed);
            }
        }
        let mut unwritten = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        let would_be = unwritten.len()
            + failed
                .iter()
                .filter(|(i, _)| !unwritten.contains(i))
                .count();
        if failed.iter().all(|(_, e)| down(e)) && would_be <= self.unwritten_max() {
            unwritten.extend(failed.iter().map(|(i, _)| *i));
            return Ok(roots);
        }
        match failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(roots),
        }
    }

    /// An owned reader of this repository's shards.
    pub fn reader(&self) -> Reader {
        Reader {
            agents: self.agents.clone(),
            slots: self.config.slots.clone(),
            wallet: self.wallet.clone(),
            words: self.words.clone(),
            k: self.k(),
            m: self.config.parity_shards,
            down: self.silent.clone(),
        }
    }

    /// Fetch every shard of `name` (missing ones as `None`).
    pub async fn fetch_shards(&self, name: &str) -> Vec<Option<Vec<u8>>> {
        self.reader().fetch_shards(name).await
    }

    /// Read `name`, accepting only data that `verify` accepts ([`Reader::get`]).
    pub async fn get_sharded<F>(
        &self,
        name: &str,
        verify: F,
    ) -> Result<(Vec<u8>, Vec<usize>), Error>
    where
        F: Fn(&[u8]) -> bool,
    {
        self.reader().get(name, verify).await
    }

    /// Write `bytes` as `name` on slot `i`, topping up the contract's credit when the agent
    /// asks for payment. Answers the object's Merkle root.
    pub(super) async fn put_paying(
        &self,
        i: usize,
        agent: &AgentClient,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<String, Error> {
        self.put_paying_with(i, agent, name, bytes.clone(), &|| Ok(bytes.clone()))
            .await
    }

    /// [`Repo::put_paying`] handing `first` over; `again` makes the bytes anew for a retry.
    async fn put_paying_with(
        &self,
        i: usize,
        agent: &AgentClient,
        name: &str,
        first: Vec<u8>,
        again: &(dyn Fn() -> Result<Vec<u8>, Error> + Sync),
    ) -> Result<String, Error> {
        let slot = &self.config.slots[i];
        let len = first.len() as u64;
        let mut bytes = Some(first);
        let charge = protocol::market::per_kib_charge(slot.write_per_kib, len).ok();
        let vendor = slot_agent(slot)?;
        let put = clients::pay::pay_with_words(
            self.words.as_ref(),
            &vendor,
            charge,
            |payment| {
                let body = match bytes.take() {
                    Some(b) => Ok(b),
                    None => again(),
                };
                async move {
                    let body = body.map_err(Failure::Caller)?;
                    Ok(agent
                        .put_paid(&slot.contract, name, body, payment.as_ref())
                        .await?)
                }
            },
            Some(|| async {
                // Enough for this write and a few more like it.
                let charge = charge.unwrap_or(u64::MAX / 8);
                top_up(&self.wallet, slot, charge.saturating_mul(8).max(1024)).await
            }),
            words_failed,
        )
        .await;
        match put {
            Ok(info) => Ok(info.merkle_root),
            Err(Failure::Caller(e)) => Err(e),
            Err(Failure::Agent(e)) if e.code() == Some("contract_not_active") => {
                Err(Error::Ended(format!(
                    "the contracts have ended: run backup repair (slot {i}'s contract \
                     {} on {} refused {name}: {e})",
                    slot.contract, slot.endpoint
                )))
            }
            Err(Failure::Agent(e)) if e.code() == Some("block_full") => Err(Error::Full(format!(
                "the repository is full: slot {i}'s contract ({} on {}) has no room \
                     for {name}. A repository holds about {} x --slot-bytes of packed data; \
                     free space with `backup forget ... --prune`, or start a repository \
                     with a larger --slot-bytes",
                slot.contract,
                slot.endpoint,
                self.k()
            ))),
            Err(Failure::Agent(e)) => {
                Err(remote(format!("writing {name} to {}", slot.endpoint))(e))
            }
        }
    }

    /// Audit leaf `leaf` of object `name` on slot `i`, paying when the agent charges (an
    /// audit past the free one): in words for what it says is due, or by transfer.
    pub async fn audit_paying(
        &self,
        i: usize,
        name: &str,
        leaf: u64,
    ) -> Result<protocol::agent::AuditAnswer, ClientError> {
        let slot = &self.config.slots[i];
        let agent = &self.agents[i];
        let vendor = slot_agent(slot).map_err(|e| ClientError::Config(e.to_string()))?;
        let audit = |payment: Option<clients::paywords::PaywordPayment>| async move {
            Ok(agent
                .audit_paid(&slot.contract, name, leaf, payment.as_ref())
                .await?)
        };
        let pay = || async {
            top_up(&self.wallet, slot, 1024)
                .await
                .map_err(|e| ClientError::Config(e.to_string()))
        };
        let words_failed = |e: clients::wallet::WalletError| ClientError::Config(e.to_string());
        match clients::pay::pay_with_words(
            self.words.as_ref(),
            &vendor,
            None,
            audit,
            Some(pay),
            words_failed,
        )
        .await
        {
            Ok(a) => Ok(a),
            Err(Failure::Agent(e)) | Err(Failure::Caller(e)) => Err(e),
        }
    }

    /// Pay ahead, to every slot's contract, for `bytes_per_slot` at the per-KiB price `price`
    /// picks from the slot with the highest one (a bulk top-up before a large write or read).
    pub async fn prepay(&self, bytes_per_slot: u64, price: fn(&Slot) -> u64) -> Result<(), Error> {
        let per_kib = self.config.slots.iter().map(price).max().unwrap_or(0);
        self.prepay_all(protocol::market::per_kib_charge(per_kib, bytes_per_slot).unwrap_or(0))
            .await
    }

    /// Make every slot's contract hold at least `amount` of credit ahead: only what its
    /// credit does not already cover is paid, so a backup that writes little (a second run
    /// over the same files) pays little, and unused credit never piles up run after run. A
    /// slot whose agent does not answer is not paid (writes to it are skipped anyway).
    pub async fn prepay_all(&self, amount_per_slot: u64) -> Result<(), Error> {
        if amount_per_slot == 0 {
            return Ok(());
        }
        let views = self
            .config
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.silent[*i].load(Ordering::Relaxed))
            .map(
                |(i, slot)| async move { (i, slot, self.agents[i].contract(&slot.contract).await) },
            );
        for (i, slot, view) in futures_util::future::join_all(views).await {
            let credit = match view {
                Ok(v) => v.credit,
                Err(e) if unreachable(&e) => {
                    self.silent[i].store(true, Ordering::Relaxed);
                    continue;
                }
                Err(e) => return Err(remote("reading a contract's credit")(e)),
            };
            let have = u64::try_from(credit).unwrap_or(0);
            let missing = amount_per_slot.saturating_sub(have);
            if missing == 0 {
                continue;
            }
            match &self.words {
                // Words sent with a look at the contract credit it: no transfer, no wait.
                Some(words) => {
                    let payment = words
                        .pay(&slot_agent(slot)?, missing)
                        .await
                        .map_err(words_failed)?;
                    self.agents[i]
                        .contract_paid(&slot.contract, payment.as_ref())
                        .await
                        .map_err(remote("paying a contract ahead by payword"))?;
                }
                None => top_up(&self.wallet, slot, missing).await?,
            }
        }
        Ok(())
    }

    /// Write shards `which` of `name` again, from the object's `data`. Answers how many.
    pub async fn rewrite_shards(
        &self,
        name: &str,
        data: &[u8],
        which: &[usize],
    ) -> Result<usize, Error> {
        let shards = erasure::encode(data, self.k(), self.config.parity_shards)?;
        for &i in which {
            self.put_paying(
                i,
                &self.agents[i],
                &format!("{name}-{i}"),
                shards[i].clone(),
            )
            .await?;
        }
        Ok(which.len())
    }

    /// Delete every shard of `name` (a slot that does not answer is skipped: its contract
    /// lapses). Answers the bytes freed on the agents.
    pub async fn delete_sharded(&self, name: &str) -> Result<u64, Error> {
        let mut freed = 0;
        for (i, a) in self.agents.iter().enumerate() {
            match a
                .delete(&self.config.slots[i].contract, &format!("{name}-{i}"))
                .await
            {
                Ok(v) => freed += v["freed_bytes"].as_u64().unwrap_or(0),
                Err(e) if e.code() == Some("unknown_object") || unreachable(&e) => {}
                Err(e) => return Err(remote(format!("deleting {name}-{i}"))(e)),
            }
        }
        Ok(freed)
    }
}

/// The agent of a slot.
fn slot_agent(slot: &Slot) -> Result<EntityId, Error> {
    EntityId::parse(&slot.agent).map_err(|_| Error::Corrupt("slot agent id".into()))
}

/// The wallet could not make words (no chain left and no funds for one): said as what to do.
fn words_failed(e: clients::wallet::WalletError) -> Error {
    if e.to_string().contains("insufficient") {
        Error::Io(format!(
            "the wallet cannot buy paywords ({e}): fund it and run the command again; what is \
             stored stays"
        ))
    } else {
        Error::Io(format!("paying by payword: {e}"))
    }
}

/// Pay `amount` to the slot's contract (LCP transfer with the contract id).
async fn top_up(wallet: &IssuerClient, slot: &Slot, amount: u64) -> Result<(), Error> {
    let agent = EntityId::parse(&slot.agent).map_err(|_| Error::Corrupt("slot agent id".into()))?;
    // The wallet's issuer is the contract's currency.
    let issuer = wallet
        .signed()
        .audience()
        .await
        .map_err(remote("reading the issuer's id"))?
        .clone();
    let to = clients::pay::AgentRef {
        entity: &agent,
        endpoint: &slot.endpoint,
        issuer: &issuer,
    };
    match clients::pay::top_up(wallet, to, &slot.contract, amount).await {
        Ok(_) => Ok(()),
        // Said as what to do: nothing is lost, the command can simply run again.
        Err(e) if e.code() == Some("insufficient_funds") => Err(Error::Io(format!(
            "the wallet cannot pay agent {} ({e}): fund the wallet ({}) and run the command \
             again; what is stored stays",
            slot.agent,
            wallet.payer()
        ))),
        Err(e) => Err(remote("paying the agent")(e)),
    }
}

/// The length and Merkle roots (protocol::merkle, as agents compute them) of one object's
/// shards, which all have one length.
pub fn shard_roots(shards: &[Vec<u8>]) -> ShardRoots {
    ShardRoots {
        shard_len: shards.first().map_or(0, |s| s.len() as u64),
        roots: shards
            .iter()
            .map(|s| protocol::merkle::MerkleTree::from_bytes(s).root_hex())
            .collect(),
    }
}

/// Stream `body` into `place`, which it must fill exactly.
async fn read_body_into(mut body: reqwest::Response, place: &mut [u8]) -> bool {
    let mut at = 0;
    loop {
        match body.chunk().await {
            Ok(Some(bytes)) => {
                let Some(dst) = place.get_mut(at..at + bytes.len()) else {
                    return false;
                };
                dst.copy_from_slice(&bytes);
                at += bytes.len();
            }
            Ok(None) => return at == place.len(),
            Err(_) => return false,
        }
    }
}

/// Read a whole object; with a wallet, top up the contract's read credit on `402` and retry.
pub async fn get_paying(
    agent: &AgentClient,
    contract: &str,
    name: &str,
    payer: Option<(&IssuerClient, &Slot)>,
    words: Option<&clients::paywords::PaywordPayer>,
) -> Result<Vec<u8>, Error> {
    let body = open_paying(agent, contract, name, payer, words).await?;
    // No copy when the body is one buffer.
    body.bytes()
        .await
        .map(Vec::from)
        .map_err(|e| remote(format!("reading {name}"))(ClientError::Decode(e.to_string())))
}

/// Start reading a whole object (its body still to come); with a wallet, top up the
/// contract's read credit on `402` and retry.
pub async fn open_paying(
    agent: &AgentClient,
    contract: &str,
    name: &str,
    payer: Option<(&IssuerClient, &Slot)>,
    words: Option<&clients::paywords::PaywordPayer>,
) -> Result<reqwest::Response, Error> {
    let pay = payer.map(|(wallet, slot)| {
        move || async move {
            let charge = protocol::market::per_kib_charge(slot.read_per_kib, 64 << 20)
                .unwrap_or(u64::MAX / 8);
            top_up(wallet, slot, charge.max(1024)).await
        }
    });
    let read = |payment: Option<clients::paywords::PaywordPayment>| async move {
        Ok(agent
            .open_paid(contract, name, None, payment.as_ref())
            .await?)
    };
    let vendor = agent_of(agent).await;
    // Words only with a slot to pay (a read of the repository's key before the slots are
    // known pays nothing), and a vendor id to give them to.
    let words = words.filter(|_| payer.is_some() && vendor.is_some());
    let vendor = vendor.unwrap_or_else(|| agent.signed().key().entity().clone());
    match clients::pay::pay_with_words(words, &vendor, None, read, pay, words_failed).await {
        Ok(body) => Ok(body),
        Err(Failure::Caller(e)) => Err(e),
        Err(Failure::Agent(e)) => Err(remote(format!("reading {name}"))(e)),
    }
}

/// The agent's entity id (its descriptor's, learned once per client).
async fn agent_of(agent: &AgentClient) -> Option<EntityId> {
    agent.signed().audience().await.ok().cloned()
}

/// Rebuild from shards, trying subsets of `k` present shards (data shards first) until
/// `verify` accepts the result; then name the shards that are missing and, with
/// `name_damaged`, those that disagree with it.
pub fn rebuild_verified<F>(
    shards: Vec<Option<Vec<u8>>>,
    k: usize,
    m: usize,
    verify: F,
    name_damaged: bool,
) -> Result<(Vec<u8>, Vec<usize>), Error>
where
    F: Fn(&[u8]) -> bool,
{
    let present: Vec<usize> = (0..shards.len()).filter(|&i| shards[i].is_some()).collect();
    if present.len() < k {
        return Err(Error::NotEnoughShards {
            object: String::new(),
            present: present.len(),
            needed: k,
        });
    }
    // Shards of one object have one length; a shard of another length is damaged.
    let mut pick: Vec<usize> = (0..k).collect();
    loop {
        let chosen: Vec<usize> = pick.iter().map(|&p| present[p]).collect();
        let subset: Vec<Option<Vec<u8>>> = (0..shards.len())
            .map(|i| {
                if chosen.contains(&i) {
                    shards[i].clone()
                } else {
                    None
                }
            })
            .collect();
        if let Ok(data) = erasure::decode(subset, k, m) {
            if verify(&data) {
                if !name_damaged {
                    let missing = (0..shards.len()).filter(|&i| shards[i].is_none()).collect();
                    return Ok((data, missing));
                }
                let good = erasure::encode(&data, k, m)?;
                let bad = (0..shards.len())
                    .filter(|&i| shards[i].as_ref() != Some(&good[i]))
                    .collect();
                return Ok((data, bad));
            }
        }
        if !protocol::book::next_combination(&mut pick, present.len()) {
            return Err(Error::Corrupt(
                "no combination of the shards rebuilds verified data".into(),
            ));
        }
    }
}

//! A CLI's own record chain (DESIGN section 11): the half-blocks it proposed and the
//! agreements its counter-parties answered, kept beside its key in `<key>.records/chain.jsonl`
//! (one block per line, appended and fsynced).
//!
//! A CLI runs no server, so it is always the initiator: it appends a proposal, sends it with
//! `POST /v1/records`, and keeps the agreement. A failed or refused agreement never blocks the
//! deal: the proposal stays in the chain, unanswered, and is sent again later
//! ([`RecordChain::unanswered`]).
//!
//! Invariants:
//! - A proposal is on disk (fsynced) before it is sent: a crash never leaves a block signed
//!   and sent but forgotten, which would make the next append a fork.
//! - The file holds one chain that links from its first block; one that does not is refused
//!   at open, not extended.
//! - On a machine with no chain file yet, the CLI first asks its counter-parties for its own
//!   chain's head ([`RecordChain::continue_from`]) so that a restored key continues its chain.
//! - One process appends at a time (a lock file in the directory); another that comes
//!   meanwhile waits its turn, up to [`RECORDS_LOCK_WAIT_MS_MAX`].

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use node::client::{ClientError, SignedClient};
use protocol::record::{
    check_agreement, check_link, BlockFields, HalfBlock, RecordsPage, GENESIS_HASH,
};
use protocol::KeyPair;

/// The chain file inside the records directory.
const CHAIN_FILE: &str = "chain.jsonl";

/// Longest [`RecordChain::open`] waits while another process holds the chain. Holders keep it
/// for a record's exchanges (a gateway's background `tokens` records, a backup recording a
/// deal), usually moments, so `cdn records` run beside a gateway waits its turn instead of
/// failing. One request's bound: a holder sending to a counter-party that does not answer
/// (or sending several unanswered proposals again) can keep it longer, and the waiter then
/// says the chain is busy.
pub const RECORDS_LOCK_WAIT_MS_MAX: u64 = node::client::REQUEST_MS_MAX;

/// Where a sent proposal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agreed {
    /// The counter-party agreed; its half is kept.
    Yes(HalfBlock),
    /// Not now (unreachable, refused, busy): the proposal waits to be sent again.
    Later(String),
}

/// A CLI's chain and the agreements it holds.
pub struct RecordChain {
    dir: PathBuf,
    key: Arc<KeyPair>,
    /// Our own blocks, in order, linking from the first held (sequence 1, or the head
    /// adopted from counter-parties on a fresh machine).
    own: Vec<HalfBlock>,
    /// Counter-parties' agreements, by the sequence number of our proposal they answer.
    agreements: HashMap<u64, HalfBlock>,
    /// Whether the chain file existed or was started here (false: the head is unknown).
    known: bool,
    _lock: node::datadir::DirLock,
}

impl RecordChain {
    /// The records directory of the key at `key_path`.
    pub fn dir_of(key_path: &Path) -> PathBuf {
        let mut dir = key_path.as_os_str().to_owned();
        dir.push(".records");
        PathBuf::from(dir)
    }

    /// Open (or start) the chain of `key` kept beside `key_path`, waiting up to
    /// [`RECORDS_LOCK_WAIT_MS_MAX`] while another process appends to it. Blocks the calling
    /// thread: async code calls [`RecordChain::open_async`].
    pub fn open(key_path: &Path, key: Arc<KeyPair>) -> Result<RecordChain, ClientError> {
        Self::open_waiting(key_path, key, RECORDS_LOCK_WAIT_MS_MAX)
    }

    /// [`RecordChain::open`] on a blocking thread, for async callers (the open waits for the
    /// lock and reads the whole file).
    pub async fn open_async(
        key_path: &Path,
        key: Arc<KeyPair>,
    ) -> Result<RecordChain, ClientError> {
        let key_path = key_path.to_owned();
        tokio::task::spawn_blocking(move || Self::open(&key_path, key))
            .await
            .map_err(|e| ClientError::Config(format!("the record chain's open stopped: {e}")))?
    }

    /// [`RecordChain::open`] with its own bound on the wait for the lock (0: fail at once).
    pub fn open_waiting(
        key_path: &Path,
        key: Arc<KeyPair>,
        wait_ms_max: u64,
    ) -> Result<RecordChain, ClientError> {
        let dir = Self::dir_of(key_path);
        std::fs::create_dir_all(&dir)
            .map_err(|e| ClientError::Config(format!("cannot create {}: {e}", dir.display())))?;
        let lock = node::datadir::lock_waiting(&dir, "records", wait_ms_max).map_err(|e| {
            ClientError::Config(format!(
                "the record chain is busy: {e}; try again in a moment"
            ))
        })?;
        let path = dir.join(CHAIN_FILE);
        let known = path.exists();
        let mut chain = RecordChain {
            dir,
            key,
            own: Vec::new(),
            agreements: HashMap::new(),
            known,
            _lock: lock,
        };
        if known {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))?;
            // A crash mid-append leaves a last line cut short: it was never sent (the
            // proposal is sent only once its line is synced), so it is cut off the file
            // before anything is appended after it.
            if !text.is_empty() && !text.ends_with('\n') {
                let keep = text.rfind('\n').map_or(0, |at| at + 1);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(keep as u64).and_then(|()| f.sync_all()));
                f.map_err(|e| {
                    ClientError::Config(format!("cannot repair {}: {e}", path.display()))
                })?;
            }
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<HalfBlock>(line) {
                    Ok(block) => chain.take(block).map_err(|e| {
                        ClientError::Config(format!("{}: line {}: {e}", path.display(), i + 1))
                    })?,
                    Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                    Err(e) => {
                        return Err(ClientError::Config(format!(
                            "{}: line {}: not a half-block: {e}",
                            path.display(),
                            i + 1
                        )))
                    }
                }
            }
        }
        Ok(chain)
    }

    /// Add a block read from the file: one of ours (linking to the last), or an agreement.
    fn take(&mut self, block: HalfBlock) -> Result<(), String> {
        let me = self.key.entity().as_str();
        if block.public_key == me {
            // The first block held may be past sequence 1: a head adopted from
            // counter-parties on this machine (`continue_from`).
            if let Some(last) = self.own.last() {
                check_link(last, &block).map_err(|e| e.to_string())?;
            }
            self.own.push(block);
        } else {
            self.agreements.insert(block.link_sequence_number, block);
        }
        Ok(())
    }

    fn append_line(&self, block: &HalfBlock) -> Result<(), ClientError> {
        let path = self.dir.join(CHAIN_FILE);
        let mut line = serde_json::to_string(block)
            .map_err(|e| ClientError::Config(format!("cannot write a half-block: {e}")))?;
        line.push('\n');
        let io = |e: std::io::Error| {
            ClientError::Config(format!("cannot append to {}: {e}", path.display()))
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    /// Our chain's head: the last block of ours held.
    pub fn head(&self) -> Option<&HalfBlock> {
        self.own.last()
    }

    /// Our blocks held, in order.
    pub fn own(&self) -> &[HalfBlock] {
        &self.own
    }

    /// The agreement to our proposal at `sequence`, if held.
    pub fn agreement(&self, sequence: u64) -> Option<&HalfBlock> {
        self.agreements.get(&sequence)
    }

    /// Whether the chain file exists on this machine (else ask counter-parties for the head
    /// first: [`RecordChain::continue_from`]).
    pub fn known(&self) -> bool {
        self.known
    }

    /// On a machine with no chain file: ask each of `servers` for our chain's head and
    /// continue after the highest valid one (a restore on a fresh machine). Servers that do
    /// not answer are skipped; none answering leaves a new chain from sequence 1.
    pub async fn continue_from(&mut self, servers: &[SignedClient]) -> Result<u64, ClientError> {
        if self.known {
            return Ok(self.head().map_or(0, |h| h.sequence_number));
        }
        let me = self.key.entity().to_string();
        let mut best: Option<HalfBlock> = None;
        for server in servers {
            let Ok(page) = server
                .query::<RecordsPage>(&format!("/v1/records?public_key={me}&from=1"), 0)
                .await
            else {
                continue;
            };
            if page.head == 0 {
                continue;
            }
            let head_block = match page.blocks.iter().find(|b| b.sequence_number == page.head) {
                Some(b) => Some(b.clone()),
                None => server
                    .query::<RecordsPage>(
                        &format!("/v1/records?public_key={me}&from={}", page.head),
                        0,
                    )
                    .await
                    .ok()
                    .and_then(|p| p.blocks.into_iter().next()),
            };
            let Some(head_block) = head_block else {
                continue;
            };
            if head_block.public_key != me || head_block.validate().is_err() {
                continue;
            }
            if best
                .as_ref()
                .is_none_or(|b| head_block.sequence_number > b.sequence_number)
            {
                best = Some(head_block);
            }
        }
        self.known = true;
        if let Some(head) = best {
            let seq = head.sequence_number;
            self.append_line(&head)?;
            self.own.push(head);
            return Ok(seq);
        }
        // Mark the chain known on disk, so the next run does not ask again.
        let path = self.dir.join(CHAIN_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| ClientError::Config(format!("cannot create {}: {e}", path.display())))?;
        Ok(0)
    }

    /// Append a proposal of `kind` with `transaction` to `counterparty`, fsynced, and answer
    /// it (to be sent with [`RecordChain::send`]).
    pub fn propose(
        &mut self,
        counterparty: &str,
        kind: &str,
        transaction: &serde_json::Value,
    ) -> Result<HalfBlock, ClientError> {
        let (seq, previous) = match self.own.last() {
            Some(h) => (h.sequence_number + 1, h.hash()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let text = transaction.to_string();
        let block = HalfBlock::sign(
            &self.key,
            BlockFields {
                sequence_number: seq,
                link_public_key: counterparty,
                link_sequence_number: 0,
                previous_hash: &previous,
                kind,
                transaction: &text,
                timestamp: node::now_ms(),
            },
        );
        block
            .validate()
            .map_err(|e| ClientError::Config(format!("cannot write this record: {e}")))?;
        self.append_line(&block)?;
        self.known = true;
        self.own.push(block.clone());
        Ok(block)
    }

    /// Send `proposal` to `server` (`POST /v1/records`) and keep the agreement it answers.
    /// Anything short of a valid agreement is [`Agreed::Later`]: the deal goes on.
    pub async fn send(
        &mut self,
        server: &SignedClient,
        proposal: &HalfBlock,
        counter: u64,
    ) -> Result<Agreed, ClientError> {
        let body = serde_json::to_vec(proposal)
            .map_err(|e| ClientError::Config(format!("cannot send a half-block: {e}")))?;
        let answer = match server
            .command::<HalfBlock>("POST", "/v1/records", body, counter)
            .await
        {
            Ok(a) => a.value,
            Err(e) => return Ok(Agreed::Later(e.to_string())),
        };
        if let Err(e) = answer
            .validate()
            .and_then(|_| check_agreement(proposal, &answer))
        {
            return Ok(Agreed::Later(format!(
                "the answer is not an agreement: {e}"
            )));
        }
        self.append_line(&answer)?;
        self.agreements
            .insert(proposal.sequence_number, answer.clone());
        Ok(Agreed::Yes(answer))
    }

    /// Unanswered proposals still worth sending again at `now_ms`: those written in the last
    /// [`RESEND_AGE_MS_MAX`]. Older ones stay in the chain (shown as waiting) but are no
    /// longer sent: a counter-party that refused a proposal for a week (its books lost the
    /// deal) would refuse it forever, and every deal would pay for asking again.
    pub fn to_resend(&self, now_ms: u64) -> Vec<HalfBlock> {
        let oldest = now_ms.saturating_sub(RESEND_AGE_MS_MAX);
        self.unanswered()
            .into_iter()
            .filter(|b| b.timestamp >= oldest)
            .collect()
    }

    /// Our proposals with no agreement held, oldest first.
    pub fn unanswered(&self) -> Vec<HalfBlock> {
        self.own
            .iter()
            .filter(|b| b.is_proposal() && !self.agreements.contains_key(&b.sequence_number))
            .cloned()
            .collect()
    }
}

/// One block of a CLI's chain, for people and `--json` (`backup records`, `cdn records`).
#[derive(Debug, serde::Serialize)]
pub struct ShownBlock {
    pub sequence_number: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub counterparty: String,
    pub transaction: serde_json::Value,
    pub timestamp_ms: u64,
    pub hash: String,
    /// The counter-party's agreement is held.
    pub agreed: bool,
    /// The counter-party's half-block, when held.
    pub agreement: Option<HalfBlock>,
}

/// A CLI's chain as its `records` command shows it.
#[derive(Debug, serde::Serialize)]
pub struct Shown {
    pub entity: String,
    pub blocks: Vec<ShownBlock>,
    pub agreed: usize,
    pub waiting: usize,
}

impl RecordChain {
    /// The chain for people and `--json`.
    pub fn shown(&self) -> Shown {
        let blocks: Vec<ShownBlock> = self
            .own
            .iter()
            .map(|b| {
                let agreement = self.agreement(b.sequence_number).cloned();
                ShownBlock {
                    sequence_number: b.sequence_number,
                    kind: b.kind.clone(),
                    counterparty: b.link_public_key.clone(),
                    transaction: b.transaction_json(),
                    timestamp_ms: b.timestamp,
                    hash: b.hash(),
                    agreed: agreement.is_some() || !b.is_proposal(),
                    agreement,
                }
            })
            .collect();
        let agreed = blocks.iter().filter(|b| b.agreed).count();
        Shown {
            entity: self.key.entity().to_string(),
            waiting: blocks.len() - agreed,
            agreed,
            blocks,
        }
    }
}

/// `shown` as lines for people: a summary, then a line per block.
pub fn shown_lines(shown: &Shown) -> Vec<String> {
    let mut lines = vec![format!(
        "{} blocks in the chain of {} ({} agreed, {} waiting)",
        shown.blocks.len(),
        shown.entity,
        shown.agreed,
        shown.waiting
    )];
    for b in &shown.blocks {
        lines.push(format!(
            "  #{:<4} {:<10} {} with {}: {}",
            b.sequence_number,
            b.kind,
            if b.agreed { "agreed " } else { "waiting" },
            b.counterparty,
            b.transaction
        ));
    }
    lines
}

/// The `contract` record of a contract that became active (DESIGN 11):
/// `{"contract", "event": "active", "block_bytes", "contract_price"}`.
pub fn contract_active(terms: &protocol::market::Contract) -> serde_json::Value {
    serde_json::json!({
        "contract": terms.id,
        "event": "active",
        "block_bytes": terms.block_bytes,
        "contract_price": terms.contract_price,
    })
}

/// The `contract` record of a contract that has ended (DESIGN 11), with the figures of its
/// agent's view (`bytes_written`, `bytes_read`, `audits_answered` as `audits_passed`): the
/// agent agrees only to its own books.
pub fn contract_completed(view: &protocol::agent::ContractView) -> serde_json::Value {
    serde_json::json!({
        "contract": view.id,
        "event": "completed",
        "block_bytes": view.block_bytes,
        "contract_price": view.contract_price,
        "bytes_written": view.bytes_written,
        "bytes_read": view.bytes_read,
        "audits_passed": view.audits_answered,
    })
}

/// Record a deal with the server `counterparty` (a buyer's CLI after a purchase, say): open
/// the chain beside `key_path`, continue it from the counter-party's copy on a machine that has
/// none, propose `transaction`, send it. Never an error for the deal: anything that fails is
/// said in the answer ([`Agreed::Later`]), and the proposal, once written, is sent again by
/// [`resend_unanswered`].
pub async fn record_deal(
    key_path: &Path,
    key: Arc<KeyPair>,
    counterparty: &SignedClient,
    kind: &str,
    transaction: &serde_json::Value,
) -> Agreed {
    let attempt = async {
        let mut chain = RecordChain::open_async(key_path, key).await?;
        chain
            .continue_from(std::slice::from_ref(counterparty))
            .await?;
        let to = counterparty.audience().await?.to_string();
        let proposal = chain.propose(&to, kind, transaction)?;
        chain
            .send(counterparty, &proposal, RECORD_COUNTERS.next())
            .await
    };
    attempt
        .await
        .unwrap_or_else(|e: ClientError| Agreed::Later(e.to_string()))
}

/// How long an unanswered `tokens` proposal holds back the next ones to its agent (a day).
pub const TOKENS_UNANSWERED_WAIT_MS_MAX: u64 = 86_400_000;

/// Record bytes read through `agent`'s retrieval tokens (a gateway, DESIGN 11): `tokens` are
/// `(token name, bytes received)` (at most [`protocol::record::TOKENS_PER_RECORD_MAX`]).
/// `bytes_total` continues from the last `tokens` record this agent agreed to. `Err` when
/// nothing was proposed (the caller keeps the tokens for later): the chain could not be opened
/// or the agent reached, or an earlier `tokens` proposal to it is not agreed yet (the agent
/// checks totals in order, so a second would be refused). One unanswered for
/// [`TOKENS_UNANSWERED_WAIT_MS_MAX`] no longer holds the others back: the agent refuses it
/// for good (its books lost the tokens), and totals go on from the last agreed record.
pub async fn record_tokens(
    key_path: &Path,
    key: Arc<KeyPair>,
    agent: &SignedClient,
    tokens: &[(String, u64)],
) -> Result<Agreed, String> {
    use protocol::record::{kinds, TokensRecord, TOKENS_PER_RECORD_MAX};
    if tokens.is_empty() || tokens.len() > TOKENS_PER_RECORD_MAX {
        return Err(format!(
            "a tokens record names 1..={TOKENS_PER_RECORD_MAX} tokens"
        ));
    }
    let text = |e: ClientError| e.to_string();
    let mut chain = RecordChain::open_async(key_path, key).await.map_err(text)?;
    chain
        .continue_from(std::slice::from_ref(agent))
        .await
        .map_err(text)?;
    let to = agent.audience().await.map_err(text)?.to_string();
    let to_agent = |b: &&HalfBlock| b.kind == kinds::TOKENS && b.link_public_key == to;
    let recent = node::now_ms().saturating_sub(TOKENS_UNANSWERED_WAIT_MS_MAX);
    if chain
        .unanswered()
        .iter()
        .any(|b| to_agent(&b) && b.timestamp >= recent)
    {
        return Err("an earlier tokens record to this agent is not agreed yet".into());
    }
    let so_far = chain
        .own()
        .iter()
        .rev()
        .filter(to_agent)
        .filter(|b| chain.agreement(b.sequence_number).is_some())
        .find_map(|b| serde_json::from_str::<TokensRecord>(&b.transaction).ok())
        .map_or(0, |t| t.bytes_total);
    let bytes = tokens
        .iter()
        .try_fold(0u64, |sum, (_, n)| sum.checked_add(*n))
        .ok_or("the bytes overflow")?;
    let record = TokensRecord {
        tokens: tokens.iter().map(|(name, _)| name.clone()).collect(),
        bytes,
        bytes_total: so_far.checked_add(bytes).ok_or("the total overflows")?,
    };
    let tx = serde_json::to_value(&record).map_err(|e| e.to_string())?;
    let proposal = chain.propose(&to, kinds::TOKENS, &tx).map_err(text)?;
    // Written: from here on the proposal is the chain's, sent again if not agreed now.
    Ok(chain
        .send(agent, &proposal, RECORD_COUNTERS.next())
        .await
        .unwrap_or_else(|e| Agreed::Later(e.to_string())))
}

/// How long an unanswered proposal is sent again (a week).
pub const RESEND_AGE_MS_MAX: u64 = 7 * 86_400_000;

/// Send our unanswered proposals again (those of the last [`RESEND_AGE_MS_MAX`]), each to the
/// server in `servers` that is its counter-party (others wait). Answers how many are agreed
/// now.
pub async fn resend_unanswered(
    key_path: &Path,
    key: Arc<KeyPair>,
    servers: &[SignedClient],
) -> Result<usize, ClientError> {
    let mut chain = RecordChain::open_async(key_path, key).await?;
    let mut agreed = 0;
    for proposal in chain.to_resend(node::now_ms()) {
        for server in servers {
            let Ok(who) = server.audience().await else {
                continue;
            };
            if who.as_str() != proposal.link_public_key {
                continue;
            }
            if let Agreed::Yes(_) = chain
                .send(server, &proposal, RECORD_COUNTERS.next())
                .await?
            {
                agreed += 1;
            }
            break;
        }
    }
    Ok(agreed)
}

/// Counters of record commands (servers only need them unique per sender).
static RECORD_COUNTERS: std::sync::LazyLock<node::client::ClockCounter> =
    std::sync::LazyLock::new(node::client::ClockCounter::default);

#[cfg(test)]
mod tests;

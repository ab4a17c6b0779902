//! The writer's side of `POST /lcp/v1/transfers/batch` (issue 21): many transfers from one
//! sender under one counter, in the batch's group commit like any transfer.
//!
//! Each item is checked and posted as a single transfer would be, in order, against the
//! balances the items before it left (so funds run out at the first item they do not cover,
//! and later smaller items may still pass). The command's answer lists every item's outcome
//! and is stored whatever they are: a repeated batch replays it and pays nothing twice.

use db::AnyConnection;
use protocol::ledger::{BatchAnswer, BatchItemResult};

use super::{BatchOrder, BatchWork, Outcome, WriterState};
use crate::error::Error;

/// An item's refusal as the answer lists it (the code and message of the single transfer's).
fn refused(e: &Error) -> BatchItemResult {
    BatchItemResult {
        result: "error".into(),
        seq: None,
        fee: None,
        code: Some(e.code().to_owned()),
        message: Some(e.to_string()),
    }
}

impl WriterState {
    /// Check and apply a batch of transfers; its answer is recorded whatever the items' fate.
    pub(super) fn batch(
        &mut self,
        conn: &mut AnyConnection,
        o: &BatchOrder,
        now_ms: u64,
        work: &mut BatchWork,
    ) -> Result<Outcome, db::DbError> {
        let mut results = Vec::with_capacity(o.items.len());
        for item in &o.items {
            let result = match item {
                Err(e) => refused(e),
                Ok(t) => match self.apply_transfer(conn, &o.sender, t, now_ms, work)? {
                    Ok((seq, fee)) => BatchItemResult {
                        result: "success".into(),
                        seq: Some(seq),
                        fee: Some(fee),
                        code: None,
                        message: None,
                    },
                    Err(e) => refused(&e),
                },
            };
            results.push(result);
        }
        let answer = BatchAnswer {
            results,
            balance: self.balance_of(conn, o.sender.as_str(), &work.overlay)?,
        };
        self.answer(work, &o.sender, o.counter, &o.body_sha256, &answer)
    }
}

//! The publisher's records (DESIGN 11): a viewer's gateway proposes a `view` record once it
//! bought a view (`{"view", "content", "price"}`, price the amount paid for it, in minor
//! units); the publisher agrees when its own `views` row says the same: this view, of this
//! content, sold to the proposer, for that amount. A refused proposal of a viewer who bought
//! a view here is kept (it is in the viewer's chain); a stranger's is not.

use std::sync::Arc;

use db::AnyConnection;
use diesel::prelude::*;
use node::records::RecordBook;
use protocol::record::{kinds, HalfBlock};
use protocol::KeyPair;

use crate::schema::views;

/// The `view` record's transaction.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewRecord {
    pub view: String,
    pub content: String,
    pub price: u64,
}

fn check_books(conn: &mut AnyConnection, proposal: &HalfBlock) -> Result<(), String> {
    if proposal.kind != kinds::VIEW {
        return Err(format!(
            "this publisher records only `{}` deals, not `{}`",
            kinds::VIEW,
            proposal.kind
        ));
    }
    let tx: ViewRecord = serde_json::from_str(&proposal.transaction)
        .map_err(|e| format!("the transaction is not a view record this publisher keeps: {e}"))?;
    let row: Option<(String, String, i64)> = views::table
        .find(&tx.view)
        .select((views::content_id, views::viewer, views::paid))
        .first(conn)
        .optional()
        .map_err(|e| format!("cannot read the view: {e}"))?;
    let Some((content, viewer, paid)) = row else {
        return Err(format!("no view {} sold here", tx.view));
    };
    if viewer != proposal.public_key {
        return Err("the view was sold to another viewer".into());
    }
    if content != tx.content || paid.unsigned_abs() != tx.price {
        return Err(format!(
            "the view is of {content} for {paid}, not of {} for {}",
            tx.content, tx.price
        ));
    }
    Ok(())
}

fn is_viewer(conn: &mut AnyConnection, entity: &str) -> bool {
    views::table
        .filter(views::viewer.eq(entity))
        .count()
        .get_result::<i64>(conn)
        .is_ok_and(|n| n > 0)
}

/// The publisher's record book over its database.
pub fn book(db: db::Database, key: Arc<KeyPair>) -> Arc<RecordBook> {
    node::records::book_checking(db, key, check_books, is_viewer)
}

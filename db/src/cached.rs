//! Statements diesel would prepare anew on every call, kept prepared instead.
//!
//! diesel marks every `UPDATE` it builds as unsafe to cache (a changeset with optional fields
//! makes different SQL from call to call), so each one is parsed and planned by SQLite again
//! every time: in a storage agent's paid read, whose charge updates the contract, its usage
//! and the history's rows, that was about a tenth of the CPU (issue 15's profile). A query
//! whose type has no static id is cached under its SQL text, so different SQL is a different
//! entry and caching is sound; [`Cached`] says so for the statement it wraps.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// `query`, kept in the connection's prepared-statement cache under its SQL text.
pub fn cached<Q>(query: Q) -> Cached<Q> {
    Cached(query)
}

/// See [`cached`].
#[derive(Debug, Clone, Copy)]
pub struct Cached<Q>(Q);

impl<Q> QueryId for Cached<Q> {
    type QueryId = ();
    // No static id: the cache key is the statement's SQL text and its bind types.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, DB> QueryFragment<DB> for Cached<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q, Conn> RunQueryDsl<Conn> for Cached<Q> {}

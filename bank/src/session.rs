//! Customers' web sessions: a random cookie (only its SHA-256 stored), a CSRF token per
//! session that every form carries, and an expiry after which the session is refused.

use diesel::prelude::*;

use crate::error::Error;
use crate::schema::{customers, sessions};
use db::AnyConnection;

/// The session cookie's name.
pub const COOKIE: &str = "bank_session";
/// How long a session lasts by default.
pub const SESSION_TTL_MS_DEFAULT: u64 = 30 * 60 * 1000;

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub customer: String,
    pub csrf: String,
}

/// Why a request has no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSession {
    /// No cookie, or one this bank never issued (or logged out).
    Missing,
    /// The session ended: log in again.
    Expired,
}

fn random_hex(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .map_err(|_| Error::Internal("no randomness".into()))?;
    Ok(hex::encode(buf))
}

/// Check a customer's password: the customer's name when it matches. The same answer for an
/// unknown name and a wrong password.
pub fn check_password(
    conn: &mut AnyConnection,
    name: &str,
    password: &str,
) -> Result<Option<String>, Error> {
    let hash: Option<String> = customers::table
        .find(name)
        .select(customers::password_hash)
        .first(conn)
        .optional()?;
    Ok(match hash {
        Some(h) if crate::password::verify(password, &h) => Some(name.to_owned()),
        _ => None,
    })
}

/// Open a session for `customer`: answers the cookie value (shown to the browser only).
pub fn open(
    conn: &mut AnyConnection,
    customer: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<String, Error> {
    let id = random_hex(32)?;
    let csrf = random_hex(16)?;
    let expires = i64::try_from(now_ms.saturating_add(ttl_ms)).unwrap_or(i64::MAX);
    // Sessions long expired are dropped as new ones open: the table stays small.
    diesel::delete(
        sessions::table.filter(sessions::expires_ms.lt(i64::try_from(now_ms).unwrap_or(i64::MAX))),
    )
    .execute(conn)?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_sha256.eq(protocol::sha256_hex(id.as_bytes())),
            sessions::customer.eq(customer),
            sessions::csrf.eq(csrf),
            sessions::expires_ms.eq(expires),
        ))
        .execute(conn)?;
    Ok(id)
}

/// The session a cookie value names.
pub fn find(
    conn: &mut AnyConnection,
    cookie: &str,
    now_ms: u64,
) -> Result<Result<Session, NoSession>, Error> {
    let row: Option<(String, String, i64)> = sessions::table
        .find(protocol::sha256_hex(cookie.as_bytes()))
        .select((sessions::customer, sessions::csrf, sessions::expires_ms))
        .first(conn)
        .optional()?;
    Ok(match row {
        None => Err(NoSession::Missing),
        Some((_, _, expires)) if expires.unsigned_abs() <= now_ms => Err(NoSession::Expired),
        Some((customer, csrf, _)) => Ok(Session { customer, csrf }),
    })
}

/// End the session a cookie names.
pub fn close(conn: &mut AnyConnection, cookie: &str) -> Result<(), Error> {
    diesel::delete(sessions::table.find(protocol::sha256_hex(cookie.as_bytes()))).execute(conn)?;
    Ok(())
}

/// True when a form's CSRF token is the session's. Both are hex of equal length when
/// genuine; the comparison does not stop at the first difference.
pub fn csrf_matches(session: &Session, given: &str) -> bool {
    session.csrf.len() == given.len()
        && session
            .csrf
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

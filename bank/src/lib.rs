//! A bank for lightweight currencies (seed 000 section 5.1, DESIGN 14).
//!
//! Home users should not have to guard a private key or type a 72-character entity id. At a
//! bank, a customer is `name@bank-host`: people pay the bank's entity with `userid` = name,
//! the bank follows its deposits at each issuer and credits the customer, and the customer's
//! apps pay through the issuer's own `/lcp/v1/*` calls at the bank, authorised by an app
//! token with a currency and a spending limit instead of a signature.
//!
//! Code map:
//! - [`custody`]: the two kinds of account: opaque (held under the bank's entity, in the
//!   bank's books) and transparent (the customer's own key, kept by the bank, used at the
//!   issuers); what differs by kind is decided there.
//! - [`serve`]: `bank serve` (open the database, learn the currencies, start HTTP and the
//!   background tasks).
//! - [`server`]: the HTTP API: the descriptor, `/.well-known/lcp-names`, and the app calls.
//! - [`store`]: customers, balances, statements and tokens in the database; every change of
//!   money is one transaction.
//! - [`watch`]: follows the bank's deposits at each issuer and credits customers.
//! - [`pay`]: payments for customers: money taken from the balance, sent to the issuer,
//!   resent after a crash with the same counter, refunded when refused; between two
//!   customers of the bank, a book entry; for a transparent customer, signed with its key.
//! - [`exchange`]: `--exchange`: limit orders per currency pair, matching, and trades
//!   settled in k steps that each party pays itself (seed 004); `bank orders|trade`.
//! - [`password`]: Argon2id hashes of customers' passwords.
//! - [`page`] and [`session`]: the customers' web page (sign up, log in, balances, statement,
//!   transfer, app tokens) with expiring sessions and a CSRF token on every form.
//!
//! Invariants:
//! - For each currency, the customers' balances plus pending payments never exceed what the
//!   bank holds at the issuer from deposits credited to them (nothing is credited twice: the
//!   deposit cursor moves in the crediting transaction).
//! - A customer's balance never goes negative; a token never spends past its limit.

pub mod custody;
pub mod error;
pub mod exchange;
pub mod page;
pub mod password;
pub mod pay;
pub mod schema;
pub mod serve;
pub mod server;
pub mod session;
pub mod store;
pub mod watch;

pub use error::Error;

/// The bank's embedded migrations (migrations/bank/*).
pub fn migrations() -> db::Migrations {
    use diesel_migrations::{embed_migrations, EmbeddedMigrations};
    const SQLITE: EmbeddedMigrations = embed_migrations!("../migrations/bank/sqlite");
    const POSTGRES: EmbeddedMigrations = embed_migrations!("../migrations/bank/postgres");
    db::Migrations {
        sqlite: SQLITE,
        postgres: POSTGRES,
    }
}

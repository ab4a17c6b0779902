//! What the status page and `GET /v1/status` show: neighbours, tabs both ways, paid-ahead
//! credit, solicitations seen and forwarded, fees, commissions, documents sold, contests.

use db::AnyConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use node::credit::credit_lines;
use serde::Serialize;

use super::neighbors::Neighbor;
use super::Peer;
use crate::error::Error;
use crate::schema::peer_credit;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer: String,
    pub url: String,
    pub strategy: &'static str,
    pub policy: u8,
    pub commission: u64,
    pub solicit_fee: u64,
    pub price: u64,
    pub currencies: Vec<protocol::overlay::CurrencyOffer>,
    pub neighbors: Vec<Neighbor>,
    pub tabs: Vec<TabView>,
    pub paid_ahead: Vec<CreditView>,
    /// Solicitations from others answered here (the owner's own searches not counted).
    pub solicitations_seen: u64,
    /// The owner's own searches.
    pub searches: u64,
    /// Solicitations this peer sent its neighbours (for others and for itself).
    pub solicitations_forwarded: u64,
    pub fees_earned: u64,
    /// Over bids resting on a neighbour's, accepted by others and not refunded: price
    /// minus theirs.
    pub commissions_earned: u64,
    /// Local bids accepted and not refunded (this peer served the document).
    pub documents_sold: u64,
    pub sales_income: u64,
    pub contests: u64,
    pub refunds_given: u64,
    pub documents: usize,
    pub copies: Vec<String>,
    /// Paywords taken, redeemed and pending, per currency.
    pub paywords: Vec<node::paywords::Holdings>,
}

/// A tab: `owes_me` when the neighbour is the debtor here, `i_owe` when this peer is.
#[derive(Debug, Clone, Serialize)]
pub struct TabView {
    pub line: String,
    pub neighbor: String,
    pub currency: String,
    pub direction: &'static str,
    pub owed: u64,
    pub limit: u64,
    pub threshold: u64,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreditView {
    pub buyer: String,
    pub currency: String,
    pub balance: u64,
}

type TabRow = (String, String, String, String, i64, i64, i64, Option<i64>);

/// Tabs and paid-ahead balances shown at most (the largest balances first).
pub const ROWS_SHOWN_MAX: i64 = 200;

/// The status's sums, computed by the database (the tables grow with every solicitation).
#[derive(Debug, Default, QueryableByName)]
struct Totals {
    #[diesel(sql_type = BigInt)]
    searches: i64,
    #[diesel(sql_type = BigInt)]
    seen: i64,
    #[diesel(sql_type = BigInt)]
    fees: i64,
    #[diesel(sql_type = BigInt)]
    forwarded: i64,
    #[diesel(sql_type = BigInt)]
    commissions: i64,
    #[diesel(sql_type = BigInt)]
    sold: i64,
    #[diesel(sql_type = BigInt)]
    income: i64,
    #[diesel(sql_type = BigInt)]
    contests: i64,
    #[diesel(sql_type = BigInt)]
    refunds: i64,
}

/// One query over solicitations and one over accepted bids. `me` is this peer's entity id
/// (`ed25519:` and hex, checked here), written into the SQL, which is the same text on
/// SQLite and PostgreSQL.
fn totals(conn: &mut AnyConnection, me: &str) -> Result<Totals, Error> {
    if protocol::EntityId::parse(me).is_err() {
        return Err(Error::InvalidRequest("entity".into()));
    }
    let n = |expr: &str| format!("CAST(COALESCE(SUM({expr}), 0) AS BIGINT)");
    let sql = format!(
        "SELECT {searches} AS searches, {seen} AS seen, {fees} AS fees, {fwd} AS forwarded, \
         (SELECT {commissions} FROM peer_bids WHERE {accepted}) AS commissions, \
         (SELECT {sold} FROM peer_bids WHERE {accepted}) AS sold, \
         (SELECT {income} FROM peer_bids WHERE {accepted}) AS income, \
         (SELECT {contests} FROM peer_bids WHERE {accepted}) AS contests, \
         (SELECT {refunds} FROM peer_bids WHERE {accepted}) AS refunds \
         FROM peer_solicitations",
        searches = n(&format!("CASE WHEN solicitor = '{me}' THEN 1 ELSE 0 END")),
        seen = n(&format!("CASE WHEN solicitor <> '{me}' THEN 1 ELSE 0 END")),
        fees = n(&format!(
            "CASE WHEN solicitor <> '{me}' THEN fee ELSE 0 END"
        )),
        fwd = n("forwarded"),
        accepted = format!("accepted_ms IS NOT NULL AND solicitor <> '{me}'"),
        commissions = n("CASE WHEN contested_ms IS NULL AND down_price IS NOT NULL \
                         THEN price - down_price ELSE 0 END"),
        sold = n("CASE WHEN contested_ms IS NULL AND down_price IS NULL THEN 1 ELSE 0 END"),
        income = n("CASE WHEN contested_ms IS NULL AND down_price IS NULL THEN price ELSE 0 END"),
        contests = n("CASE WHEN contested_ms IS NOT NULL THEN 1 ELSE 0 END"),
        refunds = n("CASE WHEN contested_ms IS NOT NULL THEN refunded ELSE 0 END"),
    );
    let query = diesel::sql_query(sql);
    let totals = match conn {
        AnyConnection::Sqlite(c) => query.get_result::<Totals>(c),
        AnyConnection::Postgresql(c) => query.get_result::<Totals>(c),
    };
    Ok(totals?)
}

impl Peer {
    pub async fn status(&self) -> Result<Status, Error> {
        let me = self.me();
        let mut neighbors = self.neighbors().await?;
        if self.options.strategy == super::Strategy::Conceal {
            // The status is public: a concealing peer does not show the sources it found.
            neighbors.retain(|n| n.kind == super::neighbors::PRIMARY);
        }
        let (tabs, credit, totals) = self
            .db
            .run(move |conn| {
                let tabs: Vec<TabRow> = credit_lines::table
                    .filter(credit_lines::settle_threshold.is_not_null())
                    .filter(
                        credit_lines::creditor
                            .eq(&me)
                            .or(credit_lines::debtor.eq(&me)),
                    )
                    .select((
                        credit_lines::id,
                        credit_lines::creditor,
                        credit_lines::debtor,
                        credit_lines::currency,
                        credit_lines::owed,
                        credit_lines::credit_limit,
                        credit_lines::seq,
                        credit_lines::settle_threshold,
                    ))
                    .order(credit_lines::id)
                    .limit(ROWS_SHOWN_MAX)
                    .load(conn)?;
                let credit: Vec<(String, String, i64)> = peer_credit::table
                    .order(peer_credit::balance.desc())
                    .limit(ROWS_SHOWN_MAX)
                    .load(conn)?;
                let totals = totals(conn, &me)?;
                Ok::<_, Error>((tabs, credit, totals))
            })
            .await?;
        let me = self.me();
        let u = |v: i64| v.unsigned_abs();
        let mut s = Status {
            peer: me.clone(),
            url: self.base_url(),
            strategy: self.options.strategy.as_str(),
            policy: self.options.policy,
            commission: self.options.commission,
            solicit_fee: self.options.solicit_fee,
            price: self.options.price,
            currencies: self.currencies.iter().map(|c| c.offer.clone()).collect(),
            neighbors,
            tabs: tabs
                .into_iter()
                .map(
                    |(line, creditor, debtor, currency, owed, limit, seq, threshold)| {
                        let mine = creditor == me;
                        TabView {
                            line,
                            neighbor: if mine { debtor } else { creditor },
                            currency,
                            direction: if mine { "owes_me" } else { "i_owe" },
                            owed: u(owed),
                            limit: u(limit),
                            threshold: u(threshold.unwrap_or(0)),
                            seq: u(seq),
                        }
                    },
                )
                .collect(),
            paid_ahead: credit
                .into_iter()
                .map(|(buyer, currency, balance)| CreditView {
                    buyer,
                    currency,
                    balance: u(balance),
                })
                .collect(),
            solicitations_seen: 0,
            searches: 0,
            solicitations_forwarded: 0,
            fees_earned: 0,
            commissions_earned: 0,
            documents_sold: 0,
            sales_income: 0,
            contests: 0,
            refunds_given: 0,
            documents: self.documents.count(),
            copies: self.documents.copies(),
            paywords: self.db.run(node::paywords::holdings).await?,
        };
        let u = |v: i64| v.unsigned_abs();
        s.searches = u(totals.searches);
        s.solicitations_seen = u(totals.seen);
        s.fees_earned = u(totals.fees);
        s.solicitations_forwarded = u(totals.forwarded);
        s.commissions_earned = u(totals.commissions);
        s.documents_sold = u(totals.sold);
        s.sales_income = u(totals.income);
        s.contests = u(totals.contests);
        s.refunds_given = u(totals.refunds);
        Ok(s)
    }
}

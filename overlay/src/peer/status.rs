//! What the status page and `GET /v1/status` show: neighbours, tabs both ways, paid-ahead
//! credit, solicitations seen and forwarded, fees, commissions, documents sold, contests.

use diesel::prelude::*;
use node::credit::credit_lines;
use serde::Serialize;

use super::neighbors::Neighbor;
use super::Peer;
use crate::error::Error;
use crate::schema::{peer_bids, peer_credit, peer_solicitations};

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
type DealRow = (String, i64, Option<i64>, Option<i64>, i64);

impl Peer {
    pub async fn status(&self) -> Result<Status, Error> {
        let me = self.me();
        let mut neighbors = self.neighbors().await?;
        if self.options.strategy == super::Strategy::Conceal {
            // The status is public: a concealing peer does not show the sources it found.
            neighbors.retain(|n| n.kind == super::neighbors::PRIMARY);
        }
        let (tabs, credit, sols, deals) = self
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
                    .load(conn)?;
                let credit: Vec<(String, String, i64)> = peer_credit::table
                    .order((peer_credit::buyer, peer_credit::currency))
                    .load(conn)?;
                let sols: Vec<(String, i64, i64)> = peer_solicitations::table
                    .select((
                        peer_solicitations::solicitor,
                        peer_solicitations::fee,
                        peer_solicitations::forwarded,
                    ))
                    .load(conn)?;
                let deals: Vec<DealRow> = peer_bids::table
                    .filter(peer_bids::accepted_ms.is_not_null())
                    .select((
                        peer_bids::solicitor,
                        peer_bids::price,
                        peer_bids::down_price,
                        peer_bids::contested_ms,
                        peer_bids::refunded,
                    ))
                    .load(conn)?;
                Ok::<_, Error>((tabs, credit, sols, deals))
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
        for (solicitor, fee, forwarded) in sols {
            if solicitor == me {
                s.searches += 1;
            } else {
                s.solicitations_seen += 1;
                s.fees_earned = s.fees_earned.saturating_add(u(fee));
            }
            s.solicitations_forwarded = s.solicitations_forwarded.saturating_add(u(forwarded));
        }
        for (solicitor, price, down_price, contested, refunded) in deals {
            if solicitor == me {
                // The owner's own purchases: neither commission nor sale.
                continue;
            }
            if contested.is_some() {
                s.contests += 1;
                s.refunds_given = s.refunds_given.saturating_add(u(refunded));
                continue;
            }
            match down_price {
                Some(d) => {
                    s.commissions_earned = s.commissions_earned.saturating_add(u(price - d));
                }
                None => {
                    s.documents_sold += 1;
                    s.sales_income = s.sales_income.saturating_add(u(price));
                }
            }
        }
        Ok(s)
    }
}

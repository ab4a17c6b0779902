//! Paywords at the publisher (DESIGN 10, issue 15): a view, or with `--price-per-piece` each
//! window of pieces, is paid by words the publisher verifies on its own (no deposit long
//! poll on the first byte), noted in the transaction that records the sale, and redeemed in
//! batches later.

use node::paywords::PaywordHeaders;

use super::*;

/// Pieces `[start, end)` already paid in a view, kept merged and sorted.
pub(super) type PaidRanges = Vec<(u64, u64)>;

/// How many of the pieces `from..to` are not in `paid`.
pub(super) fn unpaid_in(paid: &PaidRanges, from: u64, to: u64) -> u64 {
    let covered: u64 = paid
        .iter()
        .map(|&(a, b)| b.min(to).saturating_sub(a.max(from)))
        .sum();
    (to - from).saturating_sub(covered)
}

/// `paid` with `from..to` added, merged.
pub(super) fn add_paid(mut paid: PaidRanges, from: u64, to: u64) -> PaidRanges {
    paid.push((from, to));
    paid.sort_unstable();
    let mut out: PaidRanges = Vec::with_capacity(paid.len());
    for (a, b) in paid {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

impl Publisher {
    /// Accept the words in `headers` from `viewer` inside `conn`'s transaction: their value,
    /// or 0 without a payword. Refused words refuse the request (`402 invalid_payword`...).
    pub(super) fn take_words(
        conn: &mut db::AnyConnection,
        currency: &EntityId,
        me: &EntityId,
        viewer: &EntityId,
        headers: &PaywordHeaders,
        cap: u64,
    ) -> Result<u64, Error> {
        let Some(header) = &headers.payword else {
            return Ok(0);
        };
        let accepted = node::paywords::accept(
            conn,
            now_s(),
            currency,
            viewer,
            me,
            header,
            headers.touchstone.as_deref(),
            cap,
        )??;
        Ok(accepted.value)
    }

    /// Sell a view paid by the words in `headers`: they are checked and noted, and the view
    /// recorded, in one transaction; words worth less than `price` sell nothing (and are
    /// not kept: the viewer may send more).
    pub(super) async fn sell_view_for_words(
        &self,
        viewer: &EntityId,
        content: &str,
        view: &str,
        price: u64,
        headers: &PaywordHeaders,
    ) -> Result<(u64, i64), Error> {
        let (currency, me) = (self.currency.clone(), self.key.entity().clone());
        let (viewer, headers) = (viewer.clone(), headers.clone());
        let (content, view) = (content.to_owned(), view.to_owned());
        let cap = self.options.payword_unredeemed_max;
        let (pay_to, issuer_url) = (me.to_string(), self.issuer_url.clone());
        let expires_s = now_s() + VIEW_TTL_S;
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    let value = Self::take_words(conn, &currency, &me, &viewer, &headers, cap)?;
                    if value < price {
                        return Err(Error::PaymentRequired {
                            amount_due: price,
                            pay_to,
                            issuer_url,
                            transaction_id: view.clone(),
                        });
                    }
                    diesel::insert_into(views::table)
                        .values((
                            views::id.eq(&view),
                            views::content_id.eq(&content),
                            views::viewer.eq(viewer.as_str()),
                            views::paid.eq(i64_of(value)?),
                            views::created_s.eq(now_s()),
                            views::expires_s.eq(expires_s),
                        ))
                        .execute(conn)?;
                    Ok((value, expires_s))
                })
            })
            .await
    }

    /// Per-piece sales: charge the pieces `from..to` of `view` not paid yet, from the words
    /// in `headers`, noting them in the view. `402 payment_required` (what is due) when the
    /// words do not cover them; nothing is kept then.
    pub(super) async fn charge_pieces(
        &self,
        viewer: &EntityId,
        view: &str,
        from: u64,
        to: u64,
        headers: &PaywordHeaders,
    ) -> Result<(), Error> {
        let price = self.options.price_per_piece;
        if price == 0 || from >= to {
            return Ok(());
        }
        let (currency, me) = (self.currency.clone(), self.key.entity().clone());
        let (viewer, headers, view) = (viewer.clone(), headers.clone(), view.to_owned());
        let cap = self.options.payword_unredeemed_max;
        let (pay_to, issuer_url) = (me.to_string(), self.issuer_url.clone());
        self.db
            .run(move |conn| {
                db::write_transaction(conn, |conn| {
                    // A write that changes nothing takes the view's row lock first
                    // (PostgreSQL; SQLite's write transactions run alone): two windows of one
                    // view charged at once would otherwise both read the same paid ranges,
                    // and the later write would drop the other's.
                    if matches!(conn, db::AnyConnection::Postgresql(_)) {
                        diesel::update(views::table.find(&view))
                            .set(views::paid.eq(views::paid))
                            .execute(conn)?;
                    }
                    let (paid_text, paid): (String, i64) = views::table
                        .find(&view)
                        .select((views::pieces_paid, views::paid))
                        .first(conn)?;
                    let ranges: PaidRanges = serde_json::from_str(&paid_text).unwrap_or_default();
                    let due = unpaid_in(&ranges, from, to).saturating_mul(price);
                    if due == 0 {
                        return Ok(());
                    }
                    let value = Self::take_words(conn, &currency, &me, &viewer, &headers, cap)?;
                    if value < due {
                        return Err(Error::PaymentRequired {
                            amount_due: due,
                            pay_to,
                            issuer_url,
                            transaction_id: view.clone(),
                        });
                    }
                    let ranges = add_paid(ranges, from, to);
                    let text = serde_json::to_string(&ranges)
                        .map_err(|e| Error::InvalidRequest(e.to_string()))?;
                    diesel::update(views::table.find(&view))
                        .set((
                            views::pieces_paid.eq(text),
                            views::paid.eq(paid.saturating_add(i64_of(value)?)),
                        ))
                        .execute(conn)?;
                    Ok(())
                })
            })
            .await
    }

    /// Follow the issuer's fraud proofs, then redeem the viewers' words when due (`all`: at
    /// shutdown). Answers the value credited.
    pub async fn redeem_words(
        &self,
        client: &node::client::SignedClient,
        counter: u64,
        all: bool,
    ) -> Result<u64, String> {
        if !all {
            for payer in node::paywords::follow_frauds(&self.db, &self.currency, client).await? {
                self.event(
                    "",
                    format!("double spend proven against {payer}: refused from now on"),
                );
            }
        }
        let redeemed = node::paywords::redeem_due(
            &self.db,
            &self.currency,
            client,
            counter,
            self.options.payword_redeem_threshold,
            all,
        )
        .await?;
        if !all {
            // Recorded with the issuer (DESIGN 11), like the agents' redemptions.
            node::records::record_redemption(&self.records, client, &redeemed).await;
        }
        Ok(redeemed.credited)
    }

    /// Paywords held, redeemed and pending (the status page).
    pub async fn payword_holdings(&self) -> Result<Vec<node::paywords::Holdings>, Error> {
        Ok(self.db.run(node::paywords::holdings).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paid_ranges_merge_and_count() {
        let paid = add_paid(Vec::new(), 0, 4);
        let paid = add_paid(paid, 8, 12);
        assert_eq!(unpaid_in(&paid, 0, 12), 4);
        let paid = add_paid(paid, 3, 9);
        assert_eq!(paid, vec![(0, 12)]);
        assert_eq!(unpaid_in(&paid, 10, 20), 8);
    }
}

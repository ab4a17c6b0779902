-- One tab per (creditor, debtor, currency) (issue 17): two charges racing to open a buyer's
-- tab (two PostgreSQL connections) cannot open two; the loser finds the winner's row.
CREATE UNIQUE INDEX credit_lines_one_tab ON credit_lines (creditor, debtor, currency)
    WHERE settle_threshold IS NOT NULL;

-- One tab per (creditor, debtor, currency) (issue 17): two charges racing to open a buyer's
-- tab (two PostgreSQL connections) cannot open two; the loser finds the winner's row. A tab
-- mirrors the agent's contracts, so a duplicate left by the race before is dropped (the
-- next charge or deposit brings the one kept to the buyer's debt).
DELETE FROM credit_lines WHERE settle_threshold IS NOT NULL AND id NOT IN (
    SELECT MIN(id) FROM credit_lines WHERE settle_threshold IS NOT NULL
    GROUP BY creditor, debtor, currency);
CREATE UNIQUE INDEX credit_lines_one_tab ON credit_lines (creditor, debtor, currency)
    WHERE settle_threshold IS NOT NULL;
-- When the sweep may next ask a lapsed hold's peer for its word: a hold the peer keeps
-- undecided is asked less and less often, so such holds cannot fill every sweep round.
ALTER TABLE credit_holds ADD COLUMN next_ask_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX credit_holds_asks ON credit_holds (state, direction, next_ask_ms);

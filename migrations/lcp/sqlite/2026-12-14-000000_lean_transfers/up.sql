-- Issue 21: one index write less for every transfer that names no transaction id. Only
-- transfers with one are ever looked up by it (`transaction_id = ?` implies IS NOT NULL, so
-- the partial index still serves that lookup).
DROP INDEX transfers_by_transaction;
CREATE INDEX transfers_by_transaction ON transfers (recipient, transaction_id, seq)
    WHERE transaction_id IS NOT NULL;

DROP INDEX transfers_by_transaction;
CREATE INDEX transfers_by_transaction ON transfers (recipient, transaction_id, seq);

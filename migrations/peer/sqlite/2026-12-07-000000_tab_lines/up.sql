-- Tabs (DESIGN 12, seed 001): a line with a settlement threshold. The storage agent keeps
-- each buyer's running tab as one (its owed mirrors the buyer's debt over its contracts in
-- that currency); payments over credit paths never draw on a tab. `settled_ms` is when a
-- settlement last lowered what is owed.
ALTER TABLE credit_lines ADD COLUMN settle_threshold BIGINT;
ALTER TABLE credit_lines ADD COLUMN settled_ms BIGINT;

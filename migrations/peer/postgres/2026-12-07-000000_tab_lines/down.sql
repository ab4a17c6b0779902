ALTER TABLE credit_lines DROP COLUMN settled_ms;
ALTER TABLE credit_lines DROP COLUMN settle_threshold;

DROP TABLE credit_holds;
ALTER TABLE credit_lines DROP COLUMN repaying;

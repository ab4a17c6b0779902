DROP TABLE token_records;
DROP INDEX retrievals_token_sha256;
ALTER TABLE retrievals DROP COLUMN recorded_by;
ALTER TABLE retrievals DROP COLUMN bytes_served;
ALTER TABLE retrievals DROP COLUMN token_sha256;

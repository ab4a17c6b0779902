-- Bytes served under retrieval tokens, recorded with the gateway that read them (DESIGN 11,
-- record type `tokens`). A token is named in a record by the first 32 hex digits of its
-- SHA-256 (the token itself is a bearer secret and records are public); `bytes_served` counts
-- what its reads delivered; `recorded_by` is the gateway whose agreed record claimed it (a
-- token is claimed once).
ALTER TABLE retrievals ADD COLUMN token_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE retrievals ADD COLUMN bytes_served BIGINT NOT NULL DEFAULT 0;
ALTER TABLE retrievals ADD COLUMN recorded_by TEXT;
CREATE INDEX retrievals_token_sha256 ON retrievals (token_sha256);

-- Per gateway: bytes recorded so far (the `bytes_total` of its last agreed `tokens` record).
CREATE TABLE token_records (
    gateway     TEXT PRIMARY KEY NOT NULL,
    bytes_total BIGINT NOT NULL DEFAULT 0
);

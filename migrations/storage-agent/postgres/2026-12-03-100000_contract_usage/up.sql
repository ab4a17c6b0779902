-- What each contract delivered, by the agent's own books (DESIGN 11: a contract's `completed`
-- record carries these, and the agent agrees only to its own figures). One row per contract,
-- updated in the transaction that writes, charges a read, or answers an audit.
CREATE TABLE contract_usage (
    contract_id     TEXT PRIMARY KEY NOT NULL,
    bytes_written   BIGINT NOT NULL DEFAULT 0,
    bytes_read      BIGINT NOT NULL DEFAULT 0,
    audits_answered BIGINT NOT NULL DEFAULT 0
);

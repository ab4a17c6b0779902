-- One row per entity that ever held this currency. Only the issuer's balance may be negative.
CREATE TABLE accounts (
    entity  TEXT PRIMARY KEY NOT NULL,
    balance BIGINT NOT NULL
) WITHOUT ROWID;

-- Every executed transfer; seq is the global order, assigned by the one ledger writer.
CREATE TABLE transfers (
    seq            INTEGER PRIMARY KEY NOT NULL,
    sender         TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    fee            BIGINT NOT NULL,
    transaction_id TEXT,
    time_ms        BIGINT NOT NULL
);
CREATE INDEX transfers_by_recipient ON transfers (recipient, seq);
CREATE INDEX transfers_by_transaction ON transfers (recipient, transaction_id, seq);

-- Successful commands by (sender, counter): the stored answer replayed on repetition.
-- Keyed counter first: wallets start counters at the clock in microseconds, so new rows land
-- at the end of the tree (appends) instead of at one random page per sender, which keeps the
-- pages each group commit writes few.
CREATE TABLE commands (
    counter     BIGINT NOT NULL,
    entity      TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    PRIMARY KEY (counter, entity)
) WITHOUT ROWID;

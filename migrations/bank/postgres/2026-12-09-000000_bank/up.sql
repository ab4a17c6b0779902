-- A bank's customers (DESIGN 14). Opaque customers are `name@host`: their money is held in
-- the bank's own accounts at the issuers, and `balances` says how much of it is theirs.
CREATE TABLE customers (
    name          TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- The currencies the bank takes: one issuer each, and the cursor of the bank's deposits
-- there that have been credited to customers (moved in the same transaction as the credit,
-- so a deposit is credited exactly once).
CREATE TABLE currencies (
    issuer         TEXT PRIMARY KEY NOT NULL,
    url            TEXT NOT NULL,
    code           TEXT NOT NULL,
    deposits_after BIGINT NOT NULL
);

CREATE TABLE balances (
    customer TEXT NOT NULL,
    issuer   TEXT NOT NULL,
    balance  BIGINT NOT NULL,
    PRIMARY KEY (customer, issuer)
);

-- Each customer's statement: deposits credited (amount > 0) and payments (amount < 0, the
-- amount and the issuer's fee). A payment is `pending` from the moment its money is taken
-- from the balance until the issuer answers; `counter` is the command counter it is sent
-- with and `request` the exact body, so a payment resent after a crash executes once.
CREATE TABLE entries (
    seq               BIGINT PRIMARY KEY NOT NULL,
    customer          TEXT NOT NULL,
    issuer            TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    counterparty      TEXT NOT NULL,
    counterparty_name TEXT,
    transaction_id    TEXT,
    issuer_seq        BIGINT,
    state             TEXT NOT NULL,
    token             TEXT,
    counter           BIGINT,
    request           TEXT,
    time_ms           BIGINT NOT NULL
);
CREATE INDEX entries_by_customer ON entries (customer, issuer, seq);
CREATE INDEX entries_pending ON entries (state, seq);

-- App tokens: a customer lets an app pay in one currency up to a limit. Only the secret's
-- SHA-256 is kept; `id` is the public handle (shown in lists, used to revoke).
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_sha256 TEXT NOT NULL UNIQUE,
    customer      TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    spend_limit   BIGINT NOT NULL,
    spent         BIGINT NOT NULL,
    label         TEXT NOT NULL,
    revoked       INTEGER NOT NULL,
    created_ms    BIGINT NOT NULL
);

-- Payword chains sold by this issuer (DESIGN 10). The escrow is the account
-- `escrow:<chain>` in `accounts`, so the sum of all balances stays zero with escrow counted.
CREATE TABLE chains (
    chain        TEXT PRIMARY KEY NOT NULL,
    payer        TEXT NOT NULL,
    root         TEXT NOT NULL,
    length       BIGINT NOT NULL,
    unit         BIGINT NOT NULL,
    expires_at_s BIGINT NOT NULL,
    -- The signed touchstone envelope, as JSON.
    touchstone   TEXT NOT NULL,
    -- 1 once the escrow's rest went back to the payer (after expiry and grace).
    closed       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX chains_open_by_expiry ON chains (closed, expires_at_s);

-- Every block a vendor redeemed from, and how far.
CREATE TABLE chain_blocks (
    chain       TEXT NOT NULL,
    vendor      TEXT NOT NULL,
    block_from  BIGINT NOT NULL,
    block_end   BIGINT NOT NULL,
    signature   TEXT NOT NULL,
    redeemed_to BIGINT NOT NULL,
    PRIMARY KEY (chain, vendor, block_from)
);

-- Double spends: two overlapping blocks of one chain for two vendors; `proof` is the
-- FraudProof's JSON (its seq is this row's).
CREATE TABLE frauds (
    seq       BIGINT PRIMARY KEY NOT NULL,
    chain     TEXT NOT NULL,
    payer     TEXT NOT NULL,
    shortfall BIGINT NOT NULL,
    proof     TEXT NOT NULL
);
CREATE INDEX frauds_by_chain ON frauds (chain);

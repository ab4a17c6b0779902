-- The vendor's side of paywords (node::paywords, DESIGN 10).
-- Touchstones of the chains this vendor was paid from.
CREATE TABLE payword_touchstones (
    chain        TEXT PRIMARY KEY NOT NULL,
    issuer       TEXT NOT NULL,
    payer        TEXT NOT NULL,
    root         TEXT NOT NULL,
    length       BIGINT NOT NULL,
    unit         BIGINT NOT NULL,
    expires_at_s BIGINT NOT NULL,
    envelope     TEXT NOT NULL
);

-- One row per block a payer opened here: paid up to held_to, redeemed up to redeemed_to.
CREATE TABLE payword_blocks (
    chain        TEXT NOT NULL,
    block_from   BIGINT NOT NULL,
    block_end    BIGINT NOT NULL,
    signature    TEXT NOT NULL,
    payer        TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    unit         BIGINT NOT NULL,
    expires_at_s BIGINT NOT NULL,
    held_to      BIGINT NOT NULL,
    held_word    TEXT NOT NULL,
    redeemed_to  BIGINT NOT NULL,
    PRIMARY KEY (chain, block_from)
);
CREATE INDEX payword_blocks_by_payer ON payword_blocks (payer);
CREATE INDEX payword_blocks_by_issuer ON payword_blocks (issuer, expires_at_s);

-- Payers with a double-spend proof from an issuer (checked here before it was kept).
CREATE TABLE payword_frauds (
    issuer TEXT NOT NULL,
    payer  TEXT NOT NULL,
    seq    BIGINT NOT NULL,
    proof  TEXT NOT NULL,
    PRIMARY KEY (issuer, payer)
);
CREATE INDEX payword_frauds_by_payer ON payword_frauds (payer);

-- Where the reading of each issuer's fraud feed stands.
CREATE TABLE payword_cursors (
    issuer TEXT PRIMARY KEY NOT NULL,
    after  BIGINT NOT NULL
);

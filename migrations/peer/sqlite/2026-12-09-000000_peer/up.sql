-- The bid-solicitation overlay's peer (DESIGN 13, seed 001). Tabs with neighbours are
-- credit lines with a settlement threshold (credit_lines, created by the migrations before).

-- Neighbours: `primary` (configured, trusted), `secondary` (discovered, untrusted) or
-- `undesirable` (dropped after a contested deal under policy 3; never asked again).
CREATE TABLE peer_neighbors (
    entity     TEXT PRIMARY KEY NOT NULL,
    url        TEXT NOT NULL,
    kind       TEXT NOT NULL,
    changed_ms BIGINT NOT NULL
);

-- Solicitations received (and the owner's own searches, solicitor = this peer): the fee
-- paid once per (solicitor, id), how many neighbours it was forwarded to, the answer given.
CREATE TABLE peer_solicitations (
    solicitor  TEXT NOT NULL,
    id         TEXT NOT NULL,
    document   TEXT NOT NULL,
    currency   TEXT NOT NULL,
    fee        BIGINT NOT NULL,
    paid_by    TEXT NOT NULL,
    forwarded  BIGINT NOT NULL DEFAULT 0,
    answer     TEXT,
    seen_ms    BIGINT NOT NULL,
    PRIMARY KEY (solicitor, id)
);
CREATE INDEX peer_solicitations_id ON peer_solicitations (id);

-- Bids made: a local one (down_* empty: this peer holds the document) or one resting on a
-- neighbour's bid (down_*). Accepted once, by its solicitor, paying `price` by `paid_by`;
-- a contest refunds it once (`refunded`) and claims the neighbour's refund (`down_refunded`).
CREATE TABLE peer_bids (
    id            TEXT PRIMARY KEY NOT NULL,
    solicitor     TEXT NOT NULL,
    document      TEXT NOT NULL,
    currency      TEXT NOT NULL,
    price         BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    down_entity   TEXT,
    down_url      TEXT,
    down_bid      TEXT,
    down_price    BIGINT,
    accepted_ms   BIGINT,
    buyer         TEXT,
    paid_by       TEXT,
    instructions  TEXT,
    contested_ms  BIGINT,
    refunded      BIGINT NOT NULL DEFAULT 0,
    down_refunded BIGINT NOT NULL DEFAULT 0,
    made_ms       BIGINT NOT NULL
);

-- One-time retrieval tokens: usable once, by `buyer` only, until `expires_ms`.
CREATE TABLE peer_tokens (
    token      TEXT PRIMARY KEY NOT NULL,
    bid        TEXT NOT NULL,
    document   TEXT NOT NULL,
    buyer      TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    used_ms    BIGINT
);

-- What buyers paid ahead (seed 001's Alice): LCP deposits to this peer, drawn by fees and
-- prices, credited back by refunds. balance >= 0.
CREATE TABLE peer_credit (
    buyer    TEXT NOT NULL,
    currency TEXT NOT NULL,
    balance  BIGINT NOT NULL,
    PRIMARY KEY (buyer, currency)
);

-- The next deposit to read from each issuer.
CREATE TABLE peer_cursors (
    issuer TEXT PRIMARY KEY NOT NULL,
    next   BIGINT NOT NULL
);

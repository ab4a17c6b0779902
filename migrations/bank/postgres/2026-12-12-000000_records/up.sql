-- The exchange's records (DESIGN 11 and 14): each half of a trade step, proposed by its receiver
-- and agreed by the exchange from its own books.
-- Records (node::records, DESIGN 11): every half-block held here, this server's own chain
-- and others' blocks, keyed by chain and place in it.
CREATE TABLE record_blocks (
    public_key           TEXT NOT NULL,
    sequence_number      BIGINT NOT NULL,
    link_public_key      TEXT NOT NULL,
    link_sequence_number BIGINT NOT NULL,
    previous_hash        TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    "transaction"        TEXT NOT NULL,
    timestamp_ms         BIGINT NOT NULL,
    signature            TEXT NOT NULL,
    hash                 TEXT NOT NULL,
    PRIMARY KEY (public_key, sequence_number)
);
-- An agreement is found from the proposal it answers.
CREATE INDEX record_blocks_by_link ON record_blocks (link_public_key, link_sequence_number);

-- Fork proofs found here, in the order found (seq is the GET /v1/frauds cursor).
CREATE TABLE record_frauds (
    seq             BIGINT PRIMARY KEY NOT NULL,
    public_key      TEXT NOT NULL,
    sequence_number BIGINT NOT NULL,
    kind            TEXT NOT NULL,
    proof           TEXT NOT NULL
);
CREATE INDEX record_frauds_by_entity ON record_frauds (public_key);

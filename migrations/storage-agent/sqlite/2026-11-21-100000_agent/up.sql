-- Dual-signed contracts this agent accepted, with their money and space accounting.
CREATE TABLE contracts (
    id              TEXT PRIMARY KEY NOT NULL,
    buyer           TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    block_bytes     BIGINT NOT NULL,
    start_s         BIGINT NOT NULL,
    end_s           BIGINT NOT NULL,
    contract_price  BIGINT NOT NULL,
    write_per_kib   BIGINT NOT NULL,
    read_per_kib    BIGINT NOT NULL,
    auditors        TEXT NOT NULL,      -- JSON array of entity ids
    envelope        TEXT NOT NULL,      -- the buyer's signed envelope (JSON)
    agent_signature TEXT NOT NULL,
    paid            BIGINT NOT NULL,    -- received through LCP for this contract
    spent           BIGINT NOT NULL,    -- charged for writes and reads
    used_bytes      BIGINT NOT NULL,    -- always the sum of this contract's objects' sizes
    reaped          INTEGER NOT NULL,   -- 1 once objects were deleted after end + grace
    created_s       BIGINT NOT NULL
);

-- Objects stored under a contract. `path` is the object_store key of the current version.
CREATE TABLE objects (
    contract_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    path        TEXT NOT NULL,
    size        BIGINT NOT NULL,
    sha256      TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    leaf_count  BIGINT NOT NULL,
    PRIMARY KEY (contract_id, name)
);

-- Retrieval instructions handed to third parties (seed 001).
CREATE TABLE retrievals (
    token       TEXT PRIMARY KEY NOT NULL,
    contract_id TEXT NOT NULL,
    object      TEXT NOT NULL,
    uses_left   BIGINT NOT NULL,
    expires_s   BIGINT NOT NULL
);

-- Per issuer: the deposits cursor, moved in the same transaction as the credits it covers.
CREATE TABLE payment_cursors (
    issuer TEXT PRIMARY KEY NOT NULL,
    next   BIGINT NOT NULL,
    income BIGINT NOT NULL              -- everything received from this issuer
);

-- Successful commands by (counter, entity): the stored answer replayed on repetition.
CREATE TABLE commands (
    counter     BIGINT NOT NULL,
    entity      TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    PRIMARY KEY (counter, entity)
);

-- Named counters shown on the dashboard (audits answered, ...).
CREATE TABLE stats (
    name  TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);

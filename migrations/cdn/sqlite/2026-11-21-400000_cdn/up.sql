-- Contracts the publisher bought, with the terms it needs to place pieces and pay reads.
CREATE TABLE contracts (
    id            TEXT PRIMARY KEY NOT NULL,
    agent         TEXT NOT NULL,
    endpoint      TEXT NOT NULL,
    signed        TEXT NOT NULL,     -- the dual-signed contract (JSON)
    read_per_kib  BIGINT NOT NULL,
    write_per_kib BIGINT NOT NULL,
    block_bytes   BIGINT NOT NULL,
    used_bytes    BIGINT NOT NULL,
    end_s         BIGINT NOT NULL
);

-- The catalog: one row per content, published once its manifest is signed.
CREATE TABLE contents (
    id             TEXT PRIMARY KEY NOT NULL,
    title          TEXT NOT NULL,
    mime           TEXT NOT NULL,
    size           BIGINT NOT NULL,
    piece_bytes    BIGINT NOT NULL,
    pieces         TEXT NOT NULL,    -- JSON array of the pieces' SHA-256 (hex)
    price_per_view BIGINT NOT NULL,
    replicas_base  INTEGER NOT NULL,
    manifest       TEXT NOT NULL,    -- the signed manifest envelope, '' until published
    created_s      BIGINT NOT NULL
);

-- Where each piece is stored: one row per replica.
CREATE TABLE replicas (
    content_id  TEXT NOT NULL,
    piece       INTEGER NOT NULL,
    contract_id TEXT NOT NULL,
    added_s     BIGINT NOT NULL,
    PRIMARY KEY (content_id, piece, contract_id)
);

-- Views sold: the id is the LCP transaction id of the viewer's payment, so one payment buys
-- one view.
CREATE TABLE views (
    id         TEXT PRIMARY KEY NOT NULL,
    content_id TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    paid       BIGINT NOT NULL,
    created_s  BIGINT NOT NULL,
    expires_s  BIGINT NOT NULL
);

-- Agents the market has seen: the latest signed offer, and the reliability record.
CREATE TABLE agents (
    entity             TEXT PRIMARY KEY NOT NULL,
    endpoint           TEXT NOT NULL,
    network            TEXT NOT NULL,     -- /24 (IPv4), /48 (IPv6) or host name of the endpoint
    offer              TEXT NOT NULL,     -- the signed offer envelope (JSON)
    offer_expires_s    BIGINT NOT NULL,
    last_heartbeat_s   BIGINT NOT NULL,
    endpoint_checked_s BIGINT NOT NULL,   -- when /.well-known/lcp last answered with this entity
    alpha              DOUBLE PRECISION NOT NULL,    -- beta reputation: weight of good outcomes
    beta               DOUBLE PRECISION NOT NULL,    -- and of bad ones (see market::reliability)
    audits_passed      BIGINT NOT NULL,
    audits_failed      BIGINT NOT NULL,
    online             INTEGER NOT NULL,
    first_seen_s       BIGINT NOT NULL
);

-- Dual-signed contracts buyers registered for auditing.
CREATE TABLE registered (
    id              TEXT PRIMARY KEY NOT NULL,
    agent           TEXT NOT NULL,
    buyer           TEXT NOT NULL,
    envelope        TEXT NOT NULL,
    agent_signature TEXT NOT NULL,
    end_s           BIGINT NOT NULL,
    registered_s    BIGINT NOT NULL
);
CREATE INDEX registered_agent ON registered (agent, end_s);

-- The objects of a registered contract, with the Merkle roots audits are checked against.
CREATE TABLE registered_objects (
    contract_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    merkle_root TEXT NOT NULL,
    leaf_count  BIGINT NOT NULL,
    size        BIGINT NOT NULL,
    PRIMARY KEY (contract_id, name)
);

-- Buyers' signed outcome reports; (entity, counter) makes a repeated report count once.
CREATE TABLE reports (
    entity      TEXT NOT NULL,
    counter     BIGINT NOT NULL,
    body_sha256 TEXT NOT NULL,
    contract_id TEXT NOT NULL,
    agent       TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created_s   BIGINT NOT NULL,
    PRIMARY KEY (counter, entity)
);

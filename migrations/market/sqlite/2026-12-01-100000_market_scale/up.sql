-- Issue 14 (market at scale). Every write to `agents` takes the next value of the one-row
-- `market_clock` as the first statement of its transaction and stamps the rows it writes
-- with it in `changed`. The clock row's lock is held until commit, so the values commit in
-- order (on SQLite writers are serialised anyway): a market process that has read every row
-- with `changed <= W` has missed none, and refreshes its in-memory offer index by reading
-- `changed > W` only. The same lock serialises reputation read-modify-writes across market
-- processes sharing one PostgreSQL.
ALTER TABLE agents ADD COLUMN changed BIGINT NOT NULL DEFAULT 0;
CREATE INDEX agents_changed ON agents (changed, entity);
CREATE TABLE market_clock (
    id    INTEGER PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO market_clock (id, value) VALUES (1, 0);

-- Leases for work one market process does for all of them (the auditor and the prober): the
-- holder renews its lease before it expires; another process takes it only once it expired.
CREATE TABLE market_leases (
    name       TEXT PRIMARY KEY NOT NULL,
    holder     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
INSERT INTO market_leases (name, holder, expires_ms) VALUES ('auditor', '', 0);

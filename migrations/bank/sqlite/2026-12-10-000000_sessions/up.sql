-- Web sessions of customers (DESIGN 14): only the cookie's SHA-256 is kept; `csrf` is the
-- token every form of the session carries; a session past `expires_ms` is refused.
CREATE TABLE sessions (
    id_sha256  TEXT PRIMARY KEY NOT NULL,
    customer   TEXT NOT NULL,
    csrf       TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_ms);

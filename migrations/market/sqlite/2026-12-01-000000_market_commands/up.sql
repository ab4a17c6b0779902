-- The shared command log (node::commands, the same table as the issuer's and the agent's):
-- each successful signed registration by (sender, counter) with its answer, replayed byte for
-- byte on repetition; a counter used again with another body is 409 counter_reused.
-- Reports keep their own (entity, counter) record in `reports` (a repeated report answers
-- `counted: false`, not the first answer).
CREATE TABLE commands (
    counter     BIGINT NOT NULL,
    entity      TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    PRIMARY KEY (counter, entity)
) WITHOUT ROWID;

-- Credit lines with neighbours (DESIGN 12, `node::credit`): each changed only by an update
-- both parties signed (the signatures over the stored state are kept); `held` is what
-- payments under way hold on it. owed + held <= credit_limit.
CREATE TABLE credit_lines (
    id                 TEXT PRIMARY KEY NOT NULL,
    creditor           TEXT NOT NULL,
    debtor             TEXT NOT NULL,
    currency           TEXT NOT NULL,
    credit_limit       BIGINT NOT NULL,
    owed               BIGINT NOT NULL,
    held               BIGINT NOT NULL DEFAULT 0,
    seq                BIGINT NOT NULL,
    creditor_signature TEXT NOT NULL,
    debtor_signature   TEXT NOT NULL,
    updated_ms         BIGINT NOT NULL
);
CREATE INDEX credit_lines_creditor ON credit_lines (creditor);
CREATE INDEX credit_lines_debtor ON credit_lines (debtor);

-- Payers an issuer proved double spent paywords (node::paywords, DESIGN 10): the market
-- follows each issuer's fraud feed and refuses their registrations and reports.
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

-- Payments that arrived before their contract: a buyer may pay first (transaction_id = the id
-- it will propose), and the contract claims the amount when it is accepted.
CREATE TABLE prepaid (
    transaction_id TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    PRIMARY KEY (transaction_id, issuer)
);

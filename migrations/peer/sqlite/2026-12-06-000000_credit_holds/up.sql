-- Payments under way over credit lines (DESIGN 12, `node::credit::pay`). `repaying` is what
-- payments from the creditor to the debtor hold against what the debtor owes
-- (repaying <= owed); `held` stays what payments from the debtor hold (owed + held <= limit).
ALTER TABLE credit_lines ADD COLUMN repaying BIGINT NOT NULL DEFAULT 0;

-- One row per (payment, route, line, direction), `route` naming the payment's path (one
-- payment may cross a line on several paths): `in` when the peer pays this node, `out` when this
-- node pays the peer. `kind` says which balance it holds on: `borrow` (the payer's debt
-- grows) or `repay` (the payee's debt shrinks). `state` is held, committed or released;
-- `secret` is set once known. An `in` hold is settled by this node (committed with the
-- secret before it expires, released otherwise); an `out` hold only by the peer's word.
CREATE TABLE credit_holds (
    payment    TEXT NOT NULL,
    route      TEXT NOT NULL,
    line_id    TEXT NOT NULL,
    direction  TEXT NOT NULL,
    kind       TEXT NOT NULL,
    peer       TEXT NOT NULL,
    payer      TEXT NOT NULL,
    target     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    total      BIGINT NOT NULL,
    condition  TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    state      TEXT NOT NULL,
    secret     TEXT,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (payment, route, line_id, direction)
);
CREATE INDEX credit_holds_open ON credit_holds (state, expires_ms);

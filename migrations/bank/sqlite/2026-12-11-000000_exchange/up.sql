-- The exchange (DESIGN 14, seed 004): limit orders per currency pair, the trades matched
-- from them, each trade's settlement steps, and each trader's record (trades completed,
-- defaults). Amounts in minor units of their currency.
CREATE TABLE exchange_orders (
    id          TEXT PRIMARY KEY NOT NULL,
    trader      TEXT NOT NULL,
    sell_issuer TEXT NOT NULL,
    buy_issuer  TEXT NOT NULL,
    sell_amount BIGINT NOT NULL,
    buy_amount  BIGINT NOT NULL,
    sell_left   BIGINT NOT NULL,
    -- open | filled | cancelled
    state       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX exchange_orders_book ON exchange_orders (sell_issuer, buy_issuer, state);

-- A trade is settled in `steps` steps of two halves each: half 2i the taker pays its i-th
-- slice to the maker, half 2i + 1 the maker pays its slice back. `half` is the one under
-- way, `claimed` whether its payer says it paid (then the receiver confirms), `turn_ms`
-- when that turn began; past the step timeout the party whose turn it is defaults.
CREATE TABLE exchange_trades (
    id           TEXT PRIMARY KEY NOT NULL,
    taker        TEXT NOT NULL,
    maker        TEXT NOT NULL,
    taker_order  TEXT NOT NULL,
    maker_order  TEXT NOT NULL,
    taker_issuer TEXT NOT NULL,
    taker_amount BIGINT NOT NULL,
    maker_issuer TEXT NOT NULL,
    maker_amount BIGINT NOT NULL,
    steps        INTEGER NOT NULL,
    half         INTEGER NOT NULL,
    claimed      INTEGER NOT NULL,
    turn_ms      BIGINT NOT NULL,
    -- settling | done | defaulted (the payer did not pay) | disputed (the receiver did not
    -- confirm a slice its payer says it paid: the exchange cannot tell who is right)
    state        TEXT NOT NULL,
    defaulter    TEXT,
    created_ms   BIGINT NOT NULL
);
CREATE INDEX exchange_trades_taker ON exchange_trades (taker, state);
CREATE INDEX exchange_trades_maker ON exchange_trades (maker, state);

-- Each half as it happened: claimed by its payer, confirmed by its receiver.
CREATE TABLE exchange_steps (
    trade        TEXT NOT NULL,
    half         INTEGER NOT NULL,
    payer        TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    amount       BIGINT NOT NULL,
    claimed_ms   BIGINT NOT NULL,
    confirmed_ms BIGINT,
    -- The receiver's `trade` record of this half was agreed (once per half).
    recorded     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (trade, half)
);

CREATE TABLE exchange_traders (
    entity    TEXT PRIMARY KEY NOT NULL,
    completed BIGINT NOT NULL,
    defaults  BIGINT NOT NULL,
    disputes  BIGINT NOT NULL
);

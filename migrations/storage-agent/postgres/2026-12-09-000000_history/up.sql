-- The agent's history (issue 22): one row per period and currency, updated in place by the
-- transaction that earns or serves. step is 'day' (UTC days, a year kept), 'hour' (two days
-- kept) or 'total' (start_s 0, never dropped: the Prometheus counters). currency is the
-- issuer id; the row with currency '' holds the samples that are not any currency's (space,
-- probes, the market's rating), the last sample of the period.
CREATE TABLE history (
    step              TEXT NOT NULL,
    start_s           BIGINT NOT NULL,
    currency          TEXT NOT NULL,
    bytes_written     BIGINT NOT NULL DEFAULT 0,
    bytes_read        BIGINT NOT NULL DEFAULT 0,
    bytes_read_tokens BIGINT NOT NULL DEFAULT 0,
    audits_answered   BIGINT NOT NULL DEFAULT 0,
    earned_contract   BIGINT NOT NULL DEFAULT 0,
    earned_writes     BIGINT NOT NULL DEFAULT 0,
    earned_reads      BIGINT NOT NULL DEFAULT 0,
    earned_audits     BIGINT NOT NULL DEFAULT 0,
    by_deposit        BIGINT NOT NULL DEFAULT 0,
    by_payword        BIGINT NOT NULL DEFAULT 0,
    by_tab            BIGINT NOT NULL DEFAULT 0,
    paywords_redeemed BIGINT NOT NULL DEFAULT 0,
    used_bytes        BIGINT NOT NULL DEFAULT 0,
    reserved_bytes    BIGINT NOT NULL DEFAULT 0,
    probes_answered   BIGINT NOT NULL DEFAULT 0,
    audits_passed     BIGINT NOT NULL DEFAULT 0,
    audits_failed     BIGINT NOT NULL DEFAULT 0,
    p_fail            DOUBLE PRECISION,
    PRIMARY KEY (step, start_s, currency)
);
-- What each contract earned by kind, and the paywords credited to it and drawn on (the
-- books the history's breakdown by means of payment is made from).
ALTER TABLE contract_usage ADD COLUMN earned_writes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contract_usage ADD COLUMN earned_reads BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contract_usage ADD COLUMN earned_audits BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contract_usage ADD COLUMN earned_contract BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contract_usage ADD COLUMN words_paid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE contract_usage ADD COLUMN words_used BIGINT NOT NULL DEFAULT 0;

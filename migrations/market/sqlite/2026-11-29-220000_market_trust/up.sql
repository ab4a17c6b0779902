-- When the market's own audits of a registered contract last passed and last failed (Unix
-- seconds, 0 for never): a buyer's report those audits contradict weighs less. The audit a
-- registration runs counts as passed here (never in the agent's reputation).
ALTER TABLE registered ADD COLUMN audit_passed_s BIGINT NOT NULL DEFAULT 0;
ALTER TABLE registered ADD COLUMN audit_failed_s BIGINT NOT NULL DEFAULT 0;

-- The reports that counted: at most one good and one bad report per contract.
CREATE TABLE counted_reports (
    contract_id TEXT NOT NULL,
    kind        TEXT NOT NULL,     -- 'good' (ok) or 'bad' (lost, corrupt, unavailable)
    entity      TEXT NOT NULL,     -- the buyer, and the counter of the report that counted
    counter     BIGINT NOT NULL,
    outcome     TEXT NOT NULL,
    weight      DOUBLE NOT NULL,       -- the weight it added (market::reliability::report_weight)
    created_s   BIGINT NOT NULL,
    PRIMARY KEY (contract_id, kind)
);

DROP TABLE market_leases;
DROP TABLE market_clock;
DROP INDEX agents_changed;
ALTER TABLE agents DROP COLUMN changed;

-- How much the graph of agreed records vouches for each agent, 0 to 1 (market::ranking):
-- the prior of agents the market has not audited enough yet (market::reliability).
ALTER TABLE agents ADD COLUMN vouch DOUBLE NOT NULL DEFAULT 0;

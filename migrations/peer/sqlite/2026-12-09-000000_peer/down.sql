DROP TABLE peer_cursors;
DROP TABLE peer_credit;
DROP TABLE peer_tokens;
DROP TABLE peer_bids;
DROP INDEX peer_solicitations_id;
DROP TABLE peer_solicitations;
DROP TABLE peer_neighbors;

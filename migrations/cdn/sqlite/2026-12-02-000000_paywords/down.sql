ALTER TABLE views DROP COLUMN pieces_paid;
DROP TABLE payword_cursors;
DROP TABLE payword_frauds;
DROP TABLE payword_blocks;
DROP TABLE payword_touchstones;

DROP TABLE payword_cursors;
DROP TABLE payword_frauds;
DROP TABLE payword_blocks;
DROP TABLE payword_touchstones;

DROP TABLE record_frauds;
DROP TABLE record_blocks;

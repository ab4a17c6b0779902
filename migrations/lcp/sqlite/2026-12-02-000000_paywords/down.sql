DROP TABLE frauds;
DROP TABLE chain_blocks;
DROP TABLE chains;

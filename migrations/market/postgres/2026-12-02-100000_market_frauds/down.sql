DROP TABLE payword_cursors;
DROP TABLE payword_frauds;

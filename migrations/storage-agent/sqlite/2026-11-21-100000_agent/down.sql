DROP TABLE stats;
DROP TABLE commands;
DROP TABLE payment_cursors;
DROP TABLE retrievals;
DROP TABLE objects;
DROP TABLE contracts;

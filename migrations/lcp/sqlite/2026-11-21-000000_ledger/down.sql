DROP TABLE commands;
DROP TABLE transfers;
DROP TABLE accounts;

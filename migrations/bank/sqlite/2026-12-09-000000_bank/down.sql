DROP TABLE tokens;
DROP TABLE entries;
DROP TABLE balances;
DROP TABLE currencies;
DROP TABLE customers;

DROP TABLE contract_usage;

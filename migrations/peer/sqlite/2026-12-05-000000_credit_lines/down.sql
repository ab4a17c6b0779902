DROP TABLE credit_lines;

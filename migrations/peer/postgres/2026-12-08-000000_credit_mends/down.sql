DROP INDEX credit_holds_asks;
ALTER TABLE credit_holds DROP COLUMN next_ask_ms;
DROP INDEX credit_lines_one_tab;

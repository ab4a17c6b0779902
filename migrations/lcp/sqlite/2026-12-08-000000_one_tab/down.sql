DROP INDEX credit_lines_one_tab;

ALTER TABLE transfers DROP COLUMN from_name;
ALTER TABLE transfers DROP COLUMN userid;

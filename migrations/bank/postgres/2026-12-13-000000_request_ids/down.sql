DROP INDEX entries_by_request;
ALTER TABLE entries DROP COLUMN request_id;

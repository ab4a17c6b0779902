-- An app's own id for a payment (POST /lcp/v1/transfers "request_id"): the same id again
-- through the same token answers the payment made, and pays nothing more.
ALTER TABLE entries ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX entries_by_request ON entries (token, request_id);

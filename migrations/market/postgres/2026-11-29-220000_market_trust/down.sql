DROP TABLE counted_reports;
ALTER TABLE registered DROP COLUMN audit_failed_s;
ALTER TABLE registered DROP COLUMN audit_passed_s;

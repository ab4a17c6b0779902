-- Transfers may name the recipient's customer (`userid`, DESIGN 14), and a bank paying for
-- its customer names the payer (`from_name`); both are shown in the recipient's deposits.
ALTER TABLE transfers ADD COLUMN userid TEXT;
ALTER TABLE transfers ADD COLUMN from_name TEXT;

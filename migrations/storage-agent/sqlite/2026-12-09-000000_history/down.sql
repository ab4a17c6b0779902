DROP TABLE history;
ALTER TABLE contract_usage DROP COLUMN earned_writes;
ALTER TABLE contract_usage DROP COLUMN earned_reads;
ALTER TABLE contract_usage DROP COLUMN earned_audits;
ALTER TABLE contract_usage DROP COLUMN earned_contract;
ALTER TABLE contract_usage DROP COLUMN words_paid;
ALTER TABLE contract_usage DROP COLUMN words_used;

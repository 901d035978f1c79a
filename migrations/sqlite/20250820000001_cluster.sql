-- Instances sharing the database (docs/contracts.md, "Running two instances").
--
-- Each checkpoint number once: the row goes in with the audit.checkpoint
-- record, in the same transaction as the chain append, so a second
-- writer of the same checkpoint fails instead of recording it twice.
-- Never pruned with the audit records.
CREATE TABLE checkpoints (
    seq       BIGINT PRIMARY KEY,
    audit_seq BIGINT NOT NULL
);
INSERT OR IGNORE INTO checkpoints (seq, audit_seq)
SELECT json_extract(data, '$.seq'), MIN(seq) FROM audit
WHERE kind = 'audit.checkpoint' AND json_valid(data) AND json_extract(data, '$.seq') IS NOT NULL
GROUP BY 1;

-- When a body row was last stored (the reception time of the latest message
-- that stored it): retention deletes a row only when it is older than its
-- cutoff.
ALTER TABLE bodies ADD COLUMN stored_at BIGINT NOT NULL DEFAULT 0;

-- Instances sharing the database (docs/contracts.md, "Running two instances").
--
-- Each checkpoint number once: the row goes in with the audit.checkpoint
-- record, in the same transaction as the chain append, so a second
-- instance writing the same checkpoint (its job lock lost) fails instead of
-- recording it twice. Never pruned with the audit records.
CREATE TABLE checkpoints (
    seq       BIGINT PRIMARY KEY,
    audit_seq BIGINT NOT NULL
);
INSERT INTO checkpoints (seq, audit_seq)
SELECT (data::json ->> 'seq')::bigint, MIN(seq) FROM audit
WHERE kind = 'audit.checkpoint' AND (data::json ->> 'seq') IS NOT NULL
GROUP BY 1;

-- When a body row was last stored (the reception time of the latest message
-- that stored it): retention deletes a row only when it is older than its
-- cutoff, and storing an existing body updates it, which row-locks it
-- against a concurrent deletion.
ALTER TABLE bodies ADD COLUMN stored_at BIGINT NOT NULL DEFAULT 0;

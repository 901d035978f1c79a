-- Relay: what the last delivery attempt of a queue entry said, and when.
-- status runs queued -> delivered | failed | cancelled; an entry is claimed
-- by one gateway instance (claimed_by) until lease_until.

ALTER TABLE queue ADD COLUMN last_attempt_at BIGINT;
ALTER TABLE queue ADD COLUMN last_error TEXT;
ALTER TABLE queue ADD COLUMN updated_at BIGINT;
CREATE INDEX queue_claimed_by ON queue (claimed_by);

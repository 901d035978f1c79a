-- Honest states (issue #12): queued -> accepted, delivered -> relayed, and
-- the next hop's queue id; the why is in migrations/sqlite/ of the same name.
-- Audit records keep the names they were written with (they are hashed).

UPDATE queue SET status = 'accepted' WHERE status = 'queued';
UPDATE queue SET status = 'relayed' WHERE status = 'delivered';
ALTER TABLE queue ALTER COLUMN status SET DEFAULT 'accepted';
ALTER TABLE queue ADD COLUMN next_hop_queue_id TEXT;

-- Honest states (issue #12): one vocabulary for where a message stands,
-- accepted -> relayed | delayed | failed | cancelled. The gateway only
-- knows that the next hop took a message (its 250), so "delivered" becomes
-- "relayed" and "queued" becomes "accepted". Audit records keep the names
-- they were written with (they are hashed); the code reads both.
-- next_hop_queue_id: the next hop's queue id from its 250 reply, when the
-- reply names one (Postfix "queued as …", Exim "id=…", …).

UPDATE queue SET status = 'accepted' WHERE status = 'queued';
UPDATE queue SET status = 'relayed' WHERE status = 'delivered';
ALTER TABLE queue ADD COLUMN next_hop_queue_id TEXT;

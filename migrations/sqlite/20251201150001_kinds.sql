-- Request kinds (issue #13): the [[kind]] id a message declared, where
-- the policy trusts the declaration (NULL: none). Searched by
-- `emla audit search --kind`.
ALTER TABLE messages ADD COLUMN kind TEXT;
CREATE INDEX messages_kind ON messages (kind, received_at);

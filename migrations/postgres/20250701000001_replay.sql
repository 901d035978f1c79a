-- Replay detection (issue #11): for each recipient of an accepted message,
-- one key per signer (SHA-256 over the SignerInfo signature's hash and the
-- recipient), so the same signed message submitted again to recipients
-- that already had it is recognised and not relayed a second time.
CREATE TABLE accepted_signatures (
    replay_key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    received_at BIGINT NOT NULL
);

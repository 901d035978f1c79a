-- Data keys of bodies encrypted at rest ([storage] encrypt_bodies; see
-- docs/at-rest.md). Each is a random AES-256 key wrapped by the
-- key-encryption key, which is never stored here: wrapped = nonce (12 bytes)
-- | AES-256-GCM(KEK, key, aad = "emla data key" | id as 4 bytes big-endian)
-- | tag (16 bytes). The highest id seals new bodies; every sealed body names
-- its key's id in its header, so old keys stay for reading.

CREATE TABLE data_keys (
    id         INTEGER PRIMARY KEY NOT NULL,
    wrapped    BLOB NOT NULL,
    created_at INTEGER NOT NULL
);

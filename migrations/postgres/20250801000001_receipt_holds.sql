-- Receipts held for their timestamp token ([evidence] tsa_unavailable = "wait"):
-- the signed receipt without a token, and the row, queue entry and audit
-- record it becomes (JSON), until the TSA grants a token or the wait runs out.
-- Written in the transaction of the decision that issued the receipt, removed
-- in the one that queues it: a held receipt survives a restart.
CREATE TABLE receipt_holds (
    receipt_id  TEXT PRIMARY KEY NOT NULL,
    original_id TEXT NOT NULL,
    held_at     BIGINT NOT NULL,
    deadline    BIGINT NOT NULL,
    next_try    BIGINT NOT NULL,
    tries       BIGINT NOT NULL,
    body        BYTEA NOT NULL,
    receipt     TEXT NOT NULL
);
CREATE INDEX receipt_holds_next_try ON receipt_holds (next_try);

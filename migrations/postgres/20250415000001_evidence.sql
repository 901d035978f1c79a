-- Evidence and retention (docs/audit-chain.md, "Pruning").
--
-- audit_anchor: after audit records below a signed checkpoint were pruned,
-- the seq and hash of the last pruned record. The chain then starts from
-- it: record seq + 1 must carry prev_hash = hash.
CREATE TABLE audit_anchor (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    seq       BIGINT  NOT NULL,
    hash      TEXT    NOT NULL,
    pruned_at BIGINT  NOT NULL
);

-- When the body file of a message was removed by retention (its sha256
-- stays in the row and in the audit records).
ALTER TABLE messages ADD COLUMN body_pruned_at BIGINT ;
CREATE INDEX audit_kind_seq ON audit (kind, seq);

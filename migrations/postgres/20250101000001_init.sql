-- emla store, PostgreSQL. Times are milliseconds since the Unix epoch; JSON
-- columns hold serde_json text (TEXT, not JSONB: the audit data must stay
-- byte-for-byte as hashed). See docs/audit-chain.md for the audit chain.

CREATE TABLE messages (
    id             TEXT    PRIMARY KEY,
    received_at    BIGINT  NOT NULL,
    sha256         TEXT    NOT NULL,
    size           BIGINT  NOT NULL,
    client_ip      TEXT    NOT NULL,
    helo           TEXT    NOT NULL,
    tls_version    TEXT,
    tls_cipher     TEXT,
    mail_from      TEXT    NOT NULL,
    rcpt_to        TEXT    NOT NULL,
    header_from    TEXT,
    header_to      TEXT,
    subject        TEXT,
    message_id     TEXT,
    date           TEXT,
    verdict        TEXT    NOT NULL CHECK (verdict IN ('accept', 'reject')),
    reason         TEXT    NOT NULL,
    detail         TEXT    NOT NULL,
    signers        TEXT    NOT NULL,
    authority      TEXT,
    policy_version TEXT    NOT NULL,
    body_stored    BOOLEAN NOT NULL
);
CREATE INDEX messages_received_at ON messages (received_at);
CREATE INDEX messages_sha256 ON messages (sha256);

CREATE TABLE queue (
    id              BIGSERIAL PRIMARY KEY,
    message_id      TEXT    NOT NULL REFERENCES messages (id),
    next_hop        TEXT    NOT NULL,
    authority       TEXT    NOT NULL,
    route           TEXT    NOT NULL,
    lane            TEXT    NOT NULL,
    recipients      TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'queued',
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    created_at      BIGINT  NOT NULL,
    claimed_by      TEXT,
    lease_until     BIGINT
);
CREATE INDEX queue_status_next_attempt ON queue (status, next_attempt_at);
CREATE INDEX queue_message_id ON queue (message_id);

CREATE TABLE audit (
    seq        BIGINT PRIMARY KEY CHECK (seq >= 1),
    at         BIGINT NOT NULL,
    message_id TEXT,
    kind       TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    hash       TEXT   NOT NULL
);
CREATE INDEX audit_message_id ON audit (message_id);
CREATE INDEX audit_at ON audit (at);

-- The chain head: the seq and hash of the last audit record, updated in the
-- same transaction as every append. Writers lock this row (SELECT ... FOR
-- UPDATE), which serialises appends across gateway instances.
CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

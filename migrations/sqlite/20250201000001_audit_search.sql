-- Auditors' search (emla audit search): the case reference of a message,
-- index tables for sender, recipient and signer look-ups, and indexes that
-- let every filter return the newest (or oldest) page without a scan.
--
-- Every search orders by (received_at, id), the keyset of its pages. The
-- index tables repeat received_at so that a look-up by address or
-- certificate reads its page straight from one index.

-- X-MLA-Reference header, else the case pattern's first match in Subject.
ALTER TABLE messages ADD COLUMN case_ref TEXT;

DROP INDEX messages_received_at;
CREATE INDEX messages_received_at_id ON messages (received_at, id);
CREATE INDEX messages_authority_time ON messages (authority, received_at, id);
CREATE INDEX messages_reason_time ON messages (reason, received_at, id);
CREATE INDEX messages_verdict_time ON messages (verdict, received_at, id);
CREATE INDEX messages_message_id ON messages (message_id);
CREATE INDEX messages_case_ref_time ON messages (upper(case_ref), received_at, id);

-- Sender keys of a message: MAIL FROM and the header From addresses,
-- lowercased, and '@' || domain for each; distinct per message.
CREATE TABLE message_senders (
    address     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    message_id  TEXT    NOT NULL REFERENCES messages (id),
    PRIMARY KEY (address, received_at, message_id)
) WITHOUT ROWID;

-- Recipient keys: RCPT TO and the header To addresses, lowercased, and
-- '@' || domain for each; distinct per message.
CREATE TABLE message_recipients (
    address     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    message_id  TEXT    NOT NULL REFERENCES messages (id),
    PRIMARY KEY (address, received_at, message_id)
) WITHOUT ROWID;

-- Signer certificates: SHA-256 fingerprint and serial, lowercase hex
-- without separators; one row per distinct fingerprint per message.
CREATE TABLE message_signers (
    sha256      TEXT    NOT NULL,
    serial      TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    message_id  TEXT    NOT NULL REFERENCES messages (id),
    PRIMARY KEY (sha256, received_at, message_id)
) WITHOUT ROWID;
CREATE INDEX message_signers_serial ON message_signers (serial, received_at, message_id);

-- Messages recorded before this migration: envelope addresses and signers.
-- (Header addresses and case references are only filled from now on.)
INSERT OR IGNORE INTO message_senders (address, received_at, message_id)
SELECT lower(mail_from), received_at, id FROM messages WHERE mail_from <> '';
INSERT OR IGNORE INTO message_senders (address, received_at, message_id)
SELECT '@' || lower(substr(mail_from, instr(mail_from, '@') + 1)), received_at, id
FROM messages WHERE instr(mail_from, '@') > 0;
INSERT OR IGNORE INTO message_recipients (address, received_at, message_id)
SELECT lower(r.value), m.received_at, m.id FROM messages m, json_each(m.rcpt_to) r
WHERE json_valid(m.rcpt_to);
INSERT OR IGNORE INTO message_recipients (address, received_at, message_id)
SELECT '@' || lower(substr(r.value, instr(r.value, '@') + 1)), m.received_at, m.id
FROM messages m, json_each(m.rcpt_to) r
WHERE json_valid(m.rcpt_to) AND instr(r.value, '@') > 0;
INSERT OR IGNORE INTO message_signers (sha256, serial, received_at, message_id)
SELECT lower(json_extract(s.value, '$.sha256')),
       lower(replace(ifnull(json_extract(s.value, '$.serial'), ''), ':', '')),
       m.received_at, m.id
FROM messages m, json_each(m.signers) s
WHERE json_valid(m.signers) AND json_type(s.value, '$.sha256') = 'text';

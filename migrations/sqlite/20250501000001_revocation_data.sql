-- Revocation evidence (docs/audit-chain.md, "Revocation evidence"): the very
-- CRLs and OCSP responses that decided messages, content-addressed by the
-- SHA-256 of their DER bytes, which the message.accepted / message.rejected
-- audit records name ("revocation": [{"method", "sha256", ...}]). Written in
-- the same transaction as the message; never pruned by retention.
CREATE TABLE revocation_data (
    sha256        TEXT PRIMARY KEY NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('crl', 'ocsp')),
    data          BLOB NOT NULL,
    first_used_at INTEGER NOT NULL
);

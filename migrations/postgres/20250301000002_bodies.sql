-- Message bodies kept in the database (body_storage = "database"), so that
-- gateway instances sharing it can deliver what another one accepted.
-- Content-addressed like the files: one row per distinct SHA-256.

CREATE TABLE bodies (
    sha256 TEXT PRIMARY KEY NOT NULL,
    data   BYTEA NOT NULL
);

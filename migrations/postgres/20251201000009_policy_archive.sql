-- Archived policy versions (issue #13): every version that was ever in
-- force, with each file it read (policy files, and the anchors, CRLs and
-- CA files they name) by name and content hash, and each content once.
CREATE TABLE policy_versions (
    version TEXT PRIMARY KEY,
    first_in_force BIGINT NOT NULL
);
CREATE TABLE policy_files (
    version TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (version, name)
);
CREATE TABLE policy_blobs (
    sha256 TEXT PRIMARY KEY,
    content BYTEA NOT NULL
);

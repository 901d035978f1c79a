-- RFC 3461 DSN parameters given with a message (RET, ENVID, and per
-- recipient NOTIFY and ORCPT), as JSON (emla::envelope::Dsn); NULL when
-- none was given. The relay passes them on; NOTIFY governs emla's notices.
ALTER TABLE messages ADD COLUMN dsn TEXT;

//! Why the store could not do what was asked, in three kinds that call for
//! different responses (docs/contracts.md, "Store errors"): the database or
//! disk is unavailable for now (retry), the store met a bug or corrupt data
//! (log it loudly; still retry, never lose what was accepted), or the
//! configuration is unusable. Every sqlx error is sorted here, in one
//! place, by [`StoreError::sqlx`].

use crate::reason::Reason;

/// Why the store could not do what was asked.
#[derive(Clone, Debug)]
pub enum StoreError {
    /// The database or the disk cannot take the work now (down, full,
    /// read-only, no connection free in time): the SMTP client gets
    /// `451 4.3.0` and retries.
    Unavailable(String),
    /// A programming error or corrupt data: a row that does not decode, a
    /// record that breaks an invariant, a task that panicked. Logged as a
    /// bug; the SMTP client still gets `451 4.3.0`, so it keeps the message
    /// and nothing accepted is lost.
    Bug(String),
    /// The configuration (URL, data directory) is unusable.
    Config(String),
}

impl StoreError {
    /// Classifies a sqlx error; `what` says what failed.
    pub fn sqlx(what: &str, e: sqlx::Error) -> StoreError {
        let text = format!("{what}: {e}");
        match class(&e) {
            Class::Temporary => StoreError::Unavailable(text),
            Class::Bug => StoreError::Bug(text),
            Class::Config => StoreError::Config(text),
        }
    }

    /// The reason code an SMTP client is answered with.
    pub fn reason(&self) -> Reason {
        match self {
            StoreError::Unavailable(_) | StoreError::Bug(_) | StoreError::Config(_) => {
                Reason::TemporaryFailure
            }
        }
    }

    /// The exit code of a CLI command that failed with it: 2, the store
    /// cannot be used (docs/contracts.md).
    pub fn exit_code(&self) -> u8 {
        match self {
            StoreError::Unavailable(_) | StoreError::Bug(_) | StoreError::Config(_) => 2,
        }
    }

    /// Whether it is a bug or corrupt data rather than an outage.
    pub fn is_bug(&self) -> bool {
        matches!(self, StoreError::Bug(_))
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "storage unavailable: {e}"),
            StoreError::Bug(e) => write!(f, "storage bug or corrupt data: {e}"),
            StoreError::Config(e) => write!(f, "storage configuration: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

#[derive(Debug, PartialEq, Eq)]
enum Class {
    Temporary,
    Bug,
    Config,
}

fn class(e: &sqlx::Error) -> Class {
    use sqlx::Error as E;
    match e {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed => Class::Temporary,
        E::Database(d) => match d.kind() {
            sqlx::error::ErrorKind::Other => {
                if d.code().is_some_and(|c| temporary_code(&c)) {
                    Class::Temporary
                } else {
                    Class::Bug
                }
            }
            // A violated constraint: the store wrote what it must not.
            _ => Class::Bug,
        },
        E::RowNotFound
        | E::TypeNotFound { .. }
        | E::ColumnIndexOutOfBounds { .. }
        | E::ColumnNotFound(_)
        | E::ColumnDecode { .. }
        | E::Encode(_)
        | E::Decode(_)
        | E::InvalidArgument(_)
        | E::InvalidSavePointStatement
        | E::AnyDriverError(_) => Class::Bug,
        E::Configuration(_) | E::Migrate(_) => Class::Config,
        // sqlx may add variants: retrying is the safe answer.
        _ => Class::Temporary,
    }
}

/// Database error codes of an outage rather than a bug: PostgreSQL SQLSTATE
/// classes 08 (connection), 53 (out of resources), 57 (shut down,
/// cancelled), 58 (system I/O), 40 (serialization, deadlock), 55 (lock not
/// available), a read-only transaction, a database that is not there (yet);
/// SQLite primary codes BUSY, LOCKED, NOMEM, READONLY, IOERR, FULL,
/// CANTOPEN, PROTOCOL. A SQLSTATE has five characters, a SQLite (extended)
/// code at most four digits.
fn temporary_code(code: &str) -> bool {
    if code.len() == 5 {
        return matches!(code.get(..2), Some("08" | "53" | "57" | "58" | "40" | "55"))
            || matches!(code, "25006" | "3D000");
    }
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14 | 15))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_and_bugs_are_told_apart() {
        let bug = sqlx::Error::ColumnDecode {
            index: "kind".into(),
            source: "unknown kind".into(),
        };
        assert!(StoreError::sqlx("reading", bug).is_bug());
        assert!(StoreError::sqlx("reading", sqlx::Error::RowNotFound).is_bug());
        assert!(matches!(
            StoreError::sqlx("claiming", sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(m) if m.starts_with("claiming: ")
        ));
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone");
        assert!(!StoreError::sqlx("recording", sqlx::Error::Io(io)).is_bug());
        assert!(temporary_code("08006") && temporary_code("53100") && temporary_code("3D000"));
        // SQLITE_BUSY_SNAPSHOT (extended) is BUSY; SQLITE_CORRUPT is not an outage.
        assert!(temporary_code("517") && temporary_code("13") && temporary_code("4874"));
        assert!(!temporary_code("11") && !temporary_code("42P01") && !temporary_code("23505"));
        for e in [
            StoreError::Unavailable(String::new()),
            StoreError::Bug(String::new()),
        ] {
            assert_eq!((e.reason(), e.exit_code()), (Reason::TemporaryFailure, 2));
        }
    }
}

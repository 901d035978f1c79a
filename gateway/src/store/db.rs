//! The database side: one typed pool per backend, the embedded migrations,
//! the batch transaction the writer commits, and the read queries.
//!
//! Both backends run the same SQL (`$1` placeholders work in SQLite too);
//! [`on_pool!`] expands a body once per backend so each is type-checked
//! against its own driver without `sqlx::Any`.

use std::str::FromStr;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::Row;

use super::batch::Batch;
use super::chain::AuditRow;
use super::kind::AuditKind;
use super::recorder::Prepared;
use super::rows::{AuditRecord, MessageRow, Verdict};
use super::search::{self, Bind, MessageSummary, SearchQuery};
use super::{MessageHeaders, SessionInfo, StoreError};

/// How long a caller waits for a connection (or SQLite for a lock) before
/// the store reports itself unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Rows fetched per query when walking the audit chain.
const PAGE: i64 = 10_000;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The database, whichever backend the URL names.
#[derive(Clone, Debug)]
pub enum Db {
    /// `sqlite://PATH`, with the turn its writers take and the connection
    /// that claims queue entries ([`Db::claims`]).
    Sqlite(SqlitePool, WriteTurn, SqlitePool),
    /// `postgres://…` or `postgresql://…`.
    Postgres(PgPool),
}

/// SQLite has one write lock per database. Left to SQLite, a writer that
/// finds it taken polls it with the busy handler (sleeps of 1, 2, 5, … up
/// to 100 ms), so under a steady stream of group commits the relay's claims
/// lost nearly every race and delivered almost nothing while intake ran
/// (bench/relay). The store's own write transactions (the batch writer,
/// claims, releases) therefore queue here first, first come first served;
/// SQLite's lock then only arbitrates with other processes (`emla queue`).
#[derive(Clone, Debug, Default)]
pub struct WriteTurn(std::sync::Arc<tokio::sync::Mutex<()>>);

/// What differs between the backends inside the write transaction.
pub(super) struct Dialect {
    /// Starts the write transaction. SQLite takes the write lock at once
    /// (`IMMEDIATE`) so two processes never deadlock upgrading a read lock.
    begin: &'static str,
    /// Reads the chain head; PostgreSQL locks the row so instances sharing
    /// the database append one after the other.
    read_head: &'static str,
    /// Appended to the sub-select that picks queue entries to claim, so
    /// that instances sharing a PostgreSQL database never claim the same
    /// entry (SQLite has one writer at a time anyway).
    pub(super) skip_locked: &'static str,
}

pub(super) const SQLITE: Dialect = Dialect {
    begin: "BEGIN IMMEDIATE",
    read_head: "SELECT seq, hash FROM audit_head WHERE id = 1",
    skip_locked: "",
};

pub(super) const POSTGRES: Dialect = Dialect {
    begin: "BEGIN",
    read_head: "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
    skip_locked: " FOR UPDATE SKIP LOCKED",
};

/// Runs `$body` with `$pool` bound to the backend's typed pool and `$d` to
/// its [`Dialect`].
macro_rules! on_pool {
    ($db:expr, $pool:ident, $d:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool, ..) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::db::SQLITE;
                $body
            }
            Db::Postgres($pool) => {
                #[allow(unused_variables)]
                let $d = &$crate::store::db::POSTGRES;
                $body
            }
        }
    };
}

pub(super) use on_pool;

/// The columns of `messages` that [`message_row!`] reads.
pub(super) const MESSAGE_COLUMNS: &str = "id, received_at, sha256, size, client_ip, helo, \
     tls_version, tls_cipher, mail_from, rcpt_to, header_from, header_to, subject, message_id, \
     date, verdict, reason, detail, signers, authority, policy_version, body_stored, case_ref, kind";

/// A row of [`MESSAGE_COLUMNS`] as a [`MessageRow`](super::MessageRow);
/// `?` on a column that does not decode.
macro_rules! message_row {
    ($r:ident) => {
        from_row!($r, MessageRow {
            id, received_at, sha256, size, mail_from, detail, authority, policy_version,
            body_stored, case_ref, kind,
        }; session: from_row!($r, SessionInfo { client_ip, helo, tls_version, tls_cipher }),
            headers: from_row!($r, MessageHeaders {
                header_from, header_to, subject, message_id, date,
            }),
            rcpt_to: addresses($r.try_get("rcpt_to")?),
            verdict: verdict($r.try_get("verdict")?)?,
            reason: reason($r.try_get("reason")?)?,
            signers: parse_json(&$r.try_get::<String, _>("signers")?),
        )
    };
}

pub(super) use message_row;

/// `$ty { col: $r.try_get("col")?, … }` for the fields named after their
/// columns, then the fields given as `name: value`; one decoding for both
/// backends' rows.
macro_rules! from_row {
    ($r:ident, $ty:ident { $($col:ident),* $(,)? } $(; $($field:ident: $val:expr),* $(,)?)?) => {
        $ty { $($col: $r.try_get(stringify!($col))?,)* $($($field: $val,)*)? }
    };
}

pub(super) use from_row;

/// An [`AuditRow`] from a row of either backend.
macro_rules! audit_row {
    ($r:ident) => {
        Ok(from_row!(
            $r,
            AuditRow {
                seq,
                at,
                message_id,
                kind,
                data,
                prev_hash,
                hash
            }
        ))
    };
}

pub(super) use audit_row;

impl Db {
    /// Waits for this process's turn to write (SQLite; see [`WriteTurn`]).
    /// Hold the guard until the transaction has committed.
    pub(super) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            Db::Sqlite(_, turn, _) => Some(turn.0.lock().await),
            Db::Postgres(_) => None,
        }
    }

    /// The database as the relay's claims write it. On SQLite a connection
    /// with `synchronous = NORMAL`: a claim's commit is not fsynced (it was
    /// one fsync per claim, holding the write turn the group commit waits
    /// for). Nothing relies on a claim surviving a power loss: the WAL is
    /// sequential, so the synchronous commit of a delivery's record (which
    /// follows its claim) makes the claim durable too, and a claim lost with
    /// the machine only leaves its entry unclaimed, as the restart's
    /// release would. A process crash loses nothing either way (the page
    /// cache keeps it). On PostgreSQL, where instances on other machines
    /// share the queue and a lost claim could let two of them deliver one
    /// entry, claims stay synchronous.
    pub(super) fn claims(&self) -> Db {
        match self {
            Db::Sqlite(_, turn, claims) => Db::Sqlite(claims.clone(), turn.clone(), claims.clone()),
            Db::Postgres(_) => self.clone(),
        }
    }

    /// Connects and runs the migrations.
    pub async fn open(url: &str) -> Result<Db, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = pool_options(8)
                .connect(url)
                .await
                .map_err(|e| connect_error(url, e))?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .map_err(|e| StoreError::Config(format!("database_url {url:?}: {e}")))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(TIMEOUT)
                .foreign_keys(true);
            if let Some(parent) = options.get_filename().parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Config(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
            }
            // Claims need not reach the disk before the next synchronous
            // commit (see `Db::claims`): no fsync of their own.
            let claims = pool_options(1)
                .test_before_acquire(false)
                .connect_lazy_with(options.clone().synchronous(SqliteSynchronous::Normal));
            // No ping before each use: a SQLite connection is a file, not a
            // peer that may have gone away, and the ping was a round trip to
            // sqlx's connection thread per transaction and per read.
            let pool = pool_options(4)
                .test_before_acquire(false)
                .connect_with(options)
                .await
                .map_err(|e| connect_error(url, e))?;
            Db::Sqlite(pool, WriteTurn::default(), claims)
        } else {
            return Err(StoreError::Config(format!(
                "database_url {url:?}: expected sqlite://PATH, postgres:// or postgresql://"
            )));
        };
        let migrated = match &db {
            Db::Sqlite(pool, ..) => SQLITE_MIGRATIONS.run(pool).await,
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        migrated.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::sqlx("running migrations", e),
            other => StoreError::Config(format!("database migrations: {other}")),
        })?;
        Ok(db)
    }

    /// Writes a batch in one transaction: the message rows, the audit
    /// events chained after the current head (in record order), the queue
    /// rows, the queue and hold changes; then the new head. Returns the
    /// number of audit records appended.
    pub async fn write_batch(&self, batch: &[Prepared], now_ms: i64) -> Result<u64, sqlx::Error> {
        let _turn = self.write_turn().await;
        on_pool!(self, pool, d => {
            let mut tx = pool.begin_with(d.begin).await?;
            let head = sqlx::query(d.read_head).fetch_one(&mut *tx).await?;
            let mut seq: i64 = head.try_get("seq")?;
            let mut prev: String = head.try_get("hash")?;
            let first = seq;
            // Section by section for the whole batch (multi-row inserts):
            // every message row before the queue rows that refer to it.
            tx.revocation_data(batch, now_ms).await?;
            tx.messages(batch).await?;
            tx.events(batch, now_ms, &mut seq, &mut prev).await?;
            tx.queue(batch, now_ms).await?;
            for rec in batch {
                tx.queue_updates(rec, now_ms).await?;
                tx.holds(rec).await?;
            }
            if seq != first {
                sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                    .bind(seq)
                    .bind(&prev)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok((seq - first) as u64)
        })
    }

    /// A body from the `bodies` table.
    pub async fn body(&self, sha256: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_scalar("SELECT data FROM bodies WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(pool)
                .await
        })
    }

    /// Stores a row of `bodies` (see [`Store::keep_evidence`](super::Store::keep_evidence)).
    pub async fn store_body(
        &self,
        sha256: &str,
        data: &[u8],
        at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query(
                "INSERT INTO bodies (sha256, data, stored_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO UPDATE SET stored_at = excluded.stored_at",
            )
            .bind(sha256)
            .bind(data)
            .bind(at_ms)
            .execute(pool)
            .await
            .map(drop)
        })
    }

    /// A row of `revocation_data`: kind and bytes.
    pub async fn revocation_blob(
        &self,
        sha256: &str,
    ) -> Result<Option<(String, Vec<u8>)>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query("SELECT kind, data FROM revocation_data WHERE sha256 = $1")
                .bind(sha256)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Ok((r.try_get("kind")?, r.try_get("data")?))).transpose()
        })
    }

    /// The chain head as `audit_head` holds it.
    pub async fn head(&self) -> Result<(i64, String), sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok((row.try_get("seq")?, row.try_get("hash")?))
        })
    }

    /// Audit rows with `after < seq <= upto`, in seq order, at most a page.
    pub async fn audit_page(&self, after: i64, upto: i64) -> Result<Vec<AuditRow>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query(
                "SELECT seq, at, message_id, kind, data, prev_hash, hash FROM audit \
                 WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(after)
            .bind(upto)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| audit_row!(r)).collect()
        })
    }

    /// The lowest seq beyond the head, read in one statement (one snapshot)
    /// with the head, so a concurrent append is never mistaken for one.
    pub async fn first_beyond_head(&self) -> Result<Option<i64>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_scalar(
                "SELECT MIN(seq) FROM audit WHERE seq > (SELECT seq FROM audit_head WHERE id = 1)",
            )
            .fetch_one(pool)
            .await
        })
    }

    /// The message row (JSON columns parsed).
    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(message_row!(r)))
        })
    }

    /// The audit rows of a message, in seq order (`data` parsed; the exact
    /// text is kept in `data_text`).
    pub async fn audit_events(&self, message_id: &str) -> Result<Vec<AuditRecord>, sqlx::Error> {
        on_pool!(self, pool, d => {
            let rows = sqlx::query(
                "SELECT seq, at, message_id, kind, data, prev_hash, hash FROM audit \
                 WHERE message_id = $1 ORDER BY seq",
            )
            .bind(message_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| {
                let data: String = r.try_get("data")?;
                let kind: String = r.try_get("kind")?;
                Ok(AuditRecord {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    message_id: r.try_get("message_id")?,
                    kind: kind.parse::<AuditKind>().map_err(|e| decode("kind", e.to_string()))?,
                    data: parse_json(&data),
                    data_text: data,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                })
            }).collect()
        })
    }

    /// One page of a search (see [`search`](super::search)).
    pub async fn search(&self, q: &SearchQuery) -> Result<Vec<MessageSummary>, sqlx::Error> {
        let (text, binds) = search::sql(q);
        on_pool!(self, pool, d => {
            let mut query = sqlx::query(&text);
            for b in binds {
                query = match b {
                    Bind::Text(s) => query.bind(s),
                    Bind::Int(i) => query.bind(i),
                };
            }
            let rows = query.fetch_all(pool).await?;
            rows.iter().map(|r| {
                let judged = verdict(r.try_get("verdict")?)?;
                let rank: Option<i64> = r.try_get("state_rank")?;
                Ok(from_row!(r, MessageSummary {
                    id, received_at, detail, mail_from, header_from, header_to, subject,
                    message_id, authority, case_ref, kind, sha256, size,
                }; rcpt_to: addresses(r.try_get("rcpt_to")?),
                    verdict: judged,
                    reason: reason(r.try_get("reason")?)?,
                    state: super::state::summary(judged, rank),
                ))
            }).collect()
        })
    }

    /// Ids of the messages whose `Message-ID:` is `header_id` (with or
    /// without angle brackets), oldest first.
    pub async fn ids_by_header_message_id(
        &self,
        header_id: &str,
    ) -> Result<Vec<String>, sqlx::Error> {
        let bare = header_id
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string();
        let bracketed = format!("<{bare}>");
        on_pool!(self, pool, d => {
            sqlx::query_scalar(
                "SELECT id FROM messages WHERE message_id IN ($1, $2) \
                 ORDER BY received_at, id LIMIT 100",
            )
            .bind(&bare)
            .bind(&bracketed)
            .fetch_all(pool)
            .await
        })
    }

    /// Row counts of `messages`, `audit` and `queue`.
    pub async fn counts(&self) -> Result<(u64, u64, u64), sqlx::Error> {
        on_pool!(self, pool, d => {
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM messages) AS m, (SELECT COUNT(*) FROM audit) AS a, \
                 (SELECT COUNT(*) FROM queue) AS q",
            )
            .fetch_one(pool)
            .await?;
            let n = |c: &str| row.try_get::<i64, _>(c).map(|v| v.max(0) as u64);
            Ok((n("m")?, n("a")?, n("q")?))
        })
    }
}

/// A column whose text is not one of its type's values.
pub(super) fn decode(column: &str, problem: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: problem.into(),
    }
}

/// A verdict column.
pub(super) fn verdict(text: String) -> Result<Verdict, sqlx::Error> {
    Verdict::parse(&text).ok_or_else(|| decode("verdict", format!("unknown verdict {text:?}")))
}

/// A reason column.
pub(super) fn reason(text: String) -> Result<crate::reason::Reason, sqlx::Error> {
    crate::reason::Reason::parse(&text)
        .ok_or_else(|| decode("reason", format!("unknown reason code {text:?}")))
}

/// A column of addresses as a JSON list; other text is one address.
pub(super) fn addresses(text: String) -> Vec<String> {
    serde_json::from_str(&text).unwrap_or_else(|_| vec![text])
}

/// Parses a JSON column; text that is not JSON (edited by hand) is
/// returned as a string rather than hidden.
pub(super) fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Pool settings of both backends: at most `max` connections, a caller
/// waiting no longer than [`TIMEOUT`] for one.
fn pool_options<DB: sqlx::Database>(max: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max)
        .acquire_timeout(TIMEOUT)
}

/// A failed first connection: unavailable unless the URL itself is wrong
/// (whatever the server answers, the next start may find it up).
fn connect_error(url: &str, e: sqlx::Error) -> StoreError {
    let shown = redact(url);
    match e {
        sqlx::Error::Configuration(e) => StoreError::Config(format!("database_url {shown:?}: {e}")),
        e => StoreError::Unavailable(format!("cannot connect to {shown}: {e}")),
    }
}

/// The URL without a password, for messages and logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://emla:secret@db:5432/emla"),
            "postgres://emla:***@db:5432/emla"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact("sqlite://data/emla.db"), "sqlite://data/emla.db");
    }
}

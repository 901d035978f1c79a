//! The sections of the write transaction ([`Db::write_batch`](super::db::Db::write_batch)):
//! revocation data, message rows with their bodies and index keys, chained
//! audit records, queue rows, queue updates. [`batch_sections!`] writes
//! them once for both backends' transaction types, where sqlx's generic
//! bounds would be longer than the SQL.

use super::chain;
use super::kind::AuditKind;
use super::recorder::{Prepared, PreparedMessage};

/// One method per section of the write transaction, for all the records
/// of a batch: each section inserts its rows with a few multi-row
/// statements ([`pieces`]), not one statement per row.
pub(super) trait Batch {
    /// The CRLs and OCSP responses the records used (already archived ones
    /// are left as they are).
    async fn revocation_data(&mut self, batch: &[Prepared], now_ms: i64)
        -> Result<(), sqlx::Error>;

    /// The message rows (the records' and the gateway's own outgoing ones):
    /// body (when kept in the database), row, sender, recipient and signer
    /// keys.
    async fn messages(&mut self, batch: &[Prepared]) -> Result<(), sqlx::Error>;

    /// The audit records, chained after `seq` and `prev`, which are moved on.
    async fn events(
        &mut self,
        batch: &[Prepared],
        now_ms: i64,
        seq: &mut i64,
        prev: &mut String,
    ) -> Result<(), sqlx::Error>;

    /// The new queue rows.
    async fn queue(&mut self, batch: &[Prepared], now_ms: i64) -> Result<(), sqlx::Error>;

    /// The changes to queue rows.
    async fn queue_updates(&mut self, rec: &Prepared, now_ms: i64) -> Result<(), sqlx::Error>;

    /// The changes to held receipts.
    async fn holds(&mut self, rec: &Prepared) -> Result<(), sqlx::Error>;
}

/// Row counts of the multi-row statements: a batch's rows go in pieces of
/// these sizes (largest first), so that a connection caches a few prepared
/// statements per table rather than one per batch size. 64 rows of the
/// widest table (`messages`, 25 columns) bind 1 600 values, well within
/// both backends' limits (SQLite 32 766, PostgreSQL 65 535).
const PIECE_ROWS: [usize; 4] = [64, 16, 4, 1];

/// `rows` cut into pieces of [`PIECE_ROWS`] sizes, in order.
pub(super) fn pieces<T>(mut rows: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in PIECE_ROWS {
        while rows.len() >= size {
            let (piece, rest) = rows.split_at(size);
            out.push(piece);
            rows = rest;
        }
    }
    out
}

/// `INSERT INTO {table} ({columns}) VALUES ($1, …), (…){tail}` for `rows`
/// rows of the comma-separated `columns`.
pub(super) fn insert_sql(table: &str, columns: &str, rows: usize, tail: &str) -> String {
    let width = columns.split(',').count();
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql.push_str(tail);
    sql
}

/// Inserts the rows of the slice `$rows` into `$table`'s `$columns` on
/// transaction `$tx`, in [`pieces`]; `$bind` binds one row `$row` to the
/// query `$q` and gives the query back.
macro_rules! insert_rows {
    ($tx:expr, $table:expr, $columns:expr, $tail:expr, $rows:expr, |$q:ident, $row:pat_param| $bind:expr) => {{
        for piece in pieces($rows) {
            let sql = insert_sql($table, $columns, piece.len(), $tail);
            let mut $q = sqlx::query(&sql);
            for $row in piece {
                $q = $bind;
            }
            $q.execute(&mut **$tx).await?;
        }
    }};
}

const MESSAGE_INSERT_COLUMNS: &str = "id, received_at, sha256, size, client_ip, helo, \
     tls_version, tls_cipher, mail_from, rcpt_to, header_from, header_to, subject, message_id, \
     date, verdict, reason, detail, signers, authority, policy_version, body_stored, case_ref, \
     dsn, kind";

/// Implements [`Batch`] for the transactions of backend `$db`.
macro_rules! batch_sections {
    ($db:ty) => {
        impl Batch for sqlx::Transaction<'_, $db> {
            async fn revocation_data(
                &mut self,
                batch: &[Prepared],
                now_ms: i64,
            ) -> Result<(), sqlx::Error> {
                let blobs: Vec<_> = batch.iter().flat_map(|rec| &rec.revocation).collect();
                insert_rows!(self, "revocation_data", "sha256, kind, data, first_used_at",
                    " ON CONFLICT (sha256) DO NOTHING", &blobs,
                    |q, b| q.bind(&b.sha256).bind(&b.kind).bind(&b.der[..]).bind(now_ms));
                Ok(())
            }

            async fn messages(&mut self, batch: &[Prepared]) -> Result<(), sqlx::Error> {
                let rows: Vec<&PreparedMessage> = batch
                    .iter()
                    .flat_map(|rec| rec.message.iter().chain(&rec.outgoing))
                    .collect();
                for m in &rows {
                    let r = &m.record;
                    if let Some(data) = &m.body_row {
                        // Updating an existing row locks it: retention's
                        // DELETE waits for this commit, then sees stored_at.
                        sqlx::query(
                            "INSERT INTO bodies (sha256, data, stored_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (sha256) DO UPDATE SET stored_at = excluded.stored_at",
                        )
                        .bind(&r.sha256)
                        .bind(&data[..])
                        .bind(r.received_at_ms)
                        .execute(&mut **self)
                        .await?;
                    }
                }
                insert_rows!(self, "messages", MESSAGE_INSERT_COLUMNS, "", &rows, |q, m| {
                    let r = &m.record;
                    q.bind(&r.id)
                        .bind(r.received_at_ms)
                        .bind(&r.sha256)
                        .bind(m.size)
                        .bind(&r.session.client_ip)
                        .bind(&r.session.helo)
                        .bind(&r.session.tls_version)
                        .bind(&r.session.tls_cipher)
                        .bind(&r.mail_from)
                        .bind(&m.rcpt_to_json)
                        .bind(&r.headers.header_from)
                        .bind(&r.headers.header_to)
                        .bind(&r.headers.subject)
                        .bind(&r.headers.message_id)
                        .bind(&r.headers.date)
                        .bind(m.verdict.as_str())
                        .bind(r.reason.as_str())
                        .bind(&r.detail)
                        .bind(&m.signers_json)
                        .bind(&r.authority)
                        .bind(&r.policy_version)
                        .bind(m.body_stored)
                        .bind(&r.case_ref)
                        .bind(r.dsn.as_ref().and_then(|d| serde_json::to_string(d).ok()))
                        .bind(&r.kind)
                });
                // (key, received_at, message id) of each index table.
                let keys = |of: fn(&PreparedMessage) -> &[String]| -> Vec<(&str, i64, &str)> {
                    rows.iter()
                        .flat_map(|m| {
                            of(m).iter().map(|k| {
                                (k.as_str(), m.record.received_at_ms, m.record.id.as_str())
                            })
                        })
                        .collect()
                };
                for (table, keys) in [
                    ("message_senders", keys(|m| &m.sender_keys)),
                    ("message_recipients", keys(|m| &m.recipient_keys)),
                ] {
                    insert_rows!(self, table, "address, received_at, message_id", "", &keys,
                        |q, (key, at, id)| q.bind(*key).bind(*at).bind(*id));
                }
                let signers: Vec<(&(String, String), i64, &str)> = rows
                    .iter()
                    .flat_map(|m| {
                        m.signer_keys
                            .iter()
                            .map(|k| (k, m.record.received_at_ms, m.record.id.as_str()))
                    })
                    .collect();
                insert_rows!(self, "message_signers", "sha256, serial, received_at, message_id",
                    "", &signers,
                    |q, ((sha256, serial), at, id)| q.bind(sha256).bind(serial).bind(*at).bind(*id));
                let replay: Vec<(&str, i64, &str)> = rows
                    .iter()
                    .flat_map(|m| {
                        m.record.signature_keys.iter().map(|k| {
                            (k.as_str(), m.record.received_at_ms, m.record.id.as_str())
                        })
                    })
                    .collect();
                // Two sessions may race with the same message: the first
                // key stays, the batch never fails for it.
                insert_rows!(self, "accepted_signatures", "replay_key, message_id, received_at",
                    " ON CONFLICT DO NOTHING", &replay,
                    |q, (key, at, id)| q.bind(*key).bind(*id).bind(*at));
                Ok(())
            }

            async fn events(
                &mut self,
                batch: &[Prepared],
                now_ms: i64,
                seq: &mut i64,
                prev: &mut String,
            ) -> Result<(), sqlx::Error> {
                // (seq, event, prev_hash, hash), chained in order.
                let mut rows = Vec::new();
                for ev in batch.iter().flat_map(|rec| &rec.events) {
                    *seq += 1;
                    let hash = chain::record_hash(&chain::canonical(
                        prev,
                        *seq,
                        now_ms,
                        ev.kind.as_str(),
                        ev.message_id.as_deref(),
                        &ev.data_json,
                    ));
                    rows.push((*seq, ev, std::mem::replace(prev, hash.clone()), hash));
                }
                insert_rows!(self, "audit", "seq, at, message_id, kind, data, prev_hash, hash", "",
                    &rows, |q, (seq, ev, prev_hash, hash)| {
                        q.bind(*seq)
                            .bind(now_ms)
                            .bind(&ev.message_id)
                            .bind(ev.kind.as_str())
                            .bind(&ev.data_json)
                            .bind(prev_hash)
                            .bind(hash)
                    });
                for (seq, ev, _, _) in &rows {
                    let checkpoint = (ev.kind == AuditKind::AuditCheckpoint)
                        .then(|| crate::store::CheckpointData::parse(&ev.data_json))
                        .flatten();
                    if let Some(cp) = checkpoint {
                        // A checkpoint number twice fails the record.
                        sqlx::query("INSERT INTO checkpoints (seq, audit_seq) VALUES ($1, $2)")
                            .bind(cp.seq)
                            .bind(*seq)
                            .execute(&mut **self)
                            .await?;
                    }
                }
                Ok(())
            }

            async fn queue(&mut self, batch: &[Prepared], now_ms: i64) -> Result<(), sqlx::Error> {
                let rows: Vec<_> = batch.iter().flat_map(|rec| &rec.queue).collect();
                insert_rows!(self, "queue", "message_id, next_hop, authority, route, lane, \
                     recipients, next_attempt_at, created_at, status", "", &rows, |q, e| {
                        q.bind(&e.entry.message_id)
                            .bind(&e.entry.next_hop)
                            .bind(&e.entry.authority)
                            .bind(&e.entry.route)
                            .bind(e.entry.lane.as_str())
                            .bind(&e.recipients_json)
                            .bind(now_ms)
                            .bind(now_ms)
                            .bind(super::DeliveryState::Accepted.as_str())
                    });
                Ok(())
            }

            async fn queue_updates(
                &mut self,
                rec: &Prepared,
                now_ms: i64,
            ) -> Result<(), sqlx::Error> {
                for u in &rec.queue_updates {
                    let sql = super::queue::update_sql(u);
                    let mut q = sqlx::query(&sql)
                        .bind(u.status.as_str())
                        .bind(u.next_attempt_at_ms)
                        .bind(i64::from(u.attempt.is_some()))
                        .bind(u.attempt.as_ref().map(|a| a.at_ms))
                        .bind(u.attempt.as_ref().and_then(|a| a.error.clone()))
                        .bind(now_ms)
                        .bind(u.queue_id)
                        .bind(
                            u.recipients
                                .as_ref()
                                .map(|r| serde_json::to_string(r).unwrap_or_default()),
                        )
                        .bind(u.next_hop_queue_id.clone());
                    if let Some(h) = &u.holder {
                        q = q.bind(h.clone());
                    }
                    q.execute(&mut **self).await?;
                }
                Ok(())
            }

            async fn holds(&mut self, rec: &Prepared) -> Result<(), sqlx::Error> {
                use super::holds::HoldChange;
                super::holds::write_holds!(self, &rec.holds)
            }
        }
    };
}

batch_sections!(sqlx::Sqlite);
batch_sections!(sqlx::Postgres);

#[cfg(test)]
mod tests {
    use super::{insert_sql, pieces};

    #[test]
    fn pieces_use_few_sizes_and_keep_the_order() {
        let rows: Vec<usize> = (0..151).collect();
        let sizes: Vec<usize> = pieces(&rows).iter().map(|p| p.len()).collect();
        assert_eq!(sizes, vec![64, 64, 16, 4, 1, 1, 1]);
        let again: Vec<usize> = pieces(&rows).concat();
        assert_eq!(again, rows);
        assert!(pieces::<u8>(&[]).is_empty());
    }

    #[test]
    fn insert_sql_numbers_the_placeholders_row_by_row() {
        assert_eq!(
            insert_sql("t", "a, b", 2, " ON CONFLICT DO NOTHING"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING"
        );
    }
}

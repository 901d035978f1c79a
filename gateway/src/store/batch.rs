//! The sections of the write transaction ([`Db::write_batch`](super::db::Db::write_batch)):
//! revocation data, message rows with their bodies and index keys, chained
//! audit records, queue rows, queue updates. [`batch_sections!`] writes
//! them once for both backends' transaction types, where sqlx's generic
//! bounds would be longer than the SQL.

use super::chain;
use super::kind::AuditKind;
use super::recorder::Prepared;

/// One method per section of the write transaction, for one record.
pub(super) trait Batch {
    /// The CRLs and OCSP responses the record used (already archived ones
    /// are left as they are).
    async fn revocation_data(&mut self, rec: &Prepared, now_ms: i64) -> Result<(), sqlx::Error>;

    /// The message rows (the record's and the gateway's own outgoing ones):
    /// body (when kept in the database), row, sender, recipient and signer
    /// keys.
    async fn messages(&mut self, rec: &Prepared) -> Result<(), sqlx::Error>;

    /// The audit records, chained after `seq` and `prev`, which are moved on.
    async fn events(
        &mut self,
        rec: &Prepared,
        now_ms: i64,
        seq: &mut i64,
        prev: &mut String,
    ) -> Result<(), sqlx::Error>;

    /// The new queue rows.
    async fn queue(&mut self, rec: &Prepared, now_ms: i64) -> Result<(), sqlx::Error>;

    /// The changes to queue rows.
    async fn queue_updates(&mut self, rec: &Prepared, now_ms: i64) -> Result<(), sqlx::Error>;

    /// The changes to held receipts.
    async fn holds(&mut self, rec: &Prepared) -> Result<(), sqlx::Error>;
}

/// Implements [`Batch`] for the transactions of backend `$db`.
macro_rules! batch_sections {
    ($db:ty) => {
        impl Batch for sqlx::Transaction<'_, $db> {
            async fn revocation_data(
                &mut self,
                rec: &Prepared,
                now_ms: i64,
            ) -> Result<(), sqlx::Error> {
                for b in &rec.revocation {
                    sqlx::query(
                        "INSERT INTO revocation_data (sha256, kind, data, first_used_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING",
                    )
                    .bind(&b.sha256)
                    .bind(&b.kind)
                    .bind(&b.der[..])
                    .bind(now_ms)
                    .execute(&mut **self)
                    .await?;
                }
                Ok(())
            }

            async fn messages(&mut self, rec: &Prepared) -> Result<(), sqlx::Error> {
                for m in rec.message.iter().chain(&rec.outgoing) {
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
                    sqlx::query(
                        "INSERT INTO messages (id, received_at, sha256, size, client_ip, helo, \
                         tls_version, tls_cipher, mail_from, rcpt_to, header_from, header_to, \
                         subject, message_id, date, verdict, reason, detail, signers, authority, \
                         policy_version, body_stored, case_ref, dsn, kind) VALUES ($1, $2, $3, \
                         $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
                         $20, $21, $22, $23, $24, $25)",
                    )
                    .bind(&r.id)
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
                    .execute(&mut **self)
                    .await?;
                    for (table, keys) in [
                        ("message_senders", &m.sender_keys),
                        ("message_recipients", &m.recipient_keys),
                    ] {
                        for key in keys {
                            sqlx::query(&format!(
                                "INSERT INTO {table} (address, received_at, message_id) \
                                 VALUES ($1, $2, $3)"
                            ))
                            .bind(key)
                            .bind(r.received_at_ms)
                            .bind(&r.id)
                            .execute(&mut **self)
                            .await?;
                        }
                    }
                    for (sha256, serial) in &m.signer_keys {
                        sqlx::query(
                            "INSERT INTO message_signers (sha256, serial, received_at, message_id) \
                             VALUES ($1, $2, $3, $4)",
                        )
                        .bind(sha256)
                        .bind(serial)
                        .bind(r.received_at_ms)
                        .bind(&r.id)
                        .execute(&mut **self)
                        .await?;
                    }
                    for key in &r.signature_keys {
                        // Two sessions may race with the same message: the
                        // first key stays, the batch never fails for it.
                        sqlx::query(
                            "INSERT INTO accepted_signatures (replay_key, message_id, received_at) \
                             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .bind(key)
                        .bind(&r.id)
                        .bind(r.received_at_ms)
                        .execute(&mut **self)
                        .await?;
                    }
                }
                Ok(())
            }

            async fn events(
                &mut self,
                rec: &Prepared,
                now_ms: i64,
                seq: &mut i64,
                prev: &mut String,
            ) -> Result<(), sqlx::Error> {
                for ev in &rec.events {
                    *seq += 1;
                    let hash = chain::record_hash(&chain::canonical(
                        prev,
                        *seq,
                        now_ms,
                        ev.kind.as_str(),
                        ev.message_id.as_deref(),
                        &ev.data_json,
                    ));
                    sqlx::query(
                        "INSERT INTO audit (seq, at, message_id, kind, data, prev_hash, hash) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(*seq)
                    .bind(now_ms)
                    .bind(&ev.message_id)
                    .bind(ev.kind.as_str())
                    .bind(&ev.data_json)
                    .bind(&*prev)
                    .bind(&hash)
                    .execute(&mut **self)
                    .await?;
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
                    *prev = hash;
                }
                Ok(())
            }

            async fn queue(&mut self, rec: &Prepared, now_ms: i64) -> Result<(), sqlx::Error> {
                for q in &rec.queue {
                    sqlx::query(
                        "INSERT INTO queue (message_id, next_hop, authority, route, lane, \
                         recipients, next_attempt_at, created_at, status) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(&q.entry.message_id)
                    .bind(&q.entry.next_hop)
                    .bind(&q.entry.authority)
                    .bind(&q.entry.route)
                    .bind(q.entry.lane.as_str())
                    .bind(&q.recipients_json)
                    .bind(now_ms)
                    .bind(now_ms)
                    .bind(super::DeliveryState::Accepted.as_str())
                    .execute(&mut **self)
                    .await?;
                }
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

//! The archive of policy versions: every version that was put in force,
//! with the exact bytes of each file it was built from, so a decision can
//! be re-checked years later against the policy that made it (`emla policy
//! show`, evidence bundles). Contents are stored once per SHA-256; a
//! version is the list of its files' names and hashes.

use super::db::{on_pool, Db};
use super::{Store, StoreError};

/// One file of an archived version.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ArchivedFile {
    /// Its name relative to the policy directory, as the version hashes it.
    pub name: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// The content.
    pub content: Vec<u8>,
}

/// A policy version as archived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedPolicy {
    /// The version (SHA-256 over the files, see `policy/README.md`).
    pub version: String,
    /// When it was first put in force, Unix milliseconds.
    pub first_in_force_ms: i64,
    /// Its files, by name.
    pub files: Vec<ArchivedFile>,
}

/// What a version prefix names.
#[derive(Debug)]
pub enum Lookup {
    /// Exactly one archived version.
    Found(ArchivedPolicy),
    /// None.
    Unknown,
    /// Several: the prefix is too short.
    Ambiguous(Vec<String>),
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

impl Db {
    async fn archive_policy(
        &self,
        version: &str,
        files: &[(&str, &[u8])],
        at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let _turn = self.write_turn().await;
        on_pool!(self, pool, d => {
            let mut tx = pool.begin().await?;
            let new = sqlx::query(
                "INSERT INTO policy_versions (version, first_in_force) VALUES ($1, $2) \
                 ON CONFLICT (version) DO NOTHING",
            )
            .bind(version)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if new == 1 {
                for (name, content) in files {
                    let sha = sha256_hex(content);
                    sqlx::query(
                        "INSERT INTO policy_blobs (sha256, content) VALUES ($1, $2) \
                         ON CONFLICT (sha256) DO NOTHING",
                    )
                    .bind(&sha)
                    .bind(*content)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO policy_files (version, name, sha256) VALUES ($1, $2, $3)",
                    )
                    .bind(version)
                    .bind(*name)
                    .bind(&sha)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            tx.commit().await
        })
    }

    async fn policy_versions_like(&self, prefix: &str) -> Result<Vec<(String, i64)>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_as(
                "SELECT version, first_in_force FROM policy_versions \
                 WHERE substr(version, 1, length($1)) = $1 ORDER BY first_in_force, version",
            )
            .bind(prefix)
            .fetch_all(pool)
            .await
        })
    }

    async fn policy_files(&self, version: &str) -> Result<Vec<ArchivedFile>, sqlx::Error> {
        on_pool!(self, pool, d => {
            sqlx::query_as(
                "SELECT f.name, f.sha256, b.content FROM policy_files f \
                 JOIN policy_blobs b ON b.sha256 = f.sha256 \
                 WHERE f.version = $1 ORDER BY f.name",
            )
            .bind(version)
            .fetch_all(pool)
            .await
        })
    }
}

impl Store {
    /// Archives a version about to be put in force, with its files (name
    /// and content), in one transaction; a version archived before keeps
    /// its first time in force.
    pub async fn archive_policy(
        &self,
        version: &str,
        files: &[(&str, &[u8])],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .db
            .archive_policy(version, files, at_ms)
            .await
            .map_err(|e| StoreError::sqlx("archiving the policy version", e))
    }

    /// Every archived version with when it was first in force, oldest first.
    pub async fn archived_policies(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.inner
            .db
            .policy_versions_like("")
            .await
            .map_err(|e| StoreError::sqlx("listing archived policy versions", e))
    }

    /// The archived version `prefix` names (a whole version or its start).
    pub async fn archived_policy(&self, prefix: &str) -> Result<Lookup, StoreError> {
        let read = |e| StoreError::sqlx("reading the policy archive", e);
        let mut found = self
            .inner
            .db
            .policy_versions_like(prefix)
            .await
            .map_err(read)?;
        if found.len() > 1 {
            return Ok(Lookup::Ambiguous(found.into_iter().map(|v| v.0).collect()));
        }
        let Some((version, first_in_force_ms)) = found.pop() else {
            return Ok(Lookup::Unknown);
        };
        let files = self.inner.db.policy_files(&version).await.map_err(read)?;
        Ok(Lookup::Found(ArchivedPolicy {
            version,
            first_in_force_ms,
            files,
        }))
    }
}

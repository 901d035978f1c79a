//! One isolated test database per test, on SQLite or PostgreSQL, and the
//! `both!` macro that runs a test case once per backend. Included by
//! `tests/store.rs` and `tests/audit.rs` with
//! `#[macro_use] #[path = "support/testdb.rs"] mod testdb;`.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use emla::store::Store;
use sqlx::Connection;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One isolated database plus a data directory.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    /// The PostgreSQL database to drop at the end.
    pub pg_name: Option<String>,
}

pub fn pg_admin_url() -> String {
    std::env::var("EMLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.path().join("db/emla.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("PostgreSQL at {admin} (set EMLA_TEST_POSTGRES): {e}")
                    });
                let name = format!("emla_test_{}", unique());
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = admin.rsplit_once('/').unwrap().0;
                TestDb {
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn open(&self) -> Store {
        Store::open(&self.url, self.dir.path()).await.unwrap()
    }

    /// A fresh database on `backend` and a store opened on it.
    pub async fn with_store(backend: Backend) -> (TestDb, Store) {
        let db = TestDb::new(backend).await;
        let store = db.open().await;
        (db, store)
    }

    /// Closes `store`, then drops the database.
    pub async fn close(self, store: Store) {
        drop(store);
        self.drop_db().await;
    }

    /// Runs SQL behind the store's back (tampering).
    pub async fn exec(&self, sql: &str) {
        if self.pg_name.is_some() {
            let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Runs `$case(Backend)` once per backend, as two tests.
macro_rules! both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$case(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$case(super::Backend::Postgres).await;
            }
        }
    };
}

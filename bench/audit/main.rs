//! Benchmark of `emla audit search` on a large log: generates N messages
//! with their audit records (a valid hash chain), queue entries and search
//! index rows in SQLite and PostgreSQL, then times representative filtered
//! searches (first page of 50, through `emla::audit::cli::search`).
//!
//! `cargo bench --bench audit` runs the full size (1,000,000 messages, or
//! `EMLA_AUDIT_BENCH_N`), seven runs per search, and prints a Markdown
//! table of medians. Without `--bench` (as `cargo test --benches` runs it)
//! it loads 2,000 messages and runs each search once, so it cannot rot.
//! See bench/audit/README.md.

use std::path::Path;
use std::time::{Duration, Instant};

use emla::audit::cli::{self, SearchArgs};
use emla::store::{chain, index, ChainCheck, Store};
use sha2::{Digest, Sha256};
use sqlx::Connection;

/// 2025-01-01T00:00:00Z: the first message.
const T0: i64 = 1_735_689_600_000;
/// The log spans two years.
const SPAN_MS: i64 = 2 * 365 * 24 * 3_600_000;
const COUNTRIES: usize = 194;
/// Officials per authority; two authorities (justice, mfa) per country.
const OFFICIALS: usize = 10;
/// Messages per load transaction.
const BATCH: usize = 2_000;

const REJECTS: [&str; 8] = [
    "bad-signature",
    "untrusted-chain",
    "expired",
    "revoked",
    "sender-mismatch",
    "unauthorized-domain",
    "route-denied",
    "unsigned",
];

/// splitmix64: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// An official: `(address, authority id)`; index `o` over all officials.
fn official(o: usize) -> (String, String) {
    let authority = o / OFFICIALS;
    let (country, kind) = (
        authority / 2,
        if authority.is_multiple_of(2) {
            "justice"
        } else {
            "mfa"
        },
    );
    let short = if kind == "justice" { "moj" } else { "mfa" };
    (
        format!("official{}@{kind}.c{country:03}.example", o % OFFICIALS),
        format!("c{country:03}-{short}"),
    )
}

fn officials() -> usize {
    COUNTRIES * 2 * OFFICIALS
}

/// `(sha256, serial)` of an official's certificate.
fn cert(address: &str) -> (String, String) {
    let sha = hex::encode(Sha256::digest(address.as_bytes()));
    let serial = hex::encode(&Sha256::digest(sha.as_bytes())[..16]);
    (sha, serial)
}

/// SQL text literal.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn qo(s: &Option<String>) -> String {
    s.as_deref().map(q).unwrap_or_else(|| "NULL".into())
}

/// One generated message, as the rows it needs.
struct Generated {
    id: String,
    message_id: String,
    at: i64,
    messages: String,
    senders: Vec<String>,
    recipients: Vec<String>,
    signer: Option<(String, String)>,
    queue: Option<String>,
    event_kind: &'static str,
    event_data: String,
}

fn generate(i: usize, n: usize, rng: &mut Rng) -> Generated {
    let at = T0 + (i as i64) * (SPAN_MS / n as i64) + (rng.below(1000) as i64);
    let id = format!("m{i:08}-{:016x}@gw.bench", rng.next());
    let sender = rng.below(officials());
    let (from, authority) = official(sender);
    let mut rcpt = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let (r, _) = official(rng.below(officials()));
        if !rcpt.contains(&r) && r != from {
            rcpt.push(r);
        }
    }
    if rcpt.is_empty() {
        rcpt.push(official((sender + OFFICIALS * 2) % officials()).0);
    }
    let reject = rng.below(100) >= 85;
    let reason = if reject {
        REJECTS[rng.below(REJECTS.len())]
    } else {
        "ok"
    };
    let signer = (reason != "unsigned").then(|| cert(&from));
    let case =
        (rng.below(10) < 7).then(|| format!("MLA-{}-{}", 2025 + i * 2 / n, rng.below(200_000)));
    let subject = match &case {
        Some(c) => format!("Request for assistance {c}"),
        None => format!("Transmission {i}"),
    };
    let message_id = format!("msg-{i}@{}", from.split('@').nth(1).unwrap_or(""));
    let rcpt_json = serde_json::to_string(&rcpt).unwrap_or_default();
    let signers_json = match &signer {
        Some((sha, serial)) => serde_json::json!([{
            "email": from, "emails": [from], "subject": format!("CN={from}"),
            "issuer": format!("CN=Issuing CA {authority}"), "serial": serial, "sha256": sha,
            "key_algorithm": "rsa-2048", "signature_algorithm": "sha256-rsa-pkcs1",
            "chain": [format!("CN={from}"), format!("CN=Issuing CA {authority}"),
                      format!("CN=Root CA {authority}")],
            "authority": authority,
        }])
        .to_string(),
        None => "[]".into(),
    };
    let sha256 = hex::encode(Sha256::digest(id.as_bytes()));
    let verdict = if reject { "reject" } else { "accept" };
    let detail = if reject {
        format!("{reason}: refused")
    } else {
        format!("signed by {from}")
    };
    let header_to = rcpt.join(", ");
    let messages = format!(
        "({}, {at}, {}, 20480, '192.0.2.7', 'mx.example', 'TLSv1.3', \
         'TLS13_AES_256_GCM_SHA384', {}, {}, {}, {}, {}, {}, NULL, {}, {}, {}, {}, {}, \
         'bench-policy', {}, {})",
        q(&id),
        q(&sha256),
        q(&from),
        q(&rcpt_json),
        q(&format!("Official <{from}>")),
        q(&header_to),
        q(&subject),
        q(&message_id),
        q(verdict),
        q(reason),
        q(&detail),
        q(&signers_json),
        q(&authority),
        if reject { "FALSE" } else { "TRUE" },
        qo(&case),
    );
    let status = match rng.below(100) {
        0..=94 => "relayed",
        95..=96 => "failed",
        _ => "accepted",
    };
    let queue = (!reject).then(|| {
        format!(
            "({}, 'mx.bench.example:25', 'bench', 'bench-route', 'normal', {}, {}, 1, {at}, {at})",
            q(&id),
            q(&rcpt_json),
            q(status)
        )
    });
    let event_data = serde_json::json!({
        "mail_from": from, "rcpt_to": rcpt, "sha256": sha256, "verdict": verdict,
        "reason": reason, "detail": detail, "authority": authority, "subject": subject,
    })
    .to_string();
    Generated {
        senders: index::sender_keys(&from, Some(&format!("Official <{from}>"))),
        recipients: index::recipient_keys(&rcpt, Some(&header_to)),
        signer: signer.map(|(s, r)| (index::hex_key(&s), index::hex_key(&r))),
        id,
        message_id,
        at,
        messages,
        queue,
        event_kind: if reject {
            "message.rejected"
        } else {
            "message.accepted"
        },
        event_data,
    }
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Conn {
    async fn exec(&mut self, sql: &str) {
        let r = match self {
            Conn::Sqlite(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
            Conn::Postgres(c) => sqlx::raw_sql(sql).execute(c).await.map(|_| ()),
        };
        if let Err(e) = r {
            panic!("bulk load: {e}");
        }
    }
}

/// Loads `n` messages (and the rest) in batches; returns sample values to
/// search for.
async fn load(conn: &mut Conn, n: usize) -> Samples {
    let mut rng = Rng(42);
    let mut prev = chain::GENESIS.to_string();
    let mut samples = Samples::default();
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let batch: Vec<Generated> = (i..end).map(|k| generate(k, n, &mut rng)).collect();
        let mut sql = String::from(
            "BEGIN;\nINSERT INTO messages (id, received_at, sha256, size, \
            client_ip, helo, tls_version, tls_cipher, mail_from, rcpt_to, header_from, \
            header_to, subject, message_id, date, verdict, reason, detail, signers, authority, \
            policy_version, body_stored, case_ref) VALUES\n",
        );
        sql.push_str(
            &batch
                .iter()
                .map(|g| g.messages.as_str())
                .collect::<Vec<_>>()
                .join(",\n"),
        );
        sql.push_str(";\n");
        let mut audit = Vec::with_capacity(batch.len());
        for (k, g) in batch.iter().enumerate() {
            let seq = (i + k + 1) as i64;
            let at = g.at + 3;
            let hash = chain::record_hash(&chain::canonical(
                &prev,
                seq,
                at,
                g.event_kind,
                Some(&g.id),
                &g.event_data,
            ));
            audit.push(format!(
                "({seq}, {at}, {}, '{}', {}, '{prev}', '{hash}')",
                q(&g.id),
                g.event_kind,
                q(&g.event_data)
            ));
            prev = hash;
        }
        sql.push_str(
            "INSERT INTO audit (seq, at, message_id, kind, data, prev_hash, hash) VALUES\n",
        );
        sql.push_str(&audit.join(",\n"));
        sql.push_str(";\n");
        let queue: Vec<&str> = batch.iter().filter_map(|g| g.queue.as_deref()).collect();
        if !queue.is_empty() {
            sql.push_str(
                "INSERT INTO queue (message_id, next_hop, authority, route, lane, \
                recipients, status, attempts, next_attempt_at, created_at) VALUES\n",
            );
            sql.push_str(&queue.join(",\n"));
            sql.push_str(";\n");
        }
        for (table, keys) in [
            (
                "message_senders",
                batch.iter().map(|g| (g, &g.senders)).collect::<Vec<_>>(),
            ),
            (
                "message_recipients",
                batch.iter().map(|g| (g, &g.recipients)).collect(),
            ),
        ] {
            let rows: Vec<String> = keys
                .iter()
                .flat_map(|(g, ks)| {
                    ks.iter()
                        .map(|k| format!("({}, {}, {})", q(k), g.at, q(&g.id)))
                })
                .collect();
            sql.push_str(&format!(
                "INSERT INTO {table} (address, received_at, message_id) VALUES\n"
            ));
            sql.push_str(&rows.join(",\n"));
            sql.push_str(";\n");
        }
        let signers: Vec<String> = batch
            .iter()
            .filter_map(|g| {
                g.signer
                    .as_ref()
                    .map(|(s, r)| format!("('{s}', '{r}', {}, {})", g.at, q(&g.id)))
            })
            .collect();
        if !signers.is_empty() {
            sql.push_str(
                "INSERT INTO message_signers (sha256, serial, received_at, message_id) VALUES\n",
            );
            sql.push_str(&signers.join(",\n"));
            sql.push_str(";\n");
        }
        sql.push_str(&format!(
            "UPDATE audit_head SET seq = {end}, hash = '{prev}' WHERE id = 1;\nCOMMIT;\n"
        ));
        conn.exec(&sql).await;
        // Samples from the middle of the log.
        if i <= n / 2 && n / 2 < end {
            let g = &batch[n / 2 - i];
            samples.id = g.id.clone();
            samples.message_id = g.message_id.clone();
            samples.cursor = format!("{}:{}", g.at, g.id);
        }
        i = end;
    }
    samples
}

#[derive(Default)]
struct Samples {
    id: String,
    message_id: String,
    cursor: String,
}

/// The searches timed: `(name, arguments)`.
fn searches(s: &Samples) -> Vec<(&'static str, SearchArgs)> {
    let mid = T0 + SPAN_MS / 2;
    let month = 30 * 24 * 3_600_000;
    let t = emla::text::time_rfc3339;
    let (official, authority) = official(1234 % officials());
    let (sha, serial) = cert(&official);
    vec![
        search("no filter (newest page)", |_| {}),
        search("--from address", |a| a.from = Some(official.clone())),
        search("--from @domain", |a| {
            a.from = Some("@justice.c042.example".into())
        }),
        search("--to address", |a| {
            a.to = Some("official3@mfa.c100.example".into())
        }),
        search("--reason + --since/--until (1 month)", |a| {
            a.reason = Some("revoked".into());
            a.since = Some(t(mid));
            a.until = Some(t(mid + month));
        }),
        search("--signer fingerprint", |a| a.signer = Some(sha)),
        search("--signer serial", |a| a.signer = Some(serial)),
        search("--case", |a| a.case_ref = Some("mla-2025-777".into())),
        search("--message-id", |a| {
            a.message_id = Some(format!("<{}>", s.message_id))
        }),
        search("--id", |a| a.id = Some(s.id.clone())),
        search("--authority", |a| a.authority = vec![authority.clone()]),
        search("--authority x2 (a country)", |a| {
            a.authority = vec!["c077-moj".into(), "c077-mfa".into()]
        }),
        search("--verdict reject --asc", |a| {
            a.verdict = Some(cli::VerdictArg::Reject);
            a.asc = true;
        }),
        search("--status failed", |a| a.status = Some("failed".into())),
        search("--from + --verdict + --since", |a| {
            a.from = Some(official);
            a.verdict = Some(cli::VerdictArg::Accept);
            a.since = Some(t(mid));
        }),
        search("--after (page in the middle)", |a| {
            a.after = Some(s.cursor.clone())
        }),
        search("--page 100", |a| a.page = Some(100)),
    ]
}

/// One search timed: pages of 50 with the filters `set` sets.
fn search(name: &'static str, set: impl FnOnce(&mut SearchArgs)) -> (&'static str, SearchArgs) {
    let mut args = SearchArgs {
        limit: 50,
        ..Default::default()
    };
    set(&mut args);
    (name, args)
}

/// Per backend: `(search, median time, rows on the page)`.
type Results = Vec<(String, Vec<(String, Duration, usize)>)>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn run(
    backend: &str,
    url: &str,
    data_dir: &Path,
    n: usize,
    runs: usize,
) -> Vec<(String, Duration, usize)> {
    let store = Store::open(url, data_dir).await.expect("open the store");
    let mut conn = match backend {
        "sqlite" => {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
            sqlx::raw_sql("PRAGMA synchronous = OFF; PRAGMA cache_size = -1000000;")
                .execute(&mut c)
                .await
                .expect("pragmas");
            Conn::Sqlite(c)
        }
        _ => Conn::Postgres(sqlx::PgConnection::connect(url).await.expect("postgres")),
    };
    let started = Instant::now();
    let samples = load(&mut conn, n).await;
    let loaded = started.elapsed();
    let analyzed = Instant::now();
    if std::env::var_os("EMLA_AUDIT_BENCH_NO_ANALYZE").is_none() {
        conn.exec("ANALYZE").await;
    }
    eprintln!(
        "{backend}: loaded {n} messages in {:.1} s, ANALYZE {:.1} s",
        loaded.as_secs_f64(),
        analyzed.elapsed().as_secs_f64()
    );
    let mut out = Vec::new();
    for (name, args) in searches(&samples) {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let page = cli::search(&store, None, &args).await.expect(name);
            times.push(t.elapsed());
            rows = page
                .lines()
                .skip(1)
                .filter(|l| !l.starts_with("next page:"))
                .count();
        }
        out.push((name.to_string(), median(times), rows));
    }
    if runs == 1 {
        // Test mode: the bulk-loaded chain must verify like one `Store::record` writes.
        match store.verify_chain().await.expect("verify") {
            ChainCheck::Intact { records, .. } => assert_eq!(records, n as u64),
            broken => panic!("bulk-loaded chain is broken: {broken:?}"),
        }
    }
    out
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = if full {
        std::env::var("EMLA_AUDIT_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        2_000
    };
    let runs = if full { 7 } else { 1 };
    let backends =
        std::env::var("EMLA_AUDIT_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results: Results = Vec::new();
    for backend in backends.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = rt.block_on(async {
            match backend {
                "sqlite" => {
                    let url = format!("sqlite://{}", dir.path().join("emla.db").display());
                    run(backend, &url, dir.path(), n, runs).await
                }
                "postgres" => {
                    let admin = std::env::var("EMLA_TEST_POSTGRES")
                        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                    let name = format!("emla_audit_bench_{}", std::process::id());
                    let mut c = sqlx::PgConnection::connect(&admin)
                        .await
                        .expect("postgres admin");
                    for sql in [
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        format!("CREATE DATABASE {name}"),
                    ] {
                        sqlx::query(&sql)
                            .execute(&mut c)
                            .await
                            .expect("create database");
                    }
                    let url = format!(
                        "{}/{name}",
                        admin.rsplit_once('/').map(|p| p.0).unwrap_or(&admin)
                    );
                    let r = run(backend, &url, dir.path(), n, runs).await;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut c)
                        .await
                        .expect("drop database");
                    r
                }
                other => panic!("EMLA_AUDIT_BENCH_BACKENDS: unknown backend {other}"),
            }
        });
        results.push((backend.to_string(), r));
    }
    println!("\n{n} messages; median of {runs} run(s), first page of 50\n");
    let mut header = String::from("| search |");
    let mut rule = String::from("|---|");
    for (b, _) in &results {
        header.push_str(&format!(" {b} ms | rows |"));
        rule.push_str("---:|---:|");
    }
    println!("{header}\n{rule}");
    if let Some((_, first)) = results.first() {
        for (k, (name, _, _)) in first.iter().enumerate() {
            let mut line = format!("| `{name}` |");
            for (_, r) in &results {
                line.push_str(&format!(
                    " {:.1} | {} |",
                    r[k].1.as_secs_f64() * 1000.0,
                    r[k].2
                ));
            }
            println!("{line}");
        }
    }
}

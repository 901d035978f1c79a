//! `emla audit search` and `emla audit show` against real databases:
//! SQLite in a temporary directory and PostgreSQL (a fresh database per
//! test, dropped at the end), filled through `Store::record` with a few
//! dozen realistic decisions.
//!
//! PostgreSQL is reached at `postgres://postgres@127.0.0.1:5432/test`, or at
//! the URL in `EMLA_TEST_POSTGRES`; the role must be allowed to create
//! databases.

use std::collections::BTreeSet;
use std::sync::Arc;

use emla::audit::cli::{self, SearchArgs, ShowArgs};
use emla::audit::AuditError;
use emla::case_ref::{case_ref, CaseRefPattern};
use emla::policy::Policy;
use emla::store::{
    AuditEvent, AuditKind, ChainCheck, MessageRecord, QueueEntry, Record, SessionInfo, Store,
};
use emla::{EvalTime, Reason};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

#[macro_use]
#[path = "support/testdb.rs"]
mod testdb;
use testdb::*;

// ---------------------------------------------------------------------------
// The log: 40 decisions over 40 hours
// ---------------------------------------------------------------------------

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const HOUR: i64 = 3_600_000;
const N: usize = 40;

/// What each fixture message is, to compute expected results.
#[derive(Clone, Debug)]
struct Fixture {
    id: String,
    at: i64,
    mail_from: String,
    header_from: String,
    rcpt: Vec<String>,
    authority: Option<String>,
    reason: Reason,
    signer: Option<(String, String)>,
    message_id: String,
    subject: String,
    case_ref: Option<String>,
    kind: Option<&'static str>,
}

/// `(address, authority, signer certificate sha256, serial)`.
fn sender(i: usize) -> (&'static str, Option<&'static str>) {
    match i % 5 {
        0 => ("alice@justice.aa.example", Some("aa-moj")),
        1 => ("Anna@Justice.AA.example", Some("aa-moj")),
        2 => ("bob@justice.bb.example", Some("bb-moj")),
        3 => ("ben@mfa.bb.example", Some("bb-mfa")),
        _ => ("cara@justice.cc.example", Some("cc-moj")),
    }
}

fn cert_of(address: &str) -> (String, String) {
    let sha = hex::encode(Sha256::digest(address.to_lowercase().as_bytes()));
    let serial = hex::encode(&Sha256::digest(sha.as_bytes())[..8]);
    (sha, serial)
}

const REJECTS: [Reason; 4] = [
    Reason::BadSignature,
    Reason::UntrustedChain,
    Reason::SenderMismatch,
    Reason::Unsigned,
];

fn fixtures() -> Vec<Fixture> {
    (0..N)
        .map(|i| {
            let (from, authority) = sender(i);
            // Messages 10 and 11 share their reception time (keyset ties).
            let at = T0 + (i as i64) * HOUR - if i == 11 { HOUR } else { 0 };
            let rcpt = match i % 3 {
                0 => vec!["bob@justice.bb.example".to_string()],
                1 => vec![
                    "alice@justice.aa.example".to_string(),
                    "Dora@Justice.AA.example".to_string(),
                ],
                _ => vec!["ben@mfa.bb.example".to_string()],
            };
            let reason = if i % 3 == 2 {
                REJECTS[(i / 3) % REJECTS.len()]
            } else {
                Reason::Ok
            };
            let signer = (reason != Reason::Unsigned).then(|| cert_of(from));
            // Message 7: MAIL FROM is a service address, From: is Alice.
            let (mail_from, header_from) = if i == 7 {
                (
                    "registry@justice.aa.example".to_string(),
                    "\"Doe, Alice\" <alice@justice.aa.example>".to_string(),
                )
            } else {
                (from.to_string(), format!("Official {i} <{from}>"))
            };
            let subject = match i % 4 {
                0 => format!("Request for assistance MLA-2026-{i}"),
                1 => format!("Evidence, part \"{i}\""),
                2 => format!("Re: mla 2026-{i} follow-up"),
                _ => format!("Transmission {i}"),
            };
            // Every fifth message carries an X-MLA-Reference header.
            let header = (i % 5 == 0).then(|| format!("AA/2026/{i:04}"));
            let case = case_ref(
                header.as_deref(),
                Some(&subject),
                CaseRefPattern::standard(),
            );
            Fixture {
                id: format!("20260101T{i:06}Z-{i:016x}@gw.test"),
                at,
                mail_from,
                header_from,
                rcpt,
                authority: authority.map(str::to_string),
                reason,
                signer,
                message_id: format!("msg-{i}@{}", from.split('@').nth(1).unwrap()),
                subject,
                case_ref: case,
                kind: [None, Some("mla-request"), None, Some("extradition-request")][i % 4],
            }
        })
        .collect()
}

fn record_of(f: &Fixture) -> Record {
    let raw = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{}>\r\n\r\nbody {}\r\n",
        f.header_from,
        f.rcpt.join(", "),
        f.subject,
        f.message_id,
        f.id
    )
    .into_bytes();
    let accepted = f.reason == Reason::Ok;
    let signers = match &f.signer {
        Some((sha, serial)) => json!([{
            "email": f.mail_from.to_lowercase(),
            "emails": [f.mail_from.to_lowercase()],
            "subject": format!("CN={}", f.mail_from),
            "issuer": "CN=Issuing CA",
            "serial": serial.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":"),
            "sha256": sha.to_uppercase(),
            "key_algorithm": "rsa-2048",
            "signature_algorithm": "sha256-rsa-pkcs1",
            "chain": [format!("CN={}", f.mail_from), "CN=Issuing CA", "CN=Root CA"],
            "authority": f.authority,
        }]),
        None => json!([]),
    };
    let recipients: Vec<Value> = f
        .rcpt
        .iter()
        .map(|r| {
            json!({"recipient": r, "route": "aa-bb", "authority": "bb-moj",
                   "next_hop": "mx.justice.bb.example:25", "lane": "normal"})
        })
        .collect();
    let sha256 = hex::encode(Sha256::digest(&raw));
    let session = SessionInfo {
        client_ip: "192.0.2.7".into(),
        helo: "mx.justice.aa.example".into(),
        tls_version: Some("TLSv1.3".into()),
        tls_cipher: Some("TLS13_AES_256_GCM_SHA384".into()),
    };
    let message = MessageRecord {
        id: f.id.clone(),
        received_at_ms: f.at,
        sha256: sha256.clone(),
        size: raw.len() as u64,
        session: session.clone(),
        mail_from: f.mail_from.clone(),
        rcpt_to: f.rcpt.clone(),
        headers: emla::store::MessageHeaders {
            header_from: Some(f.header_from.clone()),
            header_to: Some(f.rcpt.join(", ")),
            subject: Some(f.subject.clone()),
            message_id: Some(f.message_id.clone()),
            date: Some("Thu, 01 Jan 2026 00:00:00 +0000".into()),
        },
        reason: f.reason,
        detail: if accepted {
            format!("signed by {}", f.mail_from)
        } else {
            format!("{} for {}", f.reason, f.mail_from)
        },
        signers: signers.clone(),
        authority: f.authority.clone(),
        policy_version: "8fb4f6291a5130a5".into(),
        case_ref: f.case_ref.clone(),
        kind: f.kind.map(str::to_owned),
        signature_keys: Vec::new(),
        body: accepted.then(|| Arc::<[u8]>::from(raw.clone()).into()),
        dsn: None,
    };
    let event = AuditEvent {
        kind: if accepted {
            AuditKind::MessageAccepted
        } else {
            AuditKind::MessageRejected
        },
        message_id: Some(f.id.clone()),
        data: json!({
            "session": session, "mail_from": f.mail_from, "rcpt_to": f.rcpt,
            "sha256": sha256, "verdict": if accepted { "accept" } else { "reject" },
            "reason": f.reason, "signers": signers, "recipients": recipients,
        }),
    };
    let queue = if accepted {
        vec![QueueEntry {
            message_id: f.id.clone(),
            next_hop: "mx.justice.bb.example:25".into(),
            authority: "bb-moj".into(),
            route: "aa-bb".into(),
            lane: emla::store::Lane::Normal,
            recipients: f.rcpt.clone(),
        }]
    } else {
        Vec::new()
    };
    Record {
        message: Some(message),
        events: vec![event],
        queue,
        queue_updates: Vec::new(),
        holds: Vec::new(),
        outgoing: Vec::new(),
        revocation: Vec::new(),
    }
}

/// A store holding the fixtures; some deliveries done or failed.
async fn filled(backend: Backend) -> (TestDb, Store, Vec<Fixture>) {
    let (db, store) = TestDb::with_store(backend).await;
    let fx = fixtures();
    // Concurrently, so the writer groups them into shared transactions.
    let tasks: Vec<_> = fx
        .iter()
        .map(|f| {
            let (store, record) = (store.clone(), record_of(f));
            tokio::spawn(async move { store.record(record).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // What the relay will do: messages 0 and 3 relayed, 4 failed; 0 and 3
    // under the name an older version wrote (`delivered`), which reads as
    // `relayed`.
    let id = |i: usize| fx[i].id.clone();
    db.exec(&format!(
        "UPDATE queue SET status = 'delivered', attempts = 1 WHERE message_id IN ('{}', '{}');
         UPDATE queue SET status = 'failed', attempts = 5 WHERE message_id = '{}';",
        id(0),
        id(3),
        id(4)
    ))
    .await;
    store
        .record(Record {
            message: None,
            events: vec![AuditEvent {
                kind: AuditKind::RelayDelivered,
                message_id: Some(id(0)),
                data: json!({"next_hop": "mx.justice.bb.example:25", "reply": "250 2.0.0 ok"}),
            }],
            queue: Vec::new(),
            queue_updates: Vec::new(),
            holds: Vec::new(),
            outgoing: Vec::new(),
            revocation: Vec::new(),
        })
        .await
        .unwrap();
    (db, store, fx)
}

fn policy() -> Policy {
    emla::policy::load(std::path::Path::new("../policy"), EvalTime::now())
        .unwrap_or_else(|d| panic!("sample policy: {d:?}"))
}

fn args() -> SearchArgs {
    SearchArgs {
        limit: 1000,
        json: true,
        ..Default::default()
    }
}

/// `args()` with `from`.
fn sent_by(from: &str) -> SearchArgs {
    SearchArgs {
        from: Some(from.into()),
        ..args()
    }
}

/// `args()` with `to`.
fn sent_to(to: &str) -> SearchArgs {
    SearchArgs {
        to: Some(to.into()),
        ..args()
    }
}

/// The ids a search returns, in order.
async fn ids(store: &Store, a: SearchArgs) -> Vec<String> {
    let policy = policy();
    let out = cli::search(store, Some(&policy), &a).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The fixture ids matching `pred`, newest first (ties: id descending).
fn expect(fx: &[Fixture], pred: impl Fn(&Fixture) -> bool) -> Vec<String> {
    let mut v: Vec<&Fixture> = fx.iter().filter(|f| pred(f)).collect();
    v.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
    v.into_iter().map(|f| f.id.clone()).collect()
}

fn rfc3339(ms: i64) -> String {
    emla::text::time_rfc3339(ms)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

async fn each_filter(backend: Backend) {
    let (db, store, fx) = filled(backend).await;
    let all = expect(&fx, |_| true);
    assert_eq!(ids(&store, args()).await, all);

    times_and_addresses(&store, &fx).await;
    authorities_and_signers(&store, &fx).await;
    codes_and_status(&store, &fx).await;
    message_ids_and_cases(&store, &fx).await;
    db.drop_db().await;
}
both!(each_filter);

/// [`each_filter`]: the time range, senders and recipients.
async fn times_and_addresses(store: &Store, fx: &[Fixture]) {
    // Time range: since inclusive, until exclusive.
    let a = SearchArgs {
        since: Some(rfc3339(T0 + 5 * HOUR)),
        until: Some(rfc3339(T0 + 12 * HOUR)),
        ..args()
    };
    let want = expect(fx, |f| f.at >= T0 + 5 * HOUR && f.at < T0 + 12 * HOUR);
    assert_eq!(want.len(), 7);
    assert_eq!(ids(store, a).await, want);

    // Sender: MAIL FROM or header From, case-insensitive; a domain.
    let alice = expect(fx, |f| {
        f.mail_from.eq_ignore_ascii_case("alice@justice.aa.example")
            || f.header_from.contains("alice@justice.aa.example")
    });
    assert!(alice.contains(&fx[7].id), "header From only");
    let a = sent_by("ALICE@justice.aa.example");
    assert_eq!(ids(store, a).await, alice);
    let anna = sent_by("anna@justice.aa.example");
    assert_eq!(
        ids(store, anna).await,
        expect(fx, |f| f.mail_from == "Anna@Justice.AA.example")
    );
    let domain = sent_by("@justice.aa.example");
    let aa = expect(fx, |f| {
        f.mail_from.to_lowercase().ends_with("@justice.aa.example")
    });
    assert_eq!(ids(store, domain).await, aa);

    // Recipient, address and domain.
    let to = sent_to("dora@justice.aa.example");
    let dora = expect(fx, |f| {
        f.rcpt.iter().any(|r| r == "Dora@Justice.AA.example")
    });
    assert_eq!(dora.len(), 13);
    assert_eq!(ids(store, to).await, dora);
    let to_bb = sent_to("justice.bb.example");
    assert_eq!(
        ids(store, to_bb).await,
        expect(fx, |f| f.rcpt[0] == "bob@justice.bb.example")
    );
}

/// [`each_filter`]: authorities, countries and signer certificates.
async fn authorities_and_signers(store: &Store, fx: &[Fixture]) {
    // Authority and country (BB: bb-moj and bb-mfa in the sample policy).
    let auth = SearchArgs {
        authority: vec!["bb-mfa".into()],
        ..args()
    };
    assert_eq!(
        ids(store, auth).await,
        expect(fx, |f| f.authority.as_deref() == Some("bb-mfa"))
    );
    let country = SearchArgs {
        country: vec!["bb".into()],
        ..args()
    };
    let bb = expect(fx, |f| {
        matches!(f.authority.as_deref(), Some("bb-mfa") | Some("bb-moj"))
    });
    assert_eq!(bb.len(), 16);
    assert_eq!(ids(store, country).await, bb);
    let unknown = SearchArgs {
        country: vec!["ZZ".into()],
        ..args()
    };
    let e = cli::search(store, Some(&policy()), &unknown)
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");

    // Signer: fingerprint (any case) or serial (with colons).
    let (sha, serial) = cert_of("ben@mfa.bb.example");
    let ben = expect(fx, |f| f.signer.as_ref().map(|s| &s.0) == Some(&sha));
    assert!(!ben.is_empty());
    let by_sha = SearchArgs {
        signer: Some(sha.to_uppercase()),
        ..args()
    };
    assert_eq!(ids(store, by_sha).await, ben);
    let colons: Vec<&str> = serial
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let by_serial = SearchArgs {
        signer: Some(colons.join(":").to_uppercase()),
        ..args()
    };
    assert_eq!(ids(store, by_serial).await, ben);
}

/// [`each_filter`]: reason codes, verdicts and delivery status.
async fn codes_and_status(store: &Store, fx: &[Fixture]) {
    // Reason, verdict, delivery status.
    let reason = SearchArgs {
        reason: Some("untrusted-chain".into()),
        ..args()
    };
    let untrusted = expect(fx, |f| f.reason == Reason::UntrustedChain);
    assert!(!untrusted.is_empty());
    assert_eq!(ids(store, reason).await, untrusted);
    let rejected = SearchArgs {
        verdict: Some(cli::VerdictArg::Reject),
        ..args()
    };
    assert_eq!(
        ids(store, rejected).await,
        expect(fx, |f| f.reason != Reason::Ok)
    );
    for (status, want) in [
        ("relayed", vec![0, 3]),
        ("delivered", vec![0, 3]),
        ("failed", vec![4]),
    ] {
        let a = SearchArgs {
            status: Some(status.into()),
            ..args()
        };
        assert_eq!(
            ids(store, a).await,
            expect(fx, |f| want.iter().any(|&i| fx[i].id == f.id))
        );
    }
    // Each row states where its message stands, by today's names (0 and 3
    // were written `delivered`).
    let out = cli::search(store, None, &args()).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let state_of = |id: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .map(|r| r["state"].clone())
            .unwrap()
    };
    for (i, f) in fx.iter().enumerate() {
        let want = match i {
            _ if f.reason != Reason::Ok => "rejected",
            0 | 3 => "relayed",
            4 => "failed",
            _ => "accepted",
        };
        assert_eq!(state_of(&f.id), want, "fixture {i}");
    }
    for name in ["accepted", "queued"] {
        let accepted = SearchArgs {
            status: Some(name.into()),
            ..args()
        };
        assert_eq!(
            ids(store, accepted).await,
            expect(fx, |f| f.reason == Reason::Ok
                && ![0, 3, 4].iter().any(|&i| fx[i].id == f.id))
        );
    }
}

/// [`each_filter`]: Message-IDs, emla ids and case references.
async fn message_ids_and_cases(store: &Store, fx: &[Fixture]) {
    // Message-ID with or without brackets; emla id.
    for q in [format!("<{}>", fx[9].message_id), fx[9].message_id.clone()] {
        let a = SearchArgs {
            message_id: Some(q),
            ..args()
        };
        assert_eq!(ids(store, a).await, vec![fx[9].id.clone()]);
    }
    let by_id = SearchArgs {
        id: Some(fx[13].id.clone()),
        ..args()
    };
    assert_eq!(ids(store, by_id).await, vec![fx[13].id.clone()]);

    // Case reference: the header, or the pattern in the subject.
    let header = SearchArgs {
        case_ref: Some("aa/2026/0015".into()),
        ..args()
    };
    assert_eq!(ids(store, header).await, vec![fx[15].id.clone()]);
    assert_eq!(fx[8].case_ref.as_deref(), Some("MLA-2026-8"));
    let subject = SearchArgs {
        case_ref: Some("mla-2026-8".into()),
        ..args()
    };
    assert_eq!(ids(store, subject).await, vec![fx[8].id.clone()]);
    assert_eq!(fx[6].case_ref.as_deref(), Some("mla 2026-6"));
    let spaced = SearchArgs {
        case_ref: Some("MLA 2026-6".into()),
        ..args()
    };
    assert_eq!(ids(store, spaced).await, vec![fx[6].id.clone()]);

    // Request kind.
    let kind = SearchArgs {
        kind: Some("extradition-request".into()),
        ..args()
    };
    let want = expect(fx, |f| f.kind == Some("extradition-request"));
    assert_eq!(want.len(), N / 4);
    assert_eq!(ids(store, kind).await, want);
}

async fn combinations(backend: Backend) {
    let (db, store, fx) = filled(backend).await;
    // Sender + reason + time range.
    let a = SearchArgs {
        from: Some("@justice.aa.example".into()),
        verdict: Some(cli::VerdictArg::Accept),
        since: Some(rfc3339(T0 + 10 * HOUR)),
        ..args()
    };
    let want = expect(&fx, |f| {
        f.mail_from.to_lowercase().ends_with("@justice.aa.example")
            && f.reason == Reason::Ok
            && f.at >= T0 + 10 * HOUR
    });
    assert!(want.len() >= 3);
    assert_eq!(ids(&store, a).await, want);
    // Recipient + signer.
    let (sha, _) = cert_of("bob@justice.bb.example");
    let a = SearchArgs {
        to: Some("alice@justice.aa.example".into()),
        signer: Some(sha.clone()),
        ..args()
    };
    let want = expect(&fx, |f| {
        f.rcpt.iter().any(|r| r == "alice@justice.aa.example")
            && f.signer.as_ref().map(|s| &s.0) == Some(&sha)
    });
    assert!(!want.is_empty());
    assert_eq!(ids(&store, a).await, want);
    // Sender + recipient + signer (two secondary look-ups).
    let a = SearchArgs {
        from: Some("bob@justice.bb.example".into()),
        to: Some("@justice.aa.example".into()),
        signer: Some(sha.clone()),
        ..args()
    };
    let want = expect(&fx, |f| {
        f.mail_from == "bob@justice.bb.example"
            && f.rcpt[0].ends_with("@justice.aa.example")
            && f.signer.is_some()
    });
    assert!(!want.is_empty());
    assert_eq!(ids(&store, a).await, want);
    // Country + verdict, oldest first.
    let a = SearchArgs {
        country: vec!["AA".into()],
        verdict: Some(cli::VerdictArg::Reject),
        asc: true,
        ..args()
    };
    let mut want = expect(&fx, |f| {
        f.authority.as_deref() == Some("aa-moj") && f.reason != Reason::Ok
    });
    want.reverse();
    assert!(!want.is_empty());
    assert_eq!(ids(&store, a).await, want);
    // Filters that exclude each other.
    let a = SearchArgs {
        reason: Some("ok".into()),
        verdict: Some(cli::VerdictArg::Reject),
        ..args()
    };
    assert!(ids(&store, a).await.is_empty());
    db.drop_db().await;
}
both!(combinations);

/// Walks every page with `--after` (and with `--page`), both orders.
async fn paging(backend: Backend) {
    let (db, store, fx) = filled(backend).await;
    for (filter, pred) in [
        (
            SearchArgs::default(),
            (|_: &Fixture| true) as fn(&Fixture) -> bool,
        ),
        (
            SearchArgs {
                to: Some("@justice.aa.example".into()),
                ..Default::default()
            },
            |f: &Fixture| f.rcpt[0].ends_with("@justice.aa.example"),
        ),
        (
            SearchArgs {
                since: Some(rfc3339(T0 + 3 * HOUR)),
                ..Default::default()
            },
            |f: &Fixture| f.at >= T0 + 3 * HOUR,
        ),
    ] {
        for asc in [false, true] {
            let mut want = expect(&fx, pred);
            if asc {
                want.reverse();
            }
            let mut got: Vec<String> = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let a = SearchArgs {
                    limit: 7,
                    json: true,
                    asc,
                    after: after.clone(),
                    ..filter.clone()
                };
                let out = cli::search(&store, None, &a).await.unwrap();
                let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
                assert!(rows.len() <= 7);
                got.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
                pages += 1;
                match rows.last() {
                    Some(last) if rows.len() == 7 => {
                        after = Some(last["cursor"].as_str().unwrap().to_string());
                    }
                    _ => break,
                }
                assert!(pages < 20);
            }
            let distinct: BTreeSet<&String> = got.iter().collect();
            assert_eq!(distinct.len(), got.len(), "duplicates across pages");
            assert_eq!(got, want, "asc={asc} filter={filter:?}");

            let mut by_number: Vec<String> = Vec::new();
            for page in 1..=pages {
                let a = SearchArgs {
                    limit: 7,
                    json: true,
                    asc,
                    page: Some(page),
                    ..filter.clone()
                };
                let out = cli::search(&store, None, &a).await.unwrap();
                let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
                by_number.extend(rows.iter().map(|r| r["id"].as_str().unwrap().to_string()));
            }
            assert_eq!(by_number, want);
        }
    }
    // The table names the next page's cursor when the page is full.
    let a = SearchArgs {
        limit: 5,
        ..Default::default()
    };
    let out = cli::search(&store, None, &a).await.unwrap();
    let last = out.lines().last().unwrap();
    let cursor = last.strip_prefix("next page: --after ").expect(&out);
    let next = SearchArgs {
        limit: 5,
        after: Some(cursor.to_string()),
        json: true,
        ..Default::default()
    };
    let rows: Vec<Value> =
        serde_json::from_str(&cli::search(&store, None, &next).await.unwrap()).unwrap();
    assert_eq!(rows[0]["id"], expect(&fx, |_| true)[5]);
    let bad = SearchArgs {
        after: Some("yesterday".into()),
        limit: 5,
        ..Default::default()
    };
    assert!(matches!(
        cli::search(&store, None, &bad).await,
        Err(AuditError::Usage(_))
    ));
    db.drop_db().await;
}
both!(paging);

async fn formats(backend: Backend) {
    let (db, store, fx) = filled(backend).await;
    // CSV: RFC 4180 quoting, CRLF records, header first.
    let a = SearchArgs {
        id: Some(fx[13].id.clone()),
        csv: true,
        limit: 50,
        ..Default::default()
    };
    let out = cli::search(&store, None, &a).await.unwrap();
    let records: Vec<&str> = out.split("\r\n").collect();
    assert_eq!(
        records[0],
        "time,id,verdict,reason,state,from,to,subject,authority,message_id,case_ref,kind,cursor"
    );
    assert_eq!(records.len(), 3, "{out:?}");
    assert_eq!(records[2], "");
    let f = &fx[13];
    assert_eq!(f.subject, "Evidence, part \"13\"");
    assert_eq!(f.rcpt.len(), 2);
    assert_eq!(
        records[1],
        format!(
            "{},{},accept,ok,accepted,{},\"{}\",\"Evidence, part \"\"13\"\"\",{},{},{},{},{}:{}",
            rfc3339(f.at),
            f.id,
            f.mail_from,
            f.rcpt.join(", "),
            f.authority.as_deref().unwrap(),
            f.message_id,
            f.case_ref.as_deref().unwrap_or(""),
            f.kind.unwrap(),
            f.at,
            f.id
        )
    );

    // Table: one header and one line per row, columns aligned.
    let a = SearchArgs {
        limit: 12,
        ..Default::default()
    };
    let out = cli::search(&store, None, &a).await.unwrap();
    let lines: Vec<Vec<char>> = out.lines().map(|l| l.chars().collect()).collect();
    assert_eq!(lines.len(), 1 + 12 + 1, "{out}");
    let header: String = lines[0].iter().collect();
    let starts: Vec<usize> = emla::audit::render::TABLE_COLUMNS
        .iter()
        .map(|c| header.find(c).unwrap())
        .collect();
    assert_eq!(starts[0], 0);
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{header}");
    for line in &lines[1..13] {
        for &s in &starts[1..] {
            assert_eq!(line[s - 1], ' ', "{out}");
            assert_eq!(line[s - 2], ' ', "{out}");
            assert_ne!(line[s], ' ', "column at {s} in\n{out}");
        }
    }
    let first: String = lines[1].iter().collect();
    let newest = &fx[N - 1];
    assert!(first.starts_with("2026-01-02 15:00:00  "), "{first}");
    assert!(first.contains(&newest.id));
    // The last two columns: the authority, then the kind (`-` for none).
    let last: Vec<&str> = first.split_whitespace().rev().take(2).collect();
    assert_eq!(
        last,
        [
            newest.kind.unwrap_or("-"),
            newest.authority.as_deref().unwrap()
        ],
        "{first}"
    );

    // JSON: one array; rows carry time and cursor.
    let a = SearchArgs {
        id: Some(fx[8].id.clone()),
        ..args()
    };
    let out = cli::search(&store, None, &a).await.unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v[0];
    assert_eq!(r["time"], rfc3339(fx[8].at));
    assert_eq!(r["cursor"], format!("{}:{}", fx[8].at, fx[8].id));
    assert_eq!(r["case_ref"], "MLA-2026-8");
    assert_eq!(r["rcpt_to"], json!(fx[8].rcpt));

    // Nothing found is no error.
    let none = SearchArgs {
        from: Some("nobody@nowhere.example".into()),
        limit: 50,
        ..Default::default()
    };
    assert_eq!(
        cli::search(&store, None, &none).await.unwrap(),
        "no messages match\n"
    );
    let none_json = SearchArgs { json: true, ..none };
    assert_eq!(
        cli::search(&store, None, &none_json).await.unwrap().trim(),
        "[]"
    );
    db.drop_db().await;
}
both!(formats);

/// `emla audit show ID` (`--json` with `json`).
async fn show_of(store: &Store, id: String, json: bool) -> Result<String, AuditError> {
    cli::show(
        store,
        &ShowArgs {
            id,
            json,
            ..Default::default()
        },
    )
    .await
}

async fn show(backend: Backend) {
    let (db, store, fx) = filled(backend).await;
    let f = &fx[0];
    let out = show_of(&store, f.id.clone(), false).await.unwrap();
    let (sha, serial) = f.signer.clone().unwrap();
    for needle in [
        format!("message {}", f.id),
        format!("case          {}", f.case_ref.as_deref().unwrap()),
        "2026-01-01T00:00:00.000Z  received".to_string(),
        "client        192.0.2.7 (HELO mx.justice.aa.example), TLSv1.3 TLS13_AES_256_GCM_SHA384"
            .to_string(),
        "mail from     <alice@justice.aa.example>".to_string(),
        "rcpt to       <bob@justice.bb.example>".to_string(),
        format!("Subject:      {}", f.subject),
        format!("Message-ID:   {}", f.message_id),
        "verified".to_string(),
        "signer 1      alice@justice.aa.example".to_string(),
        "issuer        CN=Issuing CA".to_string(),
        format!("sha256        {}", sha.to_uppercase()),
        "chain         CN=alice@justice.aa.example → CN=Issuing CA → CN=Root CA".to_string(),
        "decided".to_string(),
        "verdict       ACCEPT ok".to_string(),
        "policy        8fb4f6291a5130a5".to_string(),
        "route         bob@justice.bb.example → route aa-bb, authority bb-moj, \
         next hop mx.justice.bb.example:25, lane normal"
            .to_string(),
        "message.accepted".to_string(),
        "relay.delivered".to_string(),
        "reply         250 2.0.0 ok".to_string(),
        "state relayed  attempts 1".to_string(),
        "body          kept".to_string(),
    ] {
        assert!(out.contains(&needle), "missing {needle:?} in\n{out}");
    }
    let serial_shown = serial
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":");
    assert!(out.contains(&serial_shown));
    // Order: received, verified, decided, audit records, queue.
    let pos = |s: &str| out.find(s).unwrap();
    assert!(pos("  received") < pos("  verified"));
    assert!(pos("  verified") < pos("  decided"));
    assert!(pos("  decided") < pos("audit records"));
    assert!(pos("audit records") < pos("\nqueue"));

    // A rejected, unsigned message: no signer, no queue.
    let r = fx.iter().find(|f| f.reason == Reason::Unsigned).unwrap();
    let out = show_of(&store, r.id.clone(), false).await.unwrap();
    assert!(out.contains("no signer"), "{out}");
    assert!(out.contains("verdict       REJECT unsigned"), "{out}");
    assert!(out.contains("queue: no entries"), "{out}");
    assert!(out.contains("body          not kept"), "{out}");

    // JSON, and look-up by Message-ID.
    let out = show_of(&store, format!("<{}>", f.message_id), true)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["id"], f.id);
    assert_eq!(v["message"]["case_ref"], f.case_ref.clone().unwrap());
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    assert_eq!(v["events"][1]["kind"], "relay.delivered");
    assert_eq!(v["queue"][0]["status"], "relayed");

    // Unknown: not found, exit code 1.
    let e = show_of(
        &store,
        "20990101T000000Z-0000000000000000@gw.test".into(),
        false,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, AuditError::NotFound(_)));
    assert_eq!(e.exit_code(), 1);
    assert!(e.to_string().contains("no message 20990101T000000Z"), "{e}");

    // Recording through the search tables left the chain intact.
    assert!(matches!(
        store.verify_chain().await.unwrap(),
        ChainCheck::Intact { records, .. } if records == N as u64 + 1
    ));
    db.drop_db().await;
}
both!(show);

//! `emla demo`: the whole system in one command, for a newcomer. It makes a
//! demo PKI and policy for three authorities under the demo directory,
//! starts a counterpart mailbox and the gateway, sends real S/MIME-signed
//! requests between the authorities (and a forged one, an impostor and one
//! from an unauthorized domain), prints what happened, and leaves the
//! gateway running with the commands to try more, and the auditors' web
//! view with its login link ([`web`]). With openssl it also
//! runs a TSA ([`tsa`]), so receipts and the checkpoint it writes at the
//! end carry timestamp tokens, and prints how to export and check one
//! evidence bundle and one receipt's token.

pub mod mailbox;
pub mod pki;
pub mod tsa;
pub mod web;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::{self, NextHop, TlsMode};
use crate::relay::deliver::{Connection, Outgoing, RcptOutcome};
use crate::smime::sign::SigningIdentity;
use crate::store::{DeliveryState, QueueFilter, Store};

use mailbox::Mailbox;
use pki::AUTHORITIES;

/// Marks a directory the demo made, so a rerun may wipe it and nothing else.
const MARKER: &str = "EMLA-DEMO";

/// One thing the demo tries.
struct Scenario {
    what: &'static str,
    from: String,
    to: String,
    message: Vec<u8>,
}

/// Runs the demo in `dir` with the gateway on `listen`; returns when the
/// gateway stops (SIGTERM or Ctrl-C).
pub async fn run(dir: &Path, listen: SocketAddr) -> Result<(), String> {
    prepare(dir)?;
    let mailbox = Mailbox::start(dir.join("mailbox")).await?;
    let policy_dir = pki::create(dir, mailbox.port)?;
    let tsa = if tsa::openssl_present() {
        pki::tsa(dir)?;
        Some(tsa::start(dir).await?)
    } else {
        None
    };
    let evidence = tsa.as_ref().map_or(String::new(), |t| {
        format!(
            "\n[evidence]\ntsa_url = \"{}\"\ntsa_ca = \"pki/tsa/ca.pem\"\n",
            t.url
        )
    });
    let web = web::prepare(dir, listen)?;
    let metrics = web::free_addr(listen.ip(), "the metrics listener")?;
    let config_path = write_config(dir, listen, metrics, &evidence, &web.toml)?;
    let config = Config::load(&config_path)?;
    let policy = policy::load(&policy_dir, EvalTime::now()).map_err(|diags| {
        let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        format!("the demo policy does not load:\n{}", lines.join("\n"))
    })?;
    let store = Store::open_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    let server = crate::server::start(config, store, None, policy)
        .await
        .map_err(|e| {
            format!("the demo gateway did not start ({e}; is the port in use? try --listen 127.0.0.1:0)")
        })?;
    let port = server.addrs.first().map(|a| a.port()).unwrap_or_default();
    let gw = server.shared.clone();

    print_banner(dir, port, &policy_dir, mailbox.port, tsa.as_ref());

    let scenarios = scenarios(dir)?;
    let mut accepted = Vec::new();
    for (n, s) in scenarios.iter().enumerate() {
        println!("{}. {}", n + 1, s.what);
        println!("   {} -> {}", s.from, s.to);
        let reply = submit(port, s).await;
        println!("   gateway: {reply}");
        if let Some(id) = reply.strip_prefix("250 2.0.0 accepted as ") {
            accepted.push(id.to_owned());
        }
    }
    settle(&gw.store, &mailbox, accepted.len()).await;

    let received = report(&gw.store, &mailbox, &accepted).await?;
    let checkpoint = {
        let tsa = crate::smime::tsa::Tsa::configured(&gw.config.evidence)?;
        let (policy, audit) = (gw.policy.get(), &gw.config.audit);
        crate::audit::checkpoint::write(
            &gw.store,
            &policy,
            &audit.checkpoint_dir,
            audit,
            tsa.as_ref(),
        )
        .await
        .map_err(|e| format!("the demo checkpoint: {e}"))?
    };
    let links = Links {
        web_login: &web.login,
        metrics: &format!("http://{metrics}/metrics"),
    };
    print_next_steps(dir, &config_path, port, &accepted, &received, &links);
    print_evidence(
        dir,
        &config_path,
        &accepted,
        &received,
        &checkpoint,
        tsa.as_ref(),
    )?;
    use std::io::Write;
    let _ = std::io::stdout().flush();

    server.run_until_signalled().await
}

/// The demo gateway's `emla.toml`: plain SMTP on `listen`, the relay, the
/// metrics listener, the TSA (if any) and the web view.
fn write_config(
    dir: &Path,
    listen: SocketAddr,
    metrics: SocketAddr,
    evidence: &str,
    web_toml: &str,
) -> Result<PathBuf, String> {
    let config_path = dir.join("emla.toml");
    std::fs::write(
        &config_path,
        format!(
            "# The demo gateway (written by `emla demo`).\nlisten = [\"{listen}\"]\n\
             data_dir = \"gateway\"\npolicy_dir = \"policy\"\nrequire_tls = false\n\n\
             [relay]\npoll_ms = 100\n\n[metrics]\nlisten = \"{metrics}\"\n{evidence}{}",
            web_toml
        ),
    )
    .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
    Ok(config_path)
}

/// What the demo started, and where.
fn print_banner(
    dir: &Path,
    port: u16,
    policy_dir: &Path,
    mailbox_port: u16,
    tsa: Option<&tsa::DemoTsa>,
) {
    println!();
    println!("emla demo — three authorities, one gateway, one counterpart mailbox");
    println!(
        "  gateway  127.0.0.1:{port}   (policy {})",
        policy_dir.display()
    );
    println!(
        "  mailbox  127.0.0.1:{}  (every authority's mail server; files in {})",
        mailbox_port,
        dir.join("mailbox").display()
    );
    println!(
        "  PKI      {} (made now: a root CA, an issuing CA, CRLs and two officials per authority;",
        dir.join("pki").display()
    );
    println!("           the gateway signs receipts with its own certificate)");
    match tsa {
        Some(t) => println!(
            "  TSA      {}  (RFC 3161, `openssl ts -reply`; its CA {}:\n           \
             receipts and checkpoints carry its timestamp tokens)",
            t.url,
            t.ca.display()
        ),
        None => println!(
            "  TSA      none: openssl was not found, so receipts and checkpoints carry no \
             timestamp token"
        ),
    }
    println!();
}

/// Prints what became of the accepted messages (their queue entries) and
/// what the mailbox received; returns the latter, oldest file first.
async fn report(
    store: &Store,
    mailbox: &Mailbox,
    accepted: &[String],
) -> Result<Vec<mailbox::Delivered>, String> {
    println!();
    println!("Delivery (emla queue):");
    for id in accepted {
        let rows = store.queue_entries(id).await.map_err(|e| e.to_string())?;
        for r in rows {
            println!(
                "  {id}  {}  to {}  after {} attempt(s)",
                r.status,
                serde_json::json!(r.delivery.recipients),
                r.attempts
            );
        }
    }
    println!();
    println!("The mailbox received:");
    let mut received = mailbox.received();
    received.sort_by(|a, b| a.path.cmp(&b.path));
    for d in &received {
        let kind = if d.from.is_empty() {
            "signed receipt from the gateway"
        } else {
            "relayed request, byte for byte"
        };
        println!(
            "  {}  to {:<28} {:<60} ({kind})",
            d.path.file_name().unwrap_or_default().to_string_lossy(),
            d.to.join(", "),
            d.subject
        );
    }
    Ok(received)
}

/// Where the demo's web view and metrics are.
struct Links<'a> {
    /// The web view's one-time `https://ADDR/login?token=…`.
    web_login: &'a str,
    /// `http://ADDR/metrics`.
    metrics: &'a str,
}

/// Prints the commands to try next: the auditors' tools on this gateway,
/// openssl on what the mailbox received, and sending one's own request.
fn print_next_steps(
    dir: &Path,
    config_path: &Path,
    port: u16,
    accepted: &[String],
    received: &[mailbox::Delivered],
    links: &Links<'_>,
) {
    let cfg = config_path.display();
    let aa = dir.join("pki/aa");
    println!();
    println!("demo ready: the gateway keeps running on 127.0.0.1:{port} (Ctrl-C stops it). Try:");
    println!("  emla audit search --config {cfg}");
    if let Some(id) = accepted.first() {
        println!("  emla audit show {id} --config {cfg}");
    }
    println!("  emla queue list --config {cfg}");
    println!("  emla audit verify --config {cfg}");
    println!(
        "  open {}   # the auditors' web view: overview, queue, CRLs, search",
        links.web_login
    );
    println!(
        "  curl {}   # Prometheus metrics: this demo's decisions, relays, receipts",
        links.metrics
    );
    let relayed = received.iter().find(|d| d.from.starts_with("anna@"));
    let receipt = received.iter().find(|d| d.from.is_empty());
    if let Some(d) = relayed {
        println!(
            "  openssl smime -verify -in {} -CAfile {} -out /dev/null   # Anna's request as delivered",
            d.path.display(),
            aa.join("root.pem").display()
        );
    }
    if let Some(d) = receipt {
        println!(
            "  openssl smime -verify -in {} -CAfile {} -out /dev/null   # a receipt",
            d.path.display(),
            dir.join("pki/gateway/ca.pem").display()
        );
    }
    println!("  # sign and send your own request:");
    println!(
        "  printf 'Content-Type: text/plain\\r\\n\\r\\nHello from Avalonia\\r\\n' | openssl cms -sign -signer {a}/anna.pem \\\n      -inkey {a}/anna.key -from anna@justice.aa.example -to boris@justice.bb.example -subject 'MLA-2026-0200 test' -crlfeol > /tmp/req.eml",
        a = aa.display()
    );
    println!(
        "  swaks --server 127.0.0.1:{port} --from anna@justice.aa.example --to boris@justice.bb.example --data @/tmp/req.eml"
    );
}

/// Prints the signed checkpoint just written, how to export and check one
/// message's evidence bundle, and (with the TSA) how to check a receipt's
/// timestamp token with openssl alone, as the README shows.
fn print_evidence(
    dir: &Path,
    config_path: &Path,
    accepted: &[String],
    received: &[mailbox::Delivered],
    checkpoint: &crate::audit::checkpoint::Written,
    tsa: Option<&tsa::DemoTsa>,
) -> Result<(), String> {
    let cfg = config_path.display();
    let stamped = checkpoint
        .p7s
        .as_ref()
        .and_then(|p| std::fs::read(p).ok())
        .is_some_and(|der| matches!(crate::smime::tsa::token_of(&der), Ok(Some(_))));
    println!();
    println!(
        "Signed checkpoint of the audit log: {} (seq {}{})",
        checkpoint.json.display(),
        checkpoint.checkpoint.seq,
        if stamped {
            ", its .p7s with a timestamp token"
        } else {
            ", without a timestamp token"
        }
    );
    if let Some(id) = accepted.first() {
        let bundle = dir.join("bundle");
        println!("Export and check the evidence bundle of {id}:");
        println!(
            "  emla audit export {id} --out {} --config {cfg}",
            bundle.display()
        );
        println!("  (cd {} && sh verify.sh)", bundle.display());
    }
    let (Some(tsa), Some(receipt)) = (tsa, received.iter().find(|d| d.from.is_empty())) else {
        return Ok(());
    };
    let script = dir.join("check-token.sh");
    std::fs::write(&script, token_check_script())
        .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let p7s = dir.join("receipt.p7s");
    println!("Check a receipt's timestamp token with openssl alone (the README's commands):");
    println!(
        "  openssl cms -cmsout -in {} -outform DER -out {}",
        receipt.path.display(),
        p7s.display()
    );
    println!(
        "  FILE={} TSA_CA={} sh {}",
        p7s.display(),
        tsa.ca.display(),
        script.display()
    );
    Ok(())
}

/// The README's commands that check a token (the block after
/// `<!-- tsa-verify -->`), so the demo and the documentation agree.
fn token_check_script() -> String {
    const README: &str = include_str!("../../../README.md");
    let block = README
        .split("<!-- tsa-verify -->\n```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or("echo 'the README has no tsa-verify block' >&2; exit 2\n");
    format!(
        "#!/bin/sh\n# Checks the timestamp token in $FILE (DER CMS) against $TSA_CA.\nset -e\n\
         FILE=$(realpath \"$FILE\"); TSA_CA=$(realpath \"$TSA_CA\")\n\
         work=$(mktemp -d); trap 'rm -rf \"$work\"' EXIT; cd \"$work\"   # cms.txt, token.tsr\n{block}"
    )
}

/// Empties `dir` if an earlier demo made it; refuses any other non-empty
/// directory.
fn prepare(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty && !dir.join(MARKER).exists() {
            return Err(format!(
                "{} exists and was not made by `emla demo`; choose another --dir",
                dir.display()
            ));
        }
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "Made by `emla demo`; the next run deletes this directory.\n",
    )
    .map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

fn official(cc: &str, who: &str, dir: &Path) -> Result<SigningIdentity, String> {
    let d = dir.join("pki").join(cc);
    SigningIdentity::load(&d.join(format!("{who}.pem")), &d.join(format!("{who}.key")))
}

/// A request signed by `signer` whose `From:` is `from` (not necessarily
/// the signer's address: the impostor scenario).
fn request(
    signer: &SigningIdentity,
    from: &str,
    to: &str,
    reference: &str,
    subject: &str,
    text: &str,
) -> Vec<u8> {
    let headers = [
        ("From", from.to_owned()),
        ("To", to.to_owned()),
        ("Subject", format!("{reference} {subject}")),
        (
            "Date",
            crate::receipts::build::rfc5322_date(SystemTime::now()),
        ),
        (
            "Message-ID",
            format!("<{}@demo.example>", signer.random_hex(12)),
        ),
        ("X-MLA-Reference", reference.to_owned()),
    ];
    let entity = format!(
        "Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n{text}\r\n"
    );
    signer.sign_mime(&headers, entity.as_bytes(), SystemTime::now())
}

fn scenarios(dir: &Path) -> Result<Vec<Scenario>, String> {
    let [aa, bb, cc] = &AUTHORITIES;
    let addr = |a: &pki::DemoAuthority, i: usize| format!("{}@{}", a.officials[i], a.domain);
    let anna = official("aa", "anna", dir)?;
    let boris = official("bb", "boris", dir)?;
    let mut out = Vec::new();

    let (from, to) = (addr(aa, 0), addr(bb, 0));
    out.push(Scenario {
        what: "A request for bank records, signed by its author: accepted, relayed, receipts",
        message: request(
            &anna,
            &from,
            &to,
            "MLA-2026-0101",
            "Request for bank records",
            "Dear colleague,\r\n\r\nUnder the bilateral treaty we request the records of account\r\nAA-4411 for 2025, up to EUR 10,000 per transfer.\r\n\r\nAnna, Central Authority of Avalonia",
        ),
        from,
        to,
    });
    let (from, to) = (addr(bb, 0), addr(cc, 0));
    out.push(Scenario {
        what: "A request forwarded along the chain of transmission: accepted, relayed",
        message: request(
            &boris,
            &from,
            &to,
            "MLA-2026-0102",
            "Hearing of a witness",
            "Please hear the witness named in the attached letter rogatory.\r\n\r\nBoris, Ministry of Justice of Borduria",
        ),
        from,
        to,
    });
    let (from, to) = (addr(aa, 1), addr(bb, 1));
    let arne = official("aa", "arne", dir)?;
    let signed = request(
        &arne,
        &from,
        &to,
        "MLA-2026-0103",
        "Freezing order",
        "Please freeze up to EUR 10,000 on account AA-4411.",
    );
    let forged = String::from_utf8_lossy(&signed).replacen("EUR 10,000", "EUR 90,000", 1);
    out.push(Scenario {
        what: "The same kind of request, altered after signing: refused",
        message: forged.into_bytes(),
        from,
        to,
    });
    let (from, to) = (addr(cc, 1), addr(bb, 0));
    out.push(Scenario {
        what:
            "An impostor: From a Carpanian official, signed with an Avalonian certificate: refused",
        message: request(
            &anna,
            &from,
            &to,
            "MLA-2026-0104",
            "Urgent transfer",
            "Release the seized funds today.",
        ),
        from,
        to,
    });
    let to = addr(bb, 0);
    out.push(Scenario {
        what: "Mail from a domain no authority owns: refused before the message is read",
        message: b"From: mallory@evil.example\r\nSubject: hello\r\n\r\nhi\r\n".to_vec(),
        from: "mallory@evil.example".into(),
        to,
    });
    Ok(out)
}

/// Submits one scenario over SMTP and returns the gateway's reply line.
async fn submit(port: u16, s: &Scenario) -> String {
    let hop = NextHop {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Opportunistic,
    };
    let timeout = Duration::from_secs(30);
    let mut conn = match Connection::open(&hop, "client.demo.example", timeout).await {
        Ok(c) => c,
        Err(e) => return e.reason,
    };
    let mail = Outgoing {
        from: &s.from,
        recipients: std::slice::from_ref(&s.to),
        dsn: None,
        trace: b"",
        message: crate::relay::deliver::Message::Bytes(&s.message),
    };
    let outcome = conn.send(&mail, timeout).await;
    conn.quit().await;
    match outcome.into_iter().next() {
        Some(RcptOutcome::Relayed { code, reply }) => format!("{code} {reply}"),
        Some(
            RcptOutcome::Refused { code, reply }
            | RcptOutcome::Deferred {
                code: Some(code),
                reply,
            },
        ) => {
            // lettre says "permanent error (550): TEXT": show it as SMTP does.
            let text = reply.split_once("): ").map_or(reply.as_str(), |(_, t)| t);
            format!("{code} {text}")
        }
        Some(RcptOutcome::Deferred { reply, .. }) => reply,
        None => "no reply".into(),
    }
}

/// Waits (at most 30 s) until nothing is queued and the mailbox has the
/// accepted messages and their receipts.
async fn settle(store: &Store, mailbox: &Mailbox, accepted: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let queued = store
            .queue_rows(&QueueFilter {
                status: Some(DeliveryState::Accepted),
                limit: 1,
                ..QueueFilter::default()
            })
            .await
            .map(|r| r.len())
            .unwrap_or(0);
        // Each accepted request: itself, an acceptance and a delivery receipt.
        if queued == 0 && mailbox.received().len() >= 3 * accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The default demo directory: under the embedded default's data directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("data/demo")
}

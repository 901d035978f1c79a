//! Whole SMTP conversations driven in memory: the session runs over one
//! half of a `tokio::io::duplex`, the test speaks SMTP over the other. The
//! service is real (a SQLite store in a temporary directory, the demo
//! policy made fresh by [`crate::demo::pki`]); only the socket is not.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{session, Service};
use crate::clock::EvalTime;
use crate::config::Config;
use crate::policy::CurrentPolicy;
use crate::revocation::Revocation;
use crate::store::Store;

/// Longest any one test may take.
const BOUND: Duration = Duration::from_secs(20);
/// Longest one reply may take to arrive.
const REPLY_WITHIN: Duration = Duration::from_secs(5);

const HOSTNAME: &str = crate::demo::pki::HOSTNAME;
const ANNA: &str = "anna@justice.aa.example";
const ARNE: &str = "arne@justice.aa.example";
const BORIS: &str = "boris@justice.bb.example";
const BEA: &str = "bea@justice.bb.example";
const CARLA: &str = "carla@pg.cc.example";

/// Runs a test within [`BOUND`].
async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(BOUND, test)
        .await
        .expect("the conversation did not finish in time");
}

/// How the service of a test differs from the default.
#[derive(Clone, Copy)]
struct Options {
    tls: bool,
    require_tls: bool,
    max_recipients: usize,
    command_timeout: Duration,
    shutdown_grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: false,
            require_tls: false,
            max_recipients: 50,
            command_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// A service on a fresh demo policy and store, and what the tests need to
/// speak to it.
struct Harness {
    svc: Arc<Service>,
    stop: watch::Sender<bool>,
    /// The certificate a TLS client must trust (with `tls`).
    tls_cert: Option<rustls::pki_types::CertificateDer<'static>>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new(opts: Options) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let policy_dir = crate::demo::pki::create(dir.path(), 2).unwrap();
        let mut policy = crate::policy::load(&policy_dir, EvalTime::now())
            .unwrap_or_else(|d| panic!("demo policy does not load: {d:?}"));
        policy.limits.max_recipients = opts.max_recipients;
        let data_dir = dir.path().join("data");
        let mut config = Config::embedded();
        config.data_dir = data_dir.clone();
        config.database_url = format!("sqlite://{}", data_dir.join("emla.db").display());
        config.policy_dir = policy_dir;
        config.require_tls = opts.require_tls;
        config.command_timeout = opts.command_timeout;
        config.shutdown_grace = opts.shutdown_grace;
        let store = Store::open(&config.database_url, &data_dir).await.unwrap();
        let (tls, tls_cert) = if opts.tls {
            let (acceptor, cert) = tls_acceptor();
            (Some(acceptor), Some(cert))
        } else {
            (None, None)
        };
        let revocation = Arc::new(Revocation::open(&data_dir, &config.revocation));
        let svc = Arc::new(Service {
            config,
            store,
            tls,
            policy: Arc::new(CurrentPolicy::new(policy)),
            revocation,
            relay_wake: Arc::new(Notify::new()),
            replays: Default::default(),
            tsa: None,
            rejections: Default::default(),
            duty: Default::default(),
        });
        Harness {
            svc,
            stop: watch::channel(false).0,
            tls_cert,
            _dir: dir,
        }
    }

    /// Starts a session from `peer` and returns the client's end, once
    /// the greeting was read.
    async fn connect(&self) -> Client<DuplexStream> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let session = tokio::spawn(session::run(
            self.svc.clone(),
            server,
            peer,
            self.stop.subscribe(),
        ));
        let mut c = Client {
            io: BufReader::new(client),
            session,
        };
        let greeting = c.reply().await;
        assert_eq!(greeting, format!("220 {HOSTNAME} ESMTP emla\r\n"));
        c
    }

    /// A new harness with `opts` and a connection to it.
    async fn connected(opts: Options) -> (Harness, Client<DuplexStream>) {
        let h = Harness::new(opts).await;
        let c = h.connect().await;
        (h, c)
    }

    /// Rows in the audit table.
    async fn audit_count(&self) -> u64 {
        self.svc.store.counts().await.unwrap().1
    }
}

/// A self-signed certificate for `localhost` and an acceptor serving it.
fn tls_acceptor() -> (TlsAcceptor, rustls::pki_types::CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = crate::tls::builder()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    (TlsAcceptor::from(Arc::new(config)), der)
}

/// The client's end of a session.
struct Client<S> {
    io: BufReader<S>,
    session: JoinHandle<()>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn send(&mut self, text: &[u8]) {
        self.io.get_mut().write_all(text).await.unwrap();
    }

    /// One whole reply (every line of a multi-line one), as sent.
    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(REPLY_WITHIN, self.io.read_line(&mut line))
                .await
                .expect("no reply in time")
                .unwrap();
            assert!(n > 0, "connection closed; reply so far: {reply:?}");
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let last = line.as_bytes().get(3) == Some(&b' ');
            reply.push_str(&line);
            if last {
                return reply;
            }
        }
    }

    /// Sends one command and returns its reply.
    async fn command(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, a transaction from Anna to Boris, DATA: the message may follow.
    async fn open_data(&mut self) {
        self.expect("EHLO client.example", "250").await;
        self.expect(&format!("MAIL FROM:<{ANNA}>"), "250").await;
        self.expect(&format!("RCPT TO:<{BORIS}>"), "250").await;
        self.expect("DATA", "354").await;
    }

    /// Sends one command and checks its reply code.
    async fn expect(&mut self, line: &str, code: &str) {
        let reply = self.command(line).await;
        assert_eq!(&reply[..3], code, "{line:?} got {reply:?}");
    }

    /// QUIT gets 221, then the gateway closes the connection.
    async fn quit(mut self) {
        self.expect("QUIT", "221").await;
        self.expect_closed().await;
    }

    /// The gateway closed the connection, and the session ended.
    async fn expect_closed(self) {
        let Client { mut io, session } = self;
        let mut rest = String::new();
        let n = tokio::time::timeout(REPLY_WITHIN, io.read_line(&mut rest))
            .await
            .expect("the connection stayed open")
            .unwrap_or(0);
        assert_eq!(n, 0, "more after the end: {rest:?}");
        tokio::time::timeout(REPLY_WITHIN, session)
            .await
            .expect("the session did not end")
            .unwrap();
    }
}

fn code(reply: &str) -> &str {
    &reply[..3]
}

/// A plain message, unsigned.
fn unsigned_message(from: &str, to: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: request\r\nMessage-ID: <1@test>\r\n\r\nHello.\r\n"
    )
}

// ---------------------------------------------------------------------------
// Scripted conversations: commands and the replies they must get
// ---------------------------------------------------------------------------

/// What a reply must be.
enum Want {
    /// Its code.
    Code(&'static str),
    /// Exactly this (every line, CRLF).
    Is(String),
    /// It starts with this.
    Starts(String),
}

impl Want {
    fn check(&self, reply: &str, what: &str) {
        let ok = match self {
            Want::Code(c) => code(reply) == *c,
            Want::Is(r) => reply == r,
            Want::Starts(s) => reply.starts_with(s.as_str()),
        };
        assert!(ok, "{what} got {reply:?}, wanted {}", self.describe());
    }

    fn describe(&self) -> String {
        match self {
            Want::Code(c) => format!("code {c}"),
            Want::Is(r) => format!("{r:?}"),
            Want::Starts(s) => format!("a reply starting {s:?}"),
        }
    }
}

/// One step of a scripted conversation.
enum Step {
    /// Sends the bytes as they are (pipelining, bare LF, …).
    Send(Vec<u8>),
    /// Sends a command line; its reply must be as wanted.
    Command(String, Want),
    /// The next reply (to something sent before) must be as wanted.
    Reply(Want),
    /// The gateway closed the connection and the session ended.
    Closed,
    /// The gateway's last reply is exactly this, then it closes.
    Last(String),
    /// A new connection (after the last one closed).
    Connect,
    /// Shutdown is signalled, as by SIGTERM.
    Stop,
    /// The audit table has grown by this many rows since the start.
    Audited(u64),
}

fn code_of(line: &str, code: &'static str) -> Step {
    Step::Command(line.into(), Want::Code(code))
}

fn says(line: &str, reply: &str) -> Step {
    Step::Command(line.into(), Want::Is(reply.into()))
}

fn starts(line: &str, prefix: &str) -> Step {
    Step::Command(line.into(), Want::Starts(prefix.into()))
}

fn send(bytes: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes.as_ref().to_vec())
}

fn then_code(code: &'static str) -> Step {
    Step::Reply(Want::Code(code))
}

fn then_says(reply: &str) -> Step {
    Step::Reply(Want::Is(reply.into()))
}

fn last(reply: &str) -> Step {
    Step::Last(reply.into())
}

fn then_starts(prefix: &str) -> Step {
    Step::Reply(Want::Starts(prefix.into()))
}

/// QUIT gets 221 and the connection closes.
fn quit() -> [Step; 2] {
    [code_of("QUIT", "221"), Step::Closed]
}

const BAD_SEQUENCE: &str = "503 5.5.1 Bad sequence of commands\r\n";
const SHUTTING_DOWN: &str = "421 4.3.2 emla is shutting down, try again later\r\n";

/// The default service, with a shutdown grace of `grace`.
fn with_grace(grace: Duration) -> Options {
    Options {
        shutdown_grace: grace,
        ..Options::default()
    }
}

/// EHLO and MAIL FROM Anna, then shutdown is signalled.
fn stop_in_a_transaction() -> Vec<Step> {
    vec![
        code_of("EHLO client.example", "250"),
        code_of(&format!("MAIL FROM:<{ANNA}>"), "250"),
        Step::Stop,
    ]
}

/// A scripted case: its name, the service, and its steps (given the
/// harness, for limits and the like).
type Script = (&'static str, Options, fn(&Harness) -> Vec<Step>);

fn scripts() -> Vec<Script> {
    let mut all = session_scripts();
    all.extend(line_scripts());
    all.extend(tls_and_shutdown_scripts());
    all
}

/// The scripted cases of a session: capabilities, pipelining, refusals
/// and the limits of the envelope and size.
fn session_scripts() -> Vec<Script> {
    vec![
        (
            "greeting_and_ehlo_capabilities_without_tls",
            Options::default(),
            |h| {
                let size = h.svc.policy().limits.max_message_size;
                let ehlo = format!(
                    "250-{HOSTNAME}\r\n250-SIZE {size}\r\n250-8BITMIME\r\n\
                 250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250 DSN\r\n"
                );
                let mut s = vec![
                    says("EHLO client.example", &ehlo),
                    code_of("HELO client.example", "250"),
                    code_of("NOOP", "250"),
                ];
                s.extend(quit());
                s
            },
        ),
        (
            "pipelined_commands_get_their_replies_in_order",
            Options::default(),
            |_| {
                vec![
                    send(format!(
                    "EHLO client.example\r\nMAIL FROM:<{ANNA}> SIZE=1000\r\nRCPT TO:<{BORIS}>\r\n\
                     RCPT TO:<{ARNE}>\r\nRCPT TO:<{BEA}>\r\nRSET\r\nRCPT TO:<{BORIS}>\r\nNOOP\r\n\
                     QUIT\r\n"
                )),
                    then_starts("250-"),
                    then_says("250 2.1.0 Sender OK\r\n"),
                    then_says("250 2.1.5 Recipient OK\r\n"),
                    // Within one authority: the catch-all route refuses it.
                    then_starts("550 5.7.1 route-denied: route no-internal refuses it"),
                    then_says("250 2.1.5 Recipient OK\r\n"),
                    then_code("250"), // RSET
                    // mailin's own reply, before the handler is asked.
                    then_says(BAD_SEQUENCE),
                    then_code("250"), // NOOP
                    then_code("221"),
                    Step::Closed,
                ]
            },
        ),
        (
            "mail_from_an_unauthorized_domain_is_refused_and_audited",
            Options::default(),
            |_| {
                let mut s = vec![
                code_of("EHLO client.example", "250"),
                says(
                    "MAIL FROM:<someone@nowhere.example>",
                    "550 5.7.1 unauthorized-domain: sender <someone@nowhere.example> is not in \
                     a domain of any authority\r\n",
                ),
                Step::Audited(1),
                // No transaction was opened.
                says(&format!("RCPT TO:<{BORIS}>"), BAD_SEQUENCE),
                // A recipient no authority owns.
                code_of(&format!("MAIL FROM:<{ANNA}>"), "250"),
                starts("RCPT TO:<x@nowhere.example>", "550 5.7.1 unauthorized-domain: recipient"),
                Step::Audited(2),
            ];
                s.extend(quit());
                s
            },
        ),
        (
            "recipients_beyond_the_limit_get_452_and_rset_clears_them",
            Options {
                max_recipients: 2,
                ..Options::default()
            },
            |_| {
                let too_many =
                    "452 4.5.3 too-many-recipients: at most 2 recipients per message\r\n";
                let mut s = vec![
                    code_of("EHLO client.example", "250"),
                    code_of(&format!("MAIL FROM:<{ANNA}>"), "250"),
                    code_of(&format!("RCPT TO:<{BORIS}>"), "250"),
                    code_of(&format!("RCPT TO:<{CARLA}>"), "250"),
                    says(&format!("RCPT TO:<{BEA}>"), too_many),
                    code_of("RSET", "250"),
                    says(&format!("RCPT TO:<{BEA}>"), BAD_SEQUENCE),
                    // A new transaction starts with no recipients.
                    code_of(&format!("MAIL FROM:<{ANNA}>"), "250"),
                    code_of(&format!("RCPT TO:<{BEA}>"), "250"),
                    code_of(&format!("RCPT TO:<{BORIS}>"), "250"),
                    code_of(&format!("RCPT TO:<{CARLA}>"), "452"),
                ];
                s.extend(quit());
                s
            },
        ),
        (
            "declared_size_above_the_limit_is_refused",
            Options::default(),
            |h| {
                let limit = h.svc.policy().limits.max_message_size;
                let mut s = vec![
                    code_of("EHLO client.example", "250"),
                    starts(
                        &format!("MAIL FROM:<{ANNA}> SIZE={}", limit + 1),
                        "552 5.3.4 too-large: declared size",
                    ),
                    code_of(&format!("MAIL FROM:<{ANNA}> SIZE={limit}"), "250"),
                ];
                s.extend(quit());
                s
            },
        ),
    ]
}

/// The scripted cases about what a command line may hold: line ends,
/// length and control characters.
fn line_scripts() -> Vec<Script> {
    vec![
        (
            "a_bare_lf_or_cr_after_a_command_closes_the_connection",
            Options::default(),
            |_| {
                vec![
                    send(b"EHLO client.example\n"),
                    last("550 5.5.2 smuggling: bare LF received; lines must end with CRLF\r\n"),
                    Step::Connect,
                    send(b"NOOP\rQUIT\r\n"),
                    last("550 5.5.2 smuggling: bare CR received; lines must end with CRLF\r\n"),
                ]
            },
        ),
        (
            "an_over_long_command_line_gets_500_and_the_session_goes_on",
            Options::default(),
            |_| {
                let long = format!("NOOP {}", "x".repeat(5000));
                let mut s = vec![
                    says(&long, "500 5.5.2 Line too long\r\n"),
                    // Nothing of the long line is taken for a command.
                    code_of("EHLO client.example", "250"),
                    // Pipelined behind a long line, the next command still counts.
                    send(format!("{long}\r\nNOOP\r\n")),
                    then_says("500 5.5.2 Line too long\r\n"),
                    then_code("250"),
                ];
                s.extend(quit());
                s
            },
        ),
        (
            "a_control_character_in_a_command_is_refused",
            Options::default(),
            |_| {
                let refused = "501 5.5.2 control characters are not allowed in commands\r\n";
                let mut s = vec![
                    code_of("EHLO client.example", "250"),
                    says("NO\0OP", refused),
                    says("\0", refused),
                    // Inside an address, where mailin would take it: a bad address.
                    starts(
                        "MAIL FROM:<an\0na@justice.aa.example>",
                        "501 5.1.7 bad-address: ",
                    ),
                    starts(
                        "MAIL FROM:<an\x1bna@justice.aa.example>",
                        "501 5.1.7 bad-address: ",
                    ),
                    code_of("NOOP", "250"),
                ];
                s.extend(quit());
                s
            },
        ),
    ]
}

/// The scripted cases about STARTTLS, shutdown and the command timeout.
fn tls_and_shutdown_scripts() -> Vec<Script> {
    let require_tls = Options {
        tls: true,
        require_tls: true,
        ..Options::default()
    };
    vec![
        (
            "starttls_is_refused_when_not_offered",
            Options::default(),
            |_| {
                let mut s = vec![
                    code_of("EHLO client.example", "250"),
                    says("STARTTLS", "502 5.5.1 STARTTLS is not available\r\n"),
                    // Still plain text, still usable.
                    code_of(&format!("MAIL FROM:<{ANNA}>"), "250"),
                ];
                s.extend(quit());
                s
            },
        ),
        (
            "with_require_tls_mail_before_starttls_gets_530",
            require_tls,
            |_| {
                let mut s = vec![
                    code_of("EHLO client.example", "250"),
                    says(
                        &format!("MAIL FROM:<{ANNA}>"),
                        "530 5.7.0 Must issue a STARTTLS command first\r\n",
                    ),
                    says(&format!("RCPT TO:<{BORIS}>"), BAD_SEQUENCE),
                ];
                s.extend(quit());
                s
            },
        ),
        (
            "shutdown_closes_a_session_idle_at_the_prompt_with_421",
            Options::default(),
            |_| {
                vec![
                    code_of("EHLO client.example", "250"),
                    Step::Stop,
                    last(SHUTTING_DOWN),
                ]
            },
        ),
        (
            "shutdown_lets_an_open_transaction_finish_within_the_grace",
            with_grace(Duration::from_secs(3)),
            |_| {
                let mut s = stop_in_a_transaction();
                s.extend([
                    code_of(&format!("RCPT TO:<{BORIS}>"), "250"),
                    code_of("DATA", "354"),
                    send(unsigned_message(ANNA, BORIS)),
                    starts(".", "550 5.7.1 unsigned: "),
                    // The transaction over, the session is closed at once.
                    last(SHUTTING_DOWN),
                ]);
                s
            },
        ),
        (
            "shutdown_aborts_a_transaction_still_open_after_the_grace",
            with_grace(Duration::from_millis(300)),
            |_| {
                let mut s = stop_in_a_transaction();
                s.push(last(
                    "421 4.3.2 emla is shutting down, transaction aborted\r\n",
                ));
                s
            },
        ),
        (
            "a_silent_client_is_closed_with_421_after_the_command_timeout",
            Options {
                command_timeout: Duration::from_millis(300),
                ..Options::default()
            },
            |_| vec![last("421 4.4.2 idle too long, closing connection\r\n")],
        ),
    ]
}

/// Runs `steps` on a fresh connection to `h`; `case` and the step's number
/// name a failure.
async fn run_script(h: &Harness, case: &str, steps: Vec<Step>) {
    let before = h.audit_count().await;
    let mut c = Some(h.connect().await);
    for (i, step) in steps.into_iter().enumerate() {
        let at = format!("{case}, step {i}");
        let closed = format!("{at}: the connection was closed");
        match step {
            Step::Send(bytes) => c.as_mut().expect(&closed).send(&bytes).await,
            Step::Command(line, want) => {
                let reply = c.as_mut().expect(&closed).command(&line).await;
                want.check(&reply, &format!("{at}: {line:?}"));
            }
            Step::Reply(want) => {
                let reply = c.as_mut().expect(&closed).reply().await;
                want.check(&reply, &at);
            }
            Step::Closed => c.take().expect(&closed).expect_closed().await,
            Step::Last(reply) => {
                let mut last = c.take().expect(&closed);
                Want::Is(reply).check(&last.reply().await, &at);
                last.expect_closed().await;
            }
            Step::Connect => {
                assert!(c.is_none(), "{at}: the last connection is still open");
                c = Some(h.connect().await);
            }
            Step::Stop => {
                h.stop.send_replace(true);
            }
            Step::Audited(n) => assert_eq!(h.audit_count().await, before + n, "{at}"),
        }
    }
    assert!(
        c.is_none(),
        "{case}: the script ends with the connection open"
    );
}

#[tokio::test]
async fn scripted_conversations() {
    for (case, opts, script) in scripts() {
        tokio::time::timeout(BOUND, async {
            let h = Harness::new(opts).await;
            run_script(&h, case, script(&h)).await;
        })
        .await
        .unwrap_or_else(|_| panic!("{case}: the conversation did not finish in time"));
    }
}

// ---------------------------------------------------------------------------
// Conversations that look further: the store, TLS, a hang-up
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ehlo_offers_starttls_only_when_tls_is_configured() {
    bounded(async {
        let (_h, mut c) = Harness::connected(Options {
            tls: true,
            ..Options::default()
        })
        .await;
        let ehlo = c.command("EHLO client.example").await;
        assert!(ehlo.contains("\r\n250-PIPELINING\r\n"), "{ehlo}");
        assert!(ehlo.ends_with("\r\n250 STARTTLS\r\n"), "{ehlo}");
        assert!(ehlo.contains("250-SIZE "), "{ehlo}");
        c.quit().await;
    })
    .await;
}

#[tokio::test]
async fn starttls_upgrades_and_drops_what_was_pipelined_behind_it() {
    bounded(async {
        let (h, mut c) = Harness::connected(Options {
            tls: true,
            require_tls: true,
            ..Options::default()
        })
        .await;
        c.expect("EHLO client.example", "250").await;
        // An injected command behind STARTTLS must not be run after the
        // handshake (CVE-2011-0411 class).
        c.send(b"STARTTLS\r\nNOOP\r\n").await;
        assert_eq!(code(&c.reply().await), "220");
        assert!(c.io.buffer().is_empty());
        let Client { io, session } = c;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(h.tls_cert.clone().unwrap()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, io.into_inner())
            .await
            .unwrap();
        let mut c = Client {
            io: BufReader::new(tls),
            session,
        };
        // The first reply over TLS is EHLO's, not the injected NOOP's.
        let ehlo = c.command("EHLO client.example").await;
        assert!(ehlo.starts_with(&format!("250-{HOSTNAME}\r\n")), "{ehlo}");
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert_eq!(
            c.command("STARTTLS").await,
            "503 5.5.1 Bad sequence of commands\r\n"
        );
        c.expect(&format!("MAIL FROM:<{ANNA}>"), "250").await;
        c.expect(&format!("RCPT TO:<{BORIS}>"), "250").await;
        c.quit().await;
    })
    .await;
}

#[tokio::test]
async fn an_unsigned_message_is_received_then_refused() {
    bounded(async {
        let (h, mut c) = Harness::connected(Options::default()).await;
        c.open_data().await;
        c.send(unsigned_message(ANNA, BORIS).as_bytes()).await;
        let r = c.command(".").await;
        assert!(r.starts_with("550 5.7.1 unsigned: "), "{r}");
        let (messages, _, queued) = h.svc.store.counts().await.unwrap();
        assert_eq!((messages, queued), (1, 0));
        // The session goes on.
        c.expect("NOOP", "250").await;
        c.quit().await;
    })
    .await;
}

#[tokio::test]
async fn a_bare_lf_in_data_is_smuggling_and_closes_the_connection() {
    bounded(async {
        let h = Harness::new(Options::default()).await;
        let before = h.audit_count().await;
        let mut c = h.connect().await;
        c.open_data().await;
        // The classic smuggling payload: `\n.\r\n` ends nothing here.
        c.send(b"Subject: a\r\n\r\nfirst\n.\r\nMAIL FROM:<x@y.example>\r\n")
            .await;
        let r = c.reply().await;
        assert_eq!(
            r,
            "550 5.5.2 smuggling: bare LF received; lines must end with CRLF\r\n"
        );
        c.expect_closed().await;
        assert_eq!(h.audit_count().await, before + 1);
        assert_eq!(
            h.svc.store.counts().await.unwrap().0,
            0,
            "no message record"
        );
    })
    .await;
}

#[tokio::test]
async fn a_client_that_hangs_up_ends_the_session() {
    bounded(async {
        let (_h, mut c) = Harness::connected(Options::default()).await;
        c.expect("EHLO client.example", "250").await;
        c.send(format!("MAIL FROM:<{ANNA}>\r\n").as_bytes()).await;
        let Client { io, session } = c;
        drop(io);
        tokio::time::timeout(REPLY_WITHIN, session)
            .await
            .expect("the session did not end")
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_nul_in_data_is_malformed_at_the_final_dot_and_the_session_goes_on() {
    bounded(async {
        let h = Harness::new(Options::default()).await;
        let mut c = h.connect().await;
        c.open_data().await;
        let msg = unsigned_message(ANNA, BORIS).replacen("\r\n\r\n", "\r\n\r\nN\0L\r\n", 1);
        c.send(msg.as_bytes()).await;
        let r = c.command(".").await;
        assert_eq!(
            r,
            "550 5.6.0 malformed: the message contains a NUL byte\r\n"
        );
        c.expect("NOOP", "250").await;
        c.expect("QUIT", "221").await;
        c.expect_closed().await;
    })
    .await;
}

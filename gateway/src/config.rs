//! The gateway's runtime configuration (`emla serve --config FILE`): where it
//! listens, where it keeps its data, which policy it enforces. Distinct from
//! the policy files, which say *what* is allowed.
//!
//! Without a file, the embedded default runs: 127.0.0.1:2525, SQLite under
//! `data/`, the policy in `policy/`, no TLS required (a local demo).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::case_ref::CaseRefPattern;

/// Where message bodies are kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BodyStorage {
    /// Files under `data_dir/messages/`, fsynced before the transaction.
    #[default]
    Files,
    /// Rows of the `bodies` table, in the same transaction as the message:
    /// instances sharing a PostgreSQL database can deliver each other's mail.
    Database,
}

/// Everything `emla serve` needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Addresses to accept SMTP on.
    pub listen: Vec<SocketAddr>,
    /// Directory for the database (SQLite), message bodies and the control socket.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The policy directory.
    pub policy_dir: PathBuf,
    /// STARTTLS certificate chain and key, PEM.
    pub tls: Option<TlsFiles>,
    /// Refuse MAIL before STARTTLS with `530`.
    pub require_tls: bool,
    /// Most concurrent SMTP sessions; one more gets `421`.
    pub max_sessions: usize,
    /// What one SMTP client may take of the intake.
    pub session_limits: SessionLimits,
    /// How long a client may stay silent between commands.
    pub command_timeout: Duration,
    /// How long a client may stay silent during DATA.
    pub data_timeout: Duration,
    /// On SIGTERM, how long sessions in the middle of a transaction may finish.
    pub shutdown_grace: Duration,
    /// Keep the bodies of rejected messages (their hash is always kept).
    pub keep_rejected_bodies: bool,
    /// Files under the data directory, or rows of the database (so that
    /// instances sharing a PostgreSQL database can relay each other's mail).
    pub body_storage: BodyStorage,
    /// Bodies encrypted at rest and their key-encryption key (`[storage]`).
    pub storage: StorageConfig,
    /// How the case reference is found in a message's `Subject:` when it has
    /// no `X-MLA-Reference` header field (`case_pattern`, a regular expression).
    pub case_pattern: CaseRefPattern,
    /// The relay worker's settings.
    pub relay: RelayConfig,
    /// The auditors' read-only web view (`[audit_web]`); off when absent.
    pub audit_web: Option<AuditWeb>,
    /// Signed checkpoints of the audit chain (`[audit]`).
    pub audit: AuditConfig,
    /// How long bodies and audit records are kept (`[retention]`).
    pub retention: RetentionConfig,
    /// How revocation data is downloaded (`[revocation]`).
    pub revocation: RevocationConfig,
    /// The postmaster's mailbox (`[postmaster]`).
    pub postmaster: PostmasterConfig,
    /// Trusted timestamps of the gateway's signatures (`[evidence]`).
    pub evidence: EvidenceConfig,
    /// The metrics and health listener (`[metrics]`); off when absent.
    pub metrics: Option<MetricsConfig>,
    /// `log_format`: human-readable lines or one JSON object per event.
    pub log_format: LogFormat,
}

/// `[storage]`: bodies encrypted at rest (see
/// [`store::keys`](crate::store::keys) and `docs/at-rest.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageConfig {
    /// Seal every body stored from now on (`encrypt_bodies`).
    pub encrypt_bodies: bool,
    /// Where the key-encryption key comes from; without one, sealed bodies
    /// cannot be read.
    pub kek: Option<KekSource>,
}

/// Where the key-encryption key is read (32 bytes: raw in a file, or 64
/// hex digits or base64, in a file or a variable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSource {
    /// `kek_file = PATH`.
    File(PathBuf),
    /// `kek_env = NAME`: an environment variable of the gateway.
    Env(String),
    /// `kek_credential = NAME`: `$CREDENTIALS_DIRECTORY/NAME`, as systemd's
    /// `LoadCredential=` / `LoadCredentialEncrypted=` provide it.
    Credential(String),
}

impl std::fmt::Display for KekSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KekSource::File(p) => write!(f, "kek_file {}", p.display()),
            KekSource::Env(n) => write!(f, "kek_env {n}"),
            KekSource::Credential(n) => write!(f, "kek_credential {n}"),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StorageFile {
    encrypt_bodies: Option<bool>,
    kek_file: Option<PathBuf>,
    kek_env: Option<String>,
    kek_credential: Option<String>,
}

fn storage_config(
    s: StorageFile,
    rel: impl Fn(PathBuf) -> PathBuf,
) -> Result<StorageConfig, String> {
    let mut sources = Vec::new();
    sources.extend(s.kek_file.map(|p| KekSource::File(rel(p))));
    sources.extend(s.kek_env.map(KekSource::Env));
    sources.extend(s.kek_credential.map(KekSource::Credential));
    if sources.len() > 1 {
        return Err("[storage] names more than one key-encryption key: \
                    give exactly one of kek_file, kek_env, kek_credential"
            .into());
    }
    let kek = sources.pop();
    let encrypt_bodies = s.encrypt_bodies.unwrap_or(false);
    if encrypt_bodies && kek.is_none() {
        return Err(
            "[storage] encrypt_bodies = true needs a key-encryption key: \
                    kek_file, kek_env or kek_credential"
                .into(),
        );
    }
    Ok(StorageConfig {
        encrypt_bodies,
        kek,
    })
}

/// `[metrics]`: plain HTTP for a scrape network: `/metrics`, `/healthz`,
/// `/readyz`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where it listens; `metrics listening on ADDR` is printed.
    pub listen: SocketAddr,
    /// `/readyz` is 503 when the data directory has less free space.
    pub min_free_bytes: u64,
}

/// `log_format`: how events are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON layer).
    Json,
}

impl LogFormat {
    /// Parses the `log_format` value.
    pub fn parse(value: Option<&str>) -> Result<LogFormat, String> {
        match value {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => Err(format!(
                "log_format {other:?}: expected \"text\" or \"json\""
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    listen: String,
    min_free_bytes: Option<u64>,
}

fn metrics_config(m: MetricsFile) -> Result<MetricsConfig, String> {
    let listen = m
        .listen
        .parse()
        .map_err(|e| format!("[metrics] listen address {:?}: {e}", m.listen))?;
    Ok(MetricsConfig {
        listen,
        // A full disk stops intake (bodies cannot be written): 1 GiB warns first.
        min_free_bytes: m.min_free_bytes.unwrap_or(1 << 30),
    })
}

/// `[evidence]`: RFC 3161 timestamps of the gateway's own signatures
/// (receipts, notices, checkpoints). Off without `tsa_url`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvidenceConfig {
    /// The time-stamping authority, when configured.
    pub tsa: Option<TsaConfig>,
}

/// Where the TSA is and how its tokens are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsaConfig {
    /// `tsa_url`: http or https, RFC 3161 over HTTP (POST
    /// `application/timestamp-query`).
    pub url: String,
    /// `tsa_ca`: PEM file of the CA(s) the TSA's certificate must chain to.
    pub ca: PathBuf,
    /// `tsa_policy`: the TSA policy OID to ask for and demand in tokens.
    pub policy: Option<String>,
    /// `tsa_timeout_secs` (default 5): the longest a signature waits for
    /// its token; after it, it goes out without one.
    pub timeout: Duration,
    /// `tsa_unavailable`: what a receipt does when it gets no token.
    pub unavailable: OnUnavailable,
}

/// `tsa_unavailable`: what a receipt or notice whose signature got no
/// token does. Checkpoints never wait: they are written at once and get
/// their token later (the backlog job).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUnavailable {
    /// `"send"` (the default): it goes out without a token at once.
    #[default]
    Send,
    /// `"wait"`: it is held (in the database) and the TSA asked again,
    /// `retry` after the first failure, then twice as long each time (at
    /// most 16 times `retry`), until a token is granted; after `max`
    /// (`tsa_wait_max_secs`, default 3600) it goes out without one.
    Wait {
        /// `tsa_wait_max_secs`.
        max: Duration,
        /// `tsa_retry_secs` (default 30).
        retry: Duration,
    },
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EvidenceFile {
    tsa_url: Option<String>,
    tsa_ca: Option<PathBuf>,
    tsa_policy: Option<String>,
    tsa_timeout_secs: Option<u64>,
    tsa_unavailable: Option<String>,
    tsa_wait_max_secs: Option<u64>,
    tsa_retry_secs: Option<u64>,
}

fn evidence_config(
    f: EvidenceFile,
    rel: impl Fn(PathBuf) -> PathBuf,
) -> Result<EvidenceConfig, String> {
    let Some(url) = f.tsa_url else {
        if f.tsa_ca.is_some()
            || f.tsa_policy.is_some()
            || f.tsa_timeout_secs.is_some()
            || f.tsa_unavailable.is_some()
            || f.tsa_wait_max_secs.is_some()
            || f.tsa_retry_secs.is_some()
        {
            return Err(
                "[evidence] tsa_ca, tsa_policy, tsa_timeout_secs, tsa_unavailable, tsa_wait_max_secs \
                 and tsa_retry_secs need tsa_url"
                    .into(),
            );
        }
        return Ok(EvidenceConfig::default());
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "[evidence] tsa_url {url:?}: expected an http:// or https:// URL"
        ));
    }
    let ca = f
        .tsa_ca
        .ok_or("[evidence] tsa_url needs tsa_ca, the PEM file of the TSA's CA")?;
    if let Some(p) = &f.tsa_policy {
        der::asn1::ObjectIdentifier::new(p)
            .map_err(|e| format!("[evidence] tsa_policy {p:?} is not an OID: {e}"))?;
    }
    let timeout = at_least_one("[evidence] tsa_timeout_secs", f.tsa_timeout_secs, 5)?;
    let max = at_least_one("[evidence] tsa_wait_max_secs", f.tsa_wait_max_secs, 3600)?;
    let retry = at_least_one("[evidence] tsa_retry_secs", f.tsa_retry_secs, 30)?;
    let unavailable = match f.tsa_unavailable.as_deref() {
        None | Some("send") => {
            if f.tsa_wait_max_secs.is_some() || f.tsa_retry_secs.is_some() {
                return Err(
                    "[evidence] tsa_wait_max_secs and tsa_retry_secs need tsa_unavailable = \"wait\""
                        .into(),
                );
            }
            OnUnavailable::Send
        }
        Some("wait") => OnUnavailable::Wait {
            max: Duration::from_secs(max),
            retry: Duration::from_secs(retry),
        },
        Some(other) => {
            return Err(format!(
                "[evidence] tsa_unavailable {other:?}: expected \"send\" or \"wait\""
            ))
        }
    };
    Ok(EvidenceConfig {
        tsa: Some(TsaConfig {
            url,
            ca: rel(ca),
            policy: f.tsa_policy,
            timeout: Duration::from_secs(timeout),
            unavailable,
        }),
    })
}

/// `[postmaster]`: the bounded mailbox where mail to `postmaster` is kept
/// for the operator (`DATA_DIR/postmaster/ID.eml`).
#[derive(Clone, Debug)]
pub struct PostmasterConfig {
    /// The mailbox directory.
    pub dir: PathBuf,
    /// Most messages kept at once (`max_messages`, default 100).
    pub max_messages: usize,
    /// Most bytes kept at once (`max_bytes`, default 10 MiB).
    pub max_bytes: u64,
    /// Most messages taken in any hour (`max_per_hour`, default 20).
    pub max_per_hour: usize,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PostmasterFile {
    max_messages: Option<usize>,
    max_bytes: Option<u64>,
    max_per_hour: Option<usize>,
}

/// What one SMTP client may take of the intake, so that no client can hold
/// it against the other authorities (after Postfix's
/// `smtpd_client_connection_count_limit`, `smtpd_hard_error_limit` and
/// `smtpd_junk_command_limit`).
#[derive(Clone, Debug)]
pub struct SessionLimits {
    /// Most concurrent sessions from one client address
    /// (`max_sessions_per_client`, default 10); one more gets `421`.
    pub per_client: usize,
    /// Longest session (`max_session_secs`, default 3600): past it, the
    /// session is closed with `421` at the prompt; a transaction under way
    /// gets at most the DATA timeout more.
    pub lifetime: Duration,
    /// Most commands in one session (`max_commands`, default 10000).
    pub commands: u32,
    /// Error replies after which the session is closed with `421`
    /// (`hard_error_limit`, default 20); an accepted message resets the count.
    pub hard_errors: u32,
    /// NOOP, RSET, VRFY, EXPN and HELP a session may send before each one
    /// counts as an error (`junk_command_limit`, default 100).
    pub junk_commands: u32,
}

/// `[revocation]`: when and how CRLs and OCSP answers are downloaded (see
/// [`revocation`](crate::revocation)). Which URLs, and what a missing
/// answer means, is policy.
#[derive(Clone, Debug)]
pub struct RevocationConfig {
    /// Download a CRL again once its nextUpdate is less than this far away
    /// (`refresh_margin_secs`, default 14400: four hours).
    pub refresh_margin: Duration,
    /// Longest time between two downloads of one CRL, however long it is
    /// valid, so new revocations arrive (`refresh_interval_secs`, default
    /// 3600).
    pub refresh_interval: Duration,
    /// Wait after a failed download; doubled after each further failure
    /// (`retry_initial_secs`, default 60).
    pub retry_initial: Duration,
    /// Longest wait between failed downloads (`retry_max_secs`, default 3600).
    pub retry_max: Duration,
    /// Largest CRL or OCSP response accepted, in bytes (`max_bytes`,
    /// default 20 MiB).
    pub max_bytes: u64,
    /// Longest a CRL download may take (`timeout_secs`, default 30).
    pub timeout: Duration,
    /// Longest an OCSP request may take while a message waits
    /// (`ocsp_timeout_secs`, default 5).
    pub ocsp_timeout: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            refresh_margin: Duration::from_secs(4 * 3600),
            refresh_interval: Duration::from_secs(3600),
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            ocsp_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevocationFile {
    refresh_margin_secs: Option<u64>,
    refresh_interval_secs: Option<u64>,
    retry_initial_secs: Option<u64>,
    retry_max_secs: Option<u64>,
    max_bytes: Option<u64>,
    timeout_secs: Option<u64>,
    ocsp_timeout_secs: Option<u64>,
}

fn revocation_config(f: RevocationFile) -> Result<RevocationConfig, String> {
    let d = RevocationConfig::default();
    let secs = |key: &str, v: Option<u64>, default: Duration| match v {
        Some(0) => Err(format!("[revocation] {key} must be at least 1")),
        Some(n) => Ok(Duration::from_secs(n)),
        None => Ok(default),
    };
    let c = RevocationConfig {
        refresh_margin: match f.refresh_margin_secs {
            Some(n) => Duration::from_secs(n),
            None => d.refresh_margin,
        },
        refresh_interval: secs(
            "refresh_interval_secs",
            f.refresh_interval_secs,
            d.refresh_interval,
        )?,
        retry_initial: secs("retry_initial_secs", f.retry_initial_secs, d.retry_initial)?,
        retry_max: secs("retry_max_secs", f.retry_max_secs, d.retry_max)?,
        max_bytes: match f.max_bytes {
            Some(0) => return Err("[revocation] max_bytes must be at least 1".into()),
            Some(n) => n,
            None => d.max_bytes,
        },
        timeout: secs("timeout_secs", f.timeout_secs, d.timeout)?,
        ocsp_timeout: secs("ocsp_timeout_secs", f.ocsp_timeout_secs, d.ocsp_timeout)?,
    };
    if c.retry_max < c.retry_initial {
        return Err("[revocation] retry_max_secs must not be below retry_initial_secs".into());
    }
    Ok(c)
}

/// `[audit]`: signed checkpoints of the audit chain head (see
/// [`audit::checkpoint`](crate::audit::checkpoint)).
#[derive(Clone, Debug, Default)]
pub struct AuditConfig {
    /// How often `emla serve` writes a checkpoint (`checkpoint_interval_secs`,
    /// default 3600; 0 turns the periodic checkpoint off).
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoint files go (`checkpoint_dir`, default
    /// `DATA_DIR/checkpoints`).
    pub checkpoint_dir: PathBuf,
    /// Write checkpoints unsigned (with a warning) when the policy has no
    /// signing identity (`allow_unsigned_checkpoints`, default false: no
    /// checkpoint is written and an error is logged).
    pub allow_unsigned: bool,
    /// Also mail every checkpoint, signed, with its files attached, to this
    /// address (`checkpoint_mail`), which must be in an authority's domain
    /// (the mail goes to that authority's next hop).
    pub checkpoint_mail: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AuditFile {
    checkpoint_interval_secs: Option<u64>,
    checkpoint_dir: Option<PathBuf>,
    allow_unsigned_checkpoints: Option<bool>,
    checkpoint_mail: Option<String>,
}

/// `[retention]`: how long message bodies and audit records are kept (see
/// [`audit::retention`](crate::audit::retention)). Absent keys keep
/// everything forever.
#[derive(Clone, Debug, Default)]
pub struct RetentionConfig {
    /// Remove body files of messages received more than this many days ago
    /// (`bodies_days`).
    pub bodies_days: Option<u64>,
    /// Remove audit records older than this many days, but only below the
    /// latest signed checkpoint (`audit_days`).
    pub audit_days: Option<u64>,
    /// How often `emla serve` prunes (`interval_secs`, default 86400).
    pub interval: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    bodies_days: Option<u64>,
    audit_days: Option<u64>,
    interval_secs: Option<u64>,
}

/// How this instance takes part in delivery (`[relay]` of the serve
/// configuration; how often and how long to retry is policy, not this).
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Deliver queued messages (off: this instance only accepts).
    pub enabled: bool,
    /// Names this instance's claims on queue entries; stable across
    /// restarts, so a restarted instance takes its own claims back at once.
    /// Instances sharing a database need distinct ids.
    pub instance_id: String,
    /// How long a claim lasts; another instance takes an entry over once
    /// its holder has been silent that long.
    pub lease: Duration,
    /// Most deliveries in progress at once.
    pub max_in_flight: usize,
    /// How often to look for due entries when nothing signals new ones.
    pub poll: Duration,
    /// Longest a single delivery (one message over an open connection) may take.
    pub transaction_timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RelayFile {
    enabled: Option<bool>,
    instance_id: Option<String>,
    lease_secs: Option<u64>,
    max_in_flight: Option<usize>,
    poll_ms: Option<u64>,
    transaction_timeout_secs: Option<u64>,
}

/// `[audit_web]`: where the auditors' web view listens (HTTPS only) and
/// how auditors authenticate. See [`audit::web`](crate::audit::web).
#[derive(Clone, Debug)]
pub struct AuditWeb {
    /// The address of its own listener (not one of the SMTP addresses).
    pub listen: SocketAddr,
    /// Server certificate chain and key, PEM.
    pub tls: TlsFiles,
    /// Bearer tokens: lines `NAME SHA256-HEX-OF-TOKEN` (only hashes stored).
    pub tokens_file: Option<PathBuf>,
    /// CA certificates (PEM); a client certificate chaining to one of them
    /// authenticates an auditor by its subject.
    pub client_ca: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditWebFile {
    listen: String,
    cert: PathBuf,
    key: PathBuf,
    tokens_file: Option<PathBuf>,
    client_ca: Option<PathBuf>,
}

/// STARTTLS certificate and key files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    policy_dir: Option<PathBuf>,
    tls: Option<TlsFiles>,
    require_tls: Option<bool>,
    max_sessions: Option<usize>,
    max_sessions_per_client: Option<usize>,
    max_session_secs: Option<u64>,
    max_commands: Option<u32>,
    hard_error_limit: Option<u32>,
    junk_command_limit: Option<u32>,
    command_timeout_secs: Option<u64>,
    data_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    keep_rejected_bodies: Option<bool>,
    body_storage: Option<String>,
    storage: Option<StorageFile>,
    case_pattern: Option<String>,
    relay: Option<RelayFile>,
    audit_web: Option<AuditWebFile>,
    audit: Option<AuditFile>,
    retention: Option<RetentionFile>,
    revocation: Option<RevocationFile>,
    postmaster: Option<PostmasterFile>,
    evidence: Option<EvidenceFile>,
    metrics: Option<MetricsFile>,
    log_format: Option<String>,
}

impl Config {
    /// The embedded default: a local demo on 127.0.0.1:2525.
    pub fn embedded() -> Config {
        Self::build(File::default(), Path::new("."), false).expect("defaults are valid")
    }

    /// Reads a configuration file; relative paths resolve against its directory.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file: File = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start].matches('\n').count() + 1;
                    let col = s.start - text[..s.start].rfind('\n').map_or(0, |p| p + 1) + 1;
                    format!("{line}:{col}: ")
                })
                .unwrap_or_default();
            format!("{}:{at}{}", path.display(), e.message())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::build(file, base, true).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn build(f: File, base: &Path, from_file: bool) -> Result<Config, String> {
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        // Read before fields move out of `f`; its error is reported in turn.
        let session_limits = session_limits(&f);
        let listen = listen_addresses(f.listen)?;
        let data_dir = rel(f.data_dir.unwrap_or_else(|| "data".into()));
        let database_url = f
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("emla.db").display()));
        let tls = f.tls.map(|t| TlsFiles {
            cert: rel(t.cert),
            key: rel(t.key),
        });
        // Outside the embedded demo, plain-text submission is refused by default.
        let require_tls = f.require_tls.unwrap_or(from_file);
        if require_tls && tls.is_none() {
            return Err("require_tls is on but no [tls] cert/key is configured".into());
        }
        let max_sessions = f.max_sessions.unwrap_or(100);
        if max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        let session_limits = session_limits?;
        let body_storage = body_storage(f.body_storage.as_deref())?;
        let storage = storage_config(f.storage.unwrap_or_default(), rel)?;
        let case_pattern = match f.case_pattern {
            Some(p) => CaseRefPattern::new(&p)?,
            None => CaseRefPattern::default(),
        };
        let relay = relay_config(f.relay.unwrap_or_default(), &data_dir)?;
        let audit_web = f.audit_web.map(|w| audit_web_config(w, rel)).transpose()?;
        let audit = audit_config(f.audit.unwrap_or_default(), &data_dir, rel);
        let retention = retention_config(f.retention.unwrap_or_default())?;
        let postmaster = postmaster_config(f.postmaster.unwrap_or_default(), &data_dir);
        Ok(Config {
            listen,
            data_dir,
            database_url,
            policy_dir: rel(f.policy_dir.unwrap_or_else(|| "policy".into())),
            tls,
            require_tls,
            max_sessions,
            session_limits,
            command_timeout: Duration::from_secs(f.command_timeout_secs.unwrap_or(300)),
            data_timeout: Duration::from_secs(f.data_timeout_secs.unwrap_or(600)),
            shutdown_grace: Duration::from_secs(f.shutdown_grace_secs.unwrap_or(30)),
            keep_rejected_bodies: f.keep_rejected_bodies.unwrap_or(false),
            body_storage,
            storage,
            case_pattern,
            relay,
            audit_web,
            audit,
            retention,
            revocation: revocation_config(f.revocation.unwrap_or_default())?,
            postmaster,
            evidence: evidence_config(f.evidence.unwrap_or_default(), rel)?,
            metrics: f.metrics.map(metrics_config).transpose()?,
            log_format: LogFormat::parse(f.log_format.as_deref())?,
        })
    }
}

/// The SMTP listen addresses (at least one).
fn listen_addresses(listen: Option<Vec<String>>) -> Result<Vec<SocketAddr>, String> {
    let listen = listen
        .unwrap_or_else(|| vec!["127.0.0.1:2525".into()])
        .iter()
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|e| format!("listen address {s:?}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if listen.is_empty() {
        return Err("listen must name at least one address".into());
    }
    Ok(listen)
}

fn session_limits(f: &File) -> Result<SessionLimits, String> {
    Ok(SessionLimits {
        per_client: at_least_one("max_sessions_per_client", f.max_sessions_per_client, 10)?,
        lifetime: Duration::from_secs(at_least_one("max_session_secs", f.max_session_secs, 3600)?),
        commands: at_least_one("max_commands", f.max_commands, 10_000)?,
        hard_errors: at_least_one("hard_error_limit", f.hard_error_limit, 20)?,
        junk_commands: f.junk_command_limit.unwrap_or(100),
    })
}

fn body_storage(value: Option<&str>) -> Result<BodyStorage, String> {
    match value {
        None | Some("files") => Ok(BodyStorage::Files),
        Some("database") => Ok(BodyStorage::Database),
        Some(other) => Err(format!(
            "body_storage {other:?}: expected \"files\" or \"database\""
        )),
    }
}

fn audit_web_config(w: AuditWebFile, rel: impl Fn(PathBuf) -> PathBuf) -> Result<AuditWeb, String> {
    let listen = w
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| format!("[audit_web] listen address {:?}: {e}", w.listen))?;
    if w.tokens_file.is_none() && w.client_ca.is_none() {
        return Err("[audit_web] needs tokens_file or client_ca (or both): \
                    without either no auditor could sign in"
            .into());
    }
    Ok(AuditWeb {
        listen,
        tls: TlsFiles {
            cert: rel(w.cert),
            key: rel(w.key),
        },
        tokens_file: w.tokens_file.map(&rel),
        client_ca: w.client_ca.map(&rel),
    })
}

fn audit_config(a: AuditFile, data_dir: &Path, rel: impl Fn(PathBuf) -> PathBuf) -> AuditConfig {
    AuditConfig {
        checkpoint_interval: match a.checkpoint_interval_secs.unwrap_or(3600) {
            0 => None,
            n => Some(Duration::from_secs(n)),
        },
        checkpoint_dir: a
            .checkpoint_dir
            .map(rel)
            .unwrap_or_else(|| data_dir.join("checkpoints")),
        allow_unsigned: a.allow_unsigned_checkpoints.unwrap_or(false),
        checkpoint_mail: a.checkpoint_mail,
    }
}

fn retention_config(r: RetentionFile) -> Result<RetentionConfig, String> {
    for (key, v) in [("bodies_days", r.bodies_days), ("audit_days", r.audit_days)] {
        if v == Some(0) {
            return Err(format!("[retention] {key} must be at least 1"));
        }
    }
    Ok(RetentionConfig {
        bodies_days: r.bodies_days,
        audit_days: r.audit_days,
        interval: Duration::from_secs(r.interval_secs.unwrap_or(86_400).max(1)),
    })
}

fn postmaster_config(p: PostmasterFile, data_dir: &Path) -> PostmasterConfig {
    PostmasterConfig {
        dir: data_dir.join("postmaster"),
        max_messages: p.max_messages.unwrap_or(100),
        max_bytes: p.max_bytes.unwrap_or(10 << 20),
        max_per_hour: p.max_per_hour.unwrap_or(20),
    }
}

/// `value`, or `default` when absent; zero is refused with the key's name.
fn at_least_one<T: Default + PartialEq>(
    key: &str,
    value: Option<T>,
    default: T,
) -> Result<T, String> {
    match value {
        Some(v) if v == T::default() => Err(format!("{key} must be at least 1")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn relay_config(f: RelayFile, data_dir: &Path) -> Result<RelayConfig, String> {
    let lease = Duration::from_secs(f.lease_secs.unwrap_or(600));
    let transaction_timeout = Duration::from_secs(f.transaction_timeout_secs.unwrap_or(300));
    if lease < Duration::from_secs(2) {
        return Err("[relay] lease_secs must be at least 2".into());
    }
    if transaction_timeout >= lease {
        return Err(format!(
            "[relay] transaction_timeout_secs ({}) must be shorter than lease_secs ({})",
            transaction_timeout.as_secs(),
            lease.as_secs()
        ));
    }
    let max_in_flight = f.max_in_flight.unwrap_or(64);
    if max_in_flight == 0 {
        return Err("[relay] max_in_flight must be at least 1".into());
    }
    let instance_id = match f.instance_id {
        Some(id) if id.trim().is_empty() => {
            return Err("[relay] instance_id must not be empty".into())
        }
        Some(id) => id,
        None => default_instance_id(data_dir),
    };
    Ok(RelayConfig {
        enabled: f.enabled.unwrap_or(true),
        instance_id,
        lease,
        max_in_flight,
        poll: Duration::from_millis(f.poll_ms.unwrap_or(1000).max(10)),
        transaction_timeout,
    })
}

/// `host:data-dir`: stable across restarts, distinct for two instances
/// on one machine (they cannot share a data directory's control socket).
fn default_instance_id(data_dir: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_a_local_demo() {
        let c = Config::embedded();
        assert_eq!(c.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert!(!c.require_tls);
        assert!(c.database_url.starts_with("sqlite://"));
    }

    #[test]
    fn storage_needs_exactly_one_kek_to_encrypt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        let load = |storage: &str| {
            std::fs::write(&p, format!("require_tls = false\n[storage]\n{storage}")).unwrap();
            Config::load(&p)
        };
        assert_eq!(load("").unwrap().storage, StorageConfig::default());
        let e = load("encrypt_bodies = true\n").unwrap_err();
        assert!(
            e.contains("encrypt_bodies = true needs a key-encryption key"),
            "{e}"
        );
        let e = load("kek_env = \"K\"\nkek_credential = \"k\"\n").unwrap_err();
        assert!(
            e.contains("exactly one of kek_file, kek_env, kek_credential"),
            "{e}"
        );
        let c = load("encrypt_bodies = true\nkek_file = \"kek\"\n").unwrap();
        assert!(c.storage.encrypt_bodies);
        assert_eq!(c.storage.kek, Some(KekSource::File(dir.path().join("kek"))));
        let c = load("kek_credential = \"emla-kek\"\n").unwrap();
        assert!(!c.storage.encrypt_bodies, "reads sealed bodies, seals none");
        assert_eq!(
            c.storage.kek,
            Some(KekSource::Credential("emla-kek".into()))
        );
    }

    #[test]
    fn file_requires_tls_by_default_and_names_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        for (text, error) in [
            ("listen = [\"127.0.0.1:0\"]\n", "require_tls is on"),
            ("listn = []\n", ":1:1: unknown field `listn`"),
            (
                "require_tls = false\ncase_pattern = \"(\"\n",
                "case pattern \"(\"",
            ),
            (
                "require_tls = false\nbody_storage = \"s3\"\n",
                "body_storage \"s3\": expected",
            ),
        ] {
            std::fs::write(&p, text).unwrap();
            let e = Config::load(&p).unwrap_err();
            assert!(e.contains(error), "{e}");
        }
        std::fs::write(&p, "require_tls = false\ndata_dir = \"d\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.data_dir, dir.path().join("d"));
        std::fs::write(&p, "require_tls = false\nbody_storage = \"database\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.body_storage, BodyStorage::Database);
    }

    #[test]
    fn evidence_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        let head = "require_tls = false\n[evidence]\n";
        for (text, error) in [
            (
                "tsa_url = \"ftp://x\"\ntsa_ca = \"ca.pem\"\n",
                "expected an http://",
            ),
            ("tsa_url = \"http://127.0.0.1:1/\"\n", "needs tsa_ca"),
            ("tsa_ca = \"ca.pem\"\n", "need tsa_url"),
            (
                "tsa_url = \"http://x/\"\ntsa_ca = \"c\"\ntsa_policy = \"x.y\"\n",
                "tsa_policy \"x.y\" is not an OID",
            ),
            (
                "tsa_url = \"http://x/\"\ntsa_ca = \"c\"\ntsa_unavailable = \"hold\"\n",
                "expected \"send\" or \"wait\"",
            ),
            (
                "tsa_url = \"http://x/\"\ntsa_ca = \"c\"\ntsa_wait_max_secs = 5\n",
                "need tsa_unavailable = \"wait\"",
            ),
        ] {
            std::fs::write(&p, format!("{head}{text}")).unwrap();
            let e = Config::load(&p).unwrap_err();
            assert!(e.contains(error), "{e}");
        }
        std::fs::write(
            &p,
            format!("{head}tsa_url = \"http://127.0.0.1:1/\"\ntsa_ca = \"ca.pem\"\n"),
        )
        .unwrap();
        let tsa = Config::load(&p).unwrap().evidence.tsa.unwrap();
        assert_eq!(tsa.ca, dir.path().join("ca.pem"));
        assert_eq!(tsa.timeout, Duration::from_secs(5));
        assert_eq!(tsa.unavailable, OnUnavailable::Send);
        assert!(Config::embedded().evidence.tsa.is_none());
        std::fs::write(
            &p,
            format!(
                "{head}tsa_url = \"http://x/\"\ntsa_ca = \"c\"\ntsa_unavailable = \"wait\"\n\
                 tsa_wait_max_secs = 60\n"
            ),
        )
        .unwrap();
        assert_eq!(
            Config::load(&p).unwrap().evidence.tsa.unwrap().unavailable,
            OnUnavailable::Wait {
                max: Duration::from_secs(60),
                retry: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn metrics_table_and_log_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        let head = "require_tls = false\n";
        std::fs::write(
            &p,
            format!("{head}[metrics]\nlisten = \"127.0.0.1:9725\"\n"),
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let m = c.metrics.unwrap();
        assert_eq!(m.listen, "127.0.0.1:9725".parse().unwrap());
        assert_eq!(m.min_free_bytes, 1 << 30);
        assert_eq!(c.log_format, LogFormat::Text);
        std::fs::write(&p, format!("{head}log_format = \"json\"\n[metrics]\nlisten = \"127.0.0.1:1\"\nmin_free_bytes = 5\n")).unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(
            (c.log_format, c.metrics.unwrap().min_free_bytes),
            (LogFormat::Json, 5)
        );
        std::fs::write(&p, format!("{head}log_format = \"xml\"\n")).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(
            e.contains("log_format \"xml\": expected \"text\" or \"json\""),
            "{e}"
        );
        std::fs::write(&p, format!("{head}[metrics]\nlisten = \"any\"\n")).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(e.contains("[metrics] listen address \"any\""), "{e}");
        assert!(Config::embedded().metrics.is_none());
    }

    #[test]
    fn audit_web_table() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        let head = "require_tls = false\n[audit_web]\nlisten = \"127.0.0.1:0\"\n\
                    cert = \"web.pem\"\nkey = \"/k.pem\"\n";
        std::fs::write(&p, head).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(e.contains("needs tokens_file or client_ca"), "{e}");
        std::fs::write(&p, format!("{head}tokens_file = \"t\"\n")).unwrap();
        let w = Config::load(&p).unwrap().audit_web.unwrap();
        assert_eq!(w.tls.cert, dir.path().join("web.pem"));
        assert_eq!(w.tls.key, Path::new("/k.pem"));
        assert_eq!(w.tokens_file, Some(dir.path().join("t")));
        assert_eq!(w.client_ca, None);
        std::fs::write(&p, format!("{head}client_ca = \"ca.pem\"\nplain = true\n")).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(e.contains(":7:1: unknown field `plain`"), "{e}");
        std::fs::write(&p, head.replace("127.0.0.1:0", "localhost")).unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(
            e.contains("[audit_web] listen address \"localhost\""),
            "{e}"
        );
        assert!(Config::embedded().audit_web.is_none());
    }

    #[test]
    fn audit_and_retention_tables() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("emla.toml");
        std::fs::write(&p, "require_tls = false\ndata_dir = \"d\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.audit.checkpoint_interval, Some(Duration::from_secs(3600)));
        assert_eq!(c.audit.checkpoint_dir, dir.path().join("d/checkpoints"));
        assert!(!c.audit.allow_unsigned);
        assert_eq!(
            (c.retention.bodies_days, c.retention.audit_days),
            (None, None)
        );
        std::fs::write(
            &p,
            "require_tls = false\n[audit]\ncheckpoint_interval_secs = 0\ncheckpoint_dir = \"cp\"\n\
             allow_unsigned_checkpoints = true\ncheckpoint_mail = \"auditor@x.example\"\n\
             [retention]\nbodies_days = 30\naudit_days = 400\ninterval_secs = 60\n",
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.audit.checkpoint_interval, None);
        assert_eq!(c.audit.checkpoint_dir, dir.path().join("cp"));
        assert!(c.audit.allow_unsigned);
        assert_eq!(
            c.audit.checkpoint_mail.as_deref(),
            Some("auditor@x.example")
        );
        assert_eq!(
            (c.retention.bodies_days, c.retention.audit_days),
            (Some(30), Some(400))
        );
        assert_eq!(c.retention.interval, Duration::from_secs(60));
        std::fs::write(&p, "require_tls = false\n[retention]\nbodies_days = 0\n").unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(
            e.contains("[retention] bodies_days must be at least 1"),
            "{e}"
        );
        std::fs::write(&p, "require_tls = false\n[audit]\ninterval = 5\n").unwrap();
        let e = Config::load(&p).unwrap_err();
        assert!(e.contains("unknown field `interval`"), "{e}");
    }
}

//! The loaded, validated policy: what every decision reads.
//!
//! A `Policy` is built once per load (start, SIGHUP, `emla policy reload`)
//! with its trust anchors and CRLs parsed into an index, so no decision ever
//! touches the file system.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, TrustAnchor};

use crate::smime::sign::SigningIdentity;
pub use crate::trust::cert::DigestAlg;
pub use crate::trust::revocation::{Crl, CrlPolicy, OcspMode};

/// Everything an administrator configured, validated.
pub struct Policy {
    /// The directory the policy was loaded from.
    pub dir: PathBuf,
    /// SHA-256 over the policy files and the files they reference, hex.
    pub version: String,
    /// The bytes the version was computed over (policy files and the files
    /// they name), kept for the archive of versions in force.
    pub files: super::FileSet,
    /// `[gateway]` settings.
    pub gateway: GatewaySettings,
    /// `[limits]` settings.
    pub limits: Limits,
    /// `[relay]` settings.
    pub relay: RelaySettings,
    /// `[[kind]]` entries and `[kinds]` settings.
    pub kinds: super::KindSettings,
    /// The authorities, in file-name order.
    pub authorities: Vec<Authority>,
    /// The routes, first match wins.
    pub routes: Vec<Route>,
    /// Remarks on a policy that loaded (an unusual but accepted trust
    /// anchor…): shown by `emla policy check`, never a reason to refuse it.
    pub notes: Vec<super::Diagnostic>,
    /// Lower-case mail domain → index into `authorities`.
    pub domain_index: HashMap<String, usize>,
}

/// `[gateway]` settings.
#[derive(Clone, Debug)]
pub struct GatewaySettings {
    /// Host name used in EHLO and Received headers.
    pub hostname: String,
    /// The address receipts and non-delivery notices come from
    /// (`postmaster`, default `postmaster@HOSTNAME`).
    pub postmaster: String,
    /// The gateway's own signing certificate and key (`signing_cert`,
    /// `signing_key`); `None`: receipts and checkpoint signatures are off.
    pub signing: Option<Arc<SigningIdentity>>,
    /// The certificates and keys inbound encrypted mail is opened with
    /// (`[[decryption]]`); empty: encrypted mail is `not-for-gateway`.
    pub decryption: Vec<Arc<crate::smime::decrypt::DecryptionKey>>,
}

impl Default for GatewaySettings {
    /// Host name `localhost`, postmaster `postmaster@localhost`, no signing.
    fn default() -> Self {
        GatewaySettings {
            hostname: "localhost".to_owned(),
            postmaster: "postmaster@localhost".to_owned(),
            signing: None,
            decryption: Vec::new(),
        }
    }
}

/// `[limits]` settings; every limit has a documented default.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest message accepted, in bytes.
    pub max_message_size: u64,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Largest header section of the message, in bytes.
    pub max_header_size: usize,
    /// Deepest MIME nesting accepted (the top-level entity is depth 1).
    pub max_mime_depth: usize,
    /// How far in the future a signingTime attribute may lie.
    pub signing_time_skew: Duration,
    /// Smallest RSA modulus accepted, in bits (never below 2048).
    pub min_rsa_bits: usize,
    /// Digest algorithms accepted for signatures.
    pub digests: Vec<DigestAlg>,
    /// What to do when a CRL needed for a check is missing or stale.
    pub crl: CrlPolicy,
    /// The signer certificate must have an extKeyUsage holding
    /// emailProtection (`require_email_eku`). When false (the default), RFC
    /// 8550 §4.4 applies: no extKeyUsage, or one holding emailProtection or
    /// anyExtendedKeyUsage.
    pub require_email_eku: bool,
    /// What a message whose signature was already accepted gets (`replay`).
    pub replay: Replay,
    /// How long an accepted signature is remembered (`replay_window_days`).
    pub replay_window: Duration,
    /// Accept text outside the signed parts of multipart/signed (a preamble
    /// other than the customary notice, an epilogue): no signature covers
    /// it, and some mail clients show it (`allow_unsigned_text`).
    pub allow_unsigned_text: bool,
}

/// What the gateway does with a message whose SignerInfo signature it has
/// accepted before, within the replay window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// `same-id` (the default): `250 2.0.0 already accepted as <first id>`,
    /// not relayed again; a client retrying after a lost reply gets the same
    /// id.
    SameId,
    /// `refuse`: refused as `replay`.
    Refuse,
}

/// An enumerated policy value, by the names the policy files spell it
/// with: read by [`TableReader::choice`](super::files::TableReader::choice),
/// shown by [`diff`](super::diff).
pub trait Named: Copy + PartialEq + 'static {
    /// Every value with its name.
    const NAMES: &'static [(&'static str, Self)];

    /// This value's name.
    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(n, _)| n)
    }
}

impl Named for Replay {
    const NAMES: &'static [(&'static str, Self)] =
        &[("same-id", Replay::SameId), ("refuse", Replay::Refuse)];
}

impl Named for CrlPolicy {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("hard-fail", CrlPolicy::HardFail),
        ("soft-fail", CrlPolicy::SoftFail),
    ];
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 25 * 1024 * 1024,
            max_recipients: 50,
            max_header_size: 64 * 1024,
            max_mime_depth: 10,
            signing_time_skew: Duration::from_secs(300),
            min_rsa_bits: 2048,
            digests: vec![DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512],
            crl: CrlPolicy::HardFail,
            require_email_eku: false,
            replay: Replay::SameId,
            replay_window: Duration::from_secs(365 * 86_400),
            allow_unsigned_text: false,
        }
    }
}

/// `[relay]` settings: how long and how often delivery is tried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelaySettings {
    /// How long a message may wait in the queue before it fails.
    pub queue_lifetime: Duration,
    /// The same for the urgent lane (never longer than `queue_lifetime`).
    pub urgent_queue_lifetime: Duration,
    /// How long after queueing a still undelivered message gets its one
    /// delay notice (`delay_warning_secs`).
    pub delay_warning: Duration,
    /// The same for the urgent lane (`urgent_delay_warning_secs`).
    pub urgent_delay_warning: Duration,
    /// Wait after the first failed attempt; doubled after each one.
    pub retry_initial: Duration,
    /// Longest wait between attempts.
    pub retry_max: Duration,
    /// Most simultaneous connections to one next hop.
    pub max_connections_per_destination: usize,
    /// How long to wait for a next hop's connection and greeting.
    pub connect_timeout: Duration,
    /// How long after acceptance a still undelivered urgent-lane message
    /// alerts the duty officers (`urgent_alert_secs`; never longer than
    /// `urgent_queue_lifetime`).
    pub urgent_alert: Duration,
    /// Most duty alerts each authority's duty address gets per hour
    /// (`duty_alerts_per_hour`); more are suppressed and audited.
    pub duty_alerts_per_hour: u32,
}

/// Default of `urgent_alert_secs` (shortened to the urgent queue lifetime
/// when that is shorter).
pub const URGENT_ALERT_SECS: u64 = 15 * 60;

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            queue_lifetime: Duration::from_secs(5 * 24 * 3600),
            urgent_queue_lifetime: Duration::from_secs(4 * 3600),
            delay_warning: Duration::from_secs(12 * 3600),
            urgent_delay_warning: Duration::from_secs(30 * 60),
            retry_initial: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            max_connections_per_destination: 4,
            connect_timeout: Duration::from_secs(30),
            urgent_alert: Duration::from_secs(URGENT_ALERT_SECS),
            duty_alerts_per_hour: 20,
        }
    }
}

impl RelaySettings {
    /// The wait of a delivery after its `failures`-th failed attempt:
    /// from `retry_initial`, doubling up to `retry_max`, with jitter (see
    /// [`crate::backoff::exponential`]).
    pub fn retry_delay(&self, failures: u32) -> Duration {
        crate::backoff::exponential(self.retry_initial, self.retry_max, failures)
    }

    /// The queue lifetime of a lane.
    pub fn lifetime(&self, lane: Lane) -> Duration {
        match lane {
            Lane::Normal => self.queue_lifetime,
            Lane::Urgent => self.urgent_queue_lifetime,
        }
    }

    /// When, after queueing, a message of a lane gets its delay notice.
    pub fn delay_warning(&self, lane: Lane) -> Duration {
        match lane {
            Lane::Normal => self.delay_warning,
            Lane::Urgent => self.urgent_delay_warning,
        }
    }
}

/// One central or diplomatic authority of a country.
pub struct Authority {
    /// Stable identifier, e.g. `fr-moj`.
    pub id: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// Display name.
    pub name: String,
    /// Mail domains it owns, lower case.
    pub domains: Vec<String>,
    /// Its trust anchors, for path validation.
    pub anchors: Vec<TrustAnchor<'static>>,
    /// The anchors' certificates as loaded (for reports and evidence).
    pub anchor_certs: Vec<CertificateDer<'static>>,
    /// Configured intermediate CA certificates: they sign CRLs and help
    /// path building when a message omits them.
    pub intermediates: Vec<CertificateDer<'static>>,
    /// The CRL files its policy lists. Each counts for a certificate only
    /// once it verifies with the key of that certificate's issuer in the
    /// validated path.
    pub crls: Vec<Arc<Crl>>,
    /// URLs its CRLs are downloaded from (`crl_urls`).
    pub crl_urls: Vec<String>,
    /// Whether the CRL distribution points of its CA certificates are
    /// downloaded too (`fetch_crls = "cdp"`).
    pub fetch_cdp: bool,
    /// Whether and how OCSP is asked (`ocsp`).
    pub ocsp: OcspMode,
    /// Networks its mail servers submit from; empty: any client.
    pub allowed_clients: Vec<ipnet::IpNet>,
    /// Where mail for its domains is relayed.
    pub next_hop: NextHop,
    /// The signed receipts its senders get (`receipts`, default all).
    pub receipts: ReceiptKinds,
    /// Most rejection notices its senders get per hour
    /// (`rejection_notices_per_hour`).
    pub rejection_notices_per_hour: u32,
    /// Where its duty officer is alerted about its urgent-lane mail
    /// (`duty`; UNTOC art. 18(13)), if anywhere.
    pub duty: Option<String>,
    /// Whether mail relayed to it is S/MIME-encrypted, to which
    /// certificates, with which content cipher.
    pub encryption: Encryption,
}

/// How mail relayed to an authority is encrypted (`encrypt`,
/// `encryption_certificates`, `encryption_cipher`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encryption {
    /// When to encrypt.
    pub mode: EncryptMode,
    /// The certificates to encrypt to (every one that is valid when the
    /// message is relayed).
    pub certificates: Vec<EncryptionCert>,
    /// The content-encryption algorithm.
    pub cipher: ContentCipher,
}

/// When mail relayed to an authority is encrypted (`encrypt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EncryptMode {
    /// Never: relayed as received (TLS hop by hop only). The default.
    #[default]
    Never,
    /// When it has a valid encryption certificate; in clear otherwise.
    WhenCertificate,
    /// Always: without a valid certificate the delivery is deferred, and
    /// fails at the end of the queue lifetime; it is never sent in clear.
    Always,
}

impl EncryptMode {
    /// The names `encrypt` takes.
    pub const NAMES: [(&'static str, EncryptMode); 3] = [
        ("never", EncryptMode::Never),
        ("when-certificate", EncryptMode::WhenCertificate),
        ("always", EncryptMode::Always),
    ];
}

/// The content-encryption algorithm of relayed mail (`encryption_cipher`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentCipher {
    /// AES-256-CBC in an EnvelopedData (RFC 5652): what every S/MIME
    /// client reads. The default.
    #[default]
    Aes256Cbc,
    /// AES-256-GCM in an AuthEnvelopedData (RFC 5083, 5084).
    Aes256Gcm,
}

impl ContentCipher {
    /// The names `encryption_cipher` takes.
    pub const NAMES: [(&'static str, ContentCipher); 2] = [
        ("aes-256-cbc", ContentCipher::Aes256Cbc),
        ("aes-256-gcm", ContentCipher::Aes256Gcm),
    ];

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            ContentCipher::Aes256Cbc => "aes-256-cbc",
            ContentCipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// An authority's encryption certificate, as checked when the policy was
/// loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionCert {
    /// The certificate.
    pub der: CertificateDer<'static>,
    /// Its subject, for logs and the audit record.
    pub subject: String,
    /// SHA-256 of the certificate, hex.
    pub sha256: String,
    /// Not valid before, seconds since the epoch.
    pub not_before: u64,
    /// Not valid after, seconds since the epoch.
    pub not_after: u64,
}

impl EncryptionCert {
    /// Whether it is valid at `now` (seconds since the epoch).
    pub fn valid_at(&self, now: u64) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// A kind of signed message the gateway sends back to a sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The gateway accepted the message (`acceptance`).
    Acceptance,
    /// The next hop accepted the message (`delivery`).
    Delivery,
    /// The message could not be delivered: a non-delivery notice (`failure`).
    Failure,
    /// The message is still not delivered after the delay warning time: a
    /// delay notice (`delay`), once.
    Delay,
    /// The gateway refused the message at the end of DATA: a non-acceptance
    /// notice (`rejection`). Only when listed: not in the default set.
    Rejection,
}

impl ReceiptKind {
    /// Every kind, in the order of the policy file reference.
    pub const ALL: [ReceiptKind; 5] = [
        ReceiptKind::Acceptance,
        ReceiptKind::Delivery,
        ReceiptKind::Failure,
        ReceiptKind::Delay,
        ReceiptKind::Rejection,
    ];

    /// The name used in policy files and `X-Emla-Receipt`.
    pub fn name(self) -> &'static str {
        match self {
            ReceiptKind::Acceptance => "acceptance",
            ReceiptKind::Delivery => "delivery",
            ReceiptKind::Failure => "failure",
            ReceiptKind::Delay => "delay",
            ReceiptKind::Rejection => "rejection",
        }
    }
}

/// A set of [`ReceiptKind`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiptKinds {
    bits: u8,
}

impl ReceiptKinds {
    /// The default: every kind but `rejection`, which answers mail the
    /// gateway did not take and so is sent only where asked for.
    pub const ALL: ReceiptKinds = ReceiptKinds { bits: 0b1111 };
    /// No receipts at all.
    pub const NONE: ReceiptKinds = ReceiptKinds { bits: 0 };

    fn bit(kind: ReceiptKind) -> u8 {
        match kind {
            ReceiptKind::Acceptance => 1,
            ReceiptKind::Delivery => 2,
            ReceiptKind::Failure => 4,
            ReceiptKind::Delay => 8,
            ReceiptKind::Rejection => 16,
        }
    }

    /// Whether `kind` is in the set.
    pub fn contains(self, kind: ReceiptKind) -> bool {
        self.bits & Self::bit(kind) != 0
    }

    /// The set with `kind` added.
    pub fn with(self, kind: ReceiptKind) -> ReceiptKinds {
        ReceiptKinds {
            bits: self.bits | Self::bit(kind),
        }
    }
}

impl Default for ReceiptKinds {
    fn default() -> Self {
        ReceiptKinds::ALL
    }
}

impl Authority {
    /// What validating a signer's path against this authority needs.
    pub fn trust(&self) -> crate::trust::AuthorityTrust<'_> {
        crate::trust::AuthorityTrust {
            id: &self.id,
            country: &self.country,
            anchors: &self.anchors,
            anchor_certs: &self.anchor_certs,
            intermediates: &self.intermediates,
            crls: &self.crls,
            ocsp: self.ocsp,
            fetch_cdp: self.fetch_cdp,
        }
    }

    /// Whether a client at `ip` may submit mail for this authority.
    pub fn admits_client(&self, ip: std::net::IpAddr) -> bool {
        self.allowed_clients.is_empty() || self.allowed_clients.iter().any(|n| n.contains(&ip))
    }
}

/// The counterpart MTA receiving an authority's mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// TLS requirement towards that host.
    pub tls: TlsMode,
}

/// TLS requirement for a next hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS with a certificate valid for `host` (system roots or `ca_file`).
    Required {
        /// PEM file of CA certificates to trust instead of the system roots.
        ca_file: Option<PathBuf>,
    },
    /// STARTTLS when offered, plain otherwise.
    Opportunistic,
    /// STARTTLS with a certificate whose SHA-256 (of the DER) is this value.
    Pinned {
        /// SHA-256 of the certificate DER.
        sha256: [u8; 32],
    },
}

/// One routing rule.
#[derive(Clone, Debug)]
pub struct Route {
    /// Name shown in logs and replies.
    pub name: String,
    /// Senders it applies to (any of them).
    pub from: Vec<Matcher>,
    /// Recipients it applies to (any of them).
    pub to: Vec<Matcher>,
    /// What happens on a match.
    pub action: RouteAction,
    /// Human reason, quoted in rejections and the audit log.
    pub reason: String,
    /// The request kinds it applies to (`kind`); empty: every message.
    pub kinds: Vec<String>,
    /// Delivery lane (`lane`); `None`: the kind's, else normal.
    pub lane: Option<Lane>,
}

impl Route {
    /// Whether it applies to a message of `kind` (`None`: declaring none).
    pub fn applies_to(&self, kind: Option<&str>) -> bool {
        self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.iter().any(|r| r == k))
    }

    /// The lane of a message of `kind` relayed along it.
    pub fn lane_for(&self, kind: Option<&super::Kind>) -> Lane {
        self.lane
            .or(kind.and_then(|k| k.lane))
            .unwrap_or(Lane::Normal)
    }
}

/// Matches an address by authority, country, domain or pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// Any address.
    Any,
    /// Any address in a domain of this authority id.
    Authority(String),
    /// Any address in a domain of an authority of this country.
    Country(String),
    /// Any address in this domain (lower case).
    Domain(String),
    /// An address glob (`*` matches any run of characters), lower case.
    Pattern(String),
}

impl std::fmt::Display for Matcher {
    /// As `routes.toml` writes it: `*`, `authority:ID`, `country:CC`,
    /// `domain:NAME` or the address glob.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Matcher::Any => f.write_str("*"),
            Matcher::Authority(id) => write!(f, "authority:{id}"),
            Matcher::Country(cc) => write!(f, "country:{cc}"),
            Matcher::Domain(d) => write!(f, "domain:{d}"),
            Matcher::Pattern(p) => f.write_str(p),
        }
    }
}

/// A route's action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteAction {
    /// Relay to the recipient authority's next hop.
    Relay,
    /// Refuse with `route-denied`.
    Reject,
}

/// Delivery lane; the urgent lane has a shorter queue lifetime. Queue rows
/// and audit records name it as [`Lane::as_str`] does.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Ordinary requests.
    Normal,
    /// Urgent requests.
    Urgent,
}

impl Lane {
    /// The name used in policy files and queue rows.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Normal => "normal",
            Lane::Urgent => "urgent",
        }
    }

    /// Parses a queue row's lane (`normal` when unknown).
    pub fn parse(s: &str) -> Lane {
        if s == "urgent" {
            Lane::Urgent
        } else {
            Lane::Normal
        }
    }
}

/// The routing outcome for one sender/recipient pair.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteDecision<'p> {
    /// Relay along `route` to `authority`'s next hop.
    Relay {
        /// The matching rule.
        route: &'p Route,
        /// The recipient's authority.
        authority: &'p Authority,
    },
    /// A rule refuses it.
    Reject {
        /// The matching rule.
        route: &'p Route,
    },
    /// The recipient domain belongs to no authority.
    UnknownRecipientDomain,
    /// No rule matches.
    NoRoute,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("id", &self.id)
            .field("country", &self.country)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Authority {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Authority {}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.from == other.from && self.to == other.to
    }
}
impl Eq for Route {}

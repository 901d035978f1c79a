//! Revocation status of the certificates of a validated path.
//!
//! A CRL counts for a certificate only when it is signed by that
//! certificate's issuer *as found in the validated path* (RFC 5280 §6.3):
//! a CRL file or download is just a candidate until then. Its signature is
//! checked at first use against that issuer's key and remembered per key,
//! so no message pays for it twice. OCSP answers (RFC 6960) are validated
//! when fetched and held by certificate ([`CertKey`]); this module only
//! judges their freshness at the evaluation time.
//!
//! Everything used is reported as [`StatusEvidence`] so that the audit log
//! can name it by SHA-256 and evidence bundles can carry the very bytes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use der::asn1::{AnyRef, BitStringRef};
use der::{Decode, Encode, SliceReader};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{CrlDistributionPoints, CrlNumber, KeyUsage};
use x509_cert::Certificate;

use super::cert::CertFacts;
use super::TrustError;
use crate::clock::EvalTime;

/// Handling of a certificate whose revocation status cannot be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlPolicy {
    /// Refuse with a temporary failure (the default): `451`, never `5xx`.
    HardFail,
    /// Accept, recording that the status was unknown.
    SoftFail,
}

/// Whether and how OCSP is asked (per authority, `ocsp = …`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OcspMode {
    /// CRLs only.
    Off,
    /// OCSP when no fresh CRL covers the certificate (the default).
    #[default]
    Fallback,
    /// OCSP first; a fresh CRL when no OCSP answer can be had.
    Prefer,
}

impl OcspMode {
    /// The name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            OcspMode::Off => "off",
            OcspMode::Fallback => "fallback",
            OcspMode::Prefer => "prefer",
        }
    }
}

/// Why a CRL cannot be used at all (whoever signed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrlError {
    /// Not a DER (or PEM) CertificateList.
    Unparsable(String),
    /// No nextUpdate: its freshness cannot be judged.
    NoNextUpdate,
    /// A partitioned CRL (issuingDistributionPoint): only complete CRLs are
    /// supported.
    Partitioned,
}

impl fmt::Display for CrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrlError::Unparsable(e) => write!(f, "it is not a valid CRL: {e}"),
            CrlError::NoNextUpdate => {
                f.write_str("it has no nextUpdate, so its freshness cannot be judged")
            }
            CrlError::Partitioned => f.write_str(
                "it is partitioned (issuingDistributionPoint); only complete CRLs are supported",
            ),
        }
    }
}

/// A syntactically valid, complete CRL; whose it is, is decided at use.
pub struct Crl {
    /// The CRL as received (DER).
    pub der: Arc<[u8]>,
    /// SHA-256 of `der`, hex: its name in evidence.
    pub sha256: String,
    /// DER of the issuer Name.
    pub issuer: Vec<u8>,
    /// The issuer Name (RFC 4514), for people.
    pub issuer_text: String,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
    /// crlNumber, big-endian without leading zeros, when present.
    pub number: Option<Vec<u8>>,
    /// Where it came from: a policy file or a URL.
    pub source: String,
    list: CertRevocationList<'static>,
    /// thisUpdate and nextUpdate in RFC 3339, as evidence names them.
    update_texts: (String, String),
    /// SPKIs (DER) its signature verified with.
    verified: Mutex<Vec<Vec<u8>>>,
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.issuer_text)
            .field("sha256", &self.sha256)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Crl {
    /// Parses one DER CRL from `source`.
    pub fn parse(der: Vec<u8>, source: String) -> Result<Crl, CrlError> {
        let parsed =
            CertificateList::from_der(&der).map_err(|e| CrlError::Unparsable(e.to_string()))?;
        let tbs = &parsed.tbs_cert_list;
        let next_update = tbs.next_update.ok_or(CrlError::NoNextUpdate)?;
        let number = tbs
            .crl_extensions
            .iter()
            .flatten()
            .find(|e| e.extn_id == der::oid::db::rfc5280::ID_CE_CRL_NUMBER)
            .and_then(|e| CrlNumber::from_der(e.extn_value.as_bytes()).ok())
            .map(|n| {
                let b = n.0.as_bytes();
                b[b.iter().take_while(|&&x| x == 0).count()..].to_vec()
            });
        let owned = OwnedCertRevocationList::from_der(&der)
            .map_err(|e| CrlError::Unparsable(format!("{e:?}")))?;
        let list = CertRevocationList::Owned(owned);
        if list.issuing_distribution_point().is_some() {
            return Err(CrlError::Partitioned);
        }
        let this_update = tbs.this_update.to_unix_duration().as_secs();
        let next_update = next_update.to_unix_duration().as_secs();
        Ok(Crl {
            update_texts: (
                EvalTime::from_unix(this_update).to_rfc3339(),
                EvalTime::from_unix(next_update).to_rfc3339(),
            ),
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &der)),
            issuer: tbs.issuer.to_der().unwrap_or_default(),
            issuer_text: super::cert::dn(&tbs.issuer),
            this_update,
            next_update,
            number,
            source,
            list,
            der: der.into(),
            verified: Mutex::new(Vec::new()),
        })
    }

    /// Parses a CRL file or download: DER, or PEM holding one CRL.
    pub fn from_bytes(bytes: &[u8], source: String) -> Result<Crl, CrlError> {
        if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            let der = crate::pem::crls(bytes)
                .map_err(|e| CrlError::Unparsable(format!("PEM: {e}")))?
                .remove(0);
            return Crl::parse(der.to_vec(), source);
        }
        Crl::parse(bytes.to_vec(), source)
    }

    /// Whether the certificate `ca` (DER) has this CRL's issuer name.
    pub fn names_issuer(&self, ca: &[u8]) -> bool {
        Certificate::from_der(ca)
            .ok()
            .and_then(|c| c.tbs_certificate.subject.to_der().ok())
            .is_some_and(|s| s == self.issuer)
    }

    /// Whether `issuer` (a DER certificate) issued this CRL: same name, a
    /// keyUsage allowing cRLSign (or none), and a signature that verifies
    /// with its key. Successes are remembered per key.
    pub fn signed_by(&self, issuer: &[u8]) -> bool {
        Certificate::from_der(issuer).is_ok_and(|c| self.signed_by_cert(&c))
    }

    /// [`Crl::signed_by`] for a certificate already parsed.
    pub fn signed_by_cert(&self, cert: &Certificate) -> bool {
        let tbs = &cert.tbs_certificate;
        if tbs.subject.to_der().ok().as_deref() != Some(self.issuer.as_slice()) {
            return false;
        }
        if let Ok(Some((_, ku))) = tbs.get::<KeyUsage>() {
            if !ku.crl_sign() {
                return false;
            }
        }
        self.verified_with(&tbs.subject_public_key_info.to_der().unwrap_or_default())
    }

    /// [`Crl::signed_by`] for a certificate's facts.
    pub fn signed_by_facts(&self, ca: &CertFacts) -> bool {
        ca.subject_der.as_deref() == Some(self.issuer.as_slice())
            && ca.crl_sign
            && self.verified_with(&ca.spki_der)
    }

    /// Whether the signature verifies with the DER SubjectPublicKeyInfo
    /// `spki`; successes are remembered.
    fn verified_with(&self, spki: &[u8]) -> bool {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.iter().any(|v| v.as_slice() == spki) {
            return true;
        }
        if !signature_verifies(&self.der, spki) {
            return false;
        }
        verified.push(spki.to_vec());
        true
    }

    /// Whether this CRL supersedes `other` (same issuer): a higher
    /// crlNumber when both have one, else a later thisUpdate.
    pub fn newer_than(&self, other: &Crl) -> bool {
        match (&self.number, &other.number) {
            (Some(a), Some(b)) if a != b => (a.len(), a) > (b.len(), b),
            _ => self.this_update > other.this_update,
        }
    }

    /// Whether it may be relied on at `at`: issued by then, not past its
    /// nextUpdate.
    pub fn fresh_at(&self, at: EvalTime) -> bool {
        self.this_update <= at.unix() + CLOCK_SKEW_SECS && at.unix() <= self.next_update
    }

    /// Revocation date and reason of `serial`, if listed.
    fn revoked(&self, serial: &[u8]) -> Option<(u64, Option<String>)> {
        match self.list.find_serial(serial) {
            Ok(Some(entry)) => Some((
                entry.revocation_date.as_secs(),
                entry.reason_code.map(|r| format!("{r:?}")),
            )),
            _ => None,
        }
    }
}

/// How far in the future a CRL's thisUpdate or an OCSP answer's
/// thisUpdate may lie (clock differences between CA and gateway).
pub const CLOCK_SKEW_SECS: u64 = 300;

/// Whether the signature of the signed X.509 structure `der` (certificate
/// or CRL) verifies with the key of the DER SubjectPublicKeyInfo `spki`,
/// with one of the algorithms accepted on chains (any key encoding they
/// know, version 1 certificates' included).
pub fn signature_verifies(der: &[u8], spki: &[u8]) -> bool {
    let Ok((tbs, alg, sig)) = signed_parts(der) else {
        return false;
    };
    let Ok((key_alg, key)) = spki_parts(spki) else {
        return false;
    };
    super::CHAIN_ALGORITHMS
        .iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == alg && a.public_key_alg_id().as_ref() == key_alg
        })
        .any(|a| a.verify_signature(key, tbs, sig).is_ok())
}

/// The algorithm (contents of the AlgorithmIdentifier) and the key bits of
/// a DER SubjectPublicKeyInfo.
fn spki_parts(spki: &[u8]) -> der::Result<(&[u8], &[u8])> {
    use der::Reader;
    let outer = AnyRef::from_der(spki)?;
    let mut r = SliceReader::new(outer.value())?;
    let alg = AnyRef::decode(&mut r)?.value();
    let key = whole_bytes(&mut r)?;
    r.finish(())?;
    Ok((alg, key))
}

/// The signed part (whole TLV), the signature algorithm (contents of the
/// AlgorithmIdentifier) and the signature bits of a signed X.509 structure.
fn signed_parts(der: &[u8]) -> der::Result<(&[u8], &[u8], &[u8])> {
    use der::Reader;
    let outer = AnyRef::from_der(der)?;
    let mut r = SliceReader::new(outer.value())?;
    let tbs = r.tlv_bytes()?;
    let alg = AnyRef::decode(&mut r)?.value();
    let sig = whole_bytes(&mut r)?;
    r.finish(())?;
    Ok((tbs, alg, sig))
}

/// The bytes of the next BIT STRING, which must have no unused bits.
fn whole_bytes<'a>(r: &mut SliceReader<'a>) -> der::Result<&'a [u8]> {
    BitStringRef::decode(r)?.as_bytes().ok_or_else(|| {
        der::Error::from(der::ErrorKind::Length {
            tag: der::Tag::BitString,
        })
    })
}

/// The http(s) URLs of a certificate's CRL distribution points.
pub fn distribution_points(cert: &Certificate) -> Vec<String> {
    let Ok(Some((_, CrlDistributionPoints(points)))) =
        cert.tbs_certificate.get::<CrlDistributionPoints>()
    else {
        return Vec::new();
    };
    points
        .iter()
        .filter_map(|p: &DistributionPoint| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            _ => None,
        })
        .filter(|u| is_http_url(u))
        .collect()
}

/// Whether `url` is http or https (the only schemes fetched).
pub fn is_http_url(url: &str) -> bool {
    let l = url.to_ascii_lowercase();
    l.starts_with("http://") || l.starts_with("https://")
}

pub use super::ocsp::{CertKey, CertStatus};

/// The [`CertKey`] of the certificate with `serial` issued by `issuer`.
pub fn cert_key(issuer: &Certificate, serial: &[u8]) -> CertKey {
    let tbs = &issuer.tbs_certificate;
    key_of(
        &tbs.subject.to_der().unwrap_or_default(),
        &tbs.subject_public_key_info.to_der().unwrap_or_default(),
        serial,
    )
}

/// [`cert_key`] from the issuer's facts.
fn cert_key_of(issuer: &CertFacts, serial: &[u8]) -> CertKey {
    key_of(
        issuer.subject_der.as_deref().unwrap_or_default(),
        &issuer.spki_der,
        serial,
    )
}

fn key_of(subject: &[u8], spki: &[u8], serial: &[u8]) -> CertKey {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [subject, spki, serial] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    CertKey(h.finalize().into())
}

/// An OCSP response already validated (signature, responder, CertID) for
/// one certificate.
#[derive(Clone, Debug)]
pub struct OcspAnswer {
    /// The OCSPResponse as received (DER).
    pub der: Arc<[u8]>,
    /// SHA-256 of `der`, hex.
    pub sha256: String,
    /// The certificate's status.
    pub status: CertStatus,
    /// thisUpdate, Unix seconds.
    pub this_update: u64,
    /// nextUpdate (or the time the answer is held until), Unix seconds.
    pub next_update: u64,
    /// Who signed it, for people.
    pub responder: String,
    /// The responder URL.
    pub source: String,
}

impl OcspAnswer {
    /// Whether it may be relied on at `at`.
    pub fn fresh_at(&self, at: EvalTime) -> bool {
        self.this_update <= at.unix() + CLOCK_SKEW_SECS && at.unix() <= self.next_update
    }
}

/// Revocation data gathered at run time (downloaded CRLs, OCSP answers):
/// an immutable snapshot, replaced whole when something new arrives.
#[derive(Clone, Default)]
pub struct RevocationSet {
    crls: HashMap<Vec<u8>, Vec<Arc<Crl>>>,
    ocsp: HashMap<CertKey, Arc<OcspAnswer>>,
}

impl RevocationSet {
    /// The CRLs held for an issuer name (DER).
    pub fn crls_for(&self, issuer: &[u8]) -> &[Arc<Crl>] {
        self.crls.get(issuer).map_or(&[], Vec::as_slice)
    }

    /// Every CRL held.
    pub fn crls(&self) -> impl Iterator<Item = &Arc<Crl>> {
        self.crls.values().flatten()
    }

    /// The OCSP answer held for a certificate.
    pub fn ocsp(&self, key: &CertKey) -> Option<&Arc<OcspAnswer>> {
        self.ocsp.get(key)
    }

    /// Every OCSP answer held, with its key.
    pub fn ocsp_answers(&self) -> impl Iterator<Item = (&CertKey, &Arc<OcspAnswer>)> {
        self.ocsp.iter()
    }

    /// Holds `crl` in place of the one from the same source.
    pub fn put_crl(&mut self, crl: Arc<Crl>) {
        let list = self.crls.entry(crl.issuer.clone()).or_default();
        list.retain(|c| c.source != crl.source);
        list.push(crl);
    }

    /// The CRL held from `source`.
    pub fn crl_from(&self, source: &str) -> Option<&Arc<Crl>> {
        self.crls().find(|c| c.source == source)
    }

    /// Holds `answer` for `key`.
    pub fn put_ocsp(&mut self, key: CertKey, answer: Arc<OcspAnswer>) {
        self.ocsp.insert(key, answer);
    }
}

/// How a certificate's status was established.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// By a CRL.
    Crl,
    /// By an OCSP answer.
    Ocsp,
    /// Not established (accepted under soft-fail); also what a record
    /// without a method reads as.
    #[default]
    None,
}

impl Method {
    /// As recorded: `crl`, `ocsp` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Crl => "crl",
            Method::Ocsp => "ocsp",
            Method::None => "none",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What established (or failed to establish) one certificate's status;
/// the decision record holds it as serialised, and is read back with this
/// type (fields missing from older records read as their defaults).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct StatusEvidence {
    /// Subject of the certificate checked.
    pub subject: String,
    /// Its serial number, hex.
    pub serial: String,
    /// How the status was established.
    pub method: Method,
    /// SHA-256 of the CRL or OCSP response used, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Who issued the CRL or signed the OCSP answer.
    pub issuer: String,
    /// Its thisUpdate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub this_update: Option<String>,
    /// Its nextUpdate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// The file or URL it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Why the status is unknown (soft-fail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The bytes used, for the evidence archive.
    #[serde(skip)]
    pub der: Option<Arc<[u8]>>,
}

/// Revocation data the check needed but did not have: fetch it and judge
/// again.
#[derive(Clone, Debug)]
pub enum Want {
    /// A CRL from the distribution points of a certificate of the path.
    Crl {
        /// The distribution point URLs.
        urls: Vec<String>,
        /// The issuer in the path (DER), which must sign the CRL.
        issuer: Vec<u8>,
    },
    /// An OCSP answer for a certificate of the path.
    Ocsp {
        /// The certificate (DER).
        cert: Vec<u8>,
        /// Its issuer (DER).
        issuer: Vec<u8>,
        /// Its OCSP responder URLs.
        urls: Vec<String>,
        /// Its cache key.
        key: CertKey,
    },
}

/// How one authority's certificates are checked.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Missing or stale status: refuse (451) or accept.
    pub crl_policy: CrlPolicy,
    /// Whether OCSP is asked.
    pub ocsp: OcspMode,
    /// Whether CRLs may be downloaded from the certificates' distribution
    /// points.
    pub fetch_cdp: bool,
}

/// Where revocation data may come from for one check.
pub struct Sources<'a> {
    /// CRL files of the authority's policy.
    pub files: &'a [Arc<Crl>],
    /// Data gathered at run time.
    pub fetched: &'a RevocationSet,
}

/// Why no CRL settles a certificate's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoStatus {
    /// The newest CRL its issuer signed is past its nextUpdate.
    StaleCrl {
        /// The issuer.
        issuer: String,
        /// The CRL's nextUpdate, Unix seconds.
        next_update: u64,
        /// The evaluation time.
        at: EvalTime,
    },
    /// Its issuer signed none of the CRLs at hand.
    NoCrl {
        /// The issuer.
        issuer: String,
        /// The certificate's subject.
        subject: String,
    },
}

impl fmt::Display for NoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoStatus::StaleCrl {
                issuer,
                next_update,
                at,
            } => write!(
                f,
                "the CRL of {issuer} is stale: its nextUpdate was {} (evaluation time {})",
                EvalTime::from_unix(*next_update).to_rfc3339(),
                at.to_rfc3339()
            ),
            NoStatus::NoCrl { issuer, subject } => write!(
                f,
                "no CRL from {issuer}, the issuer of {subject}, is available"
            ),
        }
    }
}

/// Checks every certificate of `chain` (parsed; signer first, anchor last; the
/// anchor itself is not checked) against the revocation data of its issuer
/// in the chain. What was used goes to `evidence`; what would have settled
/// an unknown status goes to `wants`, for the caller to fetch and judge
/// again.
pub fn check_path(
    chain: &[&CertFacts],
    sources: &Sources<'_>,
    opts: Options,
    at: EvalTime,
    evidence: &mut Vec<StatusEvidence>,
    wants: &mut Vec<Want>,
) -> Result<(), TrustError> {
    let mut failure: Option<TrustError> = None;
    for pair in chain.windows(2) {
        let (cert, issuer) = (pair[0], pair[1]);
        let outcome = status_of(cert, issuer, sources, opts, at)?;
        let mut ev = StatusEvidence {
            subject: cert.subject(),
            serial: cert.serial_hex(),
            method: Method::None,
            sha256: None,
            issuer: cert.issuer(),
            this_update: None,
            next_update: None,
            source: None,
            problem: None,
            der: None,
        };
        match outcome {
            Status::Crl(crl) => {
                ev.method = Method::Crl;
                ev.sha256 = Some(crl.sha256.clone());
                ev.this_update = Some(crl.update_texts.0.clone());
                ev.next_update = Some(crl.update_texts.1.clone());
                ev.source = Some(crl.source.clone());
                ev.der = Some(crl.der.clone());
            }
            Status::Ocsp(answer) => {
                ev.method = Method::Ocsp;
                ev.sha256 = Some(answer.sha256.clone());
                ev.issuer = answer.responder.clone();
                ev.this_update = Some(EvalTime::from_unix(answer.this_update).to_rfc3339());
                ev.next_update = Some(EvalTime::from_unix(answer.next_update).to_rfc3339());
                ev.source = Some(answer.source.clone());
                ev.der = Some(answer.der.clone());
            }
            Status::Unknown { why, wants: more } => {
                wants.extend(more);
                if opts.crl_policy == CrlPolicy::HardFail {
                    // Go on: the other certificates' wants are fetched too.
                    failure.get_or_insert(why);
                    continue;
                }
                tracing::warn!(subject = %ev.subject, problem = %why, "revocation status unknown; accepted under soft-fail");
                ev.problem = Some(why.to_string());
            }
        }
        evidence.push(ev);
    }
    match failure {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// How one certificate's status was established.
enum Status {
    Crl(Arc<Crl>),
    Ocsp(Arc<OcspAnswer>),
    /// Not established: why ([`TrustError::CrlUnavailable`] or
    /// [`TrustError::OcspUnavailable`]), and what could settle it.
    Unknown {
        why: TrustError,
        wants: Vec<Want>,
    },
}

/// The CRLs of `sources` that `issuer` signed, newest first.
fn crls_signed_by<'s>(
    issuer_name: &[u8],
    issuer: &CertFacts,
    sources: &'s Sources<'_>,
) -> Vec<&'s Arc<Crl>> {
    let mut found: Vec<&Arc<Crl>> = sources
        .files
        .iter()
        .filter(|c| c.issuer == issuer_name)
        .chain(sources.fetched.crls_for(issuer_name))
        .filter(|c| c.signed_by_facts(issuer))
        .collect();
    found.sort_by(|a, b| {
        if a.newer_than(b) {
            std::cmp::Ordering::Less
        } else if b.newer_than(a) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    found
}

fn status_of(
    facts: &CertFacts,
    issuer: &CertFacts,
    sources: &Sources<'_>,
    opts: Options,
    at: EvalTime,
) -> Result<Status, TrustError> {
    let (cert, cert_der, issuer_der) = (&facts.cert, facts.der.as_slice(), issuer.der.as_slice());
    let tbs = &cert.tbs_certificate;
    let serial = tbs.serial_number.as_bytes();
    let issuer_name = facts.issuer_der.as_deref().unwrap_or_default();
    let candidates = crls_signed_by(issuer_name, issuer, sources);
    let fresh = candidates.iter().find(|c| c.fresh_at(at)).copied();

    let by_crl = |crl: &Arc<Crl>| -> Result<Status, TrustError> {
        match crl.revoked(serial) {
            Some((since, reason)) if since <= at.unix() + CLOCK_SKEW_SECS => {
                Err(TrustError::RevokedByCrl {
                    subject: tbs.subject.to_string(),
                    serial: hex::encode(serial),
                    issuer: tbs.issuer.to_string(),
                    since,
                    reason,
                })
            }
            _ => Ok(Status::Crl(crl.clone())),
        }
    };
    let key = cert_key_of(issuer, serial);
    let answer = if opts.ocsp == OcspMode::Off {
        None
    } else {
        sources
            .fetched
            .ocsp(&key)
            .filter(|a| a.fresh_at(at))
            .cloned()
    };
    let by_ocsp = |a: Arc<OcspAnswer>| -> Result<Status, TrustError> {
        match &a.status {
            CertStatus::Good => Ok(Status::Ocsp(a)),
            CertStatus::Revoked { time, reason } => Err(TrustError::RevokedByOcsp {
                subject: tbs.subject.to_string(),
                serial: hex::encode(serial),
                responder: a.responder.clone(),
                since: *time,
                reason: reason.clone(),
            }),
            CertStatus::Unknown => Err(TrustError::OcspUnknown {
                responder: a.responder.clone(),
                subject: tbs.subject.to_string(),
                serial: hex::encode(serial),
            }),
        }
    };
    let prefer_ocsp = opts.ocsp == OcspMode::Prefer;
    if prefer_ocsp {
        if let Some(a) = answer.clone().filter(|a| a.status != CertStatus::Unknown) {
            return by_ocsp(a);
        }
    }
    if let Some(crl) = fresh {
        return by_crl(crl);
    }
    if opts.ocsp != OcspMode::Off {
        if let Some(a) = answer {
            return by_ocsp(a);
        }
    }
    let crl = match candidates.first() {
        Some(stale) => NoStatus::StaleCrl {
            issuer: tbs.issuer.to_string(),
            next_update: stale.next_update,
            at,
        },
        None => NoStatus::NoCrl {
            issuer: tbs.issuer.to_string(),
            subject: tbs.subject.to_string(),
        },
    };
    // Only now, with nothing at hand: which responders could be asked.
    let urls = if opts.ocsp == OcspMode::Off {
        Vec::new()
    } else {
        super::ocsp::ocsp_urls(cert_der)
    };
    let cdp = if opts.fetch_cdp {
        distribution_points(cert)
    } else {
        Vec::new()
    };
    let want_crl = (!cdp.is_empty()).then(|| Want::Crl {
        urls: cdp,
        issuer: issuer_der.to_vec(),
    });
    let mut wants: Vec<Want> = want_crl.into_iter().collect();
    if urls.is_empty() {
        return Ok(Status::Unknown {
            why: TrustError::CrlUnavailable(crl),
            wants,
        });
    }
    wants.push(Want::Ocsp {
        cert: cert_der.to_vec(),
        issuer: issuer_der.to_vec(),
        urls: urls.clone(),
        key,
    });
    Ok(Status::Unknown {
        why: TrustError::OcspUnavailable {
            crl,
            responders: urls,
        },
        wants,
    })
}

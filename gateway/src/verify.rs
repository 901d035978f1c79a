//! The accept/reject decision for one message: the function the SMTP intake
//! and `emla verify` both call.

use std::sync::Arc;

use crate::clock::EvalTime;
use crate::policy::{
    Authority, Declared, Kind, KindSettings, Lane, Limits, Policy, RouteDecision, UnknownKind,
};
use crate::reason::Reason;
use crate::smime::cms::{self, Signer};
use crate::smime::decrypt::{self, EncryptionReport};
use crate::smime::mime::{self, Entity};
use crate::smime::signature;
use crate::smime::skeleton::{self, SkeletonError};
use crate::smime::{self as smime, Form};
use crate::text::list_or_none;
use crate::trust::cert::DigestAlg;
use crate::trust::revocation::{RevocationSet, StatusEvidence, Want};
use crate::trust::{self, cert::CertInfo, RevocationCheck, TrustError, UsageProblem};
use crate::wire;

/// The SMTP envelope of a message, when known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// MAIL FROM, if given. `None` (the null reverse-path, or a file
    /// judged alone): `From:` alone names the authority and the routes.
    pub mail_from: Option<&'a str>,
    /// RCPT TO addresses.
    pub rcpt_to: &'a [String],
}

/// What was learned about one signer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SignerReport {
    /// The signer's address: the SAN matching `From:`, else the first SAN.
    pub email: Option<String>,
    /// rfc822Name SANs of the signer certificate.
    pub emails: Vec<String>,
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
    /// Public key algorithm, e.g. `rsa-2048`, `ecdsa-p256`.
    pub key_algorithm: String,
    /// Digest and signature algorithm of the SignerInfo, e.g. `sha256-rsa-pkcs1`.
    pub signature_algorithm: String,
    /// SHA-256 of the SignerInfo's signature value, hex: what recognises
    /// the same signed message submitted again (a replay).
    pub signature_sha256: String,
    /// Subjects of the validated chain, signer first, anchor last.
    pub chain: Vec<String>,
    /// Id of the authority whose anchors validated the chain.
    pub authority: Option<String>,
}

/// Where one recipient is routed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecipientRoute {
    /// The recipient address.
    pub recipient: String,
    /// The matching route's name.
    pub route: Option<String>,
    /// The recipient's authority id.
    pub authority: Option<String>,
    /// `host:port` of the next hop.
    pub next_hop: Option<String>,
    /// Delivery lane of the route.
    pub lane: Option<Lane>,
}

/// The outcome of [`verify`]: exactly one reason code, `Reason::Ok` meaning accepted.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    /// The reason code.
    pub reason: Reason,
    /// A human explanation naming what failed.
    pub detail: String,
    /// What was learned about the signers (possibly partial on reject).
    pub signers: Vec<SignerReport>,
    /// Routing of each envelope recipient (on accept).
    pub recipients: Vec<RecipientRoute>,
    /// The sender's authority id, when known.
    pub authority: Option<String>,
    /// The request kind the message declares (`[[kind]]` id), when it
    /// declares a known one where the policy trusts it.
    pub kind: Option<String>,
    /// What established the revocation status of each certificate of the
    /// validated path (on accept; on a revocation reject, what was found).
    pub revocation: Vec<StatusEvidence>,
    /// The evaluation time.
    pub evaluated_at: String,
    /// Revocation data the decision needed but did not have: the caller
    /// may fetch it and judge again.
    #[serde(skip)]
    pub wanted: Vec<Want>,
    /// The CA certificates (DER) of the validated path below the anchor.
    #[serde(skip)]
    pub path_cas: Vec<Vec<u8>>,
    /// How the message arrived encrypted, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionReport>,
    /// Of an encrypted message, the signed message found inside: what was
    /// judged, and what is kept and relayed in place of the bytes received.
    #[serde(skip)]
    pub decrypted: Option<Arc<[u8]>>,
}

impl Verdict {
    /// A rejection decided before verification (size limits, errors).
    pub fn rejected(reason: Reason, detail: String) -> Verdict {
        Verdict {
            reason,
            detail,
            signers: Vec::new(),
            recipients: Vec::new(),
            authority: None,
            kind: None,
            revocation: Vec::new(),
            evaluated_at: EvalTime::now().to_rfc3339(),
            wanted: Vec::new(),
            path_cas: Vec::new(),
            encryption: None,
            decrypted: None,
        }
    }

    /// Whether the message is accepted.
    pub fn accepted(&self) -> bool {
        self.reason == Reason::Ok
    }

    /// One JSON object for scripts (`emla verify --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("verdict serializes");
        v["verdict"] = if self.accepted() { "accept" } else { "reject" }.into();
        v
    }

    /// Human-readable rendering.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = if self.accepted() { "ACCEPT" } else { "REJECT" };
        let _ = writeln!(s, "{verdict} {}: {}", self.reason, self.detail);
        if let Some(e) = &self.encryption {
            let _ = writeln!(
                s,
                "encrypted {} to {}, {}, {}",
                e.cms_type,
                e.recipient
                    .as_ref()
                    .map_or("-".into(), |r| format!("{} serial {}", r.issuer, r.serial)),
                e.key_algorithm.as_deref().unwrap_or("-"),
                e.content_algorithm.as_deref().unwrap_or("-")
            );
        }
        if let Some(k) = &self.kind {
            let _ = writeln!(s, "kind {k}");
        }
        for signer in &self.signers {
            let _ = writeln!(s, "signer {}", signer.emails.join(", "));
            let _ = writeln!(s, "  subject     {}", signer.subject);
            let _ = writeln!(s, "  issuer      {}", signer.issuer);
            let _ = writeln!(s, "  serial      {}", signer.serial);
            let _ = writeln!(s, "  sha256      {}", signer.sha256);
            let _ = writeln!(s, "  key         {}", signer.key_algorithm);
            let _ = writeln!(s, "  signature   {}", signer.signature_algorithm);
            if let Some(a) = &signer.authority {
                let _ = writeln!(s, "  authority   {a}");
            }
            for (i, c) in signer.chain.iter().enumerate() {
                let _ = writeln!(s, "  chain[{i}]    {c}");
            }
        }
        for e in &self.revocation {
            let _ = writeln!(
                s,
                "revocation {} {} by {}",
                e.subject,
                match (e.method, &e.problem) {
                    (_, Some(p)) => format!("unknown ({p})"),
                    (m, None) => format!("good per {m}"),
                },
                e.source.as_deref().unwrap_or("-")
            );
        }
        for r in &self.recipients {
            let _ = writeln!(
                s,
                "recipient {} via route {} to {} ({})",
                r.recipient,
                r.route.as_deref().unwrap_or("-"),
                r.authority.as_deref().unwrap_or("-"),
                r.next_hop.as_deref().unwrap_or("-")
            );
        }
        s
    }
}

/// A rejection: the reason code and what failed.
type Reject = (Reason, String);

/// The rejection for an error of a layer below: its reason code (each
/// error type's one mapping, `impl From<&E> for Reason`) and its sentence.
fn reject<E: std::fmt::Display>(e: E) -> Reject
where
    Reason: for<'e> From<&'e E>,
{
    (Reason::from(&e), e.to_string())
}

/// Judges `data` as the DATA of an SMTP transaction: first the intake's
/// line rules ([`wire::check_data`]), in the intake's order (bare CR or LF
/// at once, then the size limit, then long lines and NUL), then [`verify`].
/// `emla verify FILE` judges a file this way.
pub fn verify_data(
    policy: &Policy,
    fetched: &RevocationSet,
    data: &[u8],
    envelope: &Envelope<'_>,
    at: EvalTime,
) -> Verdict {
    match wire::check_data(data) {
        Err(e)
            if e.problem.reason() == Reason::Smuggling
                || data.len() as u64 <= policy.limits.max_message_size =>
        {
            let mut verdict = Verdict::rejected(e.problem.reason(), e.to_string());
            verdict.evaluated_at = at.to_rfc3339();
            verdict
        }
        _ => verify(policy, fetched, data, envelope, at),
    }
}

/// Judges `raw` (the message exactly as received) against `policy` at `at`,
/// with the revocation data gathered at run time in `fetched` besides the
/// policy's CRL files.
pub fn verify(
    policy: &Policy,
    fetched: &RevocationSet,
    raw: &[u8],
    envelope: &Envelope<'_>,
    at: EvalTime,
) -> Verdict {
    verify_with(policy, fetched, raw, envelope, at, None)
}

/// [`verify`] of `raw`, or of a spooled message's skeleton with the signed
/// content in its file (`spooled`).
fn verify_with(
    policy: &Policy,
    fetched: &RevocationSet,
    raw: &[u8],
    envelope: &Envelope<'_>,
    at: EvalTime,
    spooled: Option<&InFile<'_>>,
) -> Verdict {
    let mut verdict = Verdict {
        reason: Reason::Ok,
        detail: String::new(),
        signers: Vec::new(),
        recipients: Vec::new(),
        authority: None,
        kind: None,
        revocation: Vec::new(),
        evaluated_at: at.to_rfc3339(),
        wanted: Vec::new(),
        path_cas: Vec::new(),
        encryption: None,
        decrypted: None,
    };
    // An encrypted message is opened first: the signed message inside is
    // what is judged.
    let judged = open_encrypted(policy, raw, &mut verdict).and_then(|inner| {
        let message = inner.as_deref().unwrap_or(raw);
        // The file holds the signed content of the message as received
        // only; a decrypted one is judged in memory.
        let in_file = if inner.is_some() { None } else { spooled };
        let mut detail = judge(
            policy,
            fetched,
            message,
            envelope,
            at,
            &mut verdict,
            in_file,
        );
        let mut inner = inner;
        if inner.is_none() && detail.is_ok() {
            // Triple-wrapped (RFC 2634): the outer signature verified; the
            // signed message inside the encryption is judged too, and is
            // what is relayed.
            match open_signed_encrypted(policy, raw, &mut verdict) {
                Ok(None) => {}
                Ok(Some(wrapped)) => {
                    let outer = std::mem::take(&mut verdict.signers);
                    verdict.recipients.clear();
                    verdict.revocation.clear();
                    detail = judge(policy, fetched, &wrapped, envelope, at, &mut verdict, None);
                    if let Some(e) = verdict.encryption.as_mut() {
                        e.outer_signers = outer.into_iter().map(|s| s.subject).collect();
                    }
                    inner = Some(wrapped);
                }
                Err(e) => detail = Err(e),
            }
        }
        verdict.decrypted = inner.map(Arc::from);
        detail
    });
    match judged {
        Ok(detail) => verdict.detail = detail,
        Err((reason, detail)) => {
            let signed = !verdict.signers.is_empty();
            (verdict.reason, verdict.detail) =
                opaque(verdict.encryption.as_mut(), signed, reason, detail);
            verdict.recipients.clear();
        }
    }
    verdict
}

/// Of an encrypted message (`None`: it is not one), the message to judge:
/// the decrypted signed message with the outer header fields it lacks
/// (see [`decrypt::message`]).
fn open_encrypted(
    policy: &Policy,
    raw: &[u8],
    out: &mut Verdict,
) -> Result<Option<Vec<u8>>, Reject> {
    // A top that does not parse is judge's to report.
    let Some(top) = Entity::parse(raw).ok().filter(decrypt::is_encrypted) else {
        return Ok(None);
    };
    open_entity(policy, &top, raw, out).map(Some)
}

/// Of a signed message whose signed content is itself encrypted (the
/// middle layer of a triple wrap), the message to judge next: the signed
/// message inside, with the outer header fields it lacks. `None`: the
/// signed content is not encrypted.
fn open_signed_encrypted(
    policy: &Policy,
    raw: &[u8],
    out: &mut Verdict,
) -> Result<Option<Vec<u8>>, Reject> {
    let Ok(top) = Entity::parse(raw) else {
        return Ok(None);
    };
    let Ok(container) = smime::extract(&top) else {
        return Ok(None);
    };
    let signed = cms::parse(&container.cms_der).ok();
    let content = match (container.detached_content, &signed) {
        (Some(c), _) => c,
        (None, Some(s)) => s.content.unwrap_or_default(),
        (None, None) => return Ok(None),
    };
    let Some(entity) = Entity::parse(content).ok().filter(decrypt::is_encrypted) else {
        return Ok(None);
    };
    open_entity(policy, &entity, raw, out).map(Some)
}

/// Opens the encrypted `entity` of the message `outer` (as received): the
/// decrypted signed message with the outer header fields it lacks,
/// CRLF-clean and not encrypted again.
fn open_entity(
    policy: &Policy,
    entity: &Entity<'_>,
    outer: &[u8],
    out: &mut Verdict,
) -> Result<Vec<u8>, Reject> {
    let opened = decrypt::open(&policy.gateway.decryption, entity, outer);
    let report = out.encryption.insert(opened.report);
    let inner = opened.content.map_err(reject)?;
    let message = decrypt::message(outer, &inner)?;
    wire::check_data(&message)
        .map_err(|e| (e.problem.reason(), format!("the decrypted message: {e}")))?;
    if Entity::parse(&message).is_ok_and(|e| decrypt::is_encrypted(&e)) {
        return Err((
            Reason::Malformed,
            "the decrypted message is encrypted again; one layer of encryption is opened".into(),
        ));
    }
    report.decrypted_sha256 = Some(hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &message,
    )));
    Ok(message)
}

/// Under AES-CBC, which has no integrity check of its own, a changed
/// ciphertext decrypts to changed content: until a signature has verified,
/// every refusal of what the content is (its padding, its structure, its
/// header fields, its signature) answers `decrypt-failed` alike, so the
/// replies are no padding or format oracle. The real reason stays in the
/// record (`encryption.problem`).
fn opaque(
    enc: Option<&mut EncryptionReport>,
    signed: bool,
    reason: Reason,
    detail: String,
) -> Reject {
    let of_envelope = matches!(
        reason,
        Reason::TemporaryFailure | Reason::TooManyRecipients | Reason::TooLarge
    );
    match enc {
        Some(e) if e.opened && !e.authenticated && !signed && !of_envelope => {
            e.problem = Some(format!("{reason}: {detail}"));
            (
                Reason::DecryptFailed,
                "the message does not decrypt to an intact signed message".into(),
            )
        }
        _ => (reason, detail),
    }
}

/// [`verify_data`] of the message in the file at `path`; a file larger
/// than [`IN_MEMORY_MAX`](crate::store::IN_MEMORY_MAX) is judged as the
/// gateway judges a spooled message, in bounded memory: its lines checked
/// in one streaming pass, then [`verify_spooled`].
pub fn verify_file(
    policy: &Policy,
    fetched: &RevocationSet,
    path: &std::path::Path,
    envelope: &Envelope<'_>,
    at: EvalTime,
) -> std::io::Result<Verdict> {
    let len = std::fs::metadata(path)?.len();
    if len <= crate::store::IN_MEMORY_MAX {
        let raw = std::fs::read(path)?;
        return Ok(verify_data(policy, fetched, &raw, envelope, at));
    }
    let file = std::io::BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
    match wire::check_reader(file)? {
        Err(e)
            if e.problem.reason() == Reason::Smuggling || len <= policy.limits.max_message_size =>
        {
            Ok(refused(e.problem.reason(), e.to_string(), at))
        }
        _ => Ok(verify_spooled(policy, fetched, path, envelope, at)),
    }
}

/// [`verify`] of a message spooled to the file at `path` (a large one,
/// received over SMTP: its lines end in CRLF), in bounded memory.
pub fn verify_spooled(
    policy: &Policy,
    fetched: &RevocationSet,
    path: &std::path::Path,
    envelope: &Envelope<'_>,
    at: EvalTime,
) -> Verdict {
    let read = std::fs::File::open(path).and_then(|f| {
        let len = f.metadata()?.len();
        Ok((f, len))
    });
    let (file, len) = match read {
        Ok(opened) => opened,
        Err(e) => {
            return refused(
                Reason::TemporaryFailure,
                format!("cannot read the spooled message: {e}"),
                at,
            )
        }
    };
    if len > policy.limits.max_message_size {
        let limit = policy.limits.max_message_size;
        return refused(
            Reason::TooLarge,
            format!("message is {len} bytes, the limit is {limit}"),
            at,
        );
    }
    let mut input = std::io::BufReader::with_capacity(256 * 1024, &file);
    let skeleton = match skeleton::read(&mut input, policy.limits.max_header_size) {
        Ok(s) => s,
        Err(e) => {
            let reason = match &e {
                SkeletonError::TooLarge(_) => Reason::TooLarge,
                SkeletonError::Line(_) => Reason::Malformed,
                SkeletonError::Io(_) => Reason::TemporaryFailure,
            };
            return refused(reason, e.to_string(), at);
        }
    };
    let in_file = skeleton
        .signed
        .as_ref()
        .map(|range| InFile { file: &file, range });
    verify_with(
        policy,
        fetched,
        &skeleton.raw,
        envelope,
        at,
        in_file.as_ref(),
    )
}

/// A verdict refusing for `reason` before the message was judged.
fn refused(reason: Reason, detail: String, at: EvalTime) -> Verdict {
    let mut verdict = Verdict::rejected(reason, detail);
    verdict.evaluated_at = at.to_rfc3339();
    verdict
}

/// The signed content of a spooled `multipart/signed`: where it lies in
/// the file, with its SHA-256 taken while the skeleton was read.
struct InFile<'a> {
    file: &'a std::fs::File,
    range: &'a skeleton::SignedRange,
}

impl InFile<'_> {
    fn len(&self) -> u64 {
        self.range.end - self.range.start
    }

    /// The digest of the range: the SHA-256 already taken, another
    /// algorithm's read again from the file in chunks.
    fn digest(&self, alg: DigestAlg) -> std::io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        if alg == DigestAlg::Sha256 {
            return Ok(self.range.sha256.clone());
        }
        let mut ctx = ring::digest::Context::new(alg.ring());
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = self.range.start;
        while at < self.range.end {
            let want = buf.len().min((self.range.end - at) as usize);
            let n = self.file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            ctx.update(&buf[..n]);
            at += n as u64;
        }
        Ok(ctx.finish().as_ref().to_vec())
    }

    /// The bytes of the range, when they may be held ([`skeleton::MAX_HELD`]).
    fn bytes(&self) -> Result<Vec<u8>, Reject> {
        use std::os::unix::fs::FileExt;
        if self.len() > skeleton::MAX_HELD as u64 {
            return Err((
                Reason::TooLarge,
                format!(
                    "a signature without signed attributes covers the content itself; over {}                      bytes of it ({}) are more than the gateway verifies in memory",
                    skeleton::MAX_HELD,
                    self.len()
                ),
            ));
        }
        let mut buf = vec![0u8; self.len() as usize];
        self.file
            .read_exact_at(&mut buf, self.range.start)
            .map_err(|e| unreadable(&e))?;
        Ok(buf)
    }
}

fn unreadable(e: &std::io::Error) -> Reject {
    (
        Reason::TemporaryFailure,
        format!("cannot read the spooled message: {e}"),
    )
}

/// Judges a recorded envelope alone, when the message itself was not kept:
/// the sender's authority and each recipient's route, nothing a signature
/// decides. `sender` is MAIL FROM, or `From:` for the null reverse-path;
/// `kind` the kind recorded for it.
pub fn verify_envelope(
    policy: &Policy,
    sender: &str,
    rcpt_to: &[String],
    kind: Option<&str>,
    at: EvalTime,
) -> Verdict {
    let mut verdict = Verdict::rejected(Reason::Ok, String::new());
    verdict.evaluated_at = at.to_rfc3339();
    let kind = match recorded_kind(policy, kind) {
        Ok(k) => k,
        Err((reason, detail)) => {
            verdict.reason = reason;
            verdict.detail = detail;
            return verdict;
        }
    };
    verdict.kind = kind.map(|k| k.id.clone());
    let Some(authority) = policy.authority_for_address(sender) else {
        verdict.reason = Reason::UnauthorizedDomain;
        verdict.detail = format!("sender <{sender}> is not in a domain of any authority");
        return verdict;
    };
    verdict.authority = Some(authority.id.clone());
    if rcpt_to.len() > policy.limits.max_recipients {
        verdict.reason = Reason::TooManyRecipients;
        verdict.detail = format!(
            "{} recipients; the limit is {}",
            rcpt_to.len(),
            policy.limits.max_recipients
        );
        return verdict;
    }
    for rcpt in rcpt_to {
        match route(policy, sender, rcpt, kind) {
            Ok(r) => verdict.recipients.push(r),
            Err((reason, detail)) => {
                verdict.reason = reason;
                verdict.detail = detail;
                verdict.recipients.clear();
                return verdict;
            }
        }
    }
    verdict.detail = format!("routed from authority {} (envelope only)", authority.id);
    verdict
}

/// The policy's kind for a recorded kind id. One the policy no longer
/// declares counts as a declared kind it does not know (`[kinds] unknown`),
/// unless the policy declares no kinds at all (no kind field is read then).
fn recorded_kind<'p>(policy: &'p Policy, id: Option<&str>) -> Result<Option<&'p Kind>, Reject> {
    let kinds = &policy.kinds;
    match id.map(|id| (id, kinds.get(id))) {
        None => Ok(None),
        Some((_, Some(k))) => Ok(Some(k)),
        Some(_) if kinds.kinds.is_empty() || kinds.unknown == UnknownKind::NoKind => Ok(None),
        Some((id, None)) => Err(unknown_kind(
            kinds,
            format!("the recorded request kind {id:?}"),
        )),
    }
}

/// The refusal of a declared kind (`what`) the policy does not name.
fn unknown_kind(kinds: &crate::policy::KindSettings, what: String) -> Reject {
    let known: Vec<&str> = kinds.kinds.iter().map(|k| k.id.as_str()).collect();
    (
        Reason::UnknownKind,
        format!(
            "{what} names no request kind of the policy (known: {})",
            known.join(", ")
        ),
    )
}

fn judge(
    policy: &Policy,
    fetched: &RevocationSet,
    raw: &[u8],
    envelope: &Envelope<'_>,
    at: EvalTime,
    out: &mut Verdict,
    spooled: Option<&InFile<'_>>,
) -> Result<String, Reject> {
    let limits = &policy.limits;
    check_limits(limits, raw, envelope)?;
    let top = Entity::parse(raw).map_err(reject)?;
    let (from, authority) = check_sender(policy, envelope, &top)?;
    out.authority = Some(authority.id.clone());
    // The container is read now for the kind the signed entity declares;
    // its errors count below, in their order.
    let container = smime::extract(&top);
    let signed = container.as_ref().ok().map(|c| cms::parse(&c.cms_der));
    let entity = match (&container, &signed) {
        (Ok(c), Some(Ok(s))) => signed_content(c, s.content, limits).ok(),
        _ => None,
    };
    let signed_entity = entity.map(|raw| read_signed(&policy.kinds, raw));
    let kind = declared_kind(policy, &top, signed_entity.as_ref())?;
    out.kind = kind.map(|k| k.id.clone());
    let route_sender = envelope.mail_from.unwrap_or(from);
    for rcpt in envelope.rcpt_to {
        out.recipients
            .push(route(policy, route_sender, rcpt, kind)?);
    }

    // Structure, then the signature container.
    // What was parsed already of the tree is not parsed again.
    let mut known: Vec<&Entity<'_>> = Vec::with_capacity(2);
    known.extend(signed_entity.as_ref().and_then(|s| s.entity.as_ref()));
    let mut top_parts = None;
    if let Ok(c) = &container {
        if let Some((parts, signature)) = &c.parsed {
            top_parts = Some(parts.as_slice());
            known.push(signature);
        }
    }
    let known = mime::Known {
        top_parts,
        entities: &known,
    };
    mime::check_depth_known(&top, limits.max_mime_depth, &known).map_err(reject)?;
    let container = match &container {
        Ok(c) => c,
        Err(e) => return Err((Reason::from(e), e.to_string())),
    };
    check_unsigned_text(container, limits)?;
    let signed = match signed {
        Some(Ok(s)) => s,
        Some(Err(e)) => return Err(reject(e)),
        None => cms::parse(&container.cms_der).map_err(reject)?,
    };
    let content = signed_content(container, signed.content, limits)?;

    let certs = &signed.parsed_certificates;
    if let Some(weak) = certs.iter().find_map(|c| c.weakness(limits.min_rsa_bits)) {
        return Err(reject(weak));
    }

    // Every SignerInfo must verify cryptographically.
    let mut signer_certs = Vec::with_capacity(signed.signers.len());
    for (n, signer) in signed.signers.iter().enumerate() {
        let cert = certs
            .iter()
            .find(|c| c.matches(&signer.info.sid))
            .ok_or_else(|| {
                (
                    Reason::UntrustedChain,
                    format!("signer {n}: its certificate is not included in the message"),
                )
            })?;
        let covered = match spooled {
            Some(f) if container.form == Form::Detached => Covered::InFile(f),
            _ => Covered::Bytes(content),
        };
        let report = check_signer(signer, cert, &signed, &covered, container.form, policy, at)?;
        out.signers.push(report);
        signer_certs.push(cert);
    }

    // A signer whose certificate names the From: address must chain to
    // the trust anchors of the authority owning that domain.
    let mut failure: Option<Reject> = None;
    for (n, cert) in signer_certs.iter().enumerate() {
        if !cert.emails.iter().any(|e| same_address(e, from)) {
            continue;
        }
        let mut rev = RevocationCheck::new(fetched, policy.limits.crl);
        let validated = validate_signer(policy, authority, cert, certs, at, &mut rev);
        out.revocation = rev.evidence;
        out.wanted.extend(rev.wants);
        out.path_cas.extend(rev.path_cas);
        match validated.and_then(|path| same_copies(certs, &path).map(|()| path)) {
            Ok(path) => {
                out.signers[n].authority = Some(authority.id.clone());
                out.signers[n].email = cert.emails.iter().find(|e| same_address(e, from)).cloned();
                out.signers[n].chain = path.chain.iter().map(|c| c.subject()).collect();
                return Ok(format!(
                    "signed by <{from}> ({}), chain valid to authority {} ({})",
                    out.signers[n].key_algorithm, authority.id, authority.country
                ));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    Err(failure.unwrap_or_else(|| sender_mismatch(from, &signer_certs)))
}

/// Text outside the signature is refused unless the policy allows it.
fn check_unsigned_text(container: &smime::Envelope<'_>, limits: &Limits) -> Result<(), Reject> {
    match container.unsigned_text() {
        Some((which, text)) if !limits.allow_unsigned_text => Err((
            Reason::Malformed,
            format!(
                "{which} is not signed, and mail clients may show it ({} bytes: {:?}); \
                 refused unless [limits] allow_unsigned_text = true",
                text.len(),
                crate::text::table_cell(&String::from_utf8_lossy(text), 60)
            ),
        )),
        _ => Ok(()),
    }
}

/// The content the signature covers: the signed entity of a detached
/// signature, the encapsulated content of an opaque one.
fn signed_content<'a>(
    container: &smime::Envelope<'a>,
    encapsulated: Option<&'a [u8]>,
    limits: &Limits,
) -> Result<&'a [u8], Reject> {
    match (container.form, container.detached_content, encapsulated) {
        (Form::Detached, Some(c), None) => Ok(c),
        (Form::Detached, _, Some(_)) => Err((
            Reason::Malformed,
            "a detached signature must not encapsulate content".into(),
        )),
        (Form::Opaque, _, Some(c)) => {
            // The CMS wrapper is one level of the message's structure.
            check_depth(c, limits.max_mime_depth.saturating_sub(1))?;
            Ok(c)
        }
        _ => Err((Reason::Unsigned, "the signature covers no content".into())),
    }
}

/// No signer certificate names the `From:` address.
fn sender_mismatch(from: &str, signer_certs: &[&CertInfo<'_>]) -> Reject {
    let names: Vec<String> = signer_certs.iter().flat_map(|c| c.emails.clone()).collect();
    (
        Reason::SenderMismatch,
        format!(
            "From: <{from}> is not an e-mail address of any signer certificate (they name: {})",
            list_or_none(&names)
        ),
    )
}

fn check_limits(limits: &Limits, raw: &[u8], envelope: &Envelope<'_>) -> Result<(), Reject> {
    if raw.len() as u64 > limits.max_message_size {
        return Err((
            Reason::TooLarge,
            format!(
                "message is {} bytes, the limit is {}",
                raw.len(),
                limits.max_message_size
            ),
        ));
    }
    let header_len = mime::header_len(raw);
    if header_len > limits.max_header_size {
        return Err((
            Reason::TooLarge,
            format!(
                "header section is {header_len} bytes, the limit is {}",
                limits.max_header_size
            ),
        ));
    }
    if envelope.rcpt_to.len() > limits.max_recipients {
        return Err((
            Reason::TooManyRecipients,
            format!(
                "{} recipients, the limit is {}",
                envelope.rcpt_to.len(),
                limits.max_recipients
            ),
        ));
    }
    Ok(())
}

/// The `From:` address and its authority, which the envelope sender (when
/// given) must share.
fn check_sender<'p, 'm>(
    policy: &'p Policy,
    envelope: &Envelope<'_>,
    top: &'m Entity<'_>,
) -> Result<(&'m str, &'p Authority), Reject> {
    let envelope_authority = match envelope.mail_from {
        Some(sender) => Some(policy.authority_for_address(sender).ok_or_else(|| {
            (
                Reason::UnauthorizedDomain,
                format!("envelope sender <{sender}> is not in a domain of any authority"),
            )
        })?),
        None => None,
    };
    let from = match top.from.as_slice() {
        [one] if one.contains('@') => one.as_str(),
        [] => {
            return Err((
                Reason::SenderMismatch,
                "the message has no From: address".into(),
            ))
        }
        many => {
            return Err((
                Reason::SenderMismatch,
                format!(
                    "From: must hold exactly one address, found {}: {}",
                    many.len(),
                    many.join(", ")
                ),
            ))
        }
    };
    if let Some(other) = top
        .from_names
        .iter()
        .flat_map(|name| addresses_in(name))
        .find(|a| !a.eq_ignore_ascii_case(from))
    {
        return Err((
            Reason::SenderMismatch,
            format!(
                "the From: display name names another address, {other}, than the sender <{from}>; \
                 mail clients show the name"
            ),
        ));
    }
    let authority = policy.authority_for_address(from).ok_or_else(|| {
        (
            Reason::UnauthorizedDomain,
            format!("From: <{from}> is not in a domain of any authority"),
        )
    })?;
    if let Some(env) = envelope_authority {
        if env.id != authority.id {
            return Err((
                Reason::SenderMismatch,
                format!(
                    "envelope sender <{}> belongs to authority {}, but From: <{from}> to {}",
                    envelope.mail_from.unwrap_or_default(),
                    env.id,
                    authority.id
                ),
            ));
        }
    }
    Ok((from, authority))
}

/// Refuses a message carrying, beside a CA certificate of the validated
/// path, another certificate of the same name (a damaged copy, or a
/// rival): clients that take the message's copy (OpenSSL does) would not
/// validate what emla validated with the policy's.
fn same_copies(certs: &[CertInfo<'_>], path: &trust::ValidPath) -> Result<(), Reject> {
    let cas = path.chain.iter().skip(1).take(path.intermediates.len());
    for ca in cas {
        let subject = &ca.cert.tbs_certificate.subject;
        if certs
            .iter()
            .any(|c| &c.cert.tbs_certificate.subject == subject && c.der != ca.der.as_slice())
        {
            return Err((
                Reason::UntrustedChain,
                format!(
                    "the message carries a certificate named {} that differs from the CA \
                     certificate of the validated chain; a client taking the message's copy \
                     would not validate it",
                    ca.subject()
                ),
            ));
        }
    }
    Ok(())
}

/// The address-like words (`local@domain`) of a display name, with the
/// full-width and small at signs a client renders like `@` read as `@`.
fn addresses_in(name: &str) -> Vec<String> {
    let name = name.replace(['\u{ff20}', '\u{fe6b}'], "@");
    name.split(|c: char| c.is_whitespace() || "<>()[]\"',;:".contains(c))
        .filter(|w| matches!(w.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty()))
        .map(str::to_string)
        .collect()
}

fn check_depth(entity: &[u8], limit: usize) -> Result<(), Reject> {
    mime::check_depth(entity, limit).map(drop).map_err(reject)
}

fn validate_signer(
    policy: &Policy,
    authority: &Authority,
    cert: &CertInfo<'_>,
    message_certs: &[CertInfo<'_>],
    at: EvalTime,
    rev: &mut RevocationCheck<'_>,
) -> Result<trust::ValidPath, Reject> {
    let path = trust::validate(&authority.trust(), cert, message_certs, at, rev).map_err(reject)?;
    // RFC 8550 §4.4: no extKeyUsage, or one with emailProtection or
    // anyExtendedKeyUsage; `require_email_eku` demands emailProtection.
    let strict = policy.limits.require_email_eku;
    let eku_problem = match (cert.email_protection, cert.any_eku) {
        (Some(true), _) => None,
        (None, _) if strict => Some(UsageProblem::NoEku),
        (None, _) => None,
        (Some(false), true) if strict => Some(UsageProblem::AnyEkuOnly),
        (Some(false), true) => None,
        (Some(false), false) => Some(UsageProblem::EkuWithoutEmail),
    };
    let problem =
        eku_problem.or((cert.signing_usage == Some(false)).then_some(UsageProblem::KeyUsage));
    if let Some(problem) = problem {
        return Err(reject(TrustError::SignerUsage {
            subject: cert.subject(),
            problem,
        }));
    }
    Ok(path)
}

/// Local parts compare exactly, domains case-insensitively.
fn same_address(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

/// The kind the message declares: by the signed entity's header fields
/// (those of the message inside, for a wrapped `message/rfc822`), else by
/// the outer header when the policy trusts it. An unknown kind is refused
/// unless the policy says to judge it as declaring none.
/// The signed entity parsed (`None`: it does not parse), with what its
/// header fields declare.
struct SignedEntity<'a, 'p> {
    entity: Option<Entity<'a>>,
    declared: Declared<'p>,
}

/// Parses the signed entity `raw` once, for its kind and the depth check:
/// the kind by its own header fields, or those of the message inside for a
/// wrapped `message/rfc822`.
fn read_signed<'a, 'p>(kinds: &'p KindSettings, raw: &'a [u8]) -> SignedEntity<'a, 'p> {
    let of_fields = |m: &mail_parser::Message<'_>| {
        if kinds.kinds.is_empty() {
            return Declared::None;
        }
        kinds.declared(|name: &str| m.header_raw(name.to_owned()), m.subject())
    };
    let of_raw = |raw: &[u8]| {
        if kinds.kinds.is_empty() {
            return Declared::None;
        }
        mail_parser::MessageParser::new()
            .parse_headers(raw)
            .map_or(Declared::None, |m| of_fields(&m))
    };
    match Entity::parse_and(raw, |m| m.map(of_fields)) {
        Ok((e, _)) if e.content_type == "message/rfc822" => SignedEntity {
            declared: of_raw(e.body()),
            entity: Some(e),
        },
        Ok((e, declared)) => SignedEntity {
            declared: declared.unwrap_or_else(|| of_raw(raw)),
            entity: Some(e),
        },
        Err(_) => SignedEntity {
            entity: None,
            declared: of_raw(raw),
        },
    }
}

fn declared_kind<'p>(
    policy: &'p Policy,
    top: &Entity<'_>,
    signed: Option<&SignedEntity<'_, 'p>>,
) -> Result<Option<&'p Kind>, Reject> {
    let kinds = &policy.kinds;
    if kinds.kinds.is_empty() {
        return Ok(None);
    }
    let mut where_ = "signed";
    let mut declared = signed.map_or(Declared::None, |s| s.declared.clone());
    if declared == Declared::None && kinds.trust_outer_header {
        where_ = "outer";
        declared = read_signed(kinds, top.raw).declared;
    }
    match declared {
        Declared::None => Ok(None),
        Declared::Kind(k) => Ok(Some(k)),
        Declared::Unknown { .. } if kinds.unknown == UnknownKind::NoKind => Ok(None),
        Declared::Unknown { field, value } => Err(unknown_kind(
            kinds,
            format!(
                "the {where_} header field {field}: {:?}",
                crate::text::table_cell(&value, 60)
            ),
        )),
    }
}

fn route(
    policy: &Policy,
    sender: &str,
    rcpt: &str,
    kind: Option<&Kind>,
) -> Result<RecipientRoute, Reject> {
    let of_kind = kind.map_or(String::new(), |k| format!(" ({})", k.id));
    match policy.route(sender, rcpt, kind.map(|k| k.id.as_str())) {
        RouteDecision::Relay { route, authority } => Ok(RecipientRoute {
            recipient: rcpt.to_string(),
            route: Some(route.name.clone()),
            authority: Some(authority.id.clone()),
            next_hop: Some(format!(
                "{}:{}",
                authority.next_hop.host, authority.next_hop.port
            )),
            lane: Some(route.lane_for(kind)),
        }),
        RouteDecision::Reject { route } => Err((
            Reason::RouteDenied,
            format!(
                "route {} refuses <{sender}> to <{rcpt}>{of_kind}: {}",
                route.name, route.reason
            ),
        )),
        RouteDecision::UnknownRecipientDomain => Err((
            Reason::UnauthorizedDomain,
            format!("recipient <{rcpt}> is not in a domain of any authority"),
        )),
        RouteDecision::NoRoute => Err((
            Reason::RouteDenied,
            format!("no route allows <{sender}> to write to <{rcpt}>{of_kind}"),
        )),
    }
}

/// The content a signature covers: in memory, or in a spooled file.
enum Covered<'a> {
    Bytes(&'a [u8]),
    InFile(&'a InFile<'a>),
}

/// Digest, signature and signing-time checks of one SignerInfo.
fn check_signer(
    signer: &Signer,
    cert: &CertInfo<'_>,
    signed: &cms::SignedData<'_>,
    covered: &Covered<'_>,
    form: Form,
    policy: &Policy,
    at: EvalTime,
) -> Result<SignerReport, Reject> {
    let limits = &policy.limits;
    let digest =
        signature::digest_alg(&signer.info.digest_alg.oid, &limits.digests).map_err(reject)?;
    let (alg, alg_name) = signature::signature_alg(signer, cert, digest).map_err(reject)?;
    let sig_value = cms::signature_value(signer);
    let report = SignerReport {
        email: cert.emails.first().cloned(),
        emails: cert.emails.clone(),
        subject: cert.subject(),
        issuer: cert.issuer(),
        serial: cert.serial_hex(),
        sha256: cert.sha256_hex(),
        key_algorithm: cert.key.to_string(),
        signature_algorithm: alg_name,
        signature_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, sig_value)),
        chain: Vec::new(),
        authority: None,
    };
    let who = || {
        report
            .emails
            .first()
            .cloned()
            .unwrap_or_else(|| report.subject.clone())
    };
    match &signer.signed_attrs {
        Some(attrs_der) => {
            let attrs = signer.attributes().map_err(|e| {
                (
                    Reason::from(&e),
                    format!("the signed attributes of {} cannot be read: {e}", who()),
                )
            })?;
            let expected = attrs.message_digest.ok_or_else(|| {
                (
                    Reason::Malformed,
                    "signed attributes lack messageDigest".to_string(),
                )
            })?;
            let actual = match (covered, form) {
                (Covered::Bytes(content), Form::Detached) => {
                    signature::digest_canonical(digest, content)
                }
                (Covered::Bytes(content), Form::Opaque) => signature::digest_plain(digest, content),
                // Spooled lines all end in CRLF: canonical as they are.
                (Covered::InFile(f), _) => f.digest(digest).map_err(|e| unreadable(&e))?,
            };
            if expected != actual.as_slice() {
                return Err((
                    Reason::DigestMismatch,
                    format!(
                        "the {} digest of the signed content differs from the messageDigest signed by {}",
                        digest.name(),
                        who()
                    ),
                ));
            }
            if attrs.content_type != Some(signed.content_type) {
                return Err((
                    Reason::BadSignature,
                    "the contentType attribute does not match the signed content type".into(),
                ));
            }
            signature::verify_signature_of(cert, alg, attrs_der, sig_value).map_err(|e| {
                (
                    Reason::from(&e),
                    format!(
                        "signature of {} over the signed attributes does not verify: {e}",
                        who()
                    ),
                )
            })?;
            if let Some(t) = attrs.signing_time {
                let limit = at.unix() + limits.signing_time_skew.as_secs();
                if t > limit {
                    return Err((
                        Reason::NotYetValid,
                        format!(
                            "signingTime {} is more than {} s after the evaluation time {}",
                            EvalTime::from_unix(t).to_rfc3339(),
                            limits.signing_time_skew.as_secs(),
                            at.to_rfc3339()
                        ),
                    ));
                }
            }
        }
        None => {
            let held;
            let content = match covered {
                Covered::Bytes(content) => *content,
                Covered::InFile(f) => {
                    held = f.bytes()?;
                    held.as_slice()
                }
            };
            let data = match form {
                Form::Detached => signature::canonical(content),
                Form::Opaque => content.into(),
            };
            signature::verify_signature_of(cert, alg, &data, sig_value).map_err(|e| {
                (
                    Reason::from(&e),
                    format!(
                        "signature of {} over the content does not verify: {e}",
                        who()
                    ),
                )
            })?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_yield_their_address_like_words() {
        assert_eq!(
            addresses_in("mallory@justice.fr.example"),
            ["mallory@justice.fr.example"]
        );
        assert_eq!(
            addresses_in("Mallory <mallory@fr.example> (boss)"),
            ["mallory@fr.example"]
        );
        assert_eq!(addresses_in("\"x\"@y,z@w"), ["z@w"]);
        assert_eq!(
            addresses_in("mallory\u{ff20}fr.example"),
            ["mallory@fr.example"]
        );
        assert!(addresses_in("Alice Official").is_empty());
        assert!(addresses_in("Alice @ home").is_empty());
    }

    /// The sample policy's kinds route an envelope judged alone (a replay
    /// of a message whose body was not kept) by its recorded kind.
    #[test]
    fn the_envelope_alone_routes_by_the_recorded_kind() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy");
        let p = crate::policy::load(&dir, EvalTime::now()).unwrap_or_else(|d| panic!("{d:?}"));
        let (aa, bb, mfa) = (
            "clerk@justice.aa.example",
            ["x@justice.bb.example".to_owned()],
            ["envoy@mfa.bb.example".to_owned()],
        );
        let v = verify_envelope(&p, aa, &bb, Some("extradition-request"), EvalTime::now());
        assert_eq!(v.reason, Reason::RouteDenied, "{}", v.detail);
        assert!(
            v.detail.contains("aa-extradition-not-to-bb-central"),
            "{}",
            v.detail
        );
        assert_eq!(v.kind.as_deref(), Some("extradition-request"));
        let v = verify_envelope(&p, aa, &mfa, Some("extradition-request"), EvalTime::now());
        assert_eq!(v.reason, Reason::Ok, "{}", v.detail);
        assert_eq!(
            v.recipients[0].route.as_deref(),
            Some("aa-extradition-to-bb-diplomatic")
        );
        let v = verify_envelope(&p, aa, &bb, None, EvalTime::now());
        assert_eq!(v.reason, Reason::Ok, "{}", v.detail);
        let v = verify_envelope(&p, aa, &bb, Some("provisional-arrest"), EvalTime::now());
        assert_eq!(v.recipients[0].lane, Some(Lane::Urgent));
        // A kind the policy no longer declares is an unknown one.
        let v = verify_envelope(&p, aa, &bb, Some("asylum-request"), EvalTime::now());
        assert_eq!(v.reason, Reason::UnknownKind, "{}", v.detail);
        assert!(
            v.detail
                .starts_with("the recorded request kind \"asylum-request\" names no"),
            "{}",
            v.detail
        );
        let mut lenient = crate::policy::load(&dir, EvalTime::now()).unwrap();
        lenient.kinds.unknown = UnknownKind::NoKind;
        let v = verify_envelope(&lenient, aa, &bb, Some("asylum-request"), EvalTime::now());
        assert_eq!((v.reason, v.kind), (Reason::Ok, None));
        lenient.kinds.kinds.clear();
        lenient.kinds.unknown = UnknownKind::Refuse;
        let v = verify_envelope(&lenient, aa, &bb, Some("mla-request"), EvalTime::now());
        assert_eq!(v.reason, Reason::Ok, "no kinds: none is read");
    }
}

//! RFC 3161 signature timestamps for the gateway's own CMS signatures
//! (receipts, checkpoints), as CAdES-T does it: the TSA stamps SHA-256 of
//! the SignerInfo's signature value and the token travels as the unsigned
//! attribute id-smime-aa-timeStampToken.
//!
//! A token is used only after it is checked: status granted, the imprint
//! and nonce are ours, the policy is the configured one (if any), the
//! token's signature verifies and its signer chains, with extKeyUsage
//! timeStamping, to the configured TSA CA at the token's genTime. Anything
//! else, or a TSA that cannot be reached in time, leaves the signature
//! without a token and says why ([`Stamp`]); it never blocks a signature.

use std::time::Duration;

use der::asn1::ObjectIdentifier;
use ring::rand::SecureRandom;
use rustls_pki_types::CertificateDer;
use webpki::KeyUsage;

use crate::asn1::{write_tlv, Reader};
use crate::clock::EvalTime;
use crate::trust::http::{Http, HttpLimits};

/// id-smime-aa-timeStampToken (RFC 3161 appendix A).
pub const ATTR_TIMESTAMP_TOKEN: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14");
/// id-ct-TSTInfo: the eContentType of a token.
const ID_CT_TSTINFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
/// id-aa-signingCertificate (RFC 2634 §5.4): ESSCertID with SHA-1.
const ATTR_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
/// id-aa-signingCertificateV2 (RFC 5035 §3): ESSCertIDv2, SHA-256 by default.
const ATTR_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
/// id-kp-timeStamping, DER value octets (RFC 3161 §2.3: the only EKU).
const TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];
/// A TimeStampResp is a token plus a status: a few KiB.
const MAX_RESPONSE: u64 = 256 * 1024;

/// A checked timestamp token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The TimeStampToken (a CMS ContentInfo), DER, as the TSA sent it.
    pub der: Vec<u8>,
    /// genTime, RFC 3339 UTC (whole seconds).
    pub gen_time: String,
    /// The token's serialNumber, hex.
    pub serial: String,
    /// The TSA certificate's subject DN.
    pub tsa: String,
    /// The TSA policy the token was issued under.
    pub policy: String,
}

/// What asking for a token brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stamp {
    /// A token that passed every check.
    Granted(Token),
    /// The TSA could not be reached, timed out, or answered with an HTTP
    /// error or a status other than granted.
    Unavailable(String),
    /// The TSA answered with something that fails a check (another
    /// imprint, an untrusted signer, a broken signature…): not used.
    Refused(String),
}

impl Stamp {
    /// The token's DER, when granted.
    pub fn token(&self) -> Option<&[u8]> {
        match self {
            Stamp::Granted(t) => Some(&t.der),
            _ => None,
        }
    }
}

/// A time-stamping authority: where it is, whom to trust for its tokens.
#[derive(Clone, Debug)]
pub struct Tsa {
    url: String,
    ca: Vec<CertificateDer<'static>>,
    policy: Option<ObjectIdentifier>,
    http: Http,
    unavailable: crate::config::OnUnavailable,
}

impl Tsa {
    /// A TSA at `url` whose tokens must chain to `ca`, under `policy` if
    /// given; every request is bounded by `timeout` in all.
    pub fn new(
        url: &str,
        ca: Vec<CertificateDer<'static>>,
        policy: Option<ObjectIdentifier>,
        timeout: Duration,
    ) -> Result<Tsa, String> {
        if ca.is_empty() {
            return Err("the TSA CA file holds no certificate".into());
        }
        let http = Http::new(HttpLimits {
            max_bytes: MAX_RESPONSE,
            connect_timeout: timeout,
            timeout,
            max_redirects: 0,
        })
        .map_err(|e| e.to_string())?;
        Ok(Tsa {
            url: url.to_owned(),
            ca,
            policy,
            http,
            unavailable: crate::config::OnUnavailable::Send,
        })
    }

    /// The TSA of `[evidence]`, its CA file read (errors name the file).
    pub fn from_config(c: &crate::config::TsaConfig) -> Result<Tsa, String> {
        let ca = crate::pem::read_certificates(&c.ca).map_err(|e| e.to_string())?;
        let policy = c
            .policy
            .as_deref()
            .map(ObjectIdentifier::new)
            .transpose()
            .map_err(|e| format!("[evidence] tsa_policy: {e}"))?;
        Tsa::new(&c.url, ca, policy, c.timeout)
            .map(|t| t.on_unavailable(c.unavailable))
            .map_err(|e| format!("[evidence] {e}"))
    }

    /// The same TSA, receipts doing `u` when it gives no token.
    pub fn on_unavailable(mut self, u: crate::config::OnUnavailable) -> Tsa {
        self.unavailable = u;
        self
    }

    /// What a receipt does when this TSA gives no token.
    pub fn unavailable(&self) -> crate::config::OnUnavailable {
        self.unavailable
    }

    /// The TSA of `[evidence]`, if one is configured.
    pub fn configured(c: &crate::config::EvidenceConfig) -> Result<Option<Tsa>, String> {
        c.tsa.as_ref().map(Tsa::from_config).transpose()
    }

    /// The TSA's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A token over SHA-256 of `signature` (a SignerInfo's signature
    /// value), checked; never fails, says why there is none instead.
    pub async fn stamp(&self, signature: &[u8]) -> Stamp {
        let imprint = sha256(signature);
        let mut nonce = [0u8; 8];
        if ring::rand::SystemRandom::new().fill(&mut nonce).is_err() {
            return Stamp::Unavailable("the system random number generator failed".into());
        }
        nonce[0] &= 0x7f; // a positive INTEGER
        nonce[0] |= 0x01; // and minimal: no leading zero octet
        let body = request(&imprint, self.policy.as_ref(), &nonce);
        let fetched = match self
            .http
            .post(&self.url, "application/timestamp-query", body)
            .await
        {
            Ok(f) => f,
            Err(e) => return Stamp::Unavailable(e.to_string()),
        };
        match check_response(&fetched.bytes) {
            Err(Problem::Status(s)) => Stamp::Unavailable(s),
            Err(Problem::Invalid(e)) => Stamp::Refused(e),
            Ok(token) => match check_token(&token, &imprint, self.policy.as_ref(), &self.ca)
                .and_then(|t| check_nonce(&token, &nonce).map(|()| t))
            {
                Ok(t) => Stamp::Granted(t),
                Err(e) => Stamp::Refused(e),
            },
        }
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 has 32 octets")
}

/// A DER TimeStampReq (RFC 3161 §2.4.1) for a SHA-256 `imprint`, asking
/// for the TSA's certificate in the token.
pub fn request(imprint: &[u8], policy: Option<&ObjectIdentifier>, nonce: &[u8]) -> Vec<u8> {
    let mut alg = oid(&OID_SHA256);
    alg.extend_from_slice(&[0x05, 0x00]);
    let mut mi = tlv(0x30, &alg);
    write_tlv(&mut mi, 0x04, imprint);
    let mut req = tlv(0x02, &[1]);
    write_tlv(&mut req, 0x30, &mi);
    if let Some(p) = policy {
        req.extend_from_slice(&oid(p));
    }
    write_tlv(&mut req, 0x02, nonce);
    write_tlv(&mut req, 0x01, &[0xff]); // certReq TRUE
    tlv(0x30, &req)
}

/// Why a response gave no token.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    /// A well-formed refusal (status rejection, waiting, …).
    Status(String),
    /// Not a TimeStampResp.
    Invalid(String),
}

/// The token of a TimeStampResp (RFC 3161 §2.4.2) whose status is granted
/// (or grantedWithMods).
fn check_response(resp: &[u8]) -> Result<Vec<u8>, Problem> {
    let bad = |e: crate::asn1::Asn1Error| Problem::Invalid(format!("not a TimeStampResp: {}", e.0));
    let outer = Reader::new(resp)
        .expect(0x30, "not a SEQUENCE")
        .map_err(bad)?;
    let mut r = Reader::new(outer.value);
    let info = r
        .expect(0x30, "PKIStatusInfo is not a SEQUENCE")
        .map_err(bad)?;
    let mut s = Reader::new(info.value);
    let status = s.expect(0x02, "status is not an INTEGER").map_err(bad)?;
    let mut text = Vec::new();
    if s.peek_tag() == Some(0x30) {
        let strings = s.read().map_err(bad)?;
        let mut t = Reader::new(strings.value);
        while let Ok(one) = t.read() {
            text.push(String::from_utf8_lossy(one.value).into_owned());
        }
    }
    let code = match status.value {
        [c] => *c,
        _ => 0xff,
    };
    if code > 1 {
        let name = match code {
            2 => "rejection",
            3 => "waiting",
            4 => "revocationWarning",
            5 => "revocationNotification",
            _ => "unknown",
        };
        let text = if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.join("; "))
        };
        return Err(Problem::Status(format!(
            "the TSA answered status {name}{text}"
        )));
    }
    let token = r
        .expect(0x30, "a granted response without timeStampToken")
        .map_err(bad)?;
    Ok(token.raw.to_vec())
}

/// Whether the token answers the request with `nonce` (after
/// [`check_token`], so a foreign imprint is named as such first).
fn check_nonce(token: &[u8], nonce: &[u8]) -> Result<(), String> {
    if tst_info(token)?.nonce.as_deref() != Some(nonce) {
        return Err("the token's nonce is not the request's (a replayed or foreign answer)".into());
    }
    Ok(())
}

/// The fields of a TSTInfo (RFC 3161 §2.4.2) that are checked or reported.
struct TstInfo {
    policy: ObjectIdentifier,
    hash_alg: ObjectIdentifier,
    imprint: Vec<u8>,
    serial: Vec<u8>,
    /// genTime's first 14 digits, YYYYMMDDHHMMSS.
    gen_time: String,
    nonce: Option<Vec<u8>>,
}

/// The TSTInfo inside a token, unchecked.
fn tst_info(token: &[u8]) -> Result<TstInfo, String> {
    let signed = super::cms::parse(token).map_err(|e| format!("not a CMS token: {e}"))?;
    if signed.content_type != ID_CT_TSTINFO {
        return Err(format!(
            "the token holds {}, not a TSTInfo",
            signed.content_type
        ));
    }
    let content = signed.content.ok_or("the token has no TSTInfo")?;
    parse_tst_info(content).map_err(|e| format!("malformed TSTInfo: {}", e.0))
}

fn parse_tst_info(der: &[u8]) -> Result<TstInfo, crate::asn1::Asn1Error> {
    let seq = Reader::new(der).expect(0x30, "not a SEQUENCE")?;
    let mut r = Reader::new(seq.value);
    r.expect(0x02, "version is not an INTEGER")?;
    let policy = r.expect(0x06, "policy is not an OID")?;
    let mi = r.expect(0x30, "messageImprint is not a SEQUENCE")?;
    let mut m = Reader::new(mi.value);
    let alg = m.expect(0x30, "hashAlgorithm is not a SEQUENCE")?;
    let alg_oid = Reader::new(alg.value).expect(0x06, "hashAlgorithm has no OID")?;
    let imprint = m.expect(0x04, "hashedMessage is not an OCTET STRING")?;
    let serial = r.expect(0x02, "serialNumber is not an INTEGER")?;
    let gen = r.expect(0x18, "genTime is not a GeneralizedTime")?;
    let mut nonce = None;
    while !r.is_empty() {
        let t = r.read()?;
        if t.tag == 0x02 {
            nonce = Some(t.value.to_vec());
        }
    }
    let bad_oid = |_| crate::asn1::Asn1Error("an OID does not parse");
    let gen_time = std::str::from_utf8(gen.value)
        .ok()
        .filter(|g| {
            g.len() >= 15 && g[..14].bytes().all(|b| b.is_ascii_digit()) && g.ends_with('Z')
        })
        .ok_or(crate::asn1::Asn1Error("genTime is not YYYYMMDDHHMMSS[.f]Z"))?;
    Ok(TstInfo {
        policy: ObjectIdentifier::from_bytes(policy.value).map_err(bad_oid)?,
        hash_alg: ObjectIdentifier::from_bytes(alg_oid.value).map_err(bad_oid)?,
        imprint: imprint.value.to_vec(),
        serial: serial.value.to_vec(),
        gen_time: gen_time[..14].to_owned(),
        nonce,
    })
}

/// Checks a TimeStampToken (DER ContentInfo) over the SHA-256 `imprint`:
/// the TSTInfo's imprint and (if `policy`) its policy, the token's
/// signature, and its signer's path to one of `ca` with extKeyUsage
/// timeStamping at genTime.
pub fn check_token(
    token: &[u8],
    imprint: &[u8],
    policy: Option<&ObjectIdentifier>,
    ca: &[CertificateDer<'_>],
) -> Result<Token, String> {
    let tst = tst_info(token)?;
    if tst.hash_alg != OID_SHA256 || tst.imprint != imprint {
        return Err(format!(
            "the token stamps another imprint ({} {}), not SHA-256 of this signature",
            tst.hash_alg,
            hex::encode(&tst.imprint)
        ));
    }
    if let Some(p) = policy {
        if tst.policy != *p {
            return Err(format!(
                "the token's policy is {}, not the configured {p}",
                tst.policy
            ));
        }
    }
    let at = gen_time_unix(&tst.gen_time).ok_or("genTime is not a valid date")?;
    let signed = super::cms::parse(token).map_err(|e| format!("not a CMS token: {e}"))?;
    let content = signed.content.unwrap_or_default();
    let usage = KeyUsage::required(TIME_STAMPING);
    let signer = super::check::only_signer(&signed, content, ca, at, usage, "timestamp token")?;
    check_ess(&signed, &signer.cert)?;
    Ok(Token {
        der: token.to_vec(),
        gen_time: at.to_rfc3339(),
        serial: hex::encode(&tst.serial),
        tsa: signer.subject,
        policy: tst.policy.to_string(),
    })
}

/// The token's signed ESS signingCertificate or signingCertificateV2
/// (RFC 3161 §2.4.1 demands one; RFC 5816 allows V2) must name `cert`,
/// the certificate whose key verified the token: otherwise another
/// certificate with the same key, issuer and serial, or a substituted
/// one, would pass for the TSA's.
fn check_ess(signed: &super::cms::SignedData<'_>, cert: &[u8]) -> Result<(), String> {
    let attrs = signed
        .signers
        .first()
        .and_then(|s| s.info.signed_attrs.as_ref())
        .ok_or("the token has no signed attributes")?;
    let mut found = None;
    for attr in attrs.iter() {
        let v2 = attr.oid == ATTR_SIGNING_CERTIFICATE_V2;
        if !(v2 || attr.oid == ATTR_SIGNING_CERTIFICATE) {
            continue;
        }
        let [value] = attr.values.as_slice() else {
            return Err("the token's ESS signingCertificate has not exactly one value".into());
        };
        if found.is_some() {
            return Err("the token has two ESS signingCertificate attributes".into());
        }
        let der = der::Encode::to_der(value).map_err(|e| format!("ESS signingCertificate: {e}"))?;
        found = Some(
            first_cert_id(&der, v2)
                .map_err(|e| format!("malformed ESS signingCertificate: {}", e.0))?,
        );
    }
    let (alg, hash) = found.ok_or(
        "the token lacks the ESS signingCertificate attribute that names the TSA certificate",
    )?;
    let ours = cert_hash(&alg, cert)
        .ok_or_else(|| format!("the token's ESS signingCertificate uses hash {alg}"))?;
    if ours != hash {
        return Err(format!(
            "the token's ESS signingCertificate names another certificate ({alg} {}) than the \
             one that signed it ({})",
            hex::encode(&hash),
            hex::encode(&ours)
        ));
    }
    Ok(())
}

/// The hash algorithm and certHash of the first ESSCertID(v2) of a
/// SigningCertificate(V2): the signer's (RFC 2634 §5.4.1).
fn first_cert_id(
    der: &[u8],
    v2: bool,
) -> Result<(ObjectIdentifier, Vec<u8>), crate::asn1::Asn1Error> {
    let sc = Reader::new(der).expect(0x30, "not a SEQUENCE")?;
    let certs = Reader::new(sc.value).expect(0x30, "certs is not a SEQUENCE")?;
    let id = Reader::new(certs.value).expect(0x30, "no ESSCertID")?;
    let mut r = Reader::new(id.value);
    let mut alg = if v2 { OID_SHA256 } else { OID_SHA1 };
    if v2 && r.peek_tag() == Some(0x30) {
        let a = r.read()?;
        let o = Reader::new(a.value).expect(0x06, "hashAlgorithm has no OID")?;
        alg = ObjectIdentifier::from_bytes(o.value)
            .map_err(|_| crate::asn1::Asn1Error("an OID does not parse"))?;
    }
    let hash = r.expect(0x04, "certHash is not an OCTET STRING")?;
    Ok((alg, hash.value.to_vec()))
}

/// `cert` hashed with `alg`, if it is one ESS uses.
fn cert_hash(alg: &ObjectIdentifier, cert: &[u8]) -> Option<Vec<u8>> {
    use ring::digest;
    let known = [
        (OID_SHA1, &digest::SHA1_FOR_LEGACY_USE_ONLY),
        (OID_SHA256, &digest::SHA256),
        (OID_SHA384, &digest::SHA384),
        (OID_SHA512, &digest::SHA512),
    ];
    let (_, a) = known.iter().find(|(o, _)| o == alg)?;
    Some(digest::digest(a, cert).as_ref().to_vec())
}

/// YYYYMMDDHHMMSS (UTC) as an evaluation time.
fn gen_time_unix(g: &str) -> Option<EvalTime> {
    let n = |a: usize, b: usize| g.get(a..b)?.parse::<u16>().ok();
    let (y, mo, d, h, mi, s) = (
        n(0, 4)?,
        n(4, 6)?,
        n(6, 8)?,
        n(8, 10)?,
        n(10, 12)?,
        n(12, 14)?,
    );
    let dt = der::DateTime::new(y, mo as u8, d as u8, h as u8, mi as u8, s as u8).ok()?;
    Some(EvalTime::from_unix(dt.unix_duration().as_secs()))
}

/// The timestamp token in a CMS signature's first SignerInfo
/// (id-smime-aa-timeStampToken), DER, if it has one.
pub fn token_of(signature_der: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let signed = super::cms::parse(signature_der).map_err(|e| format!("not CMS: {e}"))?;
    let signer = signed.signers.first().ok_or("no SignerInfo")?;
    let Some(attrs) = &signer.info.unsigned_attrs else {
        return Ok(None);
    };
    for attr in attrs.iter() {
        if attr.oid == ATTR_TIMESTAMP_TOKEN {
            let value = attr.values.get(0).ok_or("an empty timeStampToken")?;
            return der::Encode::to_der(value)
                .map(Some)
                .map_err(|e| format!("timeStampToken: {e}"));
        }
    }
    Ok(None)
}

/// The signature value of a CMS signature's only SignerInfo: what its
/// timestamp covers.
pub fn signature_value_of(signature_der: &[u8]) -> Result<Vec<u8>, String> {
    let signed = super::cms::parse(signature_der).map_err(|e| format!("not CMS: {e}"))?;
    let [signer] = signed.signers.as_slice() else {
        return Err(format!(
            "{} SignerInfos; a gateway signature has one",
            signed.signers.len()
        ));
    };
    Ok(super::cms::signature_value(signer).to_vec())
}

/// A CMS signature (DER ContentInfo with one SignerInfo) with `token`
/// added as its unsigned attribute id-smime-aa-timeStampToken, the rest
/// unchanged: the signature stays valid, since unsigned attributes are
/// outside what it covers. For signatures made without a token (the TSA
/// was down); one that already has a token is refused.
pub fn add_token(signature_der: &[u8], token: &[u8]) -> Result<Vec<u8>, String> {
    if token_of(signature_der)?.is_some() {
        return Err("the signature already has a timestamp token".into());
    }
    let bad = |e: crate::asn1::Asn1Error| format!("not a CMS signature: {}", e.0);
    let ci = Reader::new(signature_der)
        .expect(0x30, "ContentInfo")
        .map_err(bad)?;
    let mut r = Reader::new(ci.value);
    let content_type = r.expect(0x06, "contentType").map_err(bad)?;
    let explicit = r.expect(0xa0, "content").map_err(bad)?;
    let sd = Reader::new(explicit.value)
        .expect(0x30, "SignedData")
        .map_err(bad)?;
    let mut fields = Vec::new();
    let mut r = Reader::new(sd.value);
    while !r.is_empty() {
        fields.push(r.read().map_err(bad)?);
    }
    let last = fields
        .pop()
        .filter(|f| f.tag == 0x31)
        .ok_or("no SignerInfos")?;
    let info = Reader::new(last.value)
        .expect(0x30, "SignerInfo")
        .map_err(bad)?;
    if info.raw.len() != last.value.len() {
        return Err("more than one SignerInfo".into());
    }
    let mut attr = oid(&ATTR_TIMESTAMP_TOKEN);
    write_tlv(&mut attr, 0x31, token);
    let attr = tlv(0x30, &attr);
    let mut signer = Vec::with_capacity(info.value.len() + attr.len() + 8);
    let mut r = Reader::new(info.value);
    let mut unsigned_seen = false;
    while !r.is_empty() {
        let f = r.read().map_err(bad)?;
        if f.tag == 0xa1 {
            unsigned_seen = true;
            write_tlv(&mut signer, 0xa1, &[f.value, attr.as_slice()].concat());
        } else {
            signer.extend_from_slice(f.raw);
        }
    }
    if !unsigned_seen {
        write_tlv(&mut signer, 0xa1, &attr);
    }
    let mut signed_data: Vec<u8> = fields.iter().flat_map(|f| f.raw.iter().copied()).collect();
    write_tlv(&mut signed_data, 0x31, &tlv(0x30, &signer));
    let mut content_info = content_type.raw.to_vec();
    write_tlv(&mut content_info, 0xa0, &tlv(0x30, &signed_data));
    Ok(tlv(0x30, &content_info))
}

fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 4);
    write_tlv(&mut out, tag, value);
    out
}

fn oid(o: &ObjectIdentifier) -> Vec<u8> {
    tlv(0x06, o.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_der_with_sha256_and_cert_req() {
        let req = request(&[7u8; 32], None, &[1, 2]);
        let outer = Reader::new(&req).expect(0x30, "x").unwrap();
        let mut r = Reader::new(outer.value);
        assert_eq!(r.expect(0x02, "v").unwrap().value, [1]);
        let mi = r.expect(0x30, "mi").unwrap();
        assert!(memchr::memmem::find(mi.value, OID_SHA256.as_bytes()).is_some());
        assert_eq!(r.expect(0x02, "nonce").unwrap().value, [1, 2]);
        assert_eq!(r.expect(0x01, "certReq").unwrap().value, [0xff]);
        assert!(r.is_empty());
    }

    #[test]
    fn refusals_name_the_status() {
        // TimeStampResp { PKIStatusInfo { rejection, ["bad alg"] } }
        let text = tlv(0x30, &tlv(0x0c, b"bad alg"));
        let info = tlv(0x30, &[tlv(0x02, &[2]), text].concat());
        let resp = tlv(0x30, &info);
        let e = check_response(&resp).unwrap_err();
        assert_eq!(
            e,
            Problem::Status("the TSA answered status rejection: bad alg".into())
        );
        assert!(matches!(
            check_response(b"garbage"),
            Err(Problem::Invalid(_))
        ));
    }

    #[test]
    fn ess_cert_ids_v1_and_v2() {
        let cert = b"a certificate";
        let id = |alg: Option<&ObjectIdentifier>, hash: &[u8]| {
            let mut v = alg.map_or_else(Vec::new, |a| tlv(0x30, &oid(a)));
            write_tlv(&mut v, 0x04, hash);
            // SigningCertificate(V2) { certs { ESSCertID(v2) } }
            tlv(0x30, &tlv(0x30, &tlv(0x30, &v)))
        };
        let sha1 = cert_hash(&OID_SHA1, cert).unwrap();
        let (alg, hash) = first_cert_id(&id(None, &sha1), false).unwrap();
        assert_eq!((alg, hash), (OID_SHA1, sha1));
        // V2 without hashAlgorithm: SHA-256 (RFC 5035's DEFAULT).
        let sha256 = cert_hash(&OID_SHA256, cert).unwrap();
        let (alg, _) = first_cert_id(&id(None, &sha256), true).unwrap();
        assert_eq!(alg, OID_SHA256);
        let sha512 = cert_hash(&OID_SHA512, cert).unwrap();
        let (alg, hash) = first_cert_id(&id(Some(&OID_SHA512), &sha512), true).unwrap();
        assert_eq!((alg, hash.len()), (OID_SHA512, 64));
        assert!(cert_hash(&ATTR_TIMESTAMP_TOKEN, cert).is_none());
        assert!(first_cert_id(b"\x30\x00", true).is_err());
    }

    #[test]
    fn gen_time_reads_whole_seconds() {
        let t = gen_time_unix("20261201123456").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T12:34:56Z");
        assert!(gen_time_unix("20261301000000").is_none());
    }
}

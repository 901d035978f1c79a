//! Loading an authority's trust anchors, intermediate CAs and CRLs from the
//! files and directories its policy file names, with every check the policy
//! owes them: parsable, CA certificates, valid at the evaluation time, CRLs
//! signed by one of the authority's CAs.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use der::asn1::{AnyRef, BitStringRef};
use der::oid::AssociatedOid;
use der::{Decode, Encode, Reader, SliceReader};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor};
use webpki::OwnedCertRevocationList;
use x509_cert::crl::CertificateList;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::files::{io_reason, At, FileSet, Source};
use super::{Crl, Diagnostic};
use crate::clock::EvalTime;

/// File name extensions taken from a directory of certificates.
const CERT_EXTS: &[&str] = &["pem", "crt", "cer", "der"];
/// File name extensions taken from a directory of CRLs.
const CRL_EXTS: &[&str] = &["crl", "pem"];

/// What a configured certificate is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A trust anchor (`trust_anchors`).
    Anchor,
    /// A CA that is not an anchor (`intermediates`).
    Intermediate,
}

/// A CA certificate that passed every check, with its subject for matching
/// CRL issuers.
pub(super) struct CaCert {
    /// The certificate.
    pub der: CertificateDer<'static>,
    subject: Name,
    /// DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// keyUsage is absent or allows cRLSign.
    crl_sign: bool,
}

/// Where a configured path was written, for diagnostics and resolution.
pub(super) struct Ctx<'a> {
    /// The policy directory relative paths resolve against.
    pub dir: &'a Path,
    /// The policy file naming the paths.
    pub src: &'a Source,
    /// The evaluation time.
    pub now: EvalTime,
}

/// One file to read: the name shown in messages and hashed into the policy
/// version, and where it is on disk.
struct Entry {
    shown: String,
    path: PathBuf,
}

impl Ctx<'_> {
    /// Expands a configured path (a file, or a directory whose files with
    /// one of `exts` are taken in name order), reporting what cannot be read.
    fn expand(
        &self,
        key: &str,
        written: &At<String>,
        exts: &[&str],
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<Entry> {
        let (text, span) = written;
        let path = self.dir.join(text);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                diags.push(self.src.diag(
                    span,
                    format!("cannot read {key} entry {text:?}: {}", io_reason(&e)),
                ));
                return Vec::new();
            }
        };
        if !meta.is_dir() {
            return vec![Entry {
                shown: text.clone(),
                path,
            }];
        }
        let listing = match fs::read_dir(&path) {
            Ok(l) => l,
            Err(e) => {
                diags.push(self.src.diag(
                    span,
                    format!("cannot read {key} directory {text:?}: {}", io_reason(&e)),
                ));
                return Vec::new();
            }
        };
        let mut names: Vec<String> = listing
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                Path::new(n)
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| exts.contains(&x.to_ascii_lowercase().as_str()))
            })
            .collect();
        names.sort();
        if names.is_empty() {
            let wanted: Vec<String> = exts.iter().map(|x| format!("*.{x}")).collect();
            diags.push(self.src.diag(
                span,
                format!(
                    "{key} directory {text:?} holds no {} files",
                    wanted.join(", ")
                ),
            ));
        }
        names
            .into_iter()
            .map(|n| Entry {
                shown: Path::new(text).join(&n).display().to_string(),
                path: path.join(n),
            })
            .collect()
    }

    /// Reads one file, recording it for the policy version.
    fn read(
        &self,
        key: &str,
        entry: &Entry,
        span: &Range<usize>,
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Vec<u8>> {
        match fs::read(&entry.path) {
            Ok(bytes) => {
                files.add(entry.shown.clone(), &bytes);
                Some(bytes)
            }
            Err(e) => {
                diags.push(self.src.diag(
                    span,
                    format!(
                        "cannot read {key} entry {:?}: {}",
                        entry.shown,
                        io_reason(&e)
                    ),
                ));
                None
            }
        }
    }

    /// Loads CA certificates from the configured paths of `key`. Returns the
    /// certificates that passed every check and whether all of them did.
    pub fn load_cas(
        &self,
        key: &str,
        role: Role,
        paths: &[At<String>],
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
        notes: &mut Vec<Diagnostic>,
    ) -> (Vec<CaCert>, bool) {
        let before = diags.len();
        let mut out = Vec::new();
        for written in paths {
            let span = &written.1;
            for entry in self.expand(key, written, CERT_EXTS, diags) {
                let Some(bytes) = self.read(key, &entry, span, files, diags) else {
                    continue;
                };
                let ders = match decode::<CertificateDer<'static>>(&bytes) {
                    Ok(d) if !d.is_empty() => d,
                    Ok(_) => {
                        diags.push(
                            self.src
                                .diag(span, format!("{:?} holds no certificate", entry.shown)),
                        );
                        continue;
                    }
                    Err(e) => {
                        diags.push(self.src.diag(
                            span,
                            format!("cannot parse certificate in {:?}: {e}", entry.shown),
                        ));
                        continue;
                    }
                };
                for der in ders {
                    if let Some(ca) = self.check_ca(role, &entry.shown, der, span, diags, notes) {
                        out.push(ca);
                    }
                }
            }
        }
        (out, diags.len() == before)
    }

    /// Checks one configured CA certificate. A self-signed version 1
    /// certificate (which cannot carry basicConstraints) is accepted as a
    /// trust anchor, with a note.
    fn check_ca(
        &self,
        role: Role,
        shown: &str,
        der: Vec<u8>,
        span: &Range<usize>,
        diags: &mut Vec<Diagnostic>,
        notes: &mut Vec<Diagnostic>,
    ) -> Option<CaCert> {
        let cert = match Certificate::from_der(&der) {
            Ok(c) => c,
            Err(e) => {
                diags.push(
                    self.src
                        .diag(span, format!("cannot parse certificate in {shown:?}: {e}")),
                );
                return None;
            }
        };
        let tbs = &cert.tbs_certificate;
        let subject = tbs.subject.to_string();
        let what = format!("certificate {subject:?} in {shown:?}");
        let mut ok = true;
        let v1 = tbs.version == x509_cert::certificate::Version::V1;
        let v1_anchor = role == Role::Anchor && v1 && self_signed(&der, &cert);
        if is_ca(&cert) {
            // A CA certificate.
        } else if v1_anchor {
            notes.push(self.src.diag(
                span,
                format!(
                    "{what} is a self-signed version 1 certificate (no basicConstraints); \
                     it is accepted as a trust anchor only, never as an intermediate"
                ),
            ));
        } else {
            let role = match role {
                Role::Anchor => "a trust anchor",
                Role::Intermediate => "an intermediate",
            };
            let v1_hint = if v1 {
                " (a version 1 certificate is accepted only as a self-signed trust anchor)"
            } else {
                ""
            };
            diags.push(self.src.diag(
                span,
                format!("{what} is not a CA certificate (basicConstraints cA is not set); {role} must be a CA{v1_hint}"),
            ));
            ok = false;
        }
        let not_before = tbs.validity.not_before.to_unix_duration().as_secs();
        let not_after = tbs.validity.not_after.to_unix_duration().as_secs();
        let now = self.now.unix();
        if now < not_before {
            diags.push(self.src.diag(
                span,
                format!(
                    "{what} is not valid before {}",
                    EvalTime::from_unix(not_before).to_rfc3339()
                ),
            ));
            ok = false;
        } else if now > not_after {
            diags.push(self.src.diag(
                span,
                format!(
                    "{what} expired at {}",
                    EvalTime::from_unix(not_after).to_rfc3339()
                ),
            ));
            ok = false;
        }
        let der = CertificateDer::from(der);
        let usable = match role {
            Role::Anchor => webpki::anchor_from_trusted_cert(&der).map(|_| ()),
            Role::Intermediate => webpki::EndEntityCert::try_from(&der).map(|_| ()),
        };
        if let (Err(e), true) = (usable, ok) {
            diags.push(self.src.diag(
                span,
                format!("{what} cannot be used for path validation: {e}"),
            ));
            ok = false;
        }
        let spki = tbs.subject_public_key_info.to_der().unwrap_or_default();
        let crl_sign = match tbs.get::<KeyUsage>() {
            Ok(Some((_, ku))) => ku.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        ok.then(|| CaCert {
            der,
            subject: tbs.subject.clone(),
            spki,
            crl_sign,
        })
    }

    /// Loads the CRLs of the configured paths, each required to be signed by
    /// one of `cas` (checked only when `cas_complete`: otherwise a CA that
    /// failed to load would make every CRL it signs a second problem).
    pub fn load_crls(
        &self,
        paths: &[At<String>],
        cas: &[&CaCert],
        cas_complete: bool,
        authority: &str,
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<Crl> {
        let mut out = Vec::new();
        for written in paths {
            let span = &written.1;
            for entry in self.expand("crls", written, CRL_EXTS, diags) {
                let Some(bytes) = self.read("crls", &entry, span, files, diags) else {
                    continue;
                };
                let ders = match decode::<CertificateRevocationListDer<'static>>(&bytes) {
                    Ok(d) if !d.is_empty() => d,
                    Ok(_) => {
                        diags.push(
                            self.src
                                .diag(span, format!("{:?} holds no CRL", entry.shown)),
                        );
                        continue;
                    }
                    Err(e) => {
                        diags.push(
                            self.src
                                .diag(span, format!("cannot parse CRL in {:?}: {e}", entry.shown)),
                        );
                        continue;
                    }
                };
                for der in ders {
                    let shown = &entry.shown;
                    let crl = match CertificateList::from_der(&der) {
                        Ok(c) => c,
                        Err(e) => {
                            diags.push(
                                self.src
                                    .diag(span, format!("cannot parse CRL in {shown:?}: {e}")),
                            );
                            continue;
                        }
                    };
                    let issuer = &crl.tbs_cert_list.issuer;
                    let signer = cas.iter().find(|ca| signed_by(&der, issuer, ca));
                    let signer_spki = match signer {
                        Some(ca) => ca.spki.clone(),
                        None if !cas_complete => Vec::new(),
                        None => {
                            diags.push(self.src.diag(
                                span,
                                format!(
                                    "CRL in {shown:?} (issuer {:?}) is not signed by any CA configured for authority {authority:?}",
                                    issuer.to_string()
                                ),
                            ));
                            continue;
                        }
                    };
                    if signer.is_some_and(|ca| !ca.crl_sign) {
                        diags.push(self.src.diag(
                            span,
                            format!(
                                "CRL in {shown:?} is signed by {:?}, whose keyUsage does not allow cRLSign",
                                issuer.to_string()
                            ),
                        ));
                        continue;
                    }
                    let Some(next_update) = crl.tbs_cert_list.next_update else {
                        diags.push(self.src.diag(
                            span,
                            format!("CRL in {shown:?} has no nextUpdate, so its freshness cannot be judged"),
                        ));
                        continue;
                    };
                    let list = match OwnedCertRevocationList::from_der(&der) {
                        Ok(owned) => owned,
                        Err(e) => {
                            diags.push(
                                self.src
                                    .diag(span, format!("CRL in {shown:?} cannot be used: {e}")),
                            );
                            continue;
                        }
                    };
                    let list = webpki::CertRevocationList::Owned(list);
                    if list.issuing_distribution_point().is_some() {
                        diags.push(self.src.diag(
                            span,
                            format!(
                                "CRL in {shown:?} is partitioned (issuingDistributionPoint); only complete CRLs are supported"
                            ),
                        ));
                        continue;
                    }
                    out.push(Crl {
                        der: der.to_vec(),
                        list,
                        issuer: issuer.to_der().unwrap_or_default(),
                        signer_spki,
                        next_update: next_update.to_unix_duration().as_secs(),
                    });
                }
            }
        }
        out
    }

    /// Loads the CA certificates of a next hop's `ca_file`.
    pub fn load_tls_cas(
        &self,
        written: &At<String>,
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<PathBuf> {
        let entry = Entry {
            shown: written.0.clone(),
            path: self.dir.join(&written.0),
        };
        let bytes = self.read("ca_file", &entry, &written.1, files, diags)?;
        let found = match decode::<CertificateDer<'static>>(&bytes) {
            Ok(ders) => ders
                .iter()
                .filter(|d| Certificate::from_der(d).is_ok())
                .count(),
            Err(_) => 0,
        };
        if found == 0 {
            diags.push(self.src.diag(
                &written.1,
                format!("{:?} holds no certificate", entry.shown),
            ));
            return None;
        }
        Some(entry.path)
    }
}

/// The trust anchor of an anchor certificate that passed [`Ctx::load_cas`].
pub(super) fn trust_anchor(ca: &CaCert) -> Option<TrustAnchor<'static>> {
    webpki::anchor_from_trusted_cert(&ca.der)
        .ok()
        .map(|a| a.to_owned())
}

/// The DER items of type `T` in a PEM file, or the whole file when it is
/// DER (starts with a SEQUENCE tag).
fn decode<T>(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String>
where
    T: PemObject + AsRef<[u8]>,
{
    if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        T::pem_slice_iter(bytes)
            .map(|item| item.map(|t| t.as_ref().to_vec()).map_err(|e| e.to_string()))
            .collect()
    } else if bytes.first() == Some(&0x30) {
        Ok(vec![bytes.to_vec()])
    } else {
        Ok(Vec::new())
    }
}

/// Whether the certificate has basicConstraints with cA set.
fn is_ca(cert: &Certificate) -> bool {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|ext| ext.extn_id == BasicConstraints::OID)
        .filter_map(|ext| BasicConstraints::from_der(ext.extn_value.as_bytes()).ok())
        .any(|bc| bc.ca)
}

/// Whether the CRL `der` (issued by `issuer`) is signed by `ca`.
fn signed_by(der: &[u8], issuer: &Name, ca: &CaCert) -> bool {
    ca.subject == *issuer && signature_verifies(der, &ca.spki)
}

/// Whether a certificate is self-signed: its issuer is its subject and its
/// signature verifies with its own key.
fn self_signed(der: &[u8], cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    tbs.issuer == tbs.subject
        && tbs
            .subject_public_key_info
            .to_der()
            .is_ok_and(|spki| signature_verifies(der, &spki))
}

/// Whether the signature of the signed X.509 structure `der` (certificate
/// or CRL) verifies with the key of the DER SubjectPublicKeyInfo `spki`,
/// with one of the algorithms accepted on chains (any key encoding they
/// know, version 1 certificates' included).
fn signature_verifies(der: &[u8], spki: &[u8]) -> bool {
    let Ok((tbs, alg, sig)) = signed_parts(der) else {
        return false;
    };
    let Ok((key_alg, key)) = spki_parts(spki) else {
        return false;
    };
    crate::trust::CHAIN_ALGORITHMS
        .iter()
        .filter(|a| {
            a.signature_alg_id().as_ref() == alg && a.public_key_alg_id().as_ref() == key_alg
        })
        .any(|a| a.verify_signature(key, tbs, sig).is_ok())
}

/// The algorithm (contents of the AlgorithmIdentifier) and the key bits of
/// a DER SubjectPublicKeyInfo.
fn spki_parts(spki: &[u8]) -> der::Result<(&[u8], &[u8])> {
    let outer = AnyRef::from_der(spki)?;
    let mut r = SliceReader::new(outer.value())?;
    let alg = AnyRef::decode(&mut r)?.value();
    let key = BitStringRef::decode(&mut r)?;
    let key = key.as_bytes().ok_or_else(|| {
        der::Error::from(der::ErrorKind::Length {
            tag: der::Tag::BitString,
        })
    })?;
    r.finish(())?;
    Ok((alg, key))
}

/// The signed part (whole TLV), the signature algorithm (contents of the
/// AlgorithmIdentifier) and the signature bits of a signed X.509 structure.
fn signed_parts(der: &[u8]) -> der::Result<(&[u8], &[u8], &[u8])> {
    let outer = AnyRef::from_der(der)?;
    let mut r = SliceReader::new(outer.value())?;
    let tbs = r.tlv_bytes()?;
    let alg = AnyRef::decode(&mut r)?.value();
    let sig = BitStringRef::decode(&mut r)?;
    let sig = sig.as_bytes().ok_or_else(|| {
        der::Error::from(der::ErrorKind::Length {
            tag: der::Tag::BitString,
        })
    })?;
    r.finish(())?;
    Ok((tbs, alg, sig))
}

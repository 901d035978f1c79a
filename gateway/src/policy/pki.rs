//! Loading an authority's trust anchors, intermediate CAs and CRLs from the
//! files and directories its policy file names, with every check the policy
//! owes them: parsable, CA certificates, valid at the evaluation time, CRLs
//! signed by one of the authority's CAs.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use der::oid::AssociatedOid;
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, TrustAnchor};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::name::Name;
use x509_cert::Certificate;

use super::files::{io_reason, At, FileSet, Source};
use super::{Crl, Diagnostic};
use crate::clock::EvalTime;
use crate::pem::PemError;

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
        let read = |what: &str| format!("{key} {what} {text:?}");
        let Some(meta) = self.readable(fs::metadata(&path), span, diags, || read("entry")) else {
            return Vec::new();
        };
        if !meta.is_dir() {
            return vec![Entry {
                shown: text.clone(),
                path,
            }];
        }
        let Some(listing) = self.readable(fs::read_dir(&path), span, diags, || read("directory"))
        else {
            return Vec::new();
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
        let what = || format!("{key} entry {:?}", entry.shown);
        let bytes = self.readable(fs::read(&entry.path), span, diags, what)?;
        files.add(entry.shown.clone(), &bytes);
        Some(bytes)
    }

    /// The value of a file system call, or a diagnostic at `span` saying
    /// which of the configured paths (`what`) cannot be read and why.
    fn readable<T>(
        &self,
        result: std::io::Result<T>,
        span: &Range<usize>,
        diags: &mut Vec<Diagnostic>,
        what: impl FnOnce() -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                let why = io_reason(&e);
                diags.push(
                    self.src
                        .diag(span, format!("cannot read {}: {why}", what())),
                );
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
        for (shown, der, span) in self.load_certificates(key, paths, files, diags) {
            if let Some(ca) = self.check_ca(role, &shown, der, &span, diags, notes) {
                out.push(ca);
            }
        }
        (out, diags.len() == before)
    }

    /// The certificates of the configured paths of `key`, each with the
    /// file it came from and where its path was written; what cannot be
    /// read or decoded is a diagnostic.
    pub fn load_certificates(
        &self,
        key: &str,
        paths: &[At<String>],
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<(String, CertificateDer<'static>, Range<usize>)> {
        let mut out = Vec::new();
        for written in paths {
            let span = &written.1;
            for entry in self.expand(key, written, CERT_EXTS, diags) {
                let Some(bytes) = self.read(key, &entry, span, files, diags) else {
                    continue;
                };
                match crate::pem::certificates(&bytes) {
                    Ok(ders) => out.extend(
                        ders.into_iter()
                            .map(|der| (entry.shown.clone(), der, span.clone())),
                    ),
                    Err(PemError::Syntax(e)) => diags.push(self.src.diag(
                        span,
                        format!("cannot parse certificate in {:?}: {e}", entry.shown),
                    )),
                    Err(_) => diags.push(
                        self.src
                            .diag(span, format!("{:?} holds no certificate", entry.shown)),
                    ),
                }
            }
        }
        out
    }

    /// Checks one configured CA certificate. A self-signed version 1
    /// certificate (which cannot carry basicConstraints) is accepted as a
    /// trust anchor, with a note.
    fn check_ca(
        &self,
        role: Role,
        shown: &str,
        der: CertificateDer<'static>,
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
        if let Some(problem) = outside_validity(&cert, self.now) {
            diags.push(self.src.diag(span, format!("{what} {problem}")));
            ok = false;
        }
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
        let crl_sign = match tbs.get::<KeyUsage>() {
            Ok(Some((_, ku))) => ku.crl_sign(),
            Ok(None) => true,
            Err(_) => false,
        };
        ok.then(|| CaCert {
            der,
            subject: tbs.subject.clone(),
            crl_sign,
        })
    }

    /// Loads the CRL files of the configured paths. A CRL issued by one of
    /// `cas` (by name) must be signed by it, checked only when
    /// `cas_complete` (otherwise a CA that failed to load would make every
    /// CRL it signs a second problem). Any other CRL is checked for syntax
    /// only and noted: it counts once it verifies with the issuer found in
    /// a message's path.
    #[allow(clippy::too_many_arguments)]
    pub fn load_crls(
        &self,
        paths: &[At<String>],
        cas: &[&CaCert],
        cas_complete: bool,
        authority: &str,
        files: &mut FileSet,
        diags: &mut Vec<Diagnostic>,
        notes: &mut Vec<Diagnostic>,
    ) -> Vec<Arc<Crl>> {
        let mut out = Vec::new();
        for written in paths {
            let span = &written.1;
            for entry in self.expand("crls", written, CRL_EXTS, diags) {
                let Some(bytes) = self.read("crls", &entry, span, files, diags) else {
                    continue;
                };
                let shown = &entry.shown;
                let ders = match crate::pem::crls(&bytes) {
                    Ok(d) => d,
                    Err(PemError::Syntax(e)) => {
                        diags.push(
                            self.src
                                .diag(span, format!("cannot parse CRL in {shown:?}: {e}")),
                        );
                        continue;
                    }
                    Err(_) => {
                        diags.push(self.src.diag(span, format!("{shown:?} holds no CRL")));
                        continue;
                    }
                };
                for der in ders {
                    let crl = match Crl::parse(
                        der.to_vec(),
                        self.dir.join(shown).display().to_string(),
                    ) {
                        Ok(c) => c,
                        Err(e) => {
                            diags.push(
                                self.src
                                    .diag(span, format!("CRL in {shown:?} cannot be used: {e}")),
                            );
                            continue;
                        }
                    };
                    let issuer = crl.issuer_text.clone();
                    let named: Vec<&&CaCert> = cas
                        .iter()
                        .filter(|ca| ca.subject.to_der().ok().as_deref() == Some(&crl.issuer[..]))
                        .collect();
                    if named.is_empty() {
                        notes.push(self.src.diag(
                            span,
                            format!(
                                "CRL in {shown:?} is issued by {issuer:?}, which is not a CA configured for \
                                 authority {authority:?}; it is used for certificates whose issuer in the \
                                 validated path has that name and verifies its signature"
                            ),
                        ));
                    } else if cas_complete && !named.iter().any(|ca| crl.signed_by(&ca.der)) {
                        let why = if named.iter().all(|ca| !ca.crl_sign) {
                            format!(
                                "is signed by {issuer:?}, whose keyUsage does not allow cRLSign"
                            )
                        } else {
                            format!(
                                "(issuer {issuer:?}) is not signed by the key of the CA of that name \
                                 configured for authority {authority:?}"
                            )
                        };
                        diags.push(self.src.diag(span, format!("CRL in {shown:?} {why}")));
                        continue;
                    }
                    out.push(Arc::new(crl));
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
        let found = match crate::pem::certificates(&bytes) {
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
/// What is wrong with `cert`'s validity period at `now` ("expired at
/// …", "is not valid before …"), if anything.
pub(super) fn outside_validity(cert: &Certificate, now: EvalTime) -> Option<String> {
    let validity = &cert.tbs_certificate.validity;
    let not_before = validity.not_before.to_unix_duration().as_secs();
    let not_after = validity.not_after.to_unix_duration().as_secs();
    let (problem, limit) = if now.unix() < not_before {
        ("is not valid before", not_before)
    } else if now.unix() > not_after {
        ("expired at", not_after)
    } else {
        return None;
    };
    Some(format!(
        "{problem} {}",
        EvalTime::from_unix(limit).to_rfc3339()
    ))
}

pub(super) fn trust_anchor(ca: &CaCert) -> Option<TrustAnchor<'static>> {
    webpki::anchor_from_trusted_cert(&ca.der)
        .ok()
        .map(|a| a.to_owned())
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

/// Whether a certificate is self-signed: its issuer is its subject and its
/// signature verifies with its own key.
fn self_signed(der: &[u8], cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    tbs.issuer == tbs.subject
        && tbs
            .subject_public_key_info
            .to_der()
            .is_ok_and(|spki| crate::trust::revocation::signature_verifies(der, &spki))
}

//! A test PKI made with the `openssl` CLI and a real `openssl ocsp`
//! responder for it, killed on drop. Used by `tests/ocsp.rs`; include it
//! (and `proc.rs`, which it uses) with
//!
//! ```ignore
//! #[path = "support/proc.rs"]
//! mod proc;
//! #[path = "support/ocsp.rs"]
//! mod ocsp;
//! ```
//!
//! Everything is written into a directory the caller owns (a temp dir):
//! private keys never leave it. Certificates are valid from an hour ago for
//! 30 days; the CA is RSA-2048, everything else ECDSA P-256, all signed with
//! SHA-256.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proc::Proc;

#[path = "cmd.rs"]
mod cmd;
use cmd::{openssl, run_ok as run};

/// Now, Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `secs` as the `YYMMDDHHMMSSZ` of an OpenSSL index file.
fn index_time(secs: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(secs as i64).expect("time");
    format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// What kind of certificate to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// An official's signing certificate (emailProtection), with an AIA
    /// naming the PKI's OCSP URL.
    Leaf,
    /// A delegated OCSP responder: extKeyUsage id-kp-OCSPSigning and
    /// id-pkix-ocsp-nocheck.
    Responder,
    /// Like `Responder` but without extKeyUsage (not entitled to sign).
    ResponderNoEku,
}

/// A certificate (and its key) in the PKI directory.
#[derive(Clone, Debug)]
pub struct Issued {
    /// File stem: `NAME.pem`, `NAME.key`, `NAME.der`.
    pub name: String,
    /// Subject, as `/CN=...` (the index file's form).
    pub subject: String,
    /// Serial number, upper-case hex as the index file writes it.
    pub serial: String,
    /// The PEM certificate.
    pub pem: PathBuf,
    /// The PEM private key (unencrypted).
    pub key: PathBuf,
    /// The DER certificate.
    pub der: Vec<u8>,
}

/// A status line of the responder's index file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexStatus {
    /// `V`: valid.
    Valid,
    /// `R`: revoked at this Unix time, with an RFC 5280 reason name
    /// (`keyCompromise`, ...) or none.
    Revoked(u64, Option<&'static str>),
}

/// A CA in its own directory, issuing certificates.
pub struct Pki {
    /// The directory (certificates, keys, index, configuration).
    pub dir: PathBuf,
    /// The CA certificate.
    pub ca: Issued,
    /// The OCSP URL written into leaf certificates' AIA.
    pub aia_url: String,
    next_serial: u32,
}

impl Pki {
    /// A new CA `/CN=<cn>` in `dir` (created) whose leaves name `aia_url`
    /// as their OCSP responder.
    pub fn new(dir: &Path, cn: &str, aia_url: &str) -> Pki {
        std::fs::create_dir_all(dir).expect("PKI dir");
        let cnf = format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n\
             [ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [leaf]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature,nonRepudiation\nextendedKeyUsage = emailProtection\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
             authorityInfoAccess = caIssuers;URI:http://ca.test.example/ca.der,OCSP;URI:{aia_url},\
             OCSP;URI:ldap://ldap.test.example/ocsp\n\
             [responder]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = OCSPSigning\nnoCheck = ignored\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n\
             [responder_noeku]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        );
        std::fs::write(dir.join("openssl.cnf"), cnf).expect("openssl.cnf");
        let ca = self_signed(dir, "ca", cn, true);
        Pki {
            dir: dir.to_owned(),
            ca,
            aia_url: aia_url.to_owned(),
            next_serial: 0x1001,
        }
    }

    /// Issues `/CN=<cn>` as `name` with `profile`, signed by the CA.
    pub fn issue(&mut self, name: &str, cn: &str, profile: Profile) -> Issued {
        let serial = self.next_serial;
        self.next_serial += 1;
        let section = match profile {
            Profile::Leaf => "leaf",
            Profile::Responder => "responder",
            Profile::ResponderNoEku => "responder_noeku",
        };
        let d = &self.dir;
        let (pem, key, csr) = (
            d.join(format!("{name}.pem")),
            d.join(format!("{name}.key")),
            d.join(format!("{name}.csr")),
        );
        run(Command::new(openssl())
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .args(["-subj", &format!("/CN={cn}"), "-config"])
            .arg(d.join("openssl.cnf")));
        run(Command::new(openssl())
            .args(["x509", "-req", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&self.ca.pem)
            .arg("-CAkey")
            .arg(&self.ca.key)
            .args(["-set_serial", &format!("0x{serial:X}"), "-days", "30"])
            .args(["-sha256", "-extfile"])
            .arg(d.join("openssl.cnf"))
            .args(["-extensions", section, "-out"])
            .arg(&pem));
        Issued {
            name: name.to_owned(),
            subject: format!("/CN={cn}"),
            serial: format!("{serial:X}"),
            der: pem_to_der(&pem),
            pem,
            key,
        }
    }

    /// Writes `index.txt` for the responder with these entries (a
    /// certificate not listed is unknown to it) and returns its path.
    pub fn write_index(&self, entries: &[(&Issued, IndexStatus)]) -> PathBuf {
        let mut text = String::new();
        let expiry = index_time(now() + 30 * 86400);
        for (cert, status) in entries {
            let (flag, revoked) = match status {
                IndexStatus::Valid => ("V", String::new()),
                IndexStatus::Revoked(at, reason) => (
                    "R",
                    match reason {
                        Some(r) => format!("{},{r}", index_time(*at)),
                        None => index_time(*at),
                    },
                ),
            };
            writeln!(
                text,
                "{flag}\t{expiry}\t{revoked}\t{}\tunknown\t{}",
                cert.serial, cert.subject
            )
            .unwrap();
        }
        let path = self.dir.join("index.txt");
        std::fs::write(&path, text).expect("index.txt");
        std::fs::write(self.dir.join("index.txt.attr"), "unique_subject = no\n")
            .expect("index.txt.attr");
        path
    }
}

/// A self-signed certificate `name` (`/CN=<cn>`) in `dir`: the CA (RSA-2048)
/// when `ca`, else an unrelated P-256 key and certificate that no CA of the
/// test issued (with id-kp-OCSPSigning, so only its issuer is wrong).
pub fn self_signed(dir: &Path, name: &str, cn: &str, ca: bool) -> Issued {
    let (pem, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let mut cmd = Command::new(openssl());
    cmd.args([
        "req", "-x509", "-nodes", "-sha256", "-days", "30", "-newkey",
    ]);
    if ca {
        cmd.args(["rsa:2048", "-extensions", "ca"]);
    } else {
        cmd.args(["ec", "-pkeyopt", "ec_paramgen_curve:P-256"])
            .args(["-extensions", "responder"]);
    }
    cmd.arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .args(["-subj", &format!("/CN={cn}"), "-config"])
        .arg(dir.join("openssl.cnf"));
    run(&mut cmd);
    Issued {
        name: name.to_owned(),
        subject: format!("/CN={cn}"),
        serial: String::new(),
        der: pem_to_der(&pem),
        pem,
        key,
    }
}

fn pem_to_der(pem: &Path) -> Vec<u8> {
    let text = std::fs::read(pem).expect("PEM file");
    let mut input = text.as_slice();
    let der = rustls_pemfile::certs(&mut input)
        .next()
        .expect("a certificate in the PEM file")
        .expect("PEM decodes")
        .to_vec();
    der
}

/// How the responder is run.
#[derive(Clone, Debug, Default)]
pub struct ResponderOpts {
    /// `-nmin N`: nextUpdate N minutes after thisUpdate (none: no
    /// nextUpdate at all).
    pub next_update_minutes: Option<u32>,
    /// `-resp_no_certs`: the signer's certificate is not included.
    pub no_certs: bool,
    /// `-resp_key_id`: ResponderID by key hash instead of by name.
    pub by_key: bool,
    /// `-rmd DIGEST`: the response's signature digest (default SHA-256).
    pub digest: Option<&'static str>,
}

/// A running `openssl ocsp` responder, killed on drop. It listens on a port
/// the kernel chose (OpenSSL 3.0 binds every interface; the tests talk to
/// it on 127.0.0.1 only).
pub struct Responder {
    proc: Proc,
    /// Its port.
    pub port: u16,
}

impl Responder {
    /// Starts a responder answering for `ca` from `index`, signing with
    /// `signer`'s certificate and key.
    pub fn start(index: &Path, ca: &Issued, signer: &Issued, opts: &ResponderOpts) -> Responder {
        let mut cmd = Command::new(openssl());
        cmd.arg("ocsp")
            .arg("-index")
            .arg(index)
            .args(["-port", "0"])
            .arg("-CA")
            .arg(&ca.pem)
            .arg("-rsigner")
            .arg(&signer.pem)
            .arg("-rkey")
            .arg(&signer.key)
            // One request at a time is answered; a client that stalls is
            // dropped after this many seconds.
            .args(["-timeout", "10"]);
        if let Some(n) = opts.next_update_minutes {
            cmd.args(["-nmin", &n.to_string()]);
        }
        if opts.no_certs {
            cmd.arg("-resp_no_certs");
        }
        if opts.by_key {
            cmd.arg("-resp_key_id");
        }
        if let Some(d) = opts.digest {
            cmd.args(["-rmd", d]);
        }
        let mut proc = Proc::spawn("openssl ocsp", &mut cmd);
        // "ACCEPT [::]:PORT PID=N" (or "0.0.0.0:PORT").
        let line = proc.wait_line("ACCEPT ", Duration::from_secs(20));
        let addr = line.split_whitespace().next().unwrap_or_default();
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in the responder's line {line:?}"));
        Responder { proc, port }
    }

    /// The URL to POST requests to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// Stops the responder now (connections are refused afterwards).
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// What the responder wrote to stderr.
    pub fn stderr(&self) -> String {
        self.proc.stderr()
    }
}

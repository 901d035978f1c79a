//! A time-stamping authority for tests: its PKI (two CAs, a TSA under
//! each with extendedKeyUsage critical timeStamping, and `twin`: another
//! certificate for the good TSA's key, with its issuer and serial) and `tsa_serve.py`
//! (`openssl ts -reply` behind HTTP) on loopback; and the README's openssl
//! commands that check a token. Included as `#[path = "support/tsa.rs"] mod
//! tsa_support;` next to `mod support;` and `mod proc;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use emla::smime::tsa::Tsa;

use super::proc::Proc;
use super::support::{self, pki, support_dir};

/// The TSA's files: two CAs, a TSA under each, the openssl config.
pub struct TsaPki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    support::run_ok(Command::new(support::openssl()).current_dir(dir).args(args));
}

pub fn tsa_pki() -> &'static TsaPki {
    static PKI: OnceLock<TsaPki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = pki().dir.join(format!("tsa-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ec = support::NEW_P256_KEY;
        std::fs::write(
            dir.join("ext.cnf"),
            "[tsa]\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=critical,timeStamping\n",
        )
        .unwrap();
        for ca in ["ca", "rogue-ca"] {
            let subj = format!("/CN=Test {ca}");
            let mut args = vec!["req", "-x509", "-days", "30", "-subj", &subj];
            args.extend(ec);
            let (key, pem) = (format!("{ca}.key"), format!("{ca}-cert.pem"));
            args.extend(["-keyout", &key, "-out", &pem]);
            args.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
            args.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
            openssl(&dir, &args);
        }
        for (tsa, ca) in [("good", "ca"), ("rogue", "rogue-ca")] {
            let subj = format!("/CN=Test TSA {tsa}");
            let (key, csr, pem) = (
                format!("{tsa}.key"),
                format!("{tsa}.csr"),
                format!("{tsa}.pem"),
            );
            let mut args = vec!["req", "-new", "-subj", &subj, "-keyout", &key, "-out", &csr];
            args.extend(ec);
            openssl(&dir, &args);
            let (ca_pem, ca_key) = (format!("{ca}-cert.pem"), format!("{ca}.key"));
            if tsa == "good" {
                // The same key, issuer and serial, another subject.
                let key = "good.key";
                let mut args = vec!["req", "-new", "-subj", "/CN=Test TSA twin", "-key", key];
                args.extend(["-out", "twin.csr"]);
                openssl(&dir, &args);
                sign_tsa(&dir, "twin.csr", &ca_pem, &ca_key, "twin.pem");
            }
            sign_tsa(&dir, &csr, &ca_pem, &ca_key, &pem);
        }
        std::fs::write(
            dir.join("tsa.cnf"),
            "[tsa]\ndefault_tsa = t\n[t]\nserial = @SERIAL@\nsigner_digest = sha256\n\
             default_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\n\
             digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\n\
             tsa_name = no\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n",
        )
        .unwrap();
        TsaPki { dir }
    })
}

/// Issues the TSA certificate `pem` for `csr` under `ca_pem`.
fn sign_tsa(dir: &Path, csr: &str, ca_pem: &str, ca_key: &str, pem: &str) {
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            ca_pem,
            "-CAkey",
            ca_key,
            "-days",
            "30",
            "-set_serial",
            "7",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "tsa",
            "-out",
            pem,
        ],
    );
}

impl TsaPki {
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca-cert.pem")
    }
}

/// `tsa_serve.py` on a free loopback port; killed on drop.
pub struct Server {
    _proc: Proc,
    port: u16,
}

impl Server {
    pub fn start() -> Server {
        Server::start_on(0)
    }

    /// On `port` (e.g. one a gateway was told of while nothing listened).
    pub fn start_on(port: u16) -> Server {
        let python = std::env::var("EMLA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut proc = Proc::spawn(
            "tsa_serve.py",
            Command::new(python)
                .arg(support_dir().join("tsa_serve.py"))
                .arg(&tsa_pki().dir)
                .arg(port.to_string())
                .env("OPENSSL", support::openssl()),
        );
        let port = proc
            .wait_line("listening on ", Duration::from_secs(20))
            .trim()
            .parse()
            .expect("port number");
        Server { _proc: proc, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn tsa(&self, path: &str) -> Tsa {
        tsa_at(&self.url(path))
    }
}

pub fn tsa_at(url: &str) -> Tsa {
    let ca = emla::pem::read_certificates(&tsa_pki().ca()).unwrap();
    Tsa::new(url, ca, None, Duration::from_secs(10)).unwrap()
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The README's openssl commands (the block after `<!-- tsa-verify -->`),
/// run on `file` in a scratch directory.
pub fn readme_check(file: &Path, tsa_ca: &Path) -> std::process::Output {
    let readme = std::fs::read_to_string(support_dir().join("../../README.md")).unwrap();
    let block = readme
        .split("<!-- tsa-verify -->\n```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README has the tsa-verify block");
    let scratch = tempfile::tempdir().unwrap();
    Command::new("sh")
        .arg("-ec")
        .arg(block)
        .current_dir(scratch.path())
        .env("FILE", file)
        .env("TSA_CA", tsa_ca)
        .output()
        .unwrap()
}

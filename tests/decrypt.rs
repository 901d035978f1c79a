//! Inbound S/MIME decryption with real peers: messages signed, then
//! encrypted to the gateway's decryption certificates by `openssl cms
//! -encrypt` (RSA PKCS#1 v1.5, RSA-OAEP, ECDH P-256/P-384; AES-CBC, AES-GCM
//! as AuthEnvelopedData), `openssl smime -encrypt` and Python
//! `cryptography`'s PKCS7EnvelopeBuilder. Each is decrypted, verified and
//! judged by `emla verify`; over SMTP, the relayed copy is the sender's
//! signed message byte for byte and passes `openssl cms -verify`; the
//! decision record names the certificate and algorithms, and `emla audit
//! export` writes the encrypted bytes as received. Refusals: 3DES, a
//! message encrypted to someone else, a changed GCM tag, a changed CBC
//! ciphertext.
//!
//! Requirements beyond `tests/support`: Python `aiosmtpd` and
//! `cryptography` (PyPI).

#[path = "support/sink.rs"]
mod sink;
#[path = "support/smtp.rs"]
mod smtp;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sink::*;
use smtp::*;
use support::*;

/// The policy with the gateway's `[[decryption]]` certificates.
fn decrypt_policy() -> PathBuf {
    pki().policy_named("policy-decrypt")
}

/// A signed message from Alice to Bob, CRLF throughout: `(whole message,
/// its header block, the signed MIME entity)`.
fn signed() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let entity = crlf(&sign(
        Tool::CmsDetached,
        "aa",
        "alice",
        &numbered_body(),
        &[],
    ));
    let head = headers(ALICE, &[BOB]);
    ([head.clone(), entity.clone()].concat(), head, entity)
}

/// One way to encrypt, for the table of accepted cases.
struct Enc {
    name: &'static str,
    cmd: &'static str,
    recip: &'static str,
    cipher: &'static [&'static str],
    keyopt: &'static [&'static str],
    /// What the record must say: key and content algorithms.
    key_algorithm: &'static str,
    content_algorithm: &'static str,
    cms_type: &'static str,
}

const CASES: &[Enc] = &[
    Enc {
        name: "cms rsa pkcs1 aes256-cbc",
        cmd: "cms",
        recip: "gateway-enc-rsa",
        cipher: &["-aes256"],
        keyopt: &[],
        key_algorithm: "rsaes-pkcs1-v1_5",
        content_algorithm: "aes-256-cbc",
        cms_type: "enveloped-data",
    },
    Enc {
        name: "cms rsa-oaep aes128-cbc",
        cmd: "cms",
        recip: "gateway-enc-rsa",
        cipher: &["-aes128"],
        keyopt: &["rsa_padding_mode:oaep"],
        key_algorithm: "rsaes-oaep-sha1",
        content_algorithm: "aes-128-cbc",
        cms_type: "enveloped-data",
    },
    Enc {
        name: "cms rsa-oaep-sha256 aes256-gcm",
        cmd: "cms",
        recip: "gateway-enc-rsa",
        cipher: &["-aes-256-gcm"],
        keyopt: &["rsa_padding_mode:oaep", "rsa_oaep_md:sha256"],
        key_algorithm: "rsaes-oaep-sha256",
        content_algorithm: "aes-256-gcm",
        cms_type: "authenveloped-data",
    },
    Enc {
        name: "cms ecdh p256 aes128-gcm",
        cmd: "cms",
        recip: "gateway-enc-p256",
        cipher: &["-aes-128-gcm"],
        keyopt: &[],
        key_algorithm: "ecdh-p256-sha1kdf-aes128-wrap",
        content_algorithm: "aes-128-gcm",
        cms_type: "authenveloped-data",
    },
    Enc {
        name: "cms ecdh p384 sha384 kdf aes256-cbc",
        cmd: "cms",
        recip: "gateway-enc-p384",
        cipher: &["-aes256"],
        keyopt: &["ecdh_kdf_md:sha384"],
        key_algorithm: "ecdh-p384-sha384kdf-aes256-wrap",
        content_algorithm: "aes-256-cbc",
        cms_type: "enveloped-data",
    },
    Enc {
        name: "smime rsa aes256-cbc",
        cmd: "smime",
        recip: "gateway-enc-rsa",
        cipher: &["-aes256"],
        keyopt: &[],
        key_algorithm: "rsaes-pkcs1-v1_5",
        content_algorithm: "aes-256-cbc",
        cms_type: "enveloped-data",
    },
];

impl Enc {
    /// `input` encrypted this way.
    fn encrypt(&self, input: &[u8]) -> Vec<u8> {
        let pki = pki();
        let path = pki.write_scratch("plain", input);
        let out = pki.scratch_file("enc");
        let mut c = Command::new(openssl());
        c.arg(self.cmd)
            .arg("-encrypt")
            .arg("-binary")
            .arg("-in")
            .arg(&path)
            .arg("-out")
            .arg(&out)
            .args(self.cipher);
        if self.cmd == "cms" {
            c.arg("-recip").arg(pki.cert("aa", self.recip));
            for k in self.keyopt {
                c.arg("-keyopt").arg(k);
            }
        } else {
            c.arg(pki.cert("aa", self.recip));
        }
        run_ok(&mut c);
        crlf(&std::fs::read(&out).unwrap())
    }
}

/// Python `cryptography`'s PKCS7EnvelopeBuilder (RSA PKCS#1 v1.5,
/// AES-128-CBC) of `input` to `certs/aa/<recip>.pem`.
fn python_encrypt(input: &[u8], recip: &str) -> Vec<u8> {
    let pki = pki();
    let path = pki.write_scratch("plain", input);
    let script = r#"
import sys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
data = open(sys.argv[2], "rb").read()
out = (pkcs7.PKCS7EnvelopeBuilder().set_data(data).add_recipient(cert)
       .encrypt(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.Binary]))
sys.stdout.buffer.write(out)
"#;
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(pki.cert("aa", recip))
            .arg(&path),
    );
    crlf(&out)
}

/// `emla verify --json` of `msg` under the decryption policy.
fn verify(msg: Vec<u8>) -> Outcome {
    Verify::new(msg).policy(decrypt_policy()).run()
}

#[test]
fn every_sender_tool_and_algorithm_is_decrypted_and_judged() {
    for case in CASES {
        // A whole signed message encrypted, as `openssl cms -encrypt` of an
        // .eml: what is judged is exactly it.
        let (message, _, _) = signed();
        let v = verify(case.encrypt(&message))
            .case(case.name)
            .assert_accept();
        let e = &v["encryption"];
        assert_eq!(
            e["key_algorithm"], case.key_algorithm,
            "{}: {e:#}",
            case.name
        );
        assert_eq!(
            e["content_algorithm"], case.content_algorithm,
            "{}",
            case.name
        );
        assert_eq!(e["cms_type"], case.cms_type, "{}", case.name);
        assert_eq!(
            e["recipient"]["sha256"],
            sha256_hex(&pem_der(&pki().cert("aa", case.recip))),
            "{}",
            case.name
        );
        assert_eq!(e["decrypted_sha256"], sha256_hex(&message), "{}", case.name);
        // A signed MIME entity encrypted under the outer header fields, as
        // mail clients do.
        let (_, head, entity) = signed();
        let outer = [head, case.encrypt(&entity)].concat();
        verify(outer).case(case.name).assert_accept();
    }
    // Triple-wrapped (RFC 2634): signed, encrypted, signed again.
    let (_, head, entity) = signed();
    let encrypted = CASES[2].encrypt(&entity);
    let outer = crlf(&sign(Tool::CmsDetached, "aa", "alice", &encrypted, &[]));
    let triple = [head.clone(), outer].concat();
    let v = verify(triple.clone()).case("triple wrap").assert_accept();
    let e = &v["encryption"];
    assert_eq!(e["received_sha256"], sha256_hex(&triple), "{e:#}");
    assert_eq!(e["content_algorithm"], "aes-256-gcm", "{e:#}");
    assert_eq!(
        e["outer_signers"][0].as_str().map(|s| s.contains("Alice")),
        Some(true),
        "{e:#}"
    );
    assert_eq!(
        e["decrypted_sha256"],
        sha256_hex(&[head, entity].concat()),
        "{e:#}"
    );

    let (message, _, _) = signed();
    let v = verify(python_encrypt(&message, "gateway-enc-rsa"))
        .case("python")
        .assert_accept();
    assert_eq!(v["encryption"]["key_algorithm"], "rsaes-pkcs1-v1_5");
    assert_eq!(v["encryption"]["content_algorithm"], "aes-128-cbc");
}

/// The certificate of a PEM file, DER.
fn pem_der(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap();
    let b64: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// An AuthEnvelopedData of `message` to the RSA gateway certificate as
/// DER, changed by `f`, in an S/MIME entity under Alice's header fields.
fn edited_gcm(message: &[u8], head: &[u8], f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let pki = pki();
    let path = pki.write_scratch("plain", message);
    let out = pki.scratch_file("enc.der");
    run_ok(
        Command::new(openssl())
            .args([
                "cms",
                "-encrypt",
                "-binary",
                "-aes-256-gcm",
                "-outform",
                "DER",
            ])
            .arg("-in")
            .arg(&path)
            .arg("-out")
            .arg(&out)
            .arg(pki.cert("aa", "gateway-enc-rsa")),
    );
    let mut der = std::fs::read(&out).unwrap();
    f(&mut der);
    smime_entity(head, "authEnveloped-data", &der)
}

fn smime_entity(head: &[u8], smime_type: &str, der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut m = head.to_vec();
    m.extend_from_slice(
        format!(
            "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=smime.p7m\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n"
        )
        .as_bytes(),
    );
    for line in b64.as_bytes().chunks(64) {
        m.extend_from_slice(line);
        m.extend_from_slice(b"\r\n");
    }
    m
}

#[test]
fn weak_foreign_and_tampered_encryption_is_refused() {
    let (message, head, entity) = signed();
    let des3 = Enc {
        cipher: &["-des3"],
        ..CASES[0]
    };
    verify(des3.encrypt(&message))
        .case("3des")
        .assert_reject_saying("weak-algorithm", &["3DES"]);
    let stranger = Enc {
        recip: "stranger-enc",
        ..CASES[0]
    };
    verify(stranger.encrypt(&message))
        .case("stranger")
        .assert_reject_saying("not-for-gateway", &["none of them"]);
    // Without [[decryption]], encrypted mail is for someone else too.
    Verify::new(CASES[0].encrypt(&message))
        .run()
        .case("no keys")
        .assert_reject_saying("not-for-gateway", &["no decryption certificate"]);
    // Encrypted to the gateway, but not signed.
    let plain = [head.clone(), text_body()].concat();
    verify(CASES[2].encrypt(&plain))
        .case("encrypted only")
        .assert_reject("unsigned");
    // The last bytes of the DER are the GCM tag (no unauthAttrs follow).
    let intact = edited_gcm(&message, &head, |_| {});
    verify(intact).case("gcm intact").assert_accept();
    let flipped = edited_gcm(&message, &head, |der| *der.last_mut().unwrap() ^= 1);
    verify(flipped)
        .case("gcm tag")
        .assert_reject_saying("decrypt-failed", &["GCM tag"]);
    // CBC has no integrity of its own: a changed ciphertext answers
    // decrypt-failed whatever it decrypts to (no padding oracle).
    let cbc = CASES[1].encrypt(&entity);
    for at in [40, 200] {
        let edited = edit_cms(&[head.clone(), cbc.clone()].concat(), |der| {
            let n = der.len();
            der[n - at] ^= 0x20;
        });
        let out = verify(edited).case(format!("cbc byte -{at}"));
        let v = out.assert_reject("decrypt-failed");
        assert_eq!(
            v["detail"], "the message does not decrypt to an intact signed message",
            "{v:#}"
        );
        assert!(v["encryption"]["problem"].is_string(), "{v:#}");
    }
}

#[test]
fn policy_check_reads_the_decryption_keys() {
    let policy = PolicyCopy(pki().dir.join("policy-decrypt-check"));
    copy_dir(&decrypt_policy(), &policy.0);
    let gw = policy.0.join("gateway.toml");
    let check = || {
        let out = Command::new(env!("CARGO_BIN_EXE_emla"))
            .args(["policy", "check"])
            .arg(&policy.0)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    let text = std::fs::read_to_string(&gw).unwrap();
    std::fs::write(
        &gw,
        text.replacen("gateway-enc-p256.key", "gateway-enc-rsa.key", 1)
            .replacen("gateway-enc-p384.pem", "weak-enc.pem", 1)
            .replacen("gateway-enc-p384.key", "weak-enc.key", 1)
            + "\n[[decryption]]\ncertificate = \"../certs/aa/missing.pem\"\nkey = \"../certs/aa/alice.key\"\n",
    )
    .unwrap();
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    for needle in [
        "gateway.toml:15:7: decryption key \"../certs/aa/gateway-enc-rsa.key\": the private key does not belong to the certificate",
        "gateway.toml:18:15: decryption certificate \"../certs/aa/weak-enc.pem\": the certificate's RSA key has 1024 bits; at least 2048 are required",
        "cannot read the decryption certificate \"../certs/aa/missing.pem\"",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
}

#[test]
fn an_encrypted_message_is_relayed_as_signed_recorded_and_exported() {
    let sink = Sink::start(&[]);
    let policy = PolicyCopy::new();
    policy.edit(
        "authorities/bb-moj.toml",
        "url = \"smtp://127.0.0.1:2626\"",
        &format!("url = \"smtp://127.0.0.1:{}\"", sink.port),
    );
    let decryption = std::fs::read_to_string(decrypt_policy().join("gateway.toml")).unwrap();
    let decryption = &decryption[decryption.find("[[decryption]]").unwrap()..];
    let gw_toml = policy.0.join("gateway.toml");
    let text = std::fs::read_to_string(&gw_toml).unwrap();
    std::fs::write(&gw_toml, format!("{text}\n{decryption}")).unwrap();
    let gw = Gateway::new(Opts {
        policy_dir: policy.0.clone(),
        relay: Some("poll_ms = 100\n".into()),
        extra_toml: "\n[audit]\nallow_unsigned_checkpoints = true\n".into(),
        ..Opts::default()
    });
    let srv = gw.start();

    // Sign-then-encrypt of a whole message (ECDH, GCM) and of an entity
    // under the outer fields (RSA-OAEP, CBC): the sink gets what was signed.
    let (whole, _, _) = signed();
    let (_, head, entity) = signed();
    let by_entity = [head.clone(), entity.clone()].concat();
    let sent = [
        (CASES[3].encrypt(&whole), whole.clone()),
        ([head, CASES[1].encrypt(&entity)].concat(), by_entity),
    ];
    let mut ids = Vec::new();
    for (encrypted, expected) in &sent {
        let (r, t) = send(srv.port, ALICE, &[BOB], encrypted);
        let id = r
            .accepted_id()
            .unwrap_or_else(|| panic!("not accepted:\n{t}"));
        ids.push((id, encrypted.clone(), expected.clone()));
    }
    let got = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "not delivered:\n{}", srv.stderr());
    for (id, encrypted, expected) in &ids {
        let delivered = got
            .iter()
            .find(|m| find(m, format!(" id {id}").as_bytes()).is_some())
            .unwrap_or_else(|| panic!("{id} not delivered"));
        assert_relayed_exactly(delivered, expected, id);
        assert!(openssl_cms_verifies(delivered, "aa"), "{id}");

        // The decision record: decrypted hash and size, and how it came.
        let rec = gw
            .db()
            .audit_of("message.accepted")
            .into_iter()
            .find(|a| a.message_id.as_deref() == Some(id))
            .expect("decision record");
        let data: Value = serde_json::from_str(&rec.data).unwrap();
        assert_eq!(data["sha256"], sha256_hex(expected), "{data:#}");
        let e = &data["encryption"];
        assert_eq!(e["received_sha256"], sha256_hex(encrypted), "{e:#}");
        assert_eq!(e["received_stored"], true, "{e:#}");
        assert!(e["recipient"]["serial"].is_string(), "{e:#}");

        // The bundle: message.eml is the signed message, and the bytes as
        // received are beside it.
        let work = tempfile::tempdir().unwrap();
        let bundle = work.path().join("bundle");
        let (code, out) = emla_cli(
            &["audit", "export", id, "--out", bundle.to_str().unwrap()],
            &gw.config,
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(
            &std::fs::read(bundle.join("message.eml")).unwrap(),
            expected
        );
        assert_eq!(
            &std::fs::read(bundle.join("received-encrypted.eml")).unwrap(),
            encrypted
        );
        let enc: Value =
            serde_json::from_slice(&std::fs::read(bundle.join("encryption.json")).unwrap())
                .unwrap();
        assert_eq!(enc["received_sha256"], sha256_hex(encrypted));
    }

    // s-nail configured to sign and encrypt: the certificate it encrypts
    // to for Bob is the gateway's.
    let (code, out) = snail_send(srv.port);
    assert_eq!(code, Some(0), "s-nail:\n{out}");
    let got = sink.wait_for(3, Duration::from_secs(30));
    assert_eq!(got.len(), 3, "not delivered:\n{}", srv.stderr());
    let delivered = &got[2];
    assert!(
        openssl_cms_verifies(delivered, "aa"),
        "s-nail's relayed copy"
    );
    assert!(find(delivered, b"Request from s-nail").is_some());
    let rec = gw.db().audit_of("message.accepted");
    let data: Value = serde_json::from_str(&rec.last().unwrap().data).unwrap();
    assert_eq!(
        data["encryption"]["key_algorithm"], "rsaes-pkcs1-v1_5",
        "{data:#}"
    );

    // Refused over SMTP with its reply code.
    let (message, _, _) = signed();
    let stranger = Enc {
        recip: "stranger-enc",
        ..CASES[0]
    };
    let (r, t) = send(srv.port, ALICE, &[BOB], &stranger.encrypt(&message));
    assert!(
        r.last().starts_with("550 5.7.5 not-for-gateway"),
        "{}\n{t}",
        r.last()
    );
    gw.assert_audit_intact();
}

/// Signs and encrypts a message with s-nail as Alice to Bob, Bob's
/// encryption certificate being the gateway's RSA one; sends it to `port`.
fn snail_send(port: u16) -> (Option<i32>, String) {
    let pki = pki();
    // s-nail wants the private key followed by the certificate in one file.
    let mut signer = std::fs::read(pki.key("aa", "alice")).unwrap();
    signer.extend_from_slice(&std::fs::read(pki.cert("aa", "alice")).unwrap());
    let signer = pki.write_scratch("snail-signer.pem", &signer);
    let input = pki.write_scratch("snail-body.txt", b"Request from s-nail, case 2026/0042.\n");
    let home = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        Command::new("s-nail")
            .env("HOME", home.path())
            .env("LC_ALL", "C.UTF-8")
            .args([
                "-:/",
                "-v",
                "-Sv15-compat",
                "-Sttycharset=utf-8",
                "-Snosave",
            ])
            .arg(format!("-Sfrom={ALICE}"))
            .arg("-Shostname=client.test")
            .arg("-Ssmime-sign")
            .arg(format!("-Ssmime-sign-cert={}", signer.display()))
            .arg(format!(
                "-Ssmime-sign-include-certs={}",
                pki.chain("aa").display()
            ))
            .arg(format!(
                "-Ssmime-encrypt-{BOB}={}",
                pki.cert("aa", "gateway-enc-rsa").display()
            ))
            .arg(format!("-Smta=smtp://127.0.0.1:{port}"))
            .args(["-Ssmtp-auth=none", "-s", "MLA request 2026/0042", "-.", BOB]),
        Some(&input),
        Duration::from_secs(60),
    );
    (out.status.code(), output_text(&out))
}

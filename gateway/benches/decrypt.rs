//! Benchmark of inbound decryption: `emla::verify::verify` of a signed
//! message encrypted to the gateway, next to `verify` of the same signed
//! message in clear and the raw cost of the decryption's cryptography.
//!
//! Run with `cargo bench --bench decrypt`.
//!
//! Setup (not timed): the test PKI of `tests/support/pki.py`; a text
//! message of 10 KB and of 10 MB signed detached by `alice` (RSA-2048) with
//! `openssl cms -sign`, then encrypted with `openssl cms -encrypt
//! -aes-256-gcm` (AuthEnvelopedData) to the gateway's RSA-2048 certificate
//! (RSA-OAEP-SHA-256) and to its P-256 certificate (ECDH), CRLF as over
//! SMTP. The decryption policy (`policy-decrypt`) with `max_message_size`
//! raised to 32 MiB.
//!
//! Groups:
//! - `verify-clear/{10KB,10MB}`: `verify` of the signed message.
//! - `decrypt-verify/{rsa-oaep,p256}/{10KB,10MB}`: `verify` of the
//!   encrypted one: base64 and CMS decoding, key transport or agreement,
//!   AES-256-GCM, then the same verification.
//! - `raw/aes-256-gcm/{10KB,10MB}`: OpenSSL AES-256-GCM decryption of a
//!   ciphertext of the same size, alone.
//! - `raw/rsa-oaep-2048`, `raw/ecdh-p256`: one RSA-OAEP decryption of a
//!   32-byte key; one P-256 ECDH.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use emla::trust::revocation::RevocationSet;
use openssl::pkey::PKey;

const SIZES: [(&str, usize); 2] = [("10KB", 10 * 1024), ("10MB", 10 * 1024 * 1024)];
/// (bench name, gateway certificate in `certs/aa/`, `-keyopt`s).
const RECIPIENTS: [(&str, &str, &[&str]); 2] = [
    (
        "rsa-oaep",
        "gateway-enc-rsa",
        &["rsa_padding_mode:oaep", "rsa_oaep_md:sha256"],
    ),
    ("p256", "gateway-enc-p256", &[]),
];

/// `policy-decrypt` copied beside it, admitting 32 MiB.
fn policy_dir() -> PathBuf {
    let pki = &support::pki().dir;
    let dir = pki.join("policy-decrypt-bench");
    support::copy_dir(&pki.join("policy-decrypt"), &dir);
    support::edit_file(
        &dir.join("gateway.toml"),
        "max_message_size = 1048576",
        "max_message_size = 33554432",
    );
    dir
}

fn encrypt(plain: &[u8], recip: &str, keyopts: &[&str]) -> Vec<u8> {
    let pki = support::pki();
    let input = pki.write_scratch("bench-plain", plain);
    let out = pki.scratch_file("bench-enc");
    let mut cmd = Command::new(support::openssl());
    cmd.args(["cms", "-encrypt", "-binary", "-aes-256-gcm", "-in"])
        .arg(&input)
        .arg("-out")
        .arg(&out)
        .arg("-recip")
        .arg(pki.cert("aa", recip));
    for k in keyopts {
        cmd.arg("-keyopt").arg(k);
    }
    support::run_ok(&mut cmd);
    support::crlf(&std::fs::read(&out).expect("read encrypted"))
}

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    size: &str,
) {
    if size == "10MB" {
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(10));
    }
}

fn benches(c: &mut Criterion) {
    let at = emla::EvalTime::now();
    let policy = emla::policy::load(&policy_dir(), at).unwrap_or_else(|d| panic!("{d:?}"));
    let fetched = RevocationSet::default();
    let rcpts = vec![support::BOB.to_string()];
    let envelope = emla::verify::Envelope {
        mail_from: Some(support::ALICE),
        rcpt_to: &rcpts,
    };
    let judge = |raw: &[u8]| emla::verify::verify(&policy, &fetched, raw, &envelope, at);

    let mut clear = c.benchmark_group("verify-clear");
    let mut messages = Vec::new();
    for (size, n) in SIZES {
        let entity = support::sign(
            support::Tool::CmsDetached,
            "aa",
            "alice",
            &support::big_body(n),
            &[],
        );
        let signed = support::crlf(&support::with_headers(
            support::ALICE,
            &[support::BOB],
            &entity,
        ));
        let v = judge(&signed);
        assert!(v.accepted(), "{size}: {}", v.detail);
        configure(&mut clear, size);
        clear.throughput(Throughput::Bytes(signed.len() as u64));
        clear.bench_function(size, |b| b.iter(|| judge(black_box(&signed))));
        messages.push((size, signed));
    }
    clear.finish();

    let mut group = c.benchmark_group("decrypt-verify");
    for (name, recip, keyopts) in RECIPIENTS {
        for (size, signed) in &messages {
            let encrypted = encrypt(signed, recip, keyopts);
            let v = judge(&encrypted);
            assert!(v.accepted(), "{name}/{size}: {}", v.detail);
            assert_eq!(v.decrypted.as_deref(), Some(signed.as_slice()));
            configure(&mut group, size);
            group.throughput(Throughput::Bytes(encrypted.len() as u64));
            group.bench_function(format!("{name}/{size}"), |b| {
                b.iter(|| judge(black_box(&encrypted)))
            });
        }
    }
    group.finish();

    let mut raw = c.benchmark_group("raw");
    let key = [7u8; 32];
    let nonce = [9u8; 12];
    for (size, n) in SIZES {
        let mut tag = [0u8; 16];
        let plain = vec![b'x'; n];
        let ct = openssl::symm::encrypt_aead(
            openssl::symm::Cipher::aes_256_gcm(),
            &key,
            Some(&nonce),
            &[],
            &plain,
            &mut tag,
        )
        .expect("encrypt");
        configure(&mut raw, size);
        raw.throughput(Throughput::Bytes(n as u64));
        raw.bench_function(format!("aes-256-gcm/{size}"), |b| {
            b.iter(|| {
                openssl::symm::decrypt_aead(
                    openssl::symm::Cipher::aes_256_gcm(),
                    &key,
                    Some(&nonce),
                    &[],
                    black_box(&ct),
                    &tag,
                )
                .expect("decrypt")
            })
        });
    }
    raw.throughput(Throughput::Elements(1));
    let rsa = private_key("gateway-enc-rsa");
    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&rsa).expect("ctx");
    ctx.encrypt_init().expect("init");
    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
        .expect("pad");
    ctx.set_rsa_oaep_md(openssl::md::Md::sha256()).expect("md");
    let mut wrapped = Vec::new();
    ctx.encrypt_to_vec(&key, &mut wrapped).expect("wrap");
    raw.bench_function("rsa-oaep-2048", |b| {
        b.iter(|| {
            let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&rsa).expect("ctx");
            ctx.decrypt_init().expect("init");
            ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1_OAEP)
                .expect("pad");
            ctx.set_rsa_oaep_md(openssl::md::Md::sha256()).expect("md");
            ctx.set_rsa_mgf1_md(openssl::md::Md::sha256()).expect("mgf");
            let mut out = Vec::new();
            ctx.decrypt_to_vec(black_box(&wrapped), &mut out)
                .expect("decrypt");
            out
        })
    });
    let ec = private_key("gateway-enc-p256");
    let group_p256 =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("group");
    let peer =
        PKey::from_ec_key(openssl::ec::EcKey::generate(&group_p256).expect("key")).expect("pkey");
    raw.bench_function("ecdh-p256", |b| {
        b.iter(|| {
            let mut d = openssl::derive::Deriver::new(&ec).expect("deriver");
            d.set_peer(black_box(&peer)).expect("peer");
            d.derive_to_vec().expect("derive")
        })
    });
    raw.finish();
}

fn private_key(name: &str) -> PKey<openssl::pkey::Private> {
    let path: PathBuf = support::pki().key("aa", name);
    PKey::private_key_from_pem(&std::fs::read(Path::new(&path)).expect("key")).expect("pem")
}

criterion_group!(decrypt_benches, benches);
criterion_main!(decrypt_benches);

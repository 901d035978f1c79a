//! A bounded mutation test of the parsers that read untrusted bytes: the
//! MIME split, BER→DER, CMS, certificates and the whole decision. Signed
//! messages made by the test PKI (OpenSSL and Python `cryptography`, as in
//! `tests/verify.rs`) are mutated a fixed number of times with a fixed seed
//! (bit flips, byte changes, insertions, deletions, truncations, duplicated
//! slices); each mutant must be judged without a panic, within a bounded
//! time, and when a mutant is accepted, the bytes it signs must equal the
//! original's.
//!
//! `EMLA_FUZZ_CASES` raises the number of cases per seed message (default
//! 300); `EMLA_FUZZ_SEED` changes the seed.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use emla::smime::{self, mime::Entity, Form};
use emla::trust::revocation::RevocationSet;
use emla::verify::{self, Envelope};
use support::*;

/// The longest one judgement may take (a debug build, a busy machine).
const BOUND: Duration = Duration::from_secs(2);

/// One mutation of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        if out.is_empty() {
            out.push(rng.next() as u8);
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(7) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next() as u8,
            2 => {
                // Bytes that matter to parsers.
                const SPECIAL: &[u8] = b"\r\n\0-:;=\"\\ \t0\x30\x80\x81\x82\xff";
                out.insert(at, SPECIAL[rng.below(SPECIAL.len())]);
            }
            3 => {
                let len = 1 + rng.below(16.min(out.len() - at));
                out.drain(at..at + len);
            }
            4 => out.truncate(at),
            5 => {
                let len = 1 + rng.below(64.min(out.len() - at));
                let slice = out[at..at + len].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, slice);
            }
            _ => {
                // A length octet of DER: make it long-form or huge.
                out[at] = [0x80, 0x84, 0xff, 0x00][rng.below(4)];
            }
        }
    }
    out
}

/// The bytes a message signs: the first part of a detached signature, or
/// the content a signed-data object encapsulates.
fn signed_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    let top = Entity::parse(raw).ok()?;
    let env = smime::extract(&top).ok()?;
    match env.form {
        Form::Detached => env.detached_content.map(<[u8]>::to_vec),
        Form::Opaque => {
            let signed = smime::cms::parse(&env.cms_der).ok()?;
            signed.content.map(<[u8]>::to_vec)
        }
    }
}

fn cases() -> usize {
    std::env::var("EMLA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn seed() -> u64 {
    std::env::var("EMLA_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00e1_a5ee_d5ee_d5ee)
}

/// Runs `f` on `input`, failing the test on a panic or when it takes
/// longer than [`BOUND`]; reports what was fed.
fn bounded<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        let path = pki().write_scratch("fuzz-panic", input);
        panic!("{what} panicked on the input saved in {}", path.display())
    });
    let took = start.elapsed();
    if took > BOUND {
        let path = pki().write_scratch("fuzz-slow", input);
        panic!(
            "{what} took {took:?} (bound {BOUND:?}) on the input saved in {}",
            path.display()
        );
    }
    out
}

#[test]
fn mutated_messages_never_panic_and_accepted_ones_sign_the_same_bytes() {
    let policy = emla::policy::load(&pki().policy(), emla::EvalTime::now())
        .unwrap_or_else(|d| panic!("{d:#?}"));
    let none = RevocationSet::default();
    let rcpt = vec![BOB.to_string()];
    let envelope = Envelope {
        mail_from: Some(ALICE),
        rcpt_to: &rcpt,
    };
    let mut rng = Rng(seed());
    let (mut accepted, mut judged) = (0usize, 0usize);
    for tool in [
        Tool::SmimeDetached,
        Tool::CmsOpaque,
        Tool::CmsOpaqueStream,
        Tool::PyDetached,
    ] {
        let original = alice_to_bob(tool);
        let v = verify::verify(&policy, &none, &original, &envelope, emla::EvalTime::now());
        assert!(
            v.accepted(),
            "{tool:?}: the seed message must pass: {}",
            v.detail
        );
        let signed = signed_bytes(&original).expect("the seed message signs something");
        for _ in 0..cases() {
            let mutant = mutate(&mut rng, &original);
            let v = bounded("verify", &mutant, || {
                verify::verify(&policy, &none, &mutant, &envelope, emla::EvalTime::now())
            });
            judged += 1;
            if v.accepted() {
                accepted += 1;
                assert_eq!(
                    signed_bytes(&mutant).as_deref(),
                    Some(signed.as_slice()),
                    "{tool:?}: an accepted mutant signs other bytes (saved in {})",
                    pki().write_scratch("fuzz-accepted", &mutant).display()
                );
            }
        }
    }
    // Most mutants break the message; some only touch unsigned headers.
    assert!(
        judged > 0 && accepted < judged,
        "{accepted} of {judged} accepted"
    );
}

#[test]
fn mutated_cms_der_and_certificates_never_panic() {
    let original = alice_to_bob(Tool::CmsOpaqueStream);
    let top = Entity::parse(&original).expect("MIME");
    let env = smime::extract(&top).expect("S/MIME");
    let cms_der = env.cms_der.clone();
    let certs: Vec<Vec<u8>> = smime::cms::parse(&cms_der)
        .expect("CMS")
        .certificates
        .iter()
        .map(|c| c.to_vec())
        .collect();
    let mut rng = Rng(seed() ^ 0x5eed);
    for _ in 0..cases() * 2 {
        let m = mutate(&mut rng, &cms_der);
        bounded("BER to DER", &m, || {
            let _ = emla::asn1::to_der(&m);
        });
        bounded("CMS parse", &m, || {
            let _ = smime::cms::parse(&m);
        });
        let cert = &certs[rng.below(certs.len())];
        let c = mutate(&mut rng, cert);
        bounded("certificate parse", &c, || {
            let _ = emla::trust::cert::CertInfo::parse(&c);
        });
    }
}

#[test]
fn mutated_mime_never_panics() {
    let original = alice_to_bob(Tool::PyDetached);
    let mut rng = Rng(seed() ^ 0x313e);
    for _ in 0..cases() * 2 {
        let m = mutate(&mut rng, &original);
        bounded("MIME parse", &m, || {
            if let Ok(top) = Entity::parse(&m) {
                let _ = smime::extract(&top);
            }
            let _ = smime::mime::check_depth(&m, 10);
            let _ = smime::mime::header_len(&m);
        });
    }
}

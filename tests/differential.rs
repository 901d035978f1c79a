//! Differential test of the verifier against OpenSSL: whatever `emla
//! verify` accepts, `openssl cms -verify` accepts too (the README promises
//! that the relayed copy passes it). The messages are the kinds the other
//! tests accept (RSA and ECDSA, opaque and detached, OpenSSL and Python
//! `cryptography`, with and without signed attributes, without
//! certificates), plus bounded, deterministic mutants of each: bytes
//! flipped, inserted and deleted in the MIME text and in the CMS DER, lines
//! repeated, dropped and swapped, SignedData fields replaced.
//!
//! OpenSSL runs as `support::openssl_cms_verifies` documents (`-binary
//! -crlfeol -purpose any`, the authority's root as `-CAfile`, its issuing
//! CA as `-certfile`): the trust emla gives the message, without the
//! checks only emla makes (sender, policy, revocation), which can only
//! make emla refuse more.
//!
//! `EMLA_DIFF_CASES` (default 240) mutants in all, from `EMLA_DIFF_SEED`
//! (default 11); each takes one `emla verify` run, and OpenSSL when emla
//! accepts.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// One message every mutant starts from.
struct Base {
    name: &'static str,
    msg: Vec<u8>,
    /// The signer's country, for OpenSSL's trust anchor.
    cc: &'static str,
    from: &'static str,
    to: &'static str,
    /// Whether emla accepts it as is.
    accepted: bool,
    /// Whether its CMS is DER (BER cannot be edited field by field).
    der: bool,
}

fn bases() -> Vec<Base> {
    let alice = |name, tool, extra: &[&str], accepted, der| Base {
        name,
        msg: crlf(&with_headers(
            ALICE,
            &[BOB],
            &sign(tool, "aa", "alice", &text_body(), extra),
        )),
        cc: "aa",
        from: ALICE,
        to: BOB,
        accepted,
        der,
    };
    vec![
        alice("rsa smime detached", Tool::SmimeDetached, &[], true, true),
        alice("rsa cms opaque", Tool::CmsOpaque, &[], true, true),
        alice(
            "rsa cms opaque ber",
            Tool::CmsOpaqueStream,
            &[],
            true,
            false,
        ),
        alice("rsa python detached", Tool::PyDetached, &[], true, true),
        alice("rsa python opaque", Tool::PyOpaque, &[], true, true),
        alice(
            "rsa no attributes",
            Tool::CmsDetached,
            &["-noattr"],
            true,
            true,
        ),
        alice(
            "rsa no certificates",
            Tool::CmsDetached,
            &["-nocerts"],
            false,
            true,
        ),
        Base {
            name: "ecdsa smime detached",
            msg: mail(Tool::SmimeDetached, "aa", "eve", EVE, &[BOB]),
            cc: "aa",
            from: EVE,
            to: BOB,
            accepted: true,
            der: true,
        },
        Base {
            name: "ecdsa cms opaque",
            msg: mail(Tool::CmsOpaque, "bb", "bea", BEA, &[ALICE]),
            cc: "bb",
            from: BEA,
            to: ALICE,
            accepted: true,
            der: true,
        },
    ]
}

/// A byte to insert: one that matters to parsers, or any.
fn any_byte(rng: &mut Rng) -> u8 {
    const INTERESTING: &[u8] = b" \t\r\n-\";=:<>@.\x00\x80\xff";
    match rng.below(3) {
        0 => INTERESTING[rng.below(INTERESTING.len())],
        _ => rng.next() as u8,
    }
}

/// Byte-level edits: flip, insert, delete.
fn bytes_mutant(data: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    let at = rng.below(data.len());
    match rng.below(3) {
        0 => {
            data[at] ^= 1 << rng.below(8);
            "flip"
        }
        1 => {
            let b = any_byte(rng);
            data.insert(at, b);
            "insert"
        }
        _ => {
            data.remove(at);
            "delete"
        }
    }
}

/// Line-level edits of the message: repeat, drop or swap lines.
fn lines_mutant(msg: &[u8], rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let mut lines: Vec<&[u8]> = msg.split_inclusive(|&b| b == b'\n').collect();
    let at = rng.below(lines.len());
    let what = match rng.below(3) {
        0 => {
            lines.insert(at, lines[at]);
            "repeat line"
        }
        1 => {
            lines.remove(at);
            "drop line"
        }
        _ => {
            let other = rng.below(lines.len());
            lines.swap(at, other);
            "swap lines"
        }
    };
    (lines.concat(), what)
}

/// SignedData field edits (DER only).
fn fields_mutant(fields: &mut Vec<Vec<u8>>, rng: &mut Rng) -> &'static str {
    let certs = fields.iter().position(|f| f[0] == 0xa0);
    match rng.below(6) {
        0 => {
            fields[0] = vec![0x02, 0x01, [0, 1, 2, 3, 4, 5, 99][rng.below(7)]];
            "version"
        }
        1 => {
            // digestAlgorithms twice over, or emptied.
            let set = der_content(&fields[1]).to_vec();
            fields[1] = if rng.below(2) == 0 {
                der_wrap(0x31, &[set.clone(), set].concat())
            } else {
                vec![0x31, 0x00]
            };
            "digestAlgorithms"
        }
        2 => match certs {
            Some(c) => {
                fields.remove(c);
                "drop certificates"
            }
            None => "none",
        },
        3 => match certs {
            Some(c) => {
                let mut items = der_items(der_content(&fields[c]));
                let i = rng.below(items.len());
                match rng.below(3) {
                    0 => items.insert(i, items[i].clone()),
                    1 => items.reverse(),
                    _ => {
                        items.remove(i);
                    }
                }
                fields[c] = der_wrap(0xa0, &items.concat());
                "edit certificates"
            }
            None => "none",
        },
        4 => {
            let at = fields.len() - 1;
            let crl = [
                der_wrap(0x30, &[]),
                vec![0x05, 0x00],
                der_wrap(0xa1, &[0x06, 0x01, 0x01]),
            ][rng.below(3)]
            .clone();
            fields.insert(at, der_wrap(0xa1, &crl));
            "add crls"
        }
        _ => {
            // A second copy of the SignerInfos set's first member.
            let last = fields.len() - 1;
            let mut items = der_items(der_content(&fields[last]));
            items.push(items[0].clone());
            fields[last] = der_wrap(0x31, &items.concat());
            "repeat SignerInfo"
        }
    }
}

/// One mutant of `base`: what was done and the bytes.
fn mutant(base: &Base, rng: &mut Rng) -> (String, Vec<u8>) {
    let kinds = if base.der { 4 } else { 2 };
    match rng.below(kinds) {
        0 => {
            let mut m = base.msg.clone();
            let what = bytes_mutant(&mut m, rng);
            (format!("message byte {what}"), m)
        }
        1 => {
            let (m, what) = lines_mutant(&base.msg, rng);
            (format!("message {what}"), m)
        }
        2 => {
            let mut what = "";
            let m = edit_cms(&base.msg, |der| what = bytes_mutant(der, rng));
            (format!("CMS byte {what}"), m)
        }
        _ => {
            let mut what = "";
            let m = edit_cms(&base.msg, |der| {
                edit_signed_data(der, |f| what = fields_mutant(f, rng))
            });
            (format!("SignedData {what}"), m)
        }
    }
}

fn emla_accepts(base: &Base, msg: &[u8]) -> (bool, String) {
    let out = Verify::new(msg.to_vec())
        .mail_from(Some(base.from))
        .rcpt(&[base.to])
        .run();
    let v = out.json();
    let _ = std::fs::remove_file(&out.message);
    (
        v["verdict"] == "accept",
        format!("{} {}", v["reason"], v["detail"]),
    )
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn whatever_emla_accepts_openssl_verifies() {
    let cases = env_usize("EMLA_DIFF_CASES", 240);
    let seed = env_usize("EMLA_DIFF_SEED", 11) as u64;
    let deadline = Instant::now() + Duration::from_secs(120.max(cases as u64 / 2));
    let bases = bases();
    for b in &bases {
        let (accepted, why) = emla_accepts(b, &b.msg);
        assert_eq!(accepted, b.accepted, "{}: emla says {why}", b.name);
        assert_eq!(
            openssl_cms_verifies(&b.msg, b.cc),
            b.accepted,
            "{}: OpenSSL",
            b.name
        );
    }
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut disagreements = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for n in 0..cases {
        assert!(
            Instant::now() < deadline,
            "over time after {n} of {cases} mutants"
        );
        let base = &bases[n % bases.len()];
        let (what, m) = mutant(base, &mut rng);
        let (ok, why) = emla_accepts(base, &m);
        if !ok {
            refused += 1;
            continue;
        }
        accepted += 1;
        if !openssl_cms_verifies(&m, base.cc) {
            let kept = pki().write_scratch("disagreement.eml", &m);
            disagreements.push(format!(
                "mutant {n} of {} ({what}), {}: emla {why}, OpenSSL refuses",
                base.name,
                kept.display()
            ));
        }
    }
    eprintln!("differential: {cases} mutants, {accepted} accepted by emla, {refused} refused");
    assert!(
        disagreements.is_empty(),
        "emla accepts what OpenSSL refuses:\n{}",
        disagreements.join("\n")
    );
    // Enough accepted mutants that the comparison says something.
    assert!(
        accepted * 20 >= cases,
        "only {accepted} of {cases} mutants accepted"
    );
}

//! The fixed vocabulary of reason codes (see `docs/contracts.md`, "Reason codes").
//!
//! Every verdict carries exactly one code. Codes appear in SMTP replies, the
//! audit log, `emla verify --json` and metrics, so their spelling is a
//! contract: add codes, never rename or reuse one.

use std::fmt;

/// Why a message was accepted or rejected.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Every check passed.
    Ok,
    /// The message carries no S/MIME signature (plain, encrypted-only, PGP).
    Unsigned,
    /// The MIME structure or the CMS object cannot be parsed.
    Malformed,
    /// A signature does not verify with the signer certificate's key.
    BadSignature,
    /// The messageDigest attribute differs from the digest of the signed bytes.
    DigestMismatch,
    /// The signer certificate does not chain to the authority's trust anchors.
    UntrustedChain,
    /// A certificate of the chain has expired at the evaluation time.
    Expired,
    /// A certificate (or the signing time) lies in the future.
    NotYetValid,
    /// A certificate of the chain is listed in a CRL.
    Revoked,
    /// A required CRL is missing or stale.
    CrlUnavailable,
    /// No fresh CRL and no OCSP answer could be had for a certificate of
    /// the chain (the responder is down or too slow).
    OcspUnavailable,
    /// The OCSP responder answered that it does not know a certificate of
    /// the chain.
    RevocationUnknown,
    /// keyUsage or extKeyUsage does not allow e-mail signing.
    WrongUsage,
    /// `From:` or the envelope sender does not match the signer.
    SenderMismatch,
    /// A sender or recipient domain belongs to no authority.
    UnauthorizedDomain,
    /// The SMTP client's address is not in the sender authority's
    /// `allowed_clients`.
    UnauthorizedClient,
    /// A route rule refuses the sender/recipient pair, or none matches.
    RouteDenied,
    /// MD5, SHA-1, a short RSA key or another refused algorithm.
    WeakAlgorithm,
    /// Bare LF or bare CR in the SMTP data.
    Smuggling,
    /// The message exceeds the size limit.
    TooLarge,
    /// The MIME structure is nested deeper than allowed.
    TooDeep,
    /// More recipients than allowed.
    TooManyRecipients,
    /// A MAIL or RCPT path that is not RFC 5321 syntax, or that the relay
    /// could not send to.
    BadAddress,
    /// The gateway cannot decide now; the client should retry.
    TemporaryFailure,
    /// The message's signature was accepted before (policy `replay =
    /// "refuse"`): the same signed request is not relayed twice.
    Replay,
    /// The message declares a request kind the policy does not know
    /// (`[kinds] unknown = "refuse"`, the default).
    UnknownKind,
    /// The message is encrypted, but to no decryption certificate of the
    /// gateway (`[[decryption]]`): it cannot be judged.
    NotForGateway,
    /// The message is encrypted to the gateway but does not decrypt: a
    /// wrong key, a changed ciphertext (GCM tag, CBC padding).
    DecryptFailed,
}

impl Reason {
    /// Every code, in documentation order.
    pub const ALL: [Reason; 28] = [
        Reason::Ok,
        Reason::Unsigned,
        Reason::Malformed,
        Reason::BadSignature,
        Reason::DigestMismatch,
        Reason::UntrustedChain,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::Revoked,
        Reason::CrlUnavailable,
        Reason::OcspUnavailable,
        Reason::RevocationUnknown,
        Reason::WrongUsage,
        Reason::SenderMismatch,
        Reason::UnauthorizedDomain,
        Reason::UnauthorizedClient,
        Reason::RouteDenied,
        Reason::WeakAlgorithm,
        Reason::Smuggling,
        Reason::TooLarge,
        Reason::TooDeep,
        Reason::TooManyRecipients,
        Reason::BadAddress,
        Reason::TemporaryFailure,
        Reason::Replay,
        Reason::UnknownKind,
        Reason::NotForGateway,
        Reason::DecryptFailed,
    ];

    /// The code as written in replies and logs, e.g. `bad-signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Unsigned => "unsigned",
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad-signature",
            Reason::DigestMismatch => "digest-mismatch",
            Reason::UntrustedChain => "untrusted-chain",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not-yet-valid",
            Reason::Revoked => "revoked",
            Reason::CrlUnavailable => "crl-unavailable",
            Reason::OcspUnavailable => "ocsp-unavailable",
            Reason::RevocationUnknown => "revocation-unknown",
            Reason::WrongUsage => "wrong-usage",
            Reason::SenderMismatch => "sender-mismatch",
            Reason::UnauthorizedDomain => "unauthorized-domain",
            Reason::UnauthorizedClient => "unauthorized-client",
            Reason::RouteDenied => "route-denied",
            Reason::WeakAlgorithm => "weak-algorithm",
            Reason::Smuggling => "smuggling",
            Reason::TooLarge => "too-large",
            Reason::TooDeep => "too-deep",
            Reason::TooManyRecipients => "too-many-recipients",
            Reason::BadAddress => "bad-address",
            Reason::TemporaryFailure => "temporary-failure",
            Reason::Replay => "replay",
            Reason::UnknownKind => "unknown-kind",
            Reason::NotForGateway => "not-for-gateway",
            Reason::DecryptFailed => "decrypt-failed",
        }
    }

    /// Parses a code as written in replies and logs.
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reason::parse(s).ok_or_else(|| format!("unknown reason code {s:?}"))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// For the tests of each vocabulary (reasons, delivery states, audit
/// kinds): every value's name parses back to it, and serde writes and
/// reads it as that name.
#[cfg(test)]
pub(crate) fn assert_names_round_trip<T>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) where
    T: Copy + PartialEq + fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    for &v in all {
        let name = as_str(v);
        assert_eq!(parse(name), Some(v), "{name}");
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, format!("\"{name}\""));
        assert_eq!(serde_json::from_str::<T>(&json).unwrap(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_spelling_matches_as_str() {
        assert_names_round_trip(&Reason::ALL, Reason::as_str, Reason::parse);
        assert_eq!(Reason::parse("fine"), None);
    }

    #[test]
    fn every_code_is_in_the_contract_and_back() {
        let documented = crate::store::kind::contract_table("Reason codes");
        let ours: Vec<String> = Reason::ALL.iter().map(|r| r.to_string()).collect();
        assert_eq!(documented, ours, "docs/contracts.md vs Reason::ALL");
    }
}

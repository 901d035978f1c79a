//! The accept/reject decision for one message: the function the SMTP intake
//! and `emla verify` both call.

use crate::clock::EvalTime;
use crate::policy::Policy;
use crate::reason::Reason;

/// The SMTP envelope of a message, when known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// MAIL FROM, if given.
    pub mail_from: Option<&'a str>,
    /// RCPT TO addresses.
    pub rcpt_to: &'a [String],
}

/// What was learned about one signer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SignerReport {
    /// rfc822Name SANs of the signer certificate.
    pub emails: Vec<String>,
    /// Subject DN (RFC 4514).
    pub subject: String,
    /// Issuer DN (RFC 4514).
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
    /// Public key algorithm, e.g. `rsa-2048`, `ecdsa-p256`.
    pub key_algorithm: String,
    /// Digest and signature algorithm of the SignerInfo, e.g. `sha256-rsa-pkcs1`.
    pub signature_algorithm: String,
    /// Subjects of the validated chain, signer first, anchor last.
    pub chain: Vec<String>,
    /// Id of the authority whose anchors validated the chain.
    pub authority: Option<String>,
}

/// Where one recipient is routed.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RecipientRoute {
    /// The recipient address.
    pub recipient: String,
    /// The matching route's name.
    pub route: Option<String>,
    /// The recipient's authority id.
    pub authority: Option<String>,
    /// `host:port` of the next hop.
    pub next_hop: Option<String>,
}

/// The outcome of [`verify`]: exactly one reason code, `Reason::Ok` meaning accepted.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    /// The reason code.
    pub reason: Reason,
    /// A human explanation naming what failed.
    pub detail: String,
    /// What was learned about the signers (possibly partial on reject).
    pub signers: Vec<SignerReport>,
    /// Routing of each envelope recipient (on accept).
    pub recipients: Vec<RecipientRoute>,
    /// The sender's authority id, when known.
    pub authority: Option<String>,
    /// The evaluation time.
    pub evaluated_at: String,
}

impl Verdict {
    /// Whether the message is accepted.
    pub fn accepted(&self) -> bool {
        self.reason == Reason::Ok
    }

    /// One JSON object for scripts (`emla verify --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("verdict serializes");
        v["verdict"] = if self.accepted() { "accept" } else { "reject" }.into();
        v
    }

    /// Human-readable rendering.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = if self.accepted() { "ACCEPT" } else { "REJECT" };
        let _ = writeln!(s, "{verdict} {}: {}", self.reason, self.detail);
        for signer in &self.signers {
            let _ = writeln!(s, "signer {}", signer.emails.join(", "));
            let _ = writeln!(s, "  subject     {}", signer.subject);
            let _ = writeln!(s, "  issuer      {}", signer.issuer);
            let _ = writeln!(s, "  serial      {}", signer.serial);
            let _ = writeln!(s, "  sha256      {}", signer.sha256);
            let _ = writeln!(s, "  key         {}", signer.key_algorithm);
            let _ = writeln!(s, "  signature   {}", signer.signature_algorithm);
            if let Some(a) = &signer.authority {
                let _ = writeln!(s, "  authority   {a}");
            }
            for (i, c) in signer.chain.iter().enumerate() {
                let _ = writeln!(s, "  chain[{i}]    {c}");
            }
        }
        for r in &self.recipients {
            let _ = writeln!(
                s,
                "recipient {} via route {} to {} ({})",
                r.recipient,
                r.route.as_deref().unwrap_or("-"),
                r.authority.as_deref().unwrap_or("-"),
                r.next_hop.as_deref().unwrap_or("-")
            );
        }
        s
    }
}

/// Judges `raw` (the message exactly as received) against `policy` at `at`.
pub fn verify(policy: &Policy, raw: &[u8], envelope: &Envelope<'_>, at: EvalTime) -> Verdict {
    let _ = (policy, raw, envelope, at);
    todo!()
}

//! SMTP replies: each reason code maps to one reply code and enhanced
//! status code (RFC 3463), and its text always starts with the reason code.

use crate::reason::Reason;

/// A reply to send to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text after the code (enhanced status code first).
    pub text: String,
}

/// Replies longer than this are cut: RFC 5321 allows 512 octets a line.
const MAX_TEXT: usize = 480;

impl Reply {
    /// A reply from its parts.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        let mut text: String = text
            .into()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if text.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        Reply { code, text }
    }

    /// The reply for a verdict that is not `ok`: `code enh reason: detail`.
    pub fn reject(reason: Reason, detail: &str) -> Reply {
        let (code, enhanced) = codes(reason);
        Reply::new(code, format!("{enhanced} {reason}: {detail}"))
    }

    /// `451 4.3.0 temporary-failure: …`.
    pub fn temporary(detail: &str) -> Reply {
        Reply::reject(Reason::TemporaryFailure, detail)
    }

    /// The wire form, CRLF-terminated.
    pub fn wire(&self) -> Vec<u8> {
        format!("{} {}\r\n", self.code, self.text).into_bytes()
    }

    /// Whether the reply refuses (4xx or 5xx).
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

/// Reply code and enhanced status code of a reason.
pub fn codes(reason: Reason) -> (u16, &'static str) {
    match reason {
        Reason::Ok => (250, "2.0.0"),
        Reason::TooLarge => (552, "5.3.4"),
        Reason::TooManyRecipients => (452, "4.5.3"),
        // RCPT's; MAIL's is 5.1.7 (see `handler`), as Postfix answers.
        Reason::BadAddress => (501, "5.1.3"),
        Reason::Smuggling => (550, "5.5.2"),
        Reason::Malformed | Reason::TooDeep => (550, "5.6.0"),
        // The CRL may be refreshed: the sender's server retries.
        Reason::CrlUnavailable | Reason::OcspUnavailable => (451, "4.7.5"),
        Reason::TemporaryFailure => (451, "4.3.0"),
        Reason::WeakAlgorithm => (550, "5.7.4"),
        Reason::Replay => (550, "5.7.0"),
        Reason::UnknownKind => (550, "5.7.0"),
        // RFC 3463 X.7.5: the key is not available, or what it opens is invalid.
        Reason::NotForGateway | Reason::DecryptFailed => (550, "5.7.5"),
        Reason::Unsigned
        | Reason::BadSignature
        | Reason::DigestMismatch
        | Reason::UntrustedChain
        | Reason::Expired
        | Reason::NotYetValid
        | Reason::Revoked
        | Reason::RevocationUnknown
        | Reason::WrongUsage
        | Reason::SenderMismatch
        | Reason::UnauthorizedDomain
        | Reason::UnauthorizedClient
        | Reason::RouteDenied => (550, "5.7.1"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_consistent_code() {
        for r in Reason::ALL {
            let (code, enh) = codes(r);
            assert_eq!(
                enh.chars().next().unwrap().to_digit(10).unwrap(),
                u32::from(code / 100),
                "{r}"
            );
        }
    }

    #[test]
    fn replies_are_single_bounded_lines() {
        let r = Reply::reject(Reason::BadSignature, &format!("a\r\nb{}", "x".repeat(2000)));
        assert!(r.text.starts_with("5.7.1 bad-signature: a  b"));
        assert!(r.wire().len() < 512);
        assert_eq!(r.wire().iter().filter(|&&b| b == b'\n').count(), 1);
    }
}

//! The next hop's own queue id, read from its `250` reply to the data: the
//! name under which the counterpart's logs know the message, so that the
//! two sides' records can be matched. Only forms that MTAs are known to
//! write are read; any other reply gives none (the full reply is kept in
//! the audit record anyway).

/// The queue id in `reply` (the text after the code, with or without the
/// code and the enhanced status), or `None` when the reply names none in
/// a known form:
///
/// - Postfix (and Mailpit): `2.0.0 Ok: queued as 4F2A1B3C`;
/// - Exim: `OK id=1abcde-000123-AB`;
/// - Sendmail, OpenSMTPD: `2.0.0 4BHCRk4S012345 Message accepted for delivery`;
/// - Microsoft Exchange and Exchange Online: `2.6.0 <ID@host> [InternalId=…]
///   Queued mail for delivery` (the id in angle brackets);
/// - Gmail: `2.0.0 OK  1701432000 ID - gsmtp`.
pub fn next_hop_queue_id(reply: &str) -> Option<String> {
    let words: Vec<&str> = reply.split_whitespace().collect();
    let mut rest = words.as_slice();
    if rest.first().is_some_and(|w| is_code(w)) {
        rest = &rest[1..];
    }
    if rest.first().is_some_and(|w| is_enhanced(w)) {
        rest = &rest[1..];
    }
    postfix(rest)
        .or_else(|| exim(rest))
        .or_else(|| sendmail(rest))
        .or_else(|| gmail(rest))
        .or_else(|| exchange(rest))
        .filter(|id| is_id(id))
        .map(str::to_owned)
}

/// `… queued as ID`.
fn postfix<'a>(w: &[&'a str]) -> Option<&'a str> {
    let at = w
        .windows(2)
        .position(|p| p[0].eq_ignore_ascii_case("queued") && p[1].eq_ignore_ascii_case("as"))?;
    w.get(at + 2).map(|id| id.trim_end_matches(['.', ',', ';']))
}

/// `… id=ID`.
fn exim<'a>(w: &[&'a str]) -> Option<&'a str> {
    w.iter().find_map(|x| {
        x.get(..3)
            .filter(|p| p.eq_ignore_ascii_case("id="))
            .map(|_| &x[3..])
    })
}

/// `ID Message accepted for delivery`.
fn sendmail<'a>(w: &[&'a str]) -> Option<&'a str> {
    let said = w.get(1..4)?;
    let accepted = said
        .iter()
        .zip(["message", "accepted", "for"])
        .all(|(a, b)| a.eq_ignore_ascii_case(b));
    accepted.then(|| w[0])
}

/// `OK TIMESTAMP ID - gsmtp`.
fn gmail<'a>(w: &[&'a str]) -> Option<&'a str> {
    match w {
        [ok, stamp, id, "-", gsmtp, ..]
            if ok.eq_ignore_ascii_case("ok")
                && stamp.bytes().all(|b| b.is_ascii_digit())
                && gsmtp.eq_ignore_ascii_case("gsmtp") =>
        {
            Some(id)
        }
        _ => None,
    }
}

/// `<ID> [InternalId=…] Queued mail for delivery`: the first word in angle
/// brackets, when the reply says it queued the mail.
fn exchange<'a>(w: &[&'a str]) -> Option<&'a str> {
    let queued = w.iter().any(|x| x.eq_ignore_ascii_case("queued"));
    let first = w.first()?;
    first
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .filter(|_| queued)
}

fn is_code(w: &str) -> bool {
    w.len() == 3 && w.starts_with('2') && w.bytes().all(|b| b.is_ascii_digit())
        || w.len() == 4 && w.starts_with('2') && w.ends_with('-')
}

/// `2.0.0`, `2.6.0`: an RFC 3463 success status.
fn is_enhanced(w: &str) -> bool {
    let parts: Vec<&str> = w.split('.').collect();
    parts.len() == 3
        && parts[0] == "2"
        && parts[1..]
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// A plausible id: short, printable, no brackets or quotes, and with at
/// least one letter or digit.
fn is_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>\"'()[],;\\".contains(&b))
        && id.bytes().any(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies as MTAs write them, and the queue id in each.
    const KNOWN: &[(&str, &str)] = &[
        // Postfix (and Mailpit).
        ("250 2.0.0 Ok: queued as 4F2A1B3C", "4F2A1B3C"),
        // lettre gives the text without the code.
        ("2.0.0 Ok: queued as 4F2A1B3C", "4F2A1B3C"),
        // Postfix's long queue ids (enable_long_queue_ids).
        ("250 2.0.0 Ok: queued as 4bLz5N0Xgxz9sQ7", "4bLz5N0Xgxz9sQ7"),
        (
            "250 2.0.0 Ok: queued as 1zZgWqXbDJZz4f2xXvYTE3mA8J0",
            "1zZgWqXbDJZz4f2xXvYTE3mA8J0",
        ),
        // Exim, and Exim 4.97's longer ids.
        ("250 OK id=1abcde-000123-AB", "1abcde-000123-AB"),
        ("OK id=1rJx6b-00000000Dmd-3Yzq", "1rJx6b-00000000Dmd-3Yzq"),
        // Sendmail, OpenSMTPD.
        (
            "250 2.0.0 4BHCRk4S012345 Message accepted for delivery",
            "4BHCRk4S012345",
        ),
        (
            "250 2.0.0 3e1a9f2b Message accepted for delivery",
            "3e1a9f2b",
        ),
        // Microsoft Exchange, Exchange Online.
        (
            "250 2.6.0 <9b2a8f3e4c1d4e6f8a0b@EX01.contoso.com> [InternalId=12345678901234, \
             Hostname=EX01.contoso.com] Queued mail for delivery",
            "9b2a8f3e4c1d4e6f8a0b@EX01.contoso.com",
        ),
        (
            "2.6.0 <AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com> \
             [InternalId=1234567890123, Hostname=AM0PR01MB1234.eurprd01.prod.exchangelabs.com] \
             10234 bytes in 0.052, 191.431 KB/sec Queued mail for delivery",
            "AM0PR01MB1234ABCD@AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
        ),
        // Gmail.
        (
            "250 2.0.0 OK  1701432000 d9443c01a7336-1d0c9b8a7e1si1234567pls.123 - gsmtp",
            "d9443c01a7336-1d0c9b8a7e1si1234567pls.123",
        ),
    ];

    #[test]
    fn known_forms_give_the_id() {
        for (reply, id) in KNOWN {
            assert_eq!(next_hop_queue_id(reply).as_deref(), Some(*id), "{reply:?}");
        }
    }

    #[test]
    fn unknown_forms_give_none() {
        for reply in [
            // aiosmtpd's default and a plain OK.
            "250 OK",
            "OK",
            "250 2.0.0 Ok",
            // qmail: "qp" is the process, not a queue id.
            "250 ok 1701432000 qp 12345",
            "250 Message received",
            // The relay tests' sink.
            "250 2.0.0 stored as 0001",
            "",
            "250 2.0.0 Ok: queued as",
            "250 2.0.0 Ok: queued as <>",
            "250 OK id=",
            // Angle brackets without saying it was queued.
            "250 <x@y> thanks",
        ] {
            assert_eq!(next_hop_queue_id(reply), None, "{reply:?}");
        }
    }
}

//! What one session may still do: its commands, error replies, junk
//! commands and lifetime are bounded (see
//! [`SessionLimits`](crate::config::SessionLimits)), and its repeated
//! refusals are audited once each, then summed up in one record when the
//! session ends, so a client cannot flood the audit log.

use std::collections::BTreeMap;

use tokio::time::{Duration, Instant};

use crate::config::SessionLimits;
use crate::reason::Reason;
use crate::store::payload::RepeatedRefusal;

/// Why a session is closed before its client ends it.
pub use crate::store::payload::SessionLimit as Exceeded;

/// The closing reply of a session that `limit` ended.
pub fn closing_reply(limit: Exceeded) -> &'static str {
    match limit {
        Exceeded::HardErrorLimit => "421 4.7.0 too many errors, closing connection",
        Exceeded::CommandLimit => "421 4.7.0 too many commands, closing connection",
        Exceeded::Lifetime => "421 4.4.2 session too long, closing connection",
    }
}

/// The counts of one session against its limits.
pub struct Budget {
    limits: SessionLimits,
    started: Instant,
    commands: u32,
    errors: u32,
    junk: u32,
}

impl Budget {
    /// A session starting now.
    pub fn new(limits: SessionLimits) -> Budget {
        Budget {
            limits,
            started: Instant::now(),
            commands: 0,
            errors: 0,
            junk: 0,
        }
    }

    /// Counts one command (`junk` when [`is_junk`]) and the reply it got
    /// (empty when it has none yet); returns why the session must end, if it
    /// must.
    pub fn command(&mut self, junk: bool, reply: &[u8]) -> Option<Exceeded> {
        self.commands += 1;
        let mut error = is_error(reply);
        if junk {
            self.junk += 1;
            error |= self.junk > self.limits.junk_commands;
        }
        if error {
            self.errors += 1;
        }
        if self.errors >= self.limits.hard_errors {
            Some(Exceeded::HardErrorLimit)
        } else if self.commands >= self.limits.commands {
            Some(Exceeded::CommandLimit)
        } else {
            None
        }
    }

    /// Counts the reply to the end of DATA: an accepted message resets the
    /// error count (as Postfix does), a refusal is one more error.
    pub fn message(&mut self, reply: &[u8]) -> Option<Exceeded> {
        if reply.first() == Some(&b'2') {
            self.errors = 0;
            return None;
        }
        self.errors += u32::from(is_error(reply));
        (self.errors >= self.limits.hard_errors).then_some(Exceeded::HardErrorLimit)
    }

    /// Until when the session may wait for its next line: the end of its
    /// lifetime, or, inside a transaction, the DATA timeout after that.
    pub fn deadline(&self, in_transaction: bool, data_timeout: Duration) -> Instant {
        let end = self.started + self.limits.lifetime;
        if in_transaction {
            end + data_timeout
        } else {
            end
        }
    }
}

fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'4' | b'5'))
}

/// NOOP, RSET, VRFY, EXPN and HELP: commands that move no mail.
pub fn is_junk(line: &[u8]) -> bool {
    let verb = line
        .split(|&b| b == b' ' || b == b'\r')
        .next()
        .unwrap_or(b"");
    ["NOOP", "RSET", "VRFY", "EXPN", "HELP"]
        .iter()
        .any(|j| verb.eq_ignore_ascii_case(j.as_bytes()))
}

/// A session's refusals: the first of each (stage, reason) is audited on
/// its own, the repeats are counted for the summary.
#[derive(Default)]
pub struct Refusals {
    seen: BTreeMap<(&'static str, Reason), u32>,
}

impl Refusals {
    /// Counts a refusal; whether it is the first of its kind in the session
    /// (and so audited on its own).
    pub fn first(&mut self, stage: &'static str, reason: Reason) -> bool {
        let n = self.seen.entry((stage, reason)).or_insert(0);
        *n += 1;
        *n == 1
    }

    /// The refusals not audited on their own.
    pub fn repeated(&self) -> Vec<RepeatedRefusal> {
        self.seen
            .iter()
            .filter(|(_, &n)| n > 1)
            .map(|(&(stage, reason), &n)| RepeatedRefusal {
                stage: stage.to_owned(),
                reason,
                count: n - 1,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> SessionLimits {
        SessionLimits {
            per_client: 10,
            lifetime: Duration::from_secs(60),
            commands: 50,
            hard_errors: 3,
            junk_commands: 2,
        }
    }

    /// What a session sent, with the reply it got: a command, or the end
    /// of DATA.
    enum Seen {
        Cmd(&'static [u8], &'static [u8]),
        Msg(&'static [u8]),
    }
    use Seen::{Cmd, Msg};

    /// Runs `script` against a budget of [`limits`]: each step must end the
    /// session, or not, as it says.
    fn run(script: &[(Seen, Option<Exceeded>)]) {
        run_with(limits(), script);
    }

    /// [`run`] under other limits.
    fn run_with(limits: SessionLimits, script: &[(Seen, Option<Exceeded>)]) {
        let mut b = Budget::new(limits);
        for (i, (seen, want)) in script.iter().enumerate() {
            let got = match seen {
                Cmd(line, reply) => b.command(is_junk(line), reply),
                Msg(reply) => b.message(reply),
            };
            assert_eq!(got, *want, "step {i}");
        }
    }

    const RCPT: &[u8] = b"RCPT TO:<x@y>\r\n";

    #[test]
    fn error_replies_end_the_session_at_the_hard_limit() {
        run(&[
            (Cmd(RCPT, b"550 5.1.1 no\r\n"), None),
            (Cmd(RCPT, b"250 2.1.5 ok\r\n"), None),
            (Cmd(b"XYZZY\r\n", b"500 5.5.2 what\r\n"), None),
            (
                Cmd(RCPT, b"451 4.3.0 later\r\n"),
                Some(Exceeded::HardErrorLimit),
            ),
        ]);
    }

    #[test]
    fn an_accepted_message_resets_the_error_count() {
        run(&[
            (Cmd(RCPT, b"550 no\r\n"), None),
            (Cmd(RCPT, b"550 no\r\n"), None),
            (Msg(b"250 2.0.0 accepted\r\n"), None),
            (Cmd(RCPT, b"550 no\r\n"), None),
            (Cmd(RCPT, b"550 no\r\n"), None),
            (
                Msg(b"550 5.7.1 refused\r\n"),
                Some(Exceeded::HardErrorLimit),
            ),
        ]);
    }

    #[test]
    fn junk_commands_count_as_errors_past_their_limit() {
        const OK: &[u8] = b"250 2.0.0 OK\r\n";
        run(&[
            (Cmd(b"NOOP\r\n", OK), None),
            (Cmd(b"NOOP\r\n", OK), None),
            (Cmd(b"noop\r\n", OK), None),
            (Cmd(b"RSET\r\n", OK), None),
            (
                Cmd(b"VRFY x\r\n", b"252 2.0.0 OK\r\n"),
                Some(Exceeded::HardErrorLimit),
            ),
        ]);
        assert!(!is_junk(b"NOOPS\r\n"));
    }

    #[test]
    fn commands_are_capped() {
        let limits = SessionLimits {
            commands: 3,
            ..limits()
        };
        run_with(
            limits,
            &[
                (Cmd(b"EHLO a\r\n", b"250 ok\r\n"), None),
                (Cmd(b"MAIL FROM:<a@b>\r\n", b"250 ok\r\n"), None),
                (Cmd(RCPT, b"250 ok\r\n"), Some(Exceeded::CommandLimit)),
            ],
        );
    }

    #[test]
    fn a_transaction_may_outlive_the_lifetime_by_the_data_timeout() {
        let b = Budget::new(limits());
        let data = Duration::from_secs(600);
        assert_eq!(b.deadline(true, data) - b.deadline(false, data), data);
    }

    #[test]
    fn repeated_refusals_are_audited_once_and_counted() {
        let mut r = Refusals::default();
        assert!(r.first("rcpt", Reason::RouteDenied));
        assert!(!r.first("rcpt", Reason::RouteDenied));
        assert!(!r.first("rcpt", Reason::RouteDenied));
        assert!(r.first("mail", Reason::RouteDenied));
        assert_eq!(
            r.repeated(),
            vec![RepeatedRefusal {
                stage: "rcpt".into(),
                reason: Reason::RouteDenied,
                count: 2
            }]
        );
    }
}

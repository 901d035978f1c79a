//! The line rules of SMTP DATA that the intake enforces on the wire (RFC
//! 5321 §2.3.8, §4.5.3.1.6; RFC 5322 §2.1.1), shared with `emla verify`,
//! which applies them to a file taken as the DATA: one set of rules, so a
//! message judged offline is judged as the gateway would.

use std::fmt;

use crate::reason::Reason;

/// Longest line of message text with its CRLF (RFC 5322 §2.1.1: 998 + 2).
pub const MAX_TEXT_LINE: usize = 1000;

/// What is wrong with a line of DATA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProblem {
    /// A line ends in LF without CR.
    BareLf,
    /// A CR not followed by LF.
    BareCr,
    /// The input ends inside a line (a session's last line, never a file's).
    NoLineEnd,
    /// A line longer than 998 octets before its CRLF.
    LineTooLong,
    /// A NUL octet: mail clients and MTAs cut text there, each differently.
    Nul,
}

impl WireProblem {
    /// The reason code: line-ending tricks are smuggling, the rest malformed.
    pub fn reason(self) -> Reason {
        match self {
            WireProblem::BareLf | WireProblem::BareCr | WireProblem::NoLineEnd => Reason::Smuggling,
            WireProblem::LineTooLong | WireProblem::Nul => Reason::Malformed,
        }
    }
}

impl fmt::Display for WireProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireProblem::BareLf => "bare LF received",
            WireProblem::BareCr => "bare CR received",
            WireProblem::NoLineEnd => "line without CRLF received",
            WireProblem::LineTooLong => "a line of the message exceeds 998 characters",
            WireProblem::Nul => "the message contains a NUL byte",
        })
    }
}

/// How one received line (through its LF, if any) ends, when not in CRLF
/// alone.
pub fn line_ending(line: &[u8]) -> Option<WireProblem> {
    let body = match line.strip_suffix(b"\r\n") {
        Some(b) => b,
        None if line.ends_with(b"\n") => return Some(WireProblem::BareLf),
        None => return Some(WireProblem::NoLineEnd),
    };
    body.contains(&b'\r').then_some(WireProblem::BareCr)
}

/// The problem of one line of message text in DATA (through its LF), the
/// smuggling ones first: they end the session, the others the message.
pub fn text_line(line: &[u8]) -> Option<WireProblem> {
    line_ending(line)
        .or((line.len() > MAX_TEXT_LINE).then_some(WireProblem::LineTooLong))
        .or(memchr::memchr(0, line).map(|_| WireProblem::Nul))
}

/// Where [`check_data`] found a problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireError {
    /// The problem.
    pub problem: WireProblem,
    /// Its line, counted from 1.
    pub line: usize,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (line {})", self.problem, self.line)?;
        if matches!(self.problem, WireProblem::BareLf | WireProblem::BareCr) {
            f.write_str("; lines must end with CRLF, as in SMTP DATA")?;
        }
        Ok(())
    }
}

/// Checks a whole message as the intake checks its DATA line by line:
/// the first line-ending problem if there is one (the intake refuses it at
/// once), else the first other problem. A last line without a line end is
/// fine: a client ends it with the CRLF before the final dot.
pub fn check_data(data: &[u8]) -> Result<(), WireError> {
    let mut other: Option<WireError> = None;
    let mut start = 0;
    let mut n = 0;
    while start < data.len() {
        n += 1;
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i + 1);
        let line = &data[start..end];
        let terminated: std::borrow::Cow<'_, [u8]> = if line.ends_with(b"\n") {
            line.into()
        } else {
            [line, b"\r\n"].concat().into()
        };
        match text_line(&terminated) {
            Some(p) if p.reason() == Reason::Smuggling => {
                return Err(WireError {
                    problem: p,
                    line: n,
                })
            }
            Some(p) => {
                other.get_or_insert(WireError {
                    problem: p,
                    line: n,
                });
            }
            None => {}
        }
        start = end;
    }
    other.map_or(Ok(()), Err)
}

/// [`check_data`] of a message read from `input` to its end, in bounded
/// memory (a buffer, not a line, at a time).
pub fn check_reader(mut input: impl std::io::BufRead) -> std::io::Result<Result<(), WireError>> {
    let mut other: Option<WireError> = None;
    let mut line = 1;
    let (mut len, mut prev_cr, mut bare_cr, mut nul) = (0usize, false, false, false);
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let (seg, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        // A CR is bare unless an LF follows it at once.
        bare_cr |= (prev_cr && !seg.is_empty())
            || memchr::memchr_iter(b'\r', seg).any(|i| i + 1 < seg.len());
        nul |= memchr::memchr(0, seg).is_some();
        let cr_last = seg.last().map_or(prev_cr, |&b| b == b'\r');
        len += seg.len();
        let used = seg.len() + usize::from(done);
        prev_cr = cr_last;
        if done {
            let ending = if !cr_last {
                Some(WireProblem::BareLf)
            } else {
                bare_cr.then_some(WireProblem::BareCr)
            };
            if let Some(problem) = ending {
                return Ok(Err(WireError { problem, line }));
            }
            let problem = (len + 1 > MAX_TEXT_LINE)
                .then_some(WireProblem::LineTooLong)
                .or(nul.then_some(WireProblem::Nul));
            if let Some(problem) = problem {
                other.get_or_insert(WireError { problem, line });
            }
            line += 1;
            (len, prev_cr, bare_cr, nul) = (0, false, false, false);
        }
        input.consume(used);
    }
    if len > 0 {
        // A last line without its end: judged with the CRLF a client adds.
        if bare_cr || prev_cr {
            return Ok(Err(WireError {
                problem: WireProblem::BareCr,
                line,
            }));
        }
        let problem = (len + 2 > MAX_TEXT_LINE)
            .then_some(WireProblem::LineTooLong)
            .or(nul.then_some(WireProblem::Nul));
        if let Some(problem) = problem {
            other.get_or_insert(WireError { problem, line });
        }
    }
    Ok(other.map_or(Ok(()), Err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_must_be_crlf() {
        assert_eq!(line_ending(b"hello\r\n"), None);
        assert_eq!(line_ending(b".\r\n"), None);
        assert_eq!(line_ending(b"hello\n"), Some(WireProblem::BareLf));
        assert_eq!(line_ending(b"\n"), Some(WireProblem::BareLf));
        assert_eq!(line_ending(b"he\rllo\r\n"), Some(WireProblem::BareCr));
        assert_eq!(line_ending(b"hello\r\r\n"), Some(WireProblem::BareCr));
        assert_eq!(line_ending(b"no end"), Some(WireProblem::NoLineEnd));
    }

    #[test]
    fn text_lines_are_bounded_and_free_of_nul() {
        let mut long = vec![b'x'; 998];
        long.extend_from_slice(b"\r\n");
        assert_eq!(text_line(&long), None);
        long.insert(0, b'x');
        assert_eq!(text_line(&long), Some(WireProblem::LineTooLong));
        assert_eq!(text_line(b"a\0b\r\n"), Some(WireProblem::Nul));
        assert_eq!(text_line(b"a\0b\n"), Some(WireProblem::BareLf));
    }

    #[test]
    fn whole_data_reports_smuggling_first_with_its_line() {
        assert_eq!(check_data(b"a\r\nb\r\n"), Ok(()));
        assert_eq!(check_data(b"a\r\nlast line without end"), Ok(()));
        assert_eq!(check_data(b""), Ok(()));
        let e = check_data(b"a\r\nn\0ul\r\nb\nc\r\n").unwrap_err();
        assert_eq!((e.problem, e.line), (WireProblem::BareLf, 3));
        assert_eq!(
            e.to_string(),
            "bare LF received (line 3); lines must end with CRLF, as in SMTP DATA"
        );
        let e = check_data(b"a\r\nn\0ul\r\n").unwrap_err();
        assert_eq!((e.problem, e.line), (WireProblem::Nul, 2));
        assert_eq!(e.problem.reason(), Reason::Malformed);
        let e = check_data(b"a\r\nends in CR\r").unwrap_err();
        assert_eq!((e.problem, e.line), (WireProblem::BareCr, 2));
        let big = [vec![b'y'; 1200], b"\r\n".to_vec()].concat();
        assert_eq!(
            check_data(&big).unwrap_err().problem,
            WireProblem::LineTooLong
        );
    }

    #[test]
    fn the_streamed_check_is_the_whole_check() {
        let long = [vec![b'y'; 999], b"\r\n".to_vec()].concat();
        let at_limit = [vec![b'y'; 998], b"\r\n".to_vec()].concat();
        let mut cases: Vec<Vec<u8>> = [
            &b"a\r\nb\r\n"[..],
            b"a\r\nlast line without end",
            b"",
            b"a\r\nn\0ul\r\nb\nc\r\n",
            b"a\r\nends in CR\r",
            b"\n",
            b"\r\n\r",
            b"x\r\ry\r\n",
            b"x\ry\r\n",
            b"\0",
        ]
        .iter()
        .map(|c| c.to_vec())
        .collect();
        cases.extend([
            long.clone(),
            at_limit.clone(),
            [&at_limit[..], b"a\rb"].concat(),
        ]);
        cases.push(at_limit[..998].to_vec());
        cases.push(long[..999].to_vec());
        for case in &cases {
            for cap in [1, 2, 3, 7, 4096] {
                let streamed = check_reader(std::io::BufReader::with_capacity(cap, &case[..]));
                assert_eq!(streamed.unwrap(), check_data(case), "{case:?} at {cap}");
            }
        }
    }
}

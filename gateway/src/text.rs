//! Plain text for people: times in UTC, table cells and aligned tables,
//! shared by the CLI commands that print tables (`emla audit search`,
//! `emla queue`) and the auditors' web view.

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time_utc(ms: i64) -> String {
    fmt_time(ms, false)
}

/// `ms` since the epoch as RFC 3339 with milliseconds, e.g.
/// `2026-01-01T00:00:00.000Z`.
pub fn time_rfc3339(ms: i64) -> String {
    fmt_time(ms, true)
}

fn fmt_time(ms: i64, rfc3339: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (date, clock) = (
        format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
    );
    if rfc3339 {
        format!("{date}T{clock}.{:03}Z", t.millisecond())
    } else {
        format!("{date} {clock}")
    }
}

/// Whether `c` must not reach a terminal or a page as it is: a control
/// character (an ESC sequence can repaint the screen, e.g. paint a fake
/// "ACCEPT") or a bidirectional override (which reorders what is shown).
fn hidden(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character and bidirectional override written
/// out visibly (`\x1b`, `\u{202e}`), so what the log holds is seen, never
/// obeyed; `keep` names characters left as they are (e.g. `\n` between
/// the lines of a report).
pub fn visible(text: &str, keep: &[char]) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if keep.contains(&c) {
            out.push(c);
        } else {
            push_visible(&mut out, c);
        }
    }
    out
}

/// Appends `c` to `out`, written out if it is hidden (see [`visible`]).
pub fn push_visible(out: &mut String, c: char) {
    if !hidden(c) {
        out.push(c);
        return;
    }
    let n = u32::from(c);
    if n < 0x100 {
        out.push_str(&format!("\\x{n:02x}"));
    } else {
        out.push_str(&format!("\\u{{{n:x}}}"));
    }
}

/// A cell as the table shows it: control characters written out
/// ([`visible`]), cut at `max` characters.
pub fn table_cell(text: &str, max: usize) -> String {
    let clean = visible(text, &[]);
    if clean.chars().count() > max {
        let mut cut: String = clean.chars().take(max - 1).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// `names` joined by `, `, or `none` when there is none.
pub fn list_or_none<S: std::borrow::Borrow<str>>(names: &[S]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Lines of cells as an aligned table: columns separated by two spaces
/// and padded to their widest cell (in characters), no trailing spaces.
pub fn align(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for l in lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            if i + 1 < l.len() {
                line.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_characters_are_written_out() {
        assert_eq!(
            visible("a\u{1b}[31mACCEPT\u{7}", &[]),
            "a\\x1b[31mACCEPT\\x07"
        );
        assert_eq!(visible("x\u{202e}gpj.exe", &[]), "x\\u{202e}gpj.exe");
        assert_eq!(visible("l1\nl2\r\n", &['\n']), "l1\nl2\\x0d\n");
        assert_eq!(visible("\u{9b}é€", &[]), "\\x9bé€");
        assert_eq!(table_cell("\u{1b}[2J", 20), "\\x1b[2J");
    }

    #[test]
    fn times() {
        assert_eq!(time_utc(1_767_225_600_123), "2026-01-01 00:00:00");
        assert_eq!(time_rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }
}

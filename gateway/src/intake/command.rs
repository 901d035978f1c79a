//! `MAIL` and `RCPT` as emla reads them, before `mailin` sees the line:
//! the path by RFC 5321's grammar ([`crate::envelope`]), the parameters
//! emla offers (SIZE, BODY, and DSN's RET, ENVID, NOTIFY and ORCPT), and a
//! reply for everything else. `mailin` only knows `<non-empty>` paths and
//! `BODY=`, so it gets a stand-in line and the handler takes the parsed
//! command from the session state.

use crate::envelope::{self, Notify, PathError, Ret};

use super::reply::Reply;

/// `MAIL FROM`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mail {
    /// The reverse-path's mailbox; empty for the null reverse-path.
    pub from: String,
    /// `SIZE=`.
    pub size: Option<u64>,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`, decoded.
    pub envid: Option<String>,
}

/// `RCPT TO`, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rcpt {
    /// The forward-path's mailbox, or `postmaster` (RFC 5321 §4.1.1.3).
    pub to: String,
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=`, decoded.
    pub orcpt: Option<String>,
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadCommand {
    /// The path (audited, `bad-address`); with the path as written.
    Path(PathError, String),
    /// A parameter: the reply (`501`/`555 5.5.4`).
    Param(Reply),
}

/// A parsed command, or why it was refused; what the session hands the
/// handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Staged {
    /// `MAIL`.
    Mail(Result<Mail, BadCommand>),
    /// `RCPT`.
    Rcpt(Result<Rcpt, BadCommand>),
}

impl Staged {
    /// The command in `line` (CRLF included) if it is `MAIL FROM:` or
    /// `RCPT TO:`, with the stand-in line `mailin` gets instead.
    pub fn of(line: &[u8]) -> Option<(Staged, &'static [u8])> {
        let prefix = |p: &[u8]| line.len() >= p.len() && line[..p.len()].eq_ignore_ascii_case(p);
        let text = String::from_utf8_lossy(line);
        let text = text.strip_suffix("\r\n").unwrap_or(&text);
        if prefix(b"MAIL FROM:") {
            Some((Staged::Mail(mail(&text[10..])), b"MAIL FROM:<staged>\r\n"))
        } else if prefix(b"RCPT TO:") {
            Some((Staged::Rcpt(rcpt(&text[8..])), b"RCPT TO:<staged>\r\n"))
        } else {
            None
        }
    }
}

fn param_error(code: u16, text: String) -> BadCommand {
    BadCommand::Param(Reply::new(code, format!("5.5.4 {text}")))
}

/// The path in `<…>` at the start of `arg` and the parameters after it.
fn split(arg: &str) -> Result<(&str, Vec<&str>), BadCommand> {
    // RFC 5321 has no space after the colon; Postfix tolerates one, as here.
    let arg = arg.trim_start_matches(' ');
    let no_brackets = || {
        BadCommand::Path(
            PathError::Syntax("the address must be written <like@this>".into()),
            arg.to_owned(),
        )
    };
    let inner = arg.strip_prefix('<').ok_or_else(no_brackets)?;
    let (mut quoted, mut escaped, mut end) = (false, false, None);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or_else(no_brackets)?;
    let rest = &inner[end + 1..];
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return Err(param_error(
            501,
            format!("unexpected text after the address: {rest:?}"),
        ));
    }
    Ok((
        &inner[..end],
        rest.split(' ').filter(|p| !p.is_empty()).collect(),
    ))
}

/// `KEYWORD[=value]` (RFC 5321 §4.1.2 esmtp-param), keyword uppercased.
fn param(p: &str) -> Result<(String, Option<&str>), BadCommand> {
    let (key, value) = match p.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (p, None),
    };
    let key_ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let value_ok = value
        .is_none_or(|v| !v.is_empty() && v.bytes().all(|b| (33..=126).contains(&b) && b != b'='));
    if !key_ok || !value_ok {
        return Err(param_error(501, format!("malformed parameter {p:?}")));
    }
    Ok((key.to_ascii_uppercase(), value))
}

/// The value of `key`, required.
fn value<'a>(key: &str, value: Option<&'a str>) -> Result<&'a str, BadCommand> {
    value.ok_or_else(|| param_error(501, format!("{key} needs a value")))
}

fn xtext(key: &str, v: &str, max: usize) -> Result<String, BadCommand> {
    match envelope::xtext_decode(v) {
        Some(d) if d.len() <= max => Ok(d),
        Some(_) => Err(param_error(
            501,
            format!("{key} is longer than {max} characters"),
        )),
        None => Err(param_error(
            501,
            format!("{key}={v} is not xtext (RFC 3461 §4)"),
        )),
    }
}

/// Refuses a parameter given twice.
fn once<T>(slot: &mut Option<T>, key: &str, v: T) -> Result<(), BadCommand> {
    if slot.is_some() {
        return Err(param_error(501, format!("{key} given twice")));
    }
    *slot = Some(v);
    Ok(())
}

fn unknown(key: &str, command: &str) -> BadCommand {
    if key == "SMTPUTF8" {
        // RFC 6531 §3.4: not offered in EHLO, so not to be used.
        return param_error(
            555,
            "SMTPUTF8 is not supported: addresses must be ASCII".into(),
        );
    }
    param_error(555, format!("unsupported {command} parameter {key}"))
}

fn mail(arg: &str) -> Result<Mail, BadCommand> {
    let (path, params) = split(arg)?;
    let mut m = Mail {
        from: envelope::parse_path(path, true).map_err(|e| BadCommand::Path(e, path.to_owned()))?,
        ..Mail::default()
    };
    let mut body = None;
    for p in params {
        let (key, v) = param(p)?;
        match key.as_str() {
            "SIZE" => {
                let v = value(&key, v)?;
                let n = v
                    .parse::<u64>()
                    .ok()
                    .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| param_error(501, format!("SIZE={v} is not a number")))?;
                once(&mut m.size, &key, n)?;
            }
            "BODY" => {
                let v = value(&key, v)?;
                if !(v.eq_ignore_ascii_case("7BIT") || v.eq_ignore_ascii_case("8BITMIME")) {
                    return Err(param_error(501, format!("BODY={v}: 7BIT or 8BITMIME")));
                }
                once(&mut body, &key, ())?;
            }
            "RET" => {
                let v = value(&key, v)?;
                let ret = match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Hdrs,
                    _ => return Err(param_error(501, format!("RET={v}: FULL or HDRS"))),
                };
                once(&mut m.ret, &key, ret)?;
            }
            "ENVID" => {
                let envid = xtext(&key, value(&key, v)?, envelope::MAX_ENVID)?;
                once(&mut m.envid, &key, envid)?;
            }
            _ => return Err(unknown(&key, "MAIL")),
        }
    }
    Ok(m)
}

fn rcpt(arg: &str) -> Result<Rcpt, BadCommand> {
    let (path, params) = split(arg)?;
    let to = if path.eq_ignore_ascii_case("postmaster") {
        "postmaster".to_owned()
    } else {
        envelope::parse_path(path, false).map_err(|e| BadCommand::Path(e, path.to_owned()))?
    };
    let mut r = Rcpt {
        to,
        ..Rcpt::default()
    };
    for p in params {
        let (key, v) = param(p)?;
        match key.as_str() {
            "NOTIFY" => {
                let n = value(&key, v)?
                    .parse::<Notify>()
                    .map_err(|e| param_error(501, e))?;
                once(&mut r.notify, &key, n)?;
            }
            "ORCPT" => {
                let v = value(&key, v)?;
                let (kind, addr) = v
                    .split_once(';')
                    .filter(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
                    .ok_or_else(|| param_error(501, format!("ORCPT={v}: addr-type;xtext")))?;
                let addr = xtext(&key, addr, envelope::MAX_ORCPT)?;
                once(&mut r.orcpt, &key, format!("{kind};{addr}"))?;
            }
            _ => return Err(unknown(&key, "RCPT")),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<impl std::fmt::Debug, BadCommand>) -> String {
        match r {
            Err(BadCommand::Param(reply)) => format!("{} {}", reply.code, &reply.text[..5]),
            Err(BadCommand::Path(..)) => "path".into(),
            Ok(v) => format!("ok {v:?}"),
        }
    }

    #[test]
    fn mail_parameters() {
        let m = mail("<a@b.example> SIZE=10 BODY=8BITMIME RET=HDRS ENVID=QQ+2B1").unwrap();
        assert_eq!(
            (m.size, m.ret, m.envid.as_deref()),
            (Some(10), Some(Ret::Hdrs), Some("QQ+1"))
        );
        assert_eq!(mail(" <>").unwrap().from, "");
    }

    #[test]
    fn rcpt_parameters() {
        let r = rcpt("<a@b.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@b.example").unwrap();
        assert_eq!(r.notify.unwrap().to_string(), "SUCCESS,FAILURE");
        assert_eq!(r.orcpt.as_deref(), Some("rfc822;a+x@b.example"));
        assert_eq!(rcpt("<PostMaster>").unwrap().to, "postmaster");
        assert_eq!(rcpt("<\"a>b\"@c.example>").unwrap().to, "\"a>b\"@c.example");
    }

    #[test]
    fn bad_paths_and_parameters_get_their_reply() {
        let m: fn(&str) -> String = |arg| code(mail(arg));
        let r: fn(&str) -> String = |arg| code(rcpt(arg));
        for (verb, arg, want) in [
            (m, "<a@b.example> SIZE=abc", "501 5.5.4"),
            (m, "<a@b.example> SIZE=+1", "501 5.5.4"),
            (m, "<a@b.example> SIZE=1 SIZE=2", "501 5.5.4"),
            (m, "<a@b.example> RET=ALL", "501 5.5.4"),
            (m, "<a@b.example> ENVID=a=b", "501 5.5.4"),
            (m, "<a@b.example> ENVID=a+zz", "501 5.5.4"),
            (m, "<a@b.example> BODY=BINARYMIME", "501 5.5.4"),
            (m, "<a@b.example> SMTPUTF8", "555 5.5.4"),
            (m, "<a@b.example> X-FOO=1", "555 5.5.4"),
            (m, "<a@b.example>junk", "501 5.5.4"),
            (m, "a@b.example", "path"),
            (m, "<a@@b.example>", "path"),
            (r, "<a@b.example> NOTIFY=NEVER,DELAY", "501 5.5.4"),
            (r, "<a@b.example> ORCPT=a@b", "501 5.5.4"),
            (r, "<a@b.example> ORCPT=rfc822;a+zz", "501 5.5.4"),
            (r, "<a@b.example> RET=FULL", "555 5.5.4"),
            (r, "<>", "path"),
        ] {
            assert_eq!(verb(arg), want, "{arg}");
        }
    }
}

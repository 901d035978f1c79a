//! The pages, rendered on the server: plain HTML with one stylesheet, no
//! script, every value from the log passed through [`esc`].

use std::fmt::Write as _;

use super::auth::Auditor;
use super::query::{get, link, with};
use crate::audit::show::History;
use crate::reason::Reason;
use crate::store::{ChainCheck, DeliveryState, MessageSummary};
use crate::text::{push_visible, time_rfc3339, time_utc};

/// The stylesheet, served as `/style.css` (the CSP allows styles from
/// `'self'` only).
pub const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222}\
header{background:#1f3a5f;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:center}\
header a{color:#fff}header .who{margin-left:auto}\
main{padding:1em}\
form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(14em,1fr));gap:.4em 1em;margin-bottom:1em}\
form.search label{display:flex;flex-direction:column;font-size:12px;color:#555}\
table{border-collapse:collapse;width:100%}\
th,td{border-bottom:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}\
.reject{color:#a00}.accept{color:#070}\
.error{background:#fee;border:1px solid #c00;padding:.5em}\
.chain-intact{background:#efe;border:1px solid #070;padding:.5em}\
.chain-broken{background:#fee;border:1px solid #c00;padding:.5em;font-weight:bold}\
pre{background:#f6f6f6;padding:1em;overflow-x:auto}\
figure.chart{margin:1em 0}figure.chart svg{max-width:100%;height:auto}\
figcaption{font-weight:bold;margin-bottom:.3em}\
";

/// HTML-escapes text for element content and quoted attribute values;
/// control characters other than tab and line feed become spaces.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c => push_visible(&mut out, c),
        }
    }
    out
}

/// A whole page: title, navigation with the auditor's name, `body`.
pub fn page(title: &str, auditor: Option<&Auditor>, body: &str) -> String {
    let who = auditor
        .map(|a| {
            format!(
                "<span class=\"who\">auditor: <strong id=\"auditor\">{}</strong> ({})</span>",
                esc(&a.name),
                a.via.as_str()
            )
        })
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} — emla audit</title><link rel=\"stylesheet\" href=\"/style.css\"></head>\n\
         <body><header><strong>emla audit</strong><nav><a href=\"/\">overview</a> · \
         <a href=\"/search\">search</a> · <a href=\"/queue\">queue</a> · \
         <a href=\"/crl\">CRL status</a> · <a href=\"/chain\">audit chain</a></nav>{who}</header>\n<main>\n{body}</main></body></html>\n",
        esc(title)
    )
}

/// A page that only says what went wrong.
pub fn error_page(title: &str, auditor: Option<&Auditor>, message: &str) -> String {
    page(
        title,
        auditor,
        &format!(
            "<h1>{}</h1><p class=\"error\" id=\"error\">{}</p>\n",
            esc(title),
            esc(message)
        ),
    )
}

fn input(out: &mut String, pairs: &[(String, String)], name: &str, label: &str, hint: &str) {
    let _ = write!(
        out,
        "<label>{label}<input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
        esc(get(pairs, name).unwrap_or("")),
        esc(hint)
    );
}

fn select(out: &mut String, pairs: &[(String, String)], name: &str, label: &str, opts: &[&str]) {
    let current = get(pairs, name).unwrap_or("");
    let _ = write!(
        out,
        "<label>{label}<select name=\"{name}\"><option value=\"\">any</option>"
    );
    for o in opts {
        let sel = if *o == current { " selected" } else { "" };
        let _ = write!(out, "<option{sel}>{}</option>", esc(o));
    }
    out.push_str("</select></label>");
}

/// The search form, filled with the current parameters.
pub fn search_form(pairs: &[(String, String)]) -> String {
    let mut f = String::from("<form class=\"search\" method=\"get\" action=\"/search\">");
    input(
        &mut f,
        pairs,
        "since",
        "received since",
        "2026-01-31 or RFC 3339",
    );
    input(
        &mut f,
        pairs,
        "until",
        "received before",
        "2026-02-01 or RFC 3339",
    );
    input(&mut f, pairs, "from", "sender", "address or @domain");
    input(&mut f, pairs, "to", "recipient", "address or @domain");
    input(
        &mut f,
        pairs,
        "authority",
        "sender's authority",
        "id, id, …",
    );
    input(&mut f, pairs, "country", "sender's country", "AA, BB, …");
    input(
        &mut f,
        pairs,
        "signer",
        "signer certificate",
        "SHA-256 or serial (hex)",
    );
    let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    select(&mut f, pairs, "reason", "reason", &reasons);
    select(&mut f, pairs, "verdict", "verdict", &["accept", "reject"]);
    let states: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    select(&mut f, pairs, "status", "state", &states);
    input(&mut f, pairs, "message-id", "Message-ID", "<…@…>");
    input(&mut f, pairs, "id", "emla id", "");
    input(&mut f, pairs, "case", "case reference", "");
    input(&mut f, pairs, "kind", "request kind", "extradition-request");
    input(&mut f, pairs, "limit", "rows per page", "50");
    let asc = if get(pairs, "asc").is_some() {
        " checked"
    } else {
        ""
    };
    let _ = writeln!(
        f,
        "<label>oldest first<input type=\"checkbox\" name=\"asc\" value=\"1\"{asc}></label>\
         <label>&nbsp;<button type=\"submit\">search</button></label></form>"
    );
    f
}

/// The results table (newest first unless `asc`), each id linking to its
/// timeline, and the link to the next page when this one is full.
pub fn results(rows: &[MessageSummary], full: bool, pairs: &[(String, String)]) -> String {
    if rows.is_empty() {
        return "<p id=\"no-results\">no messages match</p>\n".into();
    }
    let mut t = String::from(
        "<table id=\"results\"><thead><tr><th>time (UTC)</th><th>id</th><th>verdict</th>\
         <th>reason</th><th>state</th><th>from</th><th>to</th><th>subject</th><th>authority</th>\
         <th>case</th><th>kind</th></tr></thead><tbody>\n",
    );
    for m in rows {
        let href = link("/message", &[("id".into(), m.id.clone())]);
        let _ = writeln!(
            t,
            "<tr><td>{}</td><td><a class=\"id\" href=\"{}\">{}</a></td><td class=\"{}\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"subject\">{}</td><td>{}</td><td>{}</td><td class=\"kind\">{}</td></tr>",
            esc(&time_utc(m.received_at)),
            esc(&href),
            esc(&m.id),
            m.verdict.as_str(),
            esc(m.verdict.as_str()),
            esc(m.reason.as_str()),
            m.state.map_or("-", DeliveryState::as_str),
            esc(&m.mail_from),
            esc(&m.rcpt_to.join(", ")),
            esc(m.subject.as_deref().unwrap_or("")),
            esc(m.authority.as_deref().unwrap_or("")),
            esc(m.case_ref.as_deref().unwrap_or("")),
            esc(m.kind.as_deref().unwrap_or("")),
        );
    }
    t.push_str("</tbody></table>\n");
    if full {
        if let Some(last) = rows.last() {
            let next = link("/search", &with(pairs, "after", &last.cursor().to_string()));
            let _ = writeln!(
                t,
                "<p><a id=\"next\" href=\"{}\">next page</a></p>",
                esc(&next)
            );
        }
    }
    let json = link("/api/search", pairs);
    let _ = writeln!(t, "<p><a href=\"{}\">this page as JSON</a></p>", esc(&json));
    t
}

/// The integrity status of the audit chain, as checked at `checked_ms`.
pub fn chain_status(check: &ChainCheck, checked_ms: i64) -> String {
    let when = esc(&time_rfc3339(checked_ms));
    match check {
        ChainCheck::Intact { records, head } => format!(
            "<p class=\"chain-intact\" id=\"chain\">audit chain <strong>intact</strong>: \
             {records} records, head {} <small>(checked {when})</small></p>\n",
            esc(if head.is_empty() { "-" } else { head })
        ),
        ChainCheck::Broken { seq, problem } => format!(
            "<p class=\"chain-broken\" id=\"chain\">audit chain <strong>BROKEN</strong> \
             at record {seq}: {} <small>(checked {when})</small></p>\n",
            esc(problem)
        ),
    }
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or_default()
}

/// One message's page: the key facts, the chain status and the timeline
/// `emla audit show` prints.
pub fn message(h: &History, chain: &str) -> String {
    let mut b = format!(
        "<h1>message <code id=\"message-id\">{}</code></h1>\n",
        esc(&h.id)
    );
    if let Some(m) = &h.message {
        b.push_str("<table id=\"summary\">");
        for (label, value) in [
            ("verdict", m.verdict.as_str()),
            ("reason", m.reason.as_str()),
            ("detail", m.detail.as_str()),
            ("From:", opt(&m.headers.header_from)),
            ("To:", opt(&m.headers.header_to)),
            ("Subject:", opt(&m.headers.subject)),
            ("Message-ID:", opt(&m.headers.message_id)),
            ("case", opt(&m.case_ref)),
            ("kind", opt(&m.kind)),
            ("authority", opt(&m.authority)),
            ("sha256", m.sha256.as_str()),
        ] {
            let _ = write!(b, "<tr><th>{label}</th><td>{}</td></tr>", esc(value));
        }
        b.push_str("</table>\n");
    }
    b.push_str(chain);
    let _ = write!(
        b,
        "<h2>timeline</h2>\n<pre id=\"timeline\">{}</pre>\n<p><a href=\"{}\">as JSON</a></p>\n",
        esc(&h.text()),
        esc(&link("/api/message", &[("id".into(), h.id.clone())]))
    );
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{0}b\u{1b}c\td\ne"), "a\\x00b\\x1bc\td\ne");
        assert_eq!(esc("\u{202e}"), "\\u{202e}");
        assert_eq!(esc("é€"), "é€");
    }

    #[test]
    fn results_escape_every_cell() {
        let row = MessageSummary {
            id: "m\"1".into(),
            received_at: 0,
            verdict: crate::store::Verdict::Accept,
            reason: Reason::Ok,
            detail: String::new(),
            mail_from: "<b>@x".into(),
            rcpt_to: vec!["y@z".into()],
            header_from: None,
            header_to: None,
            subject: Some("<script>alert(1)</script>".into()),
            message_id: None,
            authority: None,
            case_ref: None,
            kind: Some("<mla>".into()),
            sha256: String::new(),
            size: 1,
            state: None,
        };
        let html = results(&[row], true, &[("from".into(), "a&b".into())]);
        assert!(html.contains("<th>kind</th>"), "{html}");
        assert!(
            html.contains("<td class=\"kind\">&lt;mla&gt;</td></tr>"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("href=\"/message?id=m%221\""), "{html}");
        assert!(
            html.contains("href=\"/search?from=a%26b&amp;after=0%3Am%221\""),
            "{html}"
        );
    }

    #[test]
    fn form_keeps_values_escaped() {
        let f = search_form(&[
            ("from".into(), "\"><script>".into()),
            ("verdict".into(), "reject".into()),
            ("kind".into(), "mla-request".into()),
        ]);
        assert!(f.contains("value=\"&quot;&gt;&lt;script&gt;\""), "{f}");
        assert!(
            f.contains("<input name=\"kind\" value=\"mla-request\""),
            "{f}"
        );
        assert!(f.contains("<option selected>reject</option>"), "{f}");
    }

    #[test]
    fn chain() {
        let intact = ChainCheck::Intact {
            records: 3,
            head: "ab".into(),
        };
        let broken = ChainCheck::Broken {
            seq: 7,
            problem: "<edited>".into(),
        };
        for (check, want) in [
            (intact, "<strong>intact</strong>: 3 records, head ab"),
            (broken, "BROKEN</strong> at record 7: &lt;edited&gt;"),
        ] {
            let html = chain_status(&check, 0);
            assert!(html.contains(want), "{html}");
        }
    }
}

//! Rendering search results: an aligned text table, a JSON array, or CSV
//! (RFC 4180).

use serde_json::{json, Value};

use crate::store::MessageSummary;
use crate::text::{align, table_cell, time_rfc3339, time_utc, visible};

/// Header of the table, in column order. The CSV has the same columns
/// but `kind`, which it gives among its extra columns (a stable order for
/// existing consumers).
pub const TABLE_COLUMNS: [&str; 10] = [
    "time (UTC)",
    "id",
    "verdict",
    "reason",
    "state",
    "from",
    "to",
    "subject",
    "authority",
    "kind",
];

/// Widest `from`, `to` and `subject` cell in the table, in characters;
/// longer values are cut with `…` (JSON and CSV carry them whole).
pub const MAX_CELL: usize = 40;

/// The cells a row has in the table and the CSV alike, in
/// [`TABLE_COLUMNS`] order (all but `kind`), not yet cut.
fn cells(m: &MessageSummary) -> [String; 9] {
    [
        time_utc(m.received_at),
        m.id.clone(),
        m.verdict.to_string(),
        m.reason.to_string(),
        m.state.map_or_else(|| "-".into(), |s| s.to_string()),
        m.mail_from.clone(),
        m.rcpt_to.join(", "),
        m.subject.clone().unwrap_or_default(),
        m.authority.clone().unwrap_or_default(),
    ]
}

/// The aligned table: a header line, then one line per row; columns
/// separated by two spaces and padded to their widest cell (in
/// characters), no trailing spaces. When the page is full (`more`), a last
/// line names the `--after` cursor of the next page. No rows: one line
/// `no messages match`.
pub fn table(rows: &[MessageSummary], more: bool) -> String {
    if rows.is_empty() {
        return "no messages match\n".to_string();
    }
    let mut lines: Vec<Vec<String>> = vec![TABLE_COLUMNS.map(str::to_string).to_vec()];
    for r in rows {
        let mut c = cells(r).to_vec();
        c.push(r.kind.clone().unwrap_or_else(|| "-".into()));
        lines.push(
            c.iter()
                .enumerate()
                .map(|(i, cell)| {
                    let max = if (5..=7).contains(&i) {
                        MAX_CELL
                    } else {
                        usize::MAX
                    };
                    table_cell(cell, max)
                })
                .collect(),
        );
    }
    let mut out = align(&lines);
    if more {
        if let Some(last) = rows.last() {
            out.push_str(&format!("next page: --after {}\n", last.cursor()));
        }
    }
    out
}

/// A row as JSON: every field of [`MessageSummary`], plus `time` (RFC 3339)
/// and `cursor` (what `--after` takes to continue after this row).
pub fn json_row(m: &MessageSummary) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or_else(|_| json!({}));
    if let Value::Object(o) = &mut v {
        o.insert("time".into(), Value::String(time_rfc3339(m.received_at)));
        o.insert("cursor".into(), Value::String(m.cursor().to_string()));
    }
    v
}

/// One JSON array of [`json_row`] objects, and a line feed.
pub fn json(rows: &[MessageSummary]) -> String {
    let arr: Vec<Value> = rows.iter().map(json_row).collect();
    let mut s = serde_json::to_string_pretty(&Value::Array(arr)).unwrap_or_default();
    s.push('\n');
    s
}

/// Columns the CSV has after the table's (whose `time` it gives in RFC
/// 3339).
const CSV_EXTRA_COLUMNS: [&str; 4] = ["message_id", "case_ref", "kind", "cursor"];

/// A CSV field per RFC 4180: quoted (inner quotes doubled) when it holds a
/// comma, a quote, CR or LF, or starts or ends with a space.
pub fn csv_field(text: &str) -> String {
    let needs =
        text.contains([',', '"', '\r', '\n']) || text.starts_with(' ') || text.ends_with(' ');
    if needs {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// CSV: a header record, then one record per row; records end with CRLF.
pub fn csv(rows: &[MessageSummary]) -> String {
    let header: Vec<&str> = std::iter::once("time")
        .chain(TABLE_COLUMNS[1..9].iter().copied())
        .chain(CSV_EXTRA_COLUMNS)
        .collect();
    let mut out = header.join(",");
    out.push_str("\r\n");
    for m in rows {
        let mut fields = cells(m).to_vec();
        fields[0] = time_rfc3339(m.received_at);
        fields.extend([
            m.message_id.clone().unwrap_or_default(),
            m.case_ref.clone().unwrap_or_default(),
            m.kind.clone().unwrap_or_default(),
            m.cursor().to_string(),
        ]);
        let line: Vec<String> = fields.iter().map(|f| csv_field(&visible(f, &[]))).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, subject: &str) -> MessageSummary {
        MessageSummary {
            id: id.into(),
            received_at: 1_767_225_600_000,
            verdict: crate::store::Verdict::Accept,
            reason: crate::reason::Reason::Ok,
            detail: String::new(),
            mail_from: "alice@a.example".into(),
            rcpt_to: vec!["bob@b.example".into(), "carol@b.example".into()],
            header_from: None,
            header_to: None,
            subject: Some(subject.into()),
            message_id: None,
            authority: Some("aa-moj".into()),
            case_ref: None,
            kind: None,
            sha256: String::new(),
            size: 1,
            state: Some(crate::store::DeliveryState::Relayed),
        }
    }

    #[test]
    fn csv_quotes_per_rfc4180() {
        for (field, want) in [
            ("plain", "plain"),
            ("a, b", "\"a, b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\r\nlines", "\"two\r\nlines\""),
        ] {
            assert_eq!(csv_field(field), want, "{field:?}");
        }
        let mut r = row("m1", "x");
        r.kind = Some("mla-request".into());
        let out = csv(&[r]);
        assert!(out.starts_with(
            "time,id,verdict,reason,state,from,to,subject,authority,message_id,case_ref,kind,cursor\r\n"
        ));
        assert!(out.contains(",accept,ok,relayed,"), "{out}");
        assert!(
            out.contains(",aa-moj,,,mla-request,1767225600000:m1\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n"));
        assert!(
            out.contains(",\"bob@b.example, carol@b.example\","),
            "{out}"
        );
    }

    #[test]
    fn table_aligns_and_cuts() {
        let long = "é".repeat(60);
        let mut first = row("m1", &long);
        first.kind = Some("mla-request".into());
        let out = table(&[first, row("m22", "short\tsubject")], true);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        let authority_at = lines[0].find("  authority").unwrap() + 2;
        assert!(lines[0].ends_with("  authority  kind"), "{out}");
        for (l, kind) in lines[1..3].iter().zip(["mla-request", "-"]) {
            let chars: Vec<char> = l.chars().collect();
            let tail: String = chars[lines[0][..authority_at].chars().count()..]
                .iter()
                .collect();
            assert_eq!(tail, format!("aa-moj     {kind}"), "{out}");
        }
        assert!(lines[1].contains(&format!("{}…", "é".repeat(MAX_CELL - 1))));
        assert!(
            lines[2].contains("short\\x09subject"),
            "a tab is shown, not obeyed: {out}"
        );
        assert_eq!(lines[3], "next page: --after 1767225600000:m22");
        assert_eq!(table(&[], false), "no messages match\n");
    }
}

//! Request kinds (`[[kind]]` and `[kinds]` of `gateway.toml`): what a
//! message says it is (an MLA request, an extradition request…), which
//! routes may match on.
//!
//! A message declares its kind by a header field or its subject. Only the
//! signed entity's fields are trusted unless `trust_outer_header = true`:
//! the outer header of a signed message is not covered by the signature,
//! so anyone on the path could add or change a field there.

use std::collections::HashMap;

use super::authority::required_id;
use super::files::{At, TableReader};
use super::{Diagnostic, Lane, Named};

/// Keys of one `[[kind]]`.
const KIND_KEYS: &[&str] = &["id", "name", "header", "values", "subject", "lane"];

/// Keys of `[kinds]`.
pub(super) const SETTINGS_KEYS: &[&str] = &["trust_outer_header", "unknown"];

/// One request kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kind {
    /// The id routes and the audit name it by, e.g. `extradition-request`.
    pub id: String,
    /// A name for people (the id when not given).
    pub name: String,
    /// The header field declaring it, e.g. `X-MLA-Type`, with the values
    /// (compared case-insensitively; default: the id) that mean this kind.
    pub header: Option<(String, Vec<String>)>,
    /// A `Subject:` glob (`*` any run; compared case-insensitively).
    pub subject: Option<String>,
    /// The lane of its messages where the route names none.
    pub lane: Option<Lane>,
}

/// What a message whose declared kind is unknown gets (`[kinds] unknown`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownKind {
    /// `refuse` (the default): refused as `unknown-kind`.
    #[default]
    Refuse,
    /// `no-kind`: judged as a message declaring no kind.
    NoKind,
}

impl super::Named for UnknownKind {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("refuse", UnknownKind::Refuse),
        ("no-kind", UnknownKind::NoKind),
    ];
}

/// The kinds and how they are read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindSettings {
    /// The `[[kind]]` entries, in file order (the first match wins).
    pub kinds: Vec<Kind>,
    /// Whether the outer (unsigned) header counts when the signed entity
    /// declares nothing (`trust_outer_header`, default false).
    pub trust_outer_header: bool,
    /// What an unknown declared kind gets (`unknown`).
    pub unknown: UnknownKind,
}

/// What a message declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Declared<'p> {
    /// No kind.
    None,
    /// A known kind.
    Kind(&'p Kind),
    /// A kind header field whose value names no kind.
    Unknown {
        /// The field, as the policy spells it.
        field: String,
        /// Its value.
        value: String,
    },
}

impl KindSettings {
    /// The kind with id `id`.
    pub fn get(&self, id: &str) -> Option<&Kind> {
        self.kinds.iter().find(|k| k.id == id)
    }

    /// The kind a header section declares: `field(name)` gives the value of
    /// a header field, `subject` the subject. A kind field wins over the
    /// subject; a kind field whose value no kind of that field names is
    /// [`Declared::Unknown`].
    pub fn declared<'h>(
        &self,
        field: impl Fn(&str) -> Option<&'h str>,
        subject: Option<&str>,
    ) -> Declared<'_> {
        let mut unknown = None;
        for (i, k) in self.kinds.iter().enumerate() {
            let Some((name, _)) = &k.header else { continue };
            // Each field is looked up once, by its first kind.
            if self.kinds[..i].iter().any(|e| {
                e.header
                    .as_ref()
                    .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
            }) {
                continue;
            }
            let Some(value) = field(name).map(str::trim).filter(|v| !v.is_empty()) else {
                continue;
            };
            let hit = self.kinds.iter().find(|k| {
                k.header.as_ref().is_some_and(|(n, values)| {
                    n.eq_ignore_ascii_case(name)
                        && values.iter().any(|v| v.eq_ignore_ascii_case(value))
                })
            });
            match hit {
                Some(k) => return Declared::Kind(k),
                None => {
                    unknown.get_or_insert(Declared::Unknown {
                        field: name.clone(),
                        value: value.to_owned(),
                    });
                }
            }
        }
        if let Some(u) = unknown {
            return u;
        }
        let subject = subject.map(|s| s.trim().to_lowercase());
        let by_subject = self.kinds.iter().find(|k| {
            matches!((&k.subject, &subject), (Some(p), Some(s)) if super::route::glob(p.as_bytes(), s.as_bytes()))
        });
        by_subject.map_or(Declared::None, Declared::Kind)
    }
}

/// Reads the `[[kind]]` array and the `[kinds]` table of `top`.
pub(super) fn parse(
    top: &TableReader<'_, '_>,
    settings: Option<TableReader<'_, '_>>,
    diags: &mut Vec<Diagnostic>,
) -> KindSettings {
    let src = top.src();
    let mut out = KindSettings::default();
    if let Some(t) = settings {
        if let Some((b, _)) = t.boolean("trust_outer_header", diags) {
            out.trust_outer_header = b;
        }
        if let Some(u) = t.choice("unknown", UnknownKind::NAMES, diags) {
            out.unknown = u;
        }
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (table, header) in top.tables("kind", diags).unwrap_or_default() {
        let t = TableReader::new(src, table, header, "[[kind]]", KIND_KEYS, diags);
        let Some(kind) = parse_kind(&t, diags) else {
            continue;
        };
        let (kind, span) = kind;
        if let Some(&line) = ids.get(&kind.id) {
            diags.push(src.diag(
                &span,
                format!(
                    "duplicate kind id {:?} (first defined on line {line})",
                    kind.id
                ),
            ));
            continue;
        }
        ids.insert(kind.id.clone(), src.position(span.start).0);
        out.kinds.push(kind);
    }
    out
}

/// Reads one `[[kind]]`, with the span of its id.
fn parse_kind(t: &TableReader<'_, '_>, diags: &mut Vec<Diagnostic>) -> Option<At<Kind>> {
    let src = t.src();
    let before = diags.len();
    let id = required_id(t, "kind", diags);
    let name = t.string("name", diags);
    let header = t.string("header", diags).filter(|(h, span)| {
        let ok = !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if !ok {
            diags.push(src.diag(span, format!("invalid header field name {h:?}")));
        }
        ok
    });
    let values = t.string_list("values", diags);
    if let (Some(_), None) = (&values, &header) {
        let span = t.span_of("values").unwrap_or_else(|| t.header());
        diags.push(src.diag(&span, "values requires header"));
    }
    let subject = t.string("subject", diags).filter(|(s, span)| {
        let ok = !s.trim().is_empty();
        if !ok {
            diags.push(src.diag(span, "subject pattern must not be empty"));
        }
        ok
    });
    if header.is_none() && subject.is_none() {
        diags.push(src.diag(
            &t.header(),
            "a [[kind]] needs a header field, a subject pattern or both",
        ));
    }
    let lane = t.choice(
        "lane",
        &[("normal", Lane::Normal), ("urgent", Lane::Urgent)],
        diags,
    );
    let (id, span) = id?;
    if diags.len() != before {
        return None;
    }
    let values = match values {
        Some(list) if !list.is_empty() => list.into_iter().map(|(v, _)| v).collect(),
        _ => vec![id.clone()],
    };
    let kind = Kind {
        name: name.map_or_else(|| id.clone(), |(n, _)| n),
        header: header.map(|(h, _)| (h, values)),
        subject: subject.map(|(s, _)| s.trim().to_lowercase()),
        lane,
        id,
    };
    Some((kind, span))
}

#[cfg(test)]
mod tests {
    use super::super::files::Source;
    use super::*;

    fn run(text: &str) -> (KindSettings, Vec<String>) {
        let src = Source::new("p/gateway.toml".into(), text.to_owned());
        let doc = src.parse().unwrap();
        let mut diags = Vec::new();
        let top = TableReader::new(
            &src,
            doc.get_ref(),
            0..0,
            "",
            &["kind", "kinds"],
            &mut diags,
        );
        let settings = top.table("kinds", "[kinds]", SETTINGS_KEYS, &mut diags);
        let k = parse(&top, settings, &mut diags);
        (k, diags.iter().map(|d| d.to_string()).collect())
    }

    const SAMPLE: &str = concat!(
        "[kinds]\nunknown = \"no-kind\"\ntrust_outer_header = true\n",
        "[[kind]]\nid = \"mla-request\"\nheader = \"X-MLA-Type\"\n",
        "[[kind]]\nid = \"extradition-request\"\nheader = \"X-MLA-Type\"\n",
        "values = [\"extradition-request\", \"EXTRADITION\"]\nsubject = \"extradition*\"\n",
        "[[kind]]\nid = \"provisional-arrest\"\nsubject = \"*urgent*\"\nlane = \"urgent\"\n",
    );

    #[test]
    fn kinds_parse() {
        let (k, d) = run(SAMPLE);
        assert!(d.is_empty(), "{d:?}");
        assert!(k.trust_outer_header);
        assert_eq!(k.unknown, UnknownKind::NoKind);
        assert_eq!(k.kinds.len(), 3);
        assert_eq!(
            k.kinds[0].header,
            Some(("X-MLA-Type".into(), vec!["mla-request".into()]))
        );
        assert_eq!(k.kinds[2].lane, Some(Lane::Urgent));
        assert_eq!(k.kinds[2].name, "provisional-arrest");
        let (k, _) = run("");
        assert!(!k.trust_outer_header);
        assert_eq!(k.unknown, UnknownKind::Refuse);
    }

    #[test]
    fn kind_problems_are_located() {
        let (_, d) = run(concat!(
            "[[kind]]\nid = \"MLA\"\nheader = \"X-MLA-Type\"\n",
            "[[kind]]\nid = \"a\"\n",
            "[[kind]]\nid = \"b\"\nheader = \"X-T\"\n",
            "[[kind]]\nid = \"b\"\nsubject = \"x\"\nlane = \"fast\"\n",
            "[kinds]\nunknown = \"drop\"\n",
        ));
        assert_eq!(
            d,
            vec![
                "p/gateway.toml:14:11: invalid unknown \"drop\"; expected one of: \"refuse\", \"no-kind\"",
                "p/gateway.toml:2:6: invalid kind id \"MLA\": use lower-case letters, digits and '-'",
                "p/gateway.toml:4:1: a [[kind]] needs a header field, a subject pattern or both",
                "p/gateway.toml:12:8: invalid lane \"fast\"; expected one of: \"normal\", \"urgent\"",
            ]
        );
        let (_, d) = run(concat!(
            "[[kind]]\nid = \"b\"\nheader = \"X-T\"\n",
            "[[kind]]\nid = \"b\"\nsubject = \"x\"\n",
        ));
        assert_eq!(
            d,
            vec!["p/gateway.toml:5:6: duplicate kind id \"b\" (first defined on line 2)"]
        );
    }

    #[test]
    fn declarations() {
        let (k, _) = run(SAMPLE);
        let fields = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| *v)
            }
        };
        let id = |d: Declared<'_>| match d {
            Declared::Kind(k) => k.id.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(
            id(k.declared(fields(&[("x-mla-type", " Extradition ")]), None)),
            "extradition-request"
        );
        assert_eq!(
            id(k.declared(fields(&[("X-MLA-Type", "mla-request")]), Some("URGENT: x"))),
            "mla-request"
        );
        assert_eq!(
            id(k.declared(fields(&[]), Some("Extradition of X"))),
            "extradition-request"
        );
        assert_eq!(
            id(k.declared(fields(&[]), Some("very urgent"))),
            "provisional-arrest"
        );
        assert_eq!(k.declared(fields(&[]), Some("hello")), Declared::None);
        assert_eq!(
            k.declared(fields(&[("X-MLA-Type", "asylum")]), Some("Extradition")),
            Declared::Unknown {
                field: "X-MLA-Type".into(),
                value: "asylum".into()
            }
        );
    }
}

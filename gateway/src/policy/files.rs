//! Reading policy files: TOML with positions, typed access to tables that
//! reports unknown keys, wrong types and missing keys, and the set of bytes
//! the policy version is computed over.

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::Diagnostic;

/// A value with the byte range it came from in its file.
pub(super) type At<T> = (T, Range<usize>);

/// One policy file's text, able to turn byte offsets into line and column.
pub(super) struct Source {
    /// The path shown in diagnostics (the policy directory joined with the
    /// file's name).
    pub path: PathBuf,
    text: String,
}

impl Source {
    /// Wraps the text of the file shown as `path`.
    pub fn new(path: PathBuf, text: String) -> Self {
        Source { path, text }
    }

    /// 1-based line and column (in characters) of byte `offset`.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// A diagnostic at the start of `span` (an empty span at 0 means the
    /// whole file: line 1, column 1).
    pub fn diag(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        let (line, col) = self.position(span.start);
        Diagnostic {
            file: self.path.clone(),
            line,
            col,
            message: message.into(),
        }
    }

    /// The byte range of the first occurrence of `needle` (tests only).
    #[cfg(test)]
    pub fn text_offset(&self, needle: &str) -> Range<usize> {
        let start = self.text.find(needle).unwrap_or(0);
        start..start + needle.len()
    }

    /// Parses the text as a TOML document; a syntax error becomes a diagnostic.
    pub fn parse(&self) -> Result<Spanned<DeTable<'_>>, Diagnostic> {
        DeTable::parse(&self.text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            self.diag(&span, format!("syntax error: {}", e.message()))
        })
    }
}

/// A diagnostic about a whole file or directory (line 1, column 1).
pub(super) fn file_diag(path: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 1,
        col: 1,
        message: message.into(),
    }
}

/// Reads the policy file `rel` (relative to `dir`) and records it for the
/// version. `Ok(None)` when it does not exist.
pub(super) fn read_source(
    dir: &Path,
    rel: &str,
    files: &mut FileSet,
) -> Result<Option<Source>, Diagnostic> {
    let path = dir.join(rel);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(file_diag(
                &path,
                format!("cannot read file: {}", io_reason(&e)),
            ))
        }
    };
    files.add(rel, &bytes);
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(Source::new(path, text))),
        Err(_) => Err(file_diag(&path, "file is not valid UTF-8")),
    }
}

/// An I/O error in words, without the OS error number.
pub(super) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_owned(),
                None => s,
            }
        }
    }
}

/// The bytes of every file the policy consists of, keyed by the name they
/// are hashed under (relative to the policy directory), for
/// [`super::Policy::version`].
#[derive(Default)]
pub struct FileSet {
    files: BTreeMap<String, Vec<u8>>,
}

impl FileSet {
    /// Each file's name and content, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(n, b)| (n.as_str(), b.as_slice()))
    }

    /// Records `bytes` as the content of `name`.
    pub fn add(&mut self, name: impl Into<String>, bytes: &[u8]) {
        self.files.insert(name.into(), bytes.to_vec());
    }

    /// Hex SHA-256 over every file, in name order: for each file its name,
    /// a NUL, its length as 8 big-endian bytes, then its content.
    pub fn version(&self) -> String {
        let mut h = Sha256::new();
        for (name, bytes) in &self.files {
            h.update(name.as_bytes());
            h.update([0u8]);
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        hex::encode(h.finalize())
    }
}

/// The TOML type name of a value, as shown in messages.
fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

/// Typed access to one TOML table of a policy file. Creating it reports
/// every key not in the allowed list; the getters report wrong types and
/// missing required keys. Every problem goes to the diagnostics list given.
pub(super) struct TableReader<'a, 'i> {
    src: &'a Source,
    table: &'a DeTable<'i>,
    /// Where problems about the whole table point (its header).
    header: Range<usize>,
    /// How the table is named in messages: `[limits]`, `[[route]]`, or
    /// empty for the top level.
    context: &'static str,
}

impl<'a, 'i> TableReader<'a, 'i> {
    /// Reads `table`, reporting keys not in `allowed`.
    pub fn new(
        src: &'a Source,
        table: &'a DeTable<'i>,
        header: Range<usize>,
        context: &'static str,
        allowed: &[&str],
        diags: &mut Vec<Diagnostic>,
    ) -> Self {
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                let place = if context.is_empty() {
                    "at the top level".to_owned()
                } else {
                    format!("in {context}")
                };
                diags.push(src.diag(
                    &key.span(),
                    format!(
                        "unknown key {:?} {place}; expected one of: {}",
                        key.get_ref().as_ref(),
                        allowed.join(", ")
                    ),
                ));
            }
        }
        TableReader {
            src,
            table,
            header,
            context,
        }
    }

    /// The file this table is in.
    pub fn src(&self) -> &'a Source {
        self.src
    }

    /// The span of the table header (problems about the whole table).
    pub fn header(&self) -> Range<usize> {
        self.header.clone()
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Spanned<DeValue<'i>>> {
        self.table.get(key)
    }

    /// The span of `key`'s value, if present.
    pub fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.get(key).map(|v| v.span())
    }

    /// `key` named for messages: `"max_size" in [limits]`.
    fn name(&self, key: &str) -> String {
        if self.context.is_empty() {
            format!("{key:?}")
        } else {
            format!("{key:?} in {}", self.context)
        }
    }

    /// Reports a missing required key at the table header.
    pub fn missing(&self, key: &str, diags: &mut Vec<Diagnostic>) {
        let place = if self.context.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.context)
        };
        diags.push(
            self.src
                .diag(&self.header, format!("missing required key {key:?}{place}")),
        );
    }

    fn wrong_type(
        &self,
        key: &str,
        expected: &str,
        v: &Spanned<DeValue<'_>>,
        diags: &mut Vec<Diagnostic>,
    ) {
        diags.push(self.src.diag(
            &v.span(),
            format!(
                "key {} must be {expected}, found {}",
                self.name(key),
                type_name(v.get_ref())
            ),
        ));
    }

    /// A string value; `None` (reported) when of another type, `None`
    /// (silent) when absent.
    pub fn string(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<At<String>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.to_string(), v.span())),
            _ => {
                self.wrong_type(key, "a string", v, diags);
                None
            }
        }
    }

    /// An enumerated value: the `T` that `key`'s string names, reported
    /// (by [`one_of`]) when it names none.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<T> {
        let value = self.string(key, diags)?;
        one_of(self.src(), key, &value, choices, diags)
    }

    /// A required string value.
    pub fn required_string(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<At<String>> {
        self.require(key, diags).string(key, diags)
    }

    /// Reports `key` missing if it is absent; read it on from the result.
    pub fn require(&self, key: &str, diags: &mut Vec<Diagnostic>) -> &Self {
        if self.get(key).is_none() {
            self.missing(key, diags);
        }
        self
    }

    /// A boolean value; `None` (reported) when of another type, `None`
    /// (silent) when absent.
    pub fn boolean(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<At<bool>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some((*b, v.span())),
            _ => {
                self.wrong_type(key, "a boolean (true or false)", v, diags);
                None
            }
        }
    }

    /// An integer value.
    pub fn integer(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<At<i64>> {
        let v = self.get(key)?;
        let parsed = match v.get_ref() {
            DeValue::Integer(i) => {
                let digits = i.as_str().replace('_', "");
                i64::from_str_radix(&digits, i.radix()).ok()
            }
            _ => {
                self.wrong_type(key, "an integer", v, diags);
                return None;
            }
        };
        match parsed {
            Some(n) => Some((n, v.span())),
            None => {
                diags.push(
                    self.src
                        .diag(&v.span(), format!("key {} is out of range", self.name(key))),
                );
                None
            }
        }
    }

    /// A string or an array of strings (each string with its own span).
    pub fn string_list(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<At<String>>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.to_string(), v.span())]),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.to_string(), item.span())),
                        other => {
                            ok = false;
                            diags.push(self.src.diag(
                                &item.span(),
                                format!(
                                    "key {} must hold strings, found {}",
                                    self.name(key),
                                    type_name(other)
                                ),
                            ));
                        }
                    }
                }
                ok.then_some(out)
            }
            _ => {
                self.wrong_type(key, "a string or an array of strings", v, diags);
                None
            }
        }
    }

    /// A required, non-empty string or array of strings.
    pub fn required_list(&self, key: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<At<String>>> {
        let Some(v) = self.get(key) else {
            self.missing(key, diags);
            return None;
        };
        let list = self.string_list(key, diags)?;
        if list.is_empty() {
            diags.push(self.src.diag(
                &v.span(),
                format!("key {} must not be empty", self.name(key)),
            ));
            return None;
        }
        Some(list)
    }

    /// A sub-table written as `[name]` (or inline), read as `context`
    /// (`[name]`) whose keys must be among `allowed`.
    pub fn table(
        &self,
        key: &str,
        context: &'static str,
        allowed: &[&str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<TableReader<'a, 'i>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Table(t) => Some(TableReader::new(
                self.src,
                t,
                v.span(),
                context,
                allowed,
                diags,
            )),
            _ => {
                self.wrong_type(key, "a table", v, diags);
                None
            }
        }
    }

    /// An array of tables written as `[[name]]`, each with its header span.
    pub fn tables(
        &self,
        key: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<Vec<(&'a DeTable<'i>, Range<usize>)>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(key, "an array of tables", v, diags);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match item.get_ref() {
                DeValue::Table(t) => out.push((t, item.span())),
                other => diags.push(self.src.diag(
                    &item.span(),
                    format!(
                        "key {} must hold tables, found {}",
                        self.name(key),
                        type_name(other)
                    ),
                )),
            }
        }
        Some(out)
    }
}

/// The string names accepted for an enumerated key, or a diagnostic.
pub(super) fn one_of<T: Copy>(
    src: &Source,
    key: &str,
    value: &At<String>,
    choices: &[(&str, T)],
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    if let Some((_, t)) = choices.iter().find(|(name, _)| *name == value.0) {
        return Some(*t);
    }
    let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
    diags.push(src.diag(
        &value.1,
        format!(
            "invalid {key} {:?}; expected one of: {}",
            value.0,
            names.join(", ")
        ),
    ));
    None
}

/// Whether `s` is a valid DNS name (lower-case letters, digits, hyphens;
/// labels of 1 to 63 characters not starting or ending with a hyphen).
pub(super) fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let src = Source::new("f.toml".into(), "a = 1\nbé = \"x\"\n".into());
        assert_eq!(src.position(0), (1, 1));
        assert_eq!(src.position(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(src.position(12), (2, 6));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("justice.aa.example"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("-x.example"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("A.example"));
        assert!(!is_dns_name("a b.example"));
    }

    #[test]
    fn version_depends_on_names_and_content() {
        let mut a = FileSet::default();
        a.add("x", b"1");
        let mut b = FileSet::default();
        b.add("y", b"1");
        let mut c = FileSet::default();
        c.add("x", b"2");
        assert_ne!(a.version(), b.version());
        assert_ne!(a.version(), c.version());
        assert_eq!(a.version().len(), 64);
    }
}

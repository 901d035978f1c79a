//! The crate's layering (README, "Architecture"): the top-level modules of
//! `gateway/src` import each other without cycles, and only downwards.
//!
//! The graph is built from the source text the way `tools/deps.py` does:
//! every `crate::MODULE` path (and every `crate::{MODULE, …}` group) of a
//! file counts for the file's top-level module, except on comment lines and
//! after the first `#[cfg(test)]` of the file, and not in the files of a
//! `#[cfg(test)] mod NAME;` (unit tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The layers, top first; a module imports only modules of its own layer
/// or of layers below it. A new top-level module must be placed here.
const LAYERS: &[&[&str]] = &[
    // `emla demo` runs the whole gateway, as `emla serve` does from main.rs.
    &["demo"],
    &["server"],
    &["intake", "relay", "audit", "revocation"],
    &["verify", "receipts"],
    &["policy", "trust", "smime", "store"],
    &[
        "clock", "reason", "config", "backoff", "fsutil", "tls", "control", "case_ref", "text",
        "asn1", "pem", "envelope", "wire", "metrics",
    ],
];

/// Modules that import no other module of the crate.
const LEAVES: &[&str] = &["clock", "reason", "metrics"];

/// Modules allowed to import `server`, the composition root (main.rs, the
/// CLI, is the binary and imports it as `emla::server`).
const SERVER_USERS: &[&str] = &["demo"];

/// Importing module → imported module → the first file that does it.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules named right after each `crate::` in `code`.
fn imported(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(is_ident) {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b, c::{…}}`: the first name of each item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        let name: String =
                            group[n..].chars().take_while(|&c| is_ident(c)).collect();
                        if name != "self" {
                            found.insert(name);
                        }
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// The file and directory of each module that `text` (the file at
/// `path`) declares as `#[cfg(test)] mod NAME;`.
fn test_modules(path: &Path, text: &str) -> Vec<PathBuf> {
    let stem = path.file_stem().unwrap().to_string_lossy();
    let dir = if stem == "mod" || stem == "lib" || stem == "main" {
        path.parent().unwrap().to_path_buf()
    } else {
        path.with_extension("")
    };
    let mut found = Vec::new();
    for (i, _) in text.match_indices("#[cfg(test)]") {
        let rest = text[i + "#[cfg(test)]".len()..].trim_start();
        let rest = rest.strip_prefix("pub ").unwrap_or(rest);
        if let Some(decl) = rest.strip_prefix("mod ") {
            let name: String = decl.chars().take_while(|&c| is_ident(c)).collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                found.push(dir.join(format!("{name}.rs")));
                found.push(dir.join(&name));
            }
        }
    }
    found
}

fn graph() -> Graph {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    let mut skip = Vec::new();
    for path in &files {
        skip.extend(test_modules(path, &fs::read_to_string(path).unwrap()));
    }
    let mut graph = Graph::new();
    for path in files {
        if skip.iter().any(|s| path.starts_with(s)) {
            continue;
        }
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let module = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let edges = graph.entry(module.clone()).or_default();
        for target in imported(&code) {
            if target != module {
                edges.entry(target).or_insert_with(|| rel.clone());
            }
        }
    }
    graph
}

fn show(graph: &Graph, from: &str, to: &str) -> String {
    format!("{from} -> {to} ({})", graph[from][to])
}

/// A cycle of `graph`, as its modules in order, if there is one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flat_map(BTreeMap::keys) {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_parser_sees_paths_and_groups() {
    let code = "use crate::clock::EvalTime;\nuse crate::{policy::{A, B}, self, store};\n\
                let x = $crate::reason::Reason::Ok; let y = notcrate::fsutil::f;";
    let got: Vec<String> = imported(code).into_iter().collect();
    assert_eq!(got, ["clock", "policy", "reason", "store"]);
    let skipped = test_modules(Path::new("src/intake/mod.rs"), "#[cfg(test)]\nmod tests;");
    assert_eq!(
        skipped,
        [
            Path::new("src/intake/tests.rs"),
            Path::new("src/intake/tests")
        ]
    );
}

#[test]
fn no_import_cycles() {
    let graph = graph();
    assert!(graph.contains_key("verify") && graph.contains_key("smime"));
    if let Some(cycle) = find_cycle(&graph) {
        let edges: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(a, b)| show(&graph, a, b))
            .collect();
        panic!(
            "import cycle between top-level modules:\n  {}",
            edges.join("\n  ")
        );
    }
}

#[test]
fn imports_point_down() {
    let graph = graph();
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (from, edges) in &graph {
        let Some(own) = layer(from) else {
            wrong.push(format!("{from} is in no layer of tests/layers.rs"));
            continue;
        };
        for to in edges.keys() {
            match layer(to) {
                Some(l) if l >= own => {}
                Some(_) => wrong.push(format!("upwards: {}", show(&graph, from, to))),
                None if graph.contains_key(to) => {}
                None => wrong.push(format!("unknown module: {}", show(&graph, from, to))),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn only_the_cli_imports_the_composition_root() {
    let graph = graph();
    let users: Vec<String> = graph
        .iter()
        .filter(|(from, edges)| {
            edges.contains_key("server") && !SERVER_USERS.contains(&from.as_str())
        })
        .map(|(from, _)| show(&graph, from, "server"))
        .collect();
    assert!(
        users.is_empty(),
        "only main.rs and `emla demo` start the server:\n{}",
        users.join("\n")
    );
}

#[test]
fn clock_and_reason_import_nothing() {
    let graph = graph();
    for leaf in LEAVES {
        let edges: Vec<String> = graph
            .get(*leaf)
            .into_iter()
            .flat_map(BTreeMap::keys)
            .map(|to| show(&graph, leaf, to))
            .collect();
        assert!(
            edges.is_empty(),
            "{leaf} must import no module of the crate: {edges:?}"
        );
    }
}

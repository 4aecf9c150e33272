//! The server's modules depend one way: no file of `server/src` reaches, through the paths it
//! names (`crate::...`, `super::...`, `use child::...`), a file that reaches it back. Comments
//! and test modules are not counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Source files by their path under `src/` (`sql/dml.rs`), without comments and tests.
fn sources(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code: Vec<&str> = code
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, code.join("\n"));
        }
    }
}

/// The module path of a file: `sql/dml.rs` -> [sql, dml]; `lib.rs` -> [].
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path`.
fn file_of(path: &[String], files: &BTreeMap<String, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| format!("{}.rs", path[..n].join("/")))
        .find(|f| files.contains_key(f))
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The paths a file names: each `crate::a::b` or `super::a` (a `{...}` group gives one path
/// per item), resolved against the file's module.
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", me[..me.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(anchor) {
            let before = rest[..at].chars().last();
            rest = &rest[at + anchor.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let mut base = base.clone();
            let mut path = Vec::new();
            let mut tail = rest;
            loop {
                if let Some(t) = tail.strip_prefix("super::") {
                    base.pop();
                    tail = t;
                    continue;
                }
                if let Some(group) = tail.strip_prefix('{') {
                    let end = group.find('}').unwrap_or(group.len());
                    for item in group[..end].split(',') {
                        let name = ident_at(item.trim());
                        if !name.is_empty() {
                            let mut p = base.clone();
                            p.extend(path.iter().cloned());
                            p.push(name.to_string());
                            out.push(p);
                        }
                    }
                    path.clear();
                    break;
                }
                let name = ident_at(tail);
                if name.is_empty() {
                    break;
                }
                path.push(name.to_string());
                tail = &tail[name.len()..];
                match tail.strip_prefix("::") {
                    Some(t) => tail = t,
                    None => break,
                }
            }
            if !path.is_empty() {
                base.extend(path);
                out.push(base);
            }
        }
    }
    // `use child::...` in a parent file.
    for line in code.lines() {
        let l = line.trim_start();
        let l = l.strip_prefix("pub ").unwrap_or(l);
        if let Some(u) = l.strip_prefix("use ") {
            let u = u.strip_prefix("self::").unwrap_or(u);
            let name = ident_at(u);
            if !name.is_empty() && u[name.len()..].starts_with("::") {
                let mut p = me.to_vec();
                p.push(name.to_string());
                out.push(p);
            }
        }
    }
    out
}

/// Strongly connected components of more than one file (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let lw = s.low[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w.as_str()) {
                let iw = s.index[w.as_str()];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

#[test]
fn no_file_reaches_a_file_that_reaches_it_back() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in &files {
        let me = module_of(file);
        let targets = edges.entry(file.clone()).or_default();
        for path in named_paths(code, &me) {
            if let Some(t) = file_of(&path, &files)
                && t != *file
            {
                targets.insert(t);
            }
        }
    }
    assert!(
        edges["engine/read.rs"].contains("engine/fills.rs"),
        "the check sees imports"
    );
    assert!(
        edges["sql.rs"].contains("engine.rs")
            || edges["sql.rs"].iter().any(|t| t.starts_with("engine/"))
    );
    let found = cycles(&edges);
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn the_engine_knows_no_statement_provider_or_subscription() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    sources(&root, &root, &mut files);
    for (file, code) in files.iter().filter(|(f, _)| f.starts_with("engine")) {
        for upper in [
            "crate::sql",
            "crate::provider",
            "crate::live",
            "crate::backend",
        ] {
            assert!(!code.contains(upper), "{file} names {upper}");
        }
    }
}

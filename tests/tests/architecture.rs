//! The code keeps the shape ARCHITECTURE.md describes: in every crate no
//! module imports another that imports it back (directly or round a
//! longer loop), and in operator, receiver, cli and api no function is
//! longer than 60 lines (test modules aside). A change that breaks either
//! fails here, naming what to split.
//!
//! A module and its own children are a tree, not a loop: a parent declares
//! and calls its children (a pipeline its stages), a child uses what its
//! parent defines for all of them (the stages' `Stopped`). Only imports
//! between modules that are not one another's ancestor count.

#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use fusionhook_tests::tools::workspace_root;

const CRATES: [&str; 5] = ["api", "fusionauth", "receiver", "operator", "cli"];
const MAX_LINES: usize = 60;

fn sources(krate: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![workspace_root().join(krate).join("src")];
    while let Some(dir) = dirs.pop() {
        for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file before its test module, comment lines blanked (so
/// line numbers stay and comments count toward a function's length).
fn code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|l| if l.trim_start().starts_with("//") { String::new() } else { l.to_owned() }).collect()
}

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; `` for lib.rs and main.rs.
fn module(src: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts.join("::")
}

/// The longest module of `modules` that `path` (`a::b::Item`) names.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if modules.contains(&candidate) {
            return Some(candidate);
        }
        parts.pop();
    }
    None
}

/// Each module's imports of other modules of the crate (`crate::…` and
/// `super::…` paths, braces expanded one level), not of its ancestors.
fn imports(krate: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace_root().join(krate).join("src");
    let files = sources(krate);
    let modules: BTreeSet<String> = files.iter().map(|f| module(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module(&src, file);
        let text = code(file).join("\n");
        let mut targets = BTreeSet::new();
        for (prefix, base) in [("crate::", String::new()), ("super::", me.rsplit_once("::").map_or(String::new(), |(p, _)| p.to_owned()))] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                let path: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                let path = path.trim_end_matches(':');
                let full = match (base.is_empty(), path.is_empty()) {
                    (true, _) => path.to_owned(),
                    (false, true) => base.clone(),
                    (false, false) => format!("{base}::{path}"),
                };
                let mut named = vec![full.clone()];
                if rest[path.len()..].starts_with("::{") {
                    let inner = &rest[path.len() + 3..];
                    let inner = &inner[..inner.find('}').unwrap_or(0)];
                    named = inner
                        .split(',')
                        .map(|p| p.trim().split([' ', ':']).next().unwrap_or(""))
                        .filter(|p| !p.is_empty())
                        .map(|p| format!("{full}::{p}"))
                        .collect();
                }
                for name in named {
                    if let Some(target) = resolve(&name, &modules)
                        && target != me
                        && !me.starts_with(&format!("{target}::"))
                        && !target.is_empty()
                    {
                        targets.insert(target);
                    }
                }
            }
        }
        graph.insert(me, targets);
    }
    graph
}

/// The import loops of `graph` (strongly connected parts of two or more).
fn loops(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|m| (m, reach(m))).collect();
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    for (m, reached) in &reachable {
        let part: Vec<String> = reached.iter().filter(|o| reachable[o].contains(*m)).cloned().collect();
        if !part.is_empty() {
            found.insert(part);
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let mut found = Vec::new();
    for krate in CRATES {
        let graph = imports(krate);
        assert!(graph.len() > 3, "{krate}: {graph:?}");
        if krate == "operator" {
            // It reads what it should: a stage's imports.
            let growth = &graph["reconcile::store_growth"];
            assert!(growth.contains("reconcile::validate") && growth.contains("quantity"), "{growth:?}");
        }
        found.extend(loops(&graph).into_iter().map(|part| format!("{krate}: {}", part.join(" -> "))));
    }
    assert!(found.is_empty(), "import loops (move what both use into a module of its own):\n{}", found.join("\n"));
}

#[test]
fn the_import_check_sees_a_loop() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")].into_iter().map(|(m, n)| (m.to_owned(), BTreeSet::from([n.to_owned()]))).collect();
    assert_eq!(loops(&graph), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
}

/// Functions of `lines` as (name, first line, length).
fn functions(lines: &[String]) -> Vec<(String, usize, usize)> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = &lines[i];
        let trimmed = line.trim_start();
        let mut head = trimmed;
        // Qualifiers before `fn`, in any order Rust allows.
        loop {
            let before = head;
            for qualifier in ["pub ", "async ", "const ", "unsafe ", "extern \"C\" "] {
                head = head.strip_prefix(qualifier).unwrap_or(head);
            }
            if let Some(rest) = head.strip_prefix("pub(") {
                head = rest.split_once(") ").map_or(head, |(_, after)| after);
            }
            if head == before {
                break;
            }
        }
        let Some(rest) = head.strip_prefix("fn ") else {
            i += 1;
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let indent = line.len() - trimmed.len();
        let mut open = i;
        while open < lines.len() && !lines[open].contains('{') && !lines[open].trim_end().ends_with(';') {
            open += 1;
        }
        if open >= lines.len() || (!lines[open].contains('{') && lines[open].trim_end().ends_with(';')) {
            i = open + 1;
            continue;
        }
        let close = format!("{}}}", " ".repeat(indent));
        let end = (open..lines.len())
            .find(|&k| lines[k].trim_end() == close || (k == open && lines[k].trim_end().ends_with('}')))
            .unwrap_or(open);
        found.push((name, i + 1, end - i + 1));
        i = end + 1;
    }
    found
}

#[test]
fn no_function_is_longer_than_60_lines() {
    let mut long = Vec::new();
    for krate in ["api", "receiver", "operator", "cli"] {
        for file in sources(krate) {
            for (name, line, length) in functions(&code(&file)) {
                if length > MAX_LINES {
                    long.push(format!("{}:{line} {name}: {length} lines", file.strip_prefix(workspace_root()).unwrap().display()));
                }
            }
        }
    }
    assert!(long.is_empty(), "functions over {MAX_LINES} lines (split them into named steps):\n{}", long.join("\n"));
}

#[test]
fn the_length_check_counts_a_function_to_its_closing_brace() {
    let lines: Vec<String> =
        "pub async fn long(\n    a: u8,\n) -> u8 {\n    let b = a;\n    b\n}\nfn short() {}\n".lines().map(str::to_owned).collect();
    assert_eq!(functions(&lines), vec![("long".to_owned(), 1, 6), ("short".to_owned(), 7, 1)]);
}

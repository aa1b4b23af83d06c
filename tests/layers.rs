//! The layering rules, checked on the source tree (fast: no build of anything, no network).
//!
//! - `src/core/` is the sans-IO protocol: it imports neither Bevy nor matchbox, and nothing of
//!   this crate outside `core`.
//! - `src/io/` is the transport: it may use the core, never the Bevy side.
//! - No import cycle between files (a module and its own submodules excepted).
//!
//! "Imports" are `crate::` and `super::` paths in code, `use` groups expanded; comments and
//! `#[cfg(test)]` modules are left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

type Module = Vec<String>;

/// Every `.rs` file under `src/`, by module path (`core/room.rs` → `["core", "room"]`).
fn modules() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<Module, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                let mut p = prefix.to_vec();
                p.push(name);
                walk(&path, &p, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    module.push(name);
                }
                out.insert(module, code(&fs::read_to_string(&path).expect("read file")));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

/// The file's code: comments removed, and everything from its `#[cfg(test)]` module on.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") && !line.starts_with(' ') {
            break;
        }
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every path named after `crate::` or `super::` in `code`, with `use` groups expanded:
/// `use crate::{a::b, c::{d, e}}` gives `a::b`, `c::d`, `c::e`.
fn paths(code: &str, module: &Module) -> Vec<Module> {
    let mut found = Vec::new();
    for (anchor, base) in [
        ("crate::", Vec::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            expand(rest, &base, &mut found);
        }
    }
    found
}

/// Expands the use tree at the start of `text` onto `base`.
fn expand(text: &str, base: &[String], found: &mut Vec<Module>) {
    let ident_end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    if ident_end > 0 {
        let mut path = base.to_vec();
        path.push(text[..ident_end].to_owned());
        let rest = &text[ident_end..];
        if let Some(next) = rest.strip_prefix("::") {
            expand(next, &path, found);
        } else {
            found.push(path);
        }
    } else if let Some(group) = text.strip_prefix('{') {
        // Split the group's top level on commas.
        let (mut depth, mut start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(group[start..i].trim_start(), base, found);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(group[start..i].trim_start(), base, found);
                    start = i + 1;
                }
                _ => {}
            }
        }
    } else {
        found.push(base.to_vec());
    }
}

/// The longest prefix of `path` that is a file of ours.
fn resolve(path: &[String], files: &BTreeMap<Module, String>) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

/// File-to-file imports.
fn edges(files: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    files
        .iter()
        .map(|(module, code)| {
            let targets = paths(code, module)
                .iter()
                .filter_map(|p| resolve(p, files))
                .filter(|t| t != module)
                .collect();
            (module.clone(), targets)
        })
        .collect()
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

#[test]
fn the_core_uses_neither_bevy_nor_matchbox_nor_the_rest_of_the_crate() {
    let files = modules();
    let edges = edges(&files);
    let mut problems = Vec::new();
    for (module, code) in files
        .iter()
        .filter(|(m, _)| m.first().is_some_and(|m| m == "core"))
    {
        for external in [
            "bevy",
            "matchbox_socket",
            "matchbox_signaling",
            "tokio",
            "web_sys",
        ] {
            if code.contains(&format!("{external}::")) {
                problems.push(format!("{} uses {external}", name(module)));
            }
        }
        for target in &edges[module] {
            if target.first().is_none_or(|t| t != "core") {
                problems.push(format!("{} imports {}", name(module), name(target)));
            }
        }
    }
    assert!(problems.is_empty(), "layer violations: {problems:#?}");
    assert!(
        files
            .keys()
            .filter(|m| m.first().is_some_and(|m| m == "core"))
            .count()
            > 5
    );
}

#[test]
fn io_uses_the_core_but_not_the_bevy_side() {
    let files = modules();
    let edges = edges(&files);
    let mut problems = Vec::new();
    for module in files
        .keys()
        .filter(|m| m.first().is_some_and(|m| m == "io"))
    {
        for target in &edges[module] {
            if target.first().is_none_or(|t| t != "core" && t != "io") {
                problems.push(format!("{} imports {}", name(module), name(target)));
            }
        }
    }
    assert!(problems.is_empty(), "layer violations: {problems:#?}");
}

#[test]
fn no_import_cycles_between_files() {
    let files = modules();
    let edges = edges(&files);
    let related = |a: &Module, b: &Module| a.starts_with(b) || b.starts_with(a);
    // Whether `to` is reachable from `from` (parent/child module edges ignored).
    let reaches = |from: &Module, to: &Module| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in &edges[&m] {
                if related(&m, next) {
                    continue;
                }
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let cycles: Vec<String> = edges
        .iter()
        .flat_map(|(a, targets)| targets.iter().map(move |b| (a, b)))
        .filter(|(a, b)| !related(a, b) && reaches(b, a))
        .map(|(a, b)| format!("{} -> {} -> ... -> {}", name(a), name(b), name(a)))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn the_checker_sees_imports() {
    let module = vec!["core".to_owned(), "room".to_owned()];
    let mut found = paths(
        "use crate::{core::{wire::{self, Record}, peer::PeerId}, api};\nlet x = super::session::Session::new();",
        &module,
    );
    found.sort();
    let strings: Vec<String> = found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        strings,
        [
            "api",
            "core::peer::PeerId",
            "core::session::Session::new",
            "core::wire::Record",
            "core::wire::self"
        ]
    );
}

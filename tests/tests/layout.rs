//! The controller's layout as `monitor/src/lib.rs` declares it: each top-level module on a
//! rung of the ladder, imports only downward, no import cycle between modules (also inside
//! a folder), each module saying what it owns, and no long function without a reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitor/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file: `daemon/control.rs` → `daemon::control`,
/// `policy/mod.rs` → `policy`, `main.rs` and `cli/..` → `cli..` (the binary's modules).
fn module_of(file: &Path) -> String {
    let rel = file
        .strip_prefix(src())
        .unwrap_or_else(|_| panic!("{} outside src", file.display()));
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    match parts.as_slice() {
        [one] if one == "main" => "cli".into(),
        [one] if one == "lib" => String::new(),
        _ => parts.join("::"),
    }
}

/// The text without comments and string literals (so that neither makes an import).
fn code_only(text: &str) -> String {
    let bytes: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            ('/', Some('/')) => {
                while i < bytes.len() && bytes[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                while i + 1 < bytes.len() && !(bytes[i] == '*' && bytes[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ('"', _) => {
                i += 1;
                while i < bytes.len() && bytes[i] != '"' {
                    if bytes[i] == '\\' {
                        i += 1;
                    }
                    if bytes[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The modules a file refers to: `crate::a::b` (or `monitor::a::b` in the binary),
/// `super::x`, and in a folder's `mod.rs` its children by their bare names, each taken as
/// deep as a module of the tree goes. A `mod.rs` declaring or re-exporting its own
/// children (`pub mod x;`, `pub use x::..;`) makes no import.
fn references(file: &Path, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = code_only(&std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}")));
    references_in(&module_of(file), &code, modules)
}

fn references_in(module: &str, code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let is_binary = module == "cli" || module.starts_with("cli::");
    let root = if is_binary { "monitor::" } else { "crate::" };
    // Lines that only declare or re-export children.
    let code: String = code
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            !(l.starts_with("pub mod ") || l.starts_with("mod ") || l.starts_with("pub use "))
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (start, _) in code.match_indices(root) {
        collect_paths(&code[start + root.len()..], Vec::new(), &mut paths);
    }
    if !is_binary && !module.is_empty() {
        let parent: Vec<String> = module.split("::").map(str::to_owned).collect();
        for (start, _) in code.match_indices("super::") {
            let base = parent[..parent.len() - 1].to_vec();
            collect_paths(&code[start + "super::".len()..], base, &mut paths);
        }
    }
    // Children named bare (`mud::Names`) from their parent's code.
    let children: Vec<&str> = modules
        .iter()
        .filter_map(|m| {
            let rest = if module.is_empty() {
                Some(m.as_str())
            } else {
                m.strip_prefix(&format!("{module}::"))
            }?;
            (!rest.contains("::")).then_some(rest)
        })
        .collect();
    for child in children {
        let needle = format!("{child}::");
        for (start, _) in code.match_indices(&needle) {
            let before = code[..start].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut base: Vec<String> = if module.is_empty() {
                Vec::new()
            } else {
                module.split("::").map(str::to_owned).collect()
            };
            base.push(child.to_owned());
            collect_paths(&code[start + needle.len()..], base, &mut paths);
        }
    }
    let mut found = BTreeSet::new();
    for path in paths {
        // The deepest module the path names.
        let best = (1..=path.len())
            .map(|depth| path[..depth].join("::"))
            .rfind(|candidate| modules.contains(candidate));
        if let Some(target) = best
            && target != module
        {
            found.insert(target);
        }
    }
    found
}

/// The paths written at the start of `text` (`a::b::{c, d::e}` gives a::b::c, a::b::d::e).
fn collect_paths(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut rest = text;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 || (depth == 1 && c == ',') {
                        // A trailing comma leaves an empty item: no path.
                        if !item.trim().is_empty() {
                            collect_paths(item.trim(), path.clone(), out);
                        }
                        item.clear();
                        if depth == 0 {
                            break;
                        }
                        continue;
                    }
                    item.push(c);
                }
            } else {
                out.push(path);
            }
            return;
        }
        rest = &rest[ident.len()..];
        if ident != "self" {
            path.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(more) => rest = more,
            None => {
                out.push(path);
                return;
            }
        }
    }
}

/// The ladder of `lib.rs`'s doc table: module → rung.
fn ladder() -> BTreeMap<String, u32> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap_or_else(|e| panic!("{e}"));
    let mut rungs = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//! |")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(rung), Some(module)) = (cells.first(), cells.get(1)) else {
            continue;
        };
        let Ok(rung) = rung.parse::<u32>() else {
            continue;
        };
        let name = module
            .trim_matches(|c| c == '`' || c == '[' || c == ']')
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .trim_matches(|c| c == '`' || c == '[' || c == ']')
            .to_owned();
        rungs.insert(name, rung);
    }
    assert!(
        rungs.len() >= 8,
        "lib.rs's ladder table not found: {rungs:?}"
    );
    rungs
}

struct Tree {
    files: Vec<PathBuf>,
    modules: BTreeSet<String>,
}

fn tree() -> Tree {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let modules = files.iter().map(|f| module_of(f)).collect();
    Tree { files, modules }
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn imports_go_only_down_the_ladder() {
    let tree = tree();
    let rungs = ladder();
    let mut wrong = Vec::new();
    for file in &tree.files {
        let module = module_of(file);
        if module.is_empty() {
            continue;
        }
        let Some(own) = rungs.get(top(&module)) else {
            wrong.push(format!("{module}: its folder is not on lib.rs's ladder"));
            continue;
        };
        for target in references(file, &tree.modules) {
            if top(&target) == top(&module) {
                continue;
            }
            match rungs.get(top(&target)) {
                Some(rung) if rung < own => {}
                Some(rung) => wrong.push(format!(
                    "{module} (rung {own}) imports {target} (rung {rung})"
                )),
                None => wrong.push(format!("{module} imports {target}, not on the ladder")),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports up the ladder:\n{}",
        wrong.join("\n")
    );
}

/// A cycle of `graph`, as the path that closes it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let tree = tree();
    let graph: BTreeMap<String, BTreeSet<String>> = tree
        .files
        .iter()
        .map(|f| (module_of(f), references(f, &tree.modules)))
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn every_module_says_what_it_owns() {
    let tree = tree();
    let missing: Vec<String> = tree
        .files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "no `//!` module doc: {missing:#?}");
}

/// Functions longer than this need a `// Long:` comment saying why they must be.
const LONG_FUNCTION_LINES: usize = 120;

#[test]
fn no_long_function_without_a_reason() {
    let tree = tree();
    let mut long = Vec::new();
    for file in &tree.files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut in_tests = false;
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim_start();
            if line.starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            let is_fn = (line.starts_with("fn ")
                || line.starts_with("pub fn ")
                || line.starts_with("pub(crate) fn ")
                || line.starts_with("async fn ")
                || line.starts_with("pub async fn "))
                && !in_tests;
            if !is_fn {
                i += 1;
                continue;
            }
            let indent = lines[i].len() - line.len();
            let end = (i + 1..lines.len())
                .find(|j| {
                    let l = lines[*j];
                    l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
                })
                .unwrap_or(i);
            let length = end - i + 1;
            let reasoned = lines[i.saturating_sub(6)..=end]
                .iter()
                .any(|l| l.contains("// Long:"));
            if length > LONG_FUNCTION_LINES && !reasoned {
                long.push(format!(
                    "{}:{}: {} lines: {}",
                    file.strip_prefix(src()).unwrap_or(file).display(),
                    i + 1,
                    length,
                    line.split('(').next().unwrap_or(line)
                ));
            }
            i = end.max(i) + 1;
        }
    }
    assert!(
        long.is_empty(),
        "functions over {LONG_FUNCTION_LINES} lines without a `// Long:` reason:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // Grouped paths, comments and strings.
    let mut paths = Vec::new();
    collect_paths(
        "state::{files, daemon::{Paths, DaemonInfo}}, x",
        Vec::new(),
        &mut paths,
    );
    assert_eq!(
        paths,
        vec![
            vec!["state".to_string(), "files".into()],
            vec!["state".into(), "daemon".into(), "Paths".into()],
            vec!["state".into(), "daemon".into(), "DaemonInfo".into()],
        ]
    );
    assert_eq!(
        code_only("let a = \"crate::x\"; // crate::y\ncrate::z"),
        "let a = \"\"; \ncrate::z"
    );
    // References: by crate path, by super, by a child's bare name from its parent; not a
    // parent's declaration or re-export of its child.
    let modules: BTreeSet<String> = ["policy", "policy::mud", "policy::guard", "state", "view"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    let set = |v: &[&str]| v.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        references_in(
            "policy",
            "pub mod mud;\npub use guard::Shrink;\nfn f() { mud::load(); }",
            &modules
        ),
        set(&["policy::mud"])
    );
    assert_eq!(
        references_in(
            "policy::mud",
            "use super::Policy; use crate::state::X;",
            &modules
        ),
        set(&["policy", "state"])
    );
    // A cycle is found, and the ladder is read.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("policy".to_string(), set(&["policy::mud"])),
        ("policy::mud".to_string(), set(&["policy"])),
        ("view".to_string(), set(&["policy"])),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["policy".into(), "policy::mud".into(), "policy".into()])
    );
    let rungs = ladder();
    assert!(rungs["daemon"] > rungs["observe"] && rungs["observe"] > rungs["view"]);
    assert!(rungs["state"] > rungs["policy"] && rungs["policy"] > rungs["datapath"]);
}

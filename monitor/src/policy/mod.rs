//! Policy files: what the files in a policy directory say, checked, and compiled into the
//! flat form the XDP program reads; MUD files as the rules of a device kind; what a reload
//! may change on its own; and the watch that notices a changed directory.
//!
//! A policy directory holds YAML (or JSON) files. Each may list `devices` (the inventory),
//! `groups`, `rules` and `mud` entries, and one may set `defaults`. Files are read in name
//! order; every problem is reported with its file, line and column.
//!
//! Each file imports only from those listed before it (a test below checks it):
//!
//! | module | owns |
//! |---|---|
//! | [`watch`] | noticing a changed policy directory (inotify), once it has settled |
//! | [`model`] | the data: what policy files say, what MUD files contribute, [`Policy`] |
//! | [`compile`] | [`Policy`] to the datapath's rule sets; address blocks ([`Prefix`]) |
//! | [`guard`] | what a load may take away on its own (held back otherwise) |
//! | [`mud`] | reading MUD files (RFC 8520), resolving their names |
//! | [`check`] | reading a directory: parsing, checks, diagnostics with file:line:col |
//!
//! What the other layers use is re-exported here, so that they write `crate::policy::X`.

pub mod check;
pub mod compile;
pub mod guard;
pub mod model;
pub mod mud;
pub mod watch;

pub use check::PolicyError;
pub use compile::{CompiledRule, Prefix, RuleSets, fold_rules};
pub use model::{
    BREAK_GLASS_MAX_CEILING, BREAK_GLASS_MAX_FLOOR, Criticality, DEFAULT_BREAK_GLASS_MAX, Defaults,
    DeviceSpec, Endpoint, EndpointSpec, GroupSpec, Location, MAX_DEVICES, MAX_POLICY_FILE_BYTES,
    Place, Policy, PolicyFile, PortsSpec, Problem, RuleAction, RuleDirection, RuleSpec,
    ScheduleMode, UnenrolledSpec, format_mac, parse_break_glass_max, parse_mac, parse_macs,
};

/// The ladder of the table above, checked on the sources: every file of `policy/` imports
/// only from modules listed before its own (inside `model/` and `mud/` too, by their own
/// lists), and never through the re-exports of a folder's `mod.rs`, which would hide where
/// a dependency points.
#[cfg(test)]
mod layout {
    use std::path::{Path, PathBuf};

    /// The modules of `policy/`, bottom first.
    const LADDER: &[&str] = &["watch", "model", "compile", "guard", "mud", "check"];
    /// The files of the folders among them, bottom first.
    const INSIDE: &[(&str, &[&str])] = &[
        ("model", &["place", "spec", "mud_import"]),
        (
            "mud",
            &[
                "schema", "convert", "import", "resolver", "names", "describe",
            ],
        ),
    ];

    fn rank(list: &[&str], name: &str) -> Option<usize> {
        list.iter().position(|m| *m == name)
    }

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The code of a file, comments and its test module left out: the file's own, and that
    /// of its inline modules (`mod name { .. }`, where `super::` is the file itself).
    fn code(text: &str) -> (String, String) {
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let (mut own, mut inline) = (String::new(), String::new());
        let mut in_inline = false;
        for line in text.lines() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if line.starts_with("mod ") && line.ends_with('{') {
                in_inline = true;
            }
            let part = if in_inline { &mut inline } else { &mut own };
            part.push_str(line);
            part.push('\n');
            if in_inline && line == "}" {
                in_inline = false;
            }
        }
        (own, inline)
    }

    /// The paths of a use tree or path expression starting at `at`, as segments.
    fn tree(text: &[u8], at: &mut usize) -> Vec<Vec<String>> {
        let skip_space = |at: &mut usize| {
            while text.get(*at).is_some_and(u8::is_ascii_whitespace) {
                *at += 1;
            }
        };
        skip_space(at);
        if text.get(*at) == Some(&b'{') {
            *at += 1;
            let mut out = Vec::new();
            loop {
                skip_space(at);
                match text.get(*at) {
                    None => return out,
                    Some(b'}') => {
                        *at += 1;
                        return out;
                    }
                    Some(b',') => *at += 1,
                    Some(_) => out.extend(tree(text, at)),
                }
            }
        }
        let start = *at;
        while text
            .get(*at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'*')
        {
            *at += 1;
        }
        let segment = String::from_utf8_lossy(&text[start..*at]).into_owned();
        if text.get(*at..*at + 2) == Some(b"::") {
            *at += 2;
            let mut out = tree(text, at);
            for path in &mut out {
                path.insert(0, segment.clone());
            }
            return out;
        }
        // `a::b as c`: the alias names nothing new.
        skip_space(at);
        if text.get(*at..*at + 3) == Some(b"as ") {
            *at += 3;
            skip_space(at);
            while text
                .get(*at)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                *at += 1;
            }
        }
        vec![vec![segment]]
    }

    /// Every path a file's code names under `crate::policy`, with `super::` resolved for a
    /// file of module `module` (a folder's file when `inside` is set).
    fn references(code: &str, module: &str, inside: Option<&str>) -> Vec<Vec<String>> {
        let (own, inline) = self::code(code);
        let mut out = Vec::new();
        let parent: Vec<String> = match inside {
            Some(_) => vec![module.to_string()],
            None => Vec::new(),
        };
        for (code, prefix, base) in [
            (&own, "crate::policy::", Vec::new()),
            (&inline, "crate::policy::", Vec::new()),
            (&own, "super::", parent),
        ] {
            let bytes = code.as_bytes();
            for (index, _) in code.match_indices(prefix) {
                if prefix == "super::" && index > 0 && bytes[index - 1] == b':' {
                    continue;
                }
                let mut at = index + prefix.len();
                for path in tree(bytes, &mut at) {
                    out.push(base.iter().cloned().chain(path).collect());
                }
            }
        }
        out
    }

    /// What is wrong with one reference of a file of `module` (`inside`: its file in the
    /// folder; `None` for the module's own file or `mod.rs`).
    fn wrong(module: &str, inside: Option<&str>, path: &[String]) -> Option<String> {
        let target = path.first()?;
        let Some(target_rank) = rank(LADDER, target) else {
            return Some(format!(
                "uses `crate::policy::{}`, a re-export of policy/mod.rs; name the module",
                path.join("::")
            ));
        };
        let own_rank = rank(LADDER, module)?;
        if target != module {
            return (target_rank >= own_rank).then(|| {
                format!(
                    "`{module}` imports `{}`, which is not below it",
                    path.join("::")
                )
            });
        }
        let (Some(file), Some((_, files))) =
            (inside, INSIDE.iter().find(|(folder, _)| *folder == module))
        else {
            return None;
        };
        let sibling = path.get(1)?;
        match (rank(files, sibling), rank(files, file)) {
            (Some(theirs), Some(ours)) if theirs < ours => None,
            (Some(_), _) => Some(format!(
                "`{module}/{file}` imports `{}`, which is not below it",
                path.join("::")
            )),
            (None, _) => Some(format!(
                "`{module}/{file}` uses `{}`, a re-export of {module}/mod.rs; name the file",
                path.join("::")
            )),
        }
    }

    #[test]
    fn policy_modules_import_only_downward() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/policy");
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        let mut problems = Vec::new();
        for file in &files {
            let relative = file
                .strip_prefix(&root)
                .unwrap_or_else(|e| panic!("{e}"))
                .with_extension("");
            let parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            let (module, inside) = match parts.as_slice() {
                [top] if top == "mod" => continue,
                [top] => (top.clone(), None),
                [folder, file] if file == "mod" => (folder.clone(), None),
                [folder, file] => (folder.clone(), Some(file.clone())),
                _ => {
                    problems.push(format!("{}: nested deeper than the ladder", file.display()));
                    continue;
                }
            };
            let listed = rank(LADDER, &module).is_some()
                && inside.as_deref().is_none_or(|f| {
                    INSIDE
                        .iter()
                        .any(|(folder, files)| *folder == module && files.contains(&f))
                });
            if !listed {
                problems.push(format!(
                    "{}: not on the ladder; add it to the table in policy/mod.rs",
                    file.display()
                ));
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{e}"));
            for path in references(&text, &module, inside.as_deref()) {
                if let Some(problem) = wrong(&module, inside.as_deref(), &path) {
                    problems.push(format!("{}: {problem}", file.display()));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(files.len() >= 12, "only {files:?}");
    }
}

//! Every dependency a package declares is used by its code: a crate kept "just in case"
//! is code nobody reviews in the build of a security product.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names of the dependencies in `section` (`[dependencies]`, ...) of a manifest.
fn declared(manifest: &str, section: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == section;
            continue;
        }
        if inside
            && !line.starts_with('#')
            && let Some((name, _)) = line.split_once('=')
        {
            names.push(name.trim().to_owned());
        }
    }
    names
}

/// Whether `code` uses the crate `name` (as a path, an import or a macro).
fn uses(code: &str, name: &str) -> bool {
    let ident = name.replace('-', "_");
    [
        format!("{ident}::"),
        format!("use {ident}"),
        format!("{ident}!"),
        format!("extern crate {ident}"),
    ]
    .iter()
    .any(|needle| {
        code.match_indices(needle.as_str()).any(|(at, _)| {
            !code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    })
}

#[test]
fn every_declared_dependency_is_used() {
    let mut unused = Vec::new();
    for package in ["monitor", "monitor-common", "tests", "xtask"] {
        let dir = root().join(package);
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{package}/Cargo.toml: {e}"));
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let code: String = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect();
        for section in [
            "[dependencies]",
            "[dev-dependencies]",
            "[build-dependencies]",
        ] {
            for name in declared(&manifest, section) {
                if !uses(&code, &name) {
                    unused.push(format!("{package} {section} {name}"));
                }
            }
        }
    }
    // The workspace's shared versions are used by some package.
    let workspace = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap_or_else(|e| panic!("Cargo.toml: {e}"));
    let manifests: String = ["monitor", "monitor-common", "tests", "xtask"]
        .iter()
        .map(|p| std::fs::read_to_string(root().join(p).join("Cargo.toml")).unwrap_or_default())
        .collect();
    for name in declared(&workspace, "[workspace.dependencies]") {
        if !manifests.lines().any(|l| {
            l.trim_start()
                .starts_with(&format!("{name} = {{ workspace = true"))
        }) {
            unused.push(format!(
                "workspace.dependencies {name}: no package takes it"
            ));
        }
    }
    assert!(unused.is_empty(), "declared but not used: {unused:#?}");
}

#[test]
fn the_check_sees_a_crate_unused() {
    assert!(uses("use serde::Serialize;", "serde"));
    assert!(uses("let x = serde_json::json!({});", "serde-json"));
    assert!(!uses("let my_serde::x = 1;", "serde"));
    assert!(!uses("// nothing here", "bytes"));
    assert_eq!(
        declared(
            "[dependencies]\nbytes = \"1\"\n# c\n[lints]\nx = 1\n",
            "[dependencies]"
        ),
        vec!["bytes".to_string()]
    );
}

//! `cargo xtask bench`: set up, build the controller and the benchmark driver in release,
//! run the driver (tests/src/bin/monitor-bench.rs), which writes BENCHMARKS.md at the
//! workspace root. Not part of `cargo xtask test`: it takes minutes and its figures are
//! for people to read, not pass/fail.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{cmd, setup};

/// The commit whose XDP object the benchmark measures its reference parse-only from: the
/// datapath before issue 9 rebuilt it, so that "parse-only's own cost not higher than
/// before" is measured in the same run.
const REFERENCE_COMMIT: &str = "6567ed6";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Runs per figure (medians and min–max spread are taken over these).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Fewer, smaller cases: to try the driver out, not for the report.
    #[arg(long)]
    pub quick: bool,
}

pub fn run(args: Args) -> Result<()> {
    setup::run()?;
    cmd::run(cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "monitor",
        "--bin",
        "monitor",
        "-p",
        "monitor-tests",
        "--bin",
        "monitor-bench",
    ]))?;
    let reference = reference_object()?;
    let root = cmd::workspace_root();
    let release = root.join("target/release");
    let mut bench = std::process::Command::new(release.join("monitor-bench"));
    bench
        .current_dir(&root)
        .arg("--out")
        .arg(root.join("BENCHMARKS.md"))
        .arg("--monitor-bin")
        .arg(release.join("monitor"))
        .args(["--runs", &args.runs.to_string()])
        .arg("--reference-object")
        .arg(&reference);
    if args.quick {
        bench.arg("--quick");
    }
    cmd::run(&mut bench)
}

/// The XDP object of [`REFERENCE_COMMIT`], built once into target/bench-reference (its
/// monitor-ebpf and monitor-common, and the workspace manifest monitor-common inherits
/// from, written out of git; built as monitor/build.rs builds the current one).
fn reference_object() -> Result<PathBuf> {
    let root = cmd::workspace_root();
    let dir = root.join("target/bench-reference").join(REFERENCE_COMMIT);
    let object = dir.join("target/bpfel-unknown-none/release/monitor-ebpf");
    if object.exists() {
        return Ok(object);
    }
    let src = dir.join("src");
    let listed = Command::new("git")
        .current_dir(&root)
        .args(["ls-tree", "-r", "--name-only", REFERENCE_COMMIT, "--"])
        .args(["monitor-ebpf", "monitor-common", "Cargo.toml"])
        .output()
        .context("listing the reference commit's datapath with git")?;
    if !listed.status.success() {
        bail!(
            "git ls-tree {REFERENCE_COMMIT}: {}",
            String::from_utf8_lossy(&listed.stderr).trim()
        );
    }
    for path in String::from_utf8_lossy(&listed.stdout).lines() {
        let file = Command::new("git")
            .current_dir(&root)
            .arg("show")
            .arg(format!("{REFERENCE_COMMIT}:{path}"))
            .output()
            .with_context(|| format!("reading {path} at {REFERENCE_COMMIT} with git"))?;
        if !file.status.success() {
            bail!("git show {REFERENCE_COMMIT}:{path} failed");
        }
        let to = src.join(path);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&to, &file.stdout).with_context(|| format!("writing {}", to.display()))?;
    }
    let mut build = Command::new("rustup");
    build
        .current_dir(src.join("monitor-ebpf"))
        .args(["run", "nightly", "cargo", "build", "--release", "--locked"])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(dir.join("target"));
    // The outer toolchain must not leak into the nightly BPF build (as in monitor/build.rs).
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO",
    ] {
        build.env_remove(var);
    }
    cmd::run(&mut build)?;
    Ok(object)
}

//! `cargo xtask bench`: set up, build the controller and the benchmark driver in release,
//! run the driver (tests/src/bin/monitor-bench.rs), which writes BENCHMARKS.md at the
//! workspace root. Not part of `cargo xtask test`: it takes minutes and its figures are
//! for people to read, not pass/fail.

use anyhow::Result;

use crate::{cmd, setup};

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
    let root = cmd::workspace_root();
    let release = root.join("target/release");
    let mut bench = std::process::Command::new(release.join("monitor-bench"));
    bench
        .current_dir(&root)
        .arg("--out")
        .arg(root.join("BENCHMARKS.md"))
        .arg("--monitor-bin")
        .arg(release.join("monitor"))
        .args(["--runs", &args.runs.to_string()]);
    if args.quick {
        bench.arg("--quick");
    }
    cmd::run(&mut bench)
}

//! `cargo xtask test`: set up, build every target, run every test, and judge the run by the
//! harness's own "test result:" lines, so that a run that silently executed nothing fails.

use std::{
    io::{BufRead as _, BufReader},
    process::{ExitCode, Stdio},
};

use anyhow::{Context as _, Result};

use crate::{cmd, setup};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Passed on to `cargo test --workspace --no-fail-fast`, e.g. a test name filter, or
    /// `-- --nocapture` for the test binaries.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_test_args: Vec<String>,
}

/// Sums of the "test result:" lines of every test binary and doc-test run.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    passed: u64,
    failed: u64,
    results: u64,
}

impl Tally {
    /// The last line of `cargo xtask test`, for people and scripts alike.
    fn summary(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }

    /// Reads one line of test output; only libtest's summary line counts, e.g.
    /// `test result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; ...`.
    fn add_line(&mut self, line: &str) {
        let Some(summary) = line.trim_start().strip_prefix("test result: ") else {
            return;
        };
        self.results += 1;
        for piece in summary.split(';') {
            // The first piece carries the verdict: "ok. 3 passed".
            let piece = piece.rsplit(". ").next().unwrap_or(piece).trim();
            let Some((count, what)) = piece.split_once(' ') else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match what {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                _ => {}
            }
        }
    }
}

pub fn run(args: Args) -> Result<ExitCode> {
    setup::run()?;
    // A target that does not compile means no test runs at all (cargo builds every test
    // target before running any), so say so in the same summary form.
    if let Err(e) = cmd::run(cmd::cargo().args(["build", "--workspace", "--all-targets"])) {
        eprintln!("xtask test: {e:#}");
        println!("{}", Tally::default().summary());
        return Ok(ExitCode::FAILURE);
    }

    // --no-fail-fast: one failing binary must not hide the results of the others.
    let mut test = cmd::cargo();
    test.args(["test", "--no-fail-fast"]);
    // cargo ignores -p next to --workspace, so a chosen package replaces the whole workspace.
    if !selects_package(&args.cargo_test_args) {
        test.arg("--workspace");
    }
    test.args(&args.cargo_test_args);
    let line = cmd::display(&test);
    println!("xtask: $ {line}");
    let mut child = test
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start `{line}`"))?;
    let mut tally = Tally::default();
    let mut stdout = BufReader::new(child.stdout.take().context("cargo test stdout")?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Test output is not always UTF-8 (tests print packets); show it lossily, never stop.
        if stdout
            .read_until(b'\n', &mut buf)
            .context("reading cargo test output")?
            == 0
        {
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        print!("{text}");
        tally.add_line(&text);
    }
    let status = child.wait().context("waiting for cargo test")?;

    let mut ok = true;
    if !status.success() {
        ok = false;
        if tally.failed == 0 {
            eprintln!(
                "xtask test: `{line}` failed ({status}) without a failed test: a test binary crashed or did not build"
            );
        } else {
            eprintln!("xtask test: `{line}` failed ({status})");
        }
    }
    if tally.failed > 0 {
        ok = false;
    }
    if tally.passed + tally.failed == 0 {
        ok = false;
        eprintln!(
            "xtask test: no test ran ({} result lines); a filter that matches nothing is a failure",
            tally.results
        );
    }
    println!("{}", tally.summary());
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn selects_package(cargo_test_args: &[String]) -> bool {
    cargo_test_args
        .iter()
        .take_while(|a| *a != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

#[cfg(test)]
mod tests {
    use super::{Tally, selects_package};

    #[test]
    fn only_package_options_before_the_separator_select_a_package() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(selects_package(&args(&["-p", "xtask"])));
        assert!(selects_package(&args(&["-pxtask"])));
        assert!(selects_package(&args(&["filter", "--package=xtask"])));
        assert!(!selects_package(&args(&["filter"])));
        assert!(!selects_package(&args(&["--", "-p"])));
    }

    #[test]
    fn sums_ok_and_failed_result_lines_and_ignores_the_rest() {
        let mut tally = Tally::default();
        for line in [
            "running 3 tests",
            "test a ... ok",
            "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            "test result: FAILED. 2 passed; 1 failed; 4 ignored; 0 measured; 5 filtered out; finished in 1.20s",
            "   Doc-tests monitor_common",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "12 passed, 7 failed",
        ] {
            tally.add_line(line);
        }
        assert_eq!(
            tally,
            Tally {
                passed: 5,
                failed: 1,
                results: 3
            }
        );
        assert_eq!(tally.summary(), "5 passed, 1 failed");
    }
}

//! Project chores: `cargo xtask <command>`.
//!
//! Each subcommand lives in its own module with a `run` function, so adding one (say
//! `demo`) is `mod demo;`, a `Demo` variant in [`Command`] and an arm in `main`.

mod bench;
mod build_ebpf;
mod cmd;
mod demo;
mod package;
mod setup;
#[cfg(test)]
mod spawned;
mod test;

use std::process::ExitCode;

use clap::{Parser as _, Subcommand};

#[derive(Debug, clap::Parser)]
#[command(
    name = "cargo xtask",
    about = "Set-up, build and test helpers for the flow monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what a fresh machine lacks: nightly rust-src, bpf-linker, test tools, bpffs.
    Setup,
    /// Build the XDP program by building `monitor` (its build.rs compiles monitor-ebpf).
    BuildEbpf,
    /// Run setup, build everything, run every test; fails on any failure or on zero tests.
    Test(test::Args),
    /// Run setup, build the monitor, and run its demo lab: a virtual ICU ward.
    Demo,
    /// Run setup, build in release, measure the datapath and controller, write BENCHMARKS.md.
    Bench(bench::Args),
    /// Build the Debian package (.deb): release binary, systemd unit, example configuration
    /// and policies, man pages, shell completions.
    Package(package::Args),
}

impl Cli {
    fn parse_from_argv(argv: Vec<String>) -> Result<Self, clap::Error> {
        let mut cli = Self::try_parse_from(&argv)?;
        // clap swallows a `--` that directly follows `test`, but `cargo xtask test --
        // --nocapture` means "give --nocapture to the test binaries", so it goes back in.
        let after_test = argv.iter().skip(1).position(|a| a == "test").map(|i| i + 2);
        if let Command::Test(args) = &mut cli.command
            && after_test.and_then(|i| argv.get(i)).map(String::as_str) == Some("--")
        {
            args.cargo_test_args.insert(0, "--".to_owned());
        }
        Ok(cli)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from_argv(std::env::args().collect()).unwrap_or_else(|e| e.exit());
    let outcome = match cli.command {
        Command::Setup => setup::run().map(|()| ExitCode::SUCCESS),
        Command::BuildEbpf => build_ebpf::run().map(|()| ExitCode::SUCCESS),
        Command::Test(args) => test::run(args),
        Command::Demo => demo::run().map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Package(args) => package::run(args).map(|()| ExitCode::SUCCESS),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("xtask: error: {e:#}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::{Cli, Command};

    fn test_args(argv: &[&str]) -> Vec<String> {
        let argv = argv.iter().map(|a| (*a).to_owned()).collect();
        match Cli::parse_from_argv(argv).expect("parses").command {
            Command::Test(args) => args.cargo_test_args,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn test_passes_filters_and_flags_through_to_cargo_test() {
        assert_eq!(test_args(&["xtask", "test"]), Vec::<String>::new());
        assert_eq!(test_args(&["xtask", "test", "netns"]), ["netns"]);
        assert_eq!(
            test_args(&[
                "xtask",
                "test",
                "-p",
                "monitor-tests",
                "--test",
                "netns_selftest"
            ]),
            ["-p", "monitor-tests", "--test", "netns_selftest"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "netns", "--", "--nocapture"]),
            ["netns", "--", "--nocapture"]
        );
        assert_eq!(
            test_args(&["xtask", "test", "--", "--nocapture"]),
            ["--", "--nocapture"]
        );
    }
}

//! `monitor`: the controller and CLI.

mod cli;

fn main() -> anyhow::Result<std::process::ExitCode> {
    cli::main()
}

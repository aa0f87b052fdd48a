//! `monitor`: the controller and CLI.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}

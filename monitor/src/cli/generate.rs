//! The man pages and shell completions, generated from the clap definitions themselves so
//! that they never describe another version of the command line. The package ships them
//! (`cargo xtask package` runs `monitor man DIR`); `monitor completions SHELL` prints one.

use std::{io::Write as _, path::Path};

use anyhow::{Context, Result};
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{Cli, config::DEFAULT_CONFIG};
use monitor::{
    datapath::DEFAULT_PIN_DIR,
    state::{DEFAULT_STATE_DIR, lock::DEFAULT_RUN_DIR},
    support::logging::JOURNAL_SOCKET_ENV,
};

/// `monitor completions SHELL`: the completion script on standard output.
pub fn completions(shell: Shell) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "monitor", &mut std::io::stdout());
    Ok(())
}

/// Sections of monitor(1) that clap does not know: files, environment, exit status.
fn extra_sections() -> String {
    let files = [
        (
            DEFAULT_CONFIG.to_owned(),
            "The configuration file: a key per long option of `monitor run` (interfaces, \
             policies, metrics-addr, pin-dir, state-dir, run-dir, log-format, ...); flags win \
             over it. `--config PATH` reads another.",
        ),
        (
            "/etc/monitor/policies/".to_owned(),
            "The policy directory the example configuration names: YAML files of devices, \
             groups, rules and defaults.",
        ),
        (
            DEFAULT_STATE_DIR.to_owned(),
            "The state directory: inventory, learned baseline, mode history, events, audit \
             records. Back it up.",
        ),
        (
            DEFAULT_PIN_DIR.to_owned(),
            "Pinned programs, maps and links: the datapath outlives the daemon.",
        ),
        (
            DEFAULT_RUN_DIR.to_owned(),
            "The lock of the running daemon (one per pin directory).",
        ),
    ];
    let mut roff = String::from(".SH FILES\n");
    for (path, what) in files {
        roff.push_str(&format!(".TP\n{}\n{}\n", escape(&path), escape(what)));
    }
    roff.push_str(".SH ENVIRONMENT\n");
    for (name, what) in [
        (
            "RUST_LOG",
            "The log level filter (default info), e.g. debug or monitor::daemon=debug.",
        ),
        (
            "NOTIFY_SOCKET, WATCHDOG_USEC",
            "Set by systemd for a Type=notify service: READY=1 once the policy is applied and \
             every interface attached, STOPPING=1, and WATCHDOG=1 while the control thread \
             answers.",
        ),
        (
            "JOURNAL_STREAM",
            "Set by systemd: with --log-format auto the log goes to the journal with \
             structured fields (PRIORITY, INTERFACE, DEVICE, REASON).",
        ),
        (
            JOURNAL_SOCKET_ENV,
            "Another journal socket than /run/systemd/journal/socket.",
        ),
    ] {
        roff.push_str(&format!(".TP\n{}\n{}\n", escape(name), escape(what)));
    }
    roff.push_str(".SH EXIT STATUS\n");
    roff.push_str(&format!(
        "{}\n",
        escape("0 on success, 1 on an error (named on standard error or in the log), 2 for a command line clap refused.")
    ));
    roff.push_str(".PP\n");
    roff.push_str(&format!("{}\n", escape(super::show::STATUS_EXIT_CODES)));
    roff
}

/// Text for roff: backslashes doubled, a leading dot or quote kept literal.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\\\").replace('-', "\\-");
    if text.starts_with(['.', '\'']) {
        format!("\\&{text}")
    } else {
        text
    }
}

/// `monitor man DIR`: monitor.1 and a page per subcommand (monitor-run.1, ...) into DIR.
pub fn man(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let command = Cli::command();
    clap_mangen::generate_to(command.clone(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let main = dir.join("monitor.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("rendering monitor(1)")?;
    page.extend_from_slice(extra_sections().as_bytes());
    let mut file =
        std::fs::File::create(&main).with_context(|| format!("writing {}", main.display()))?;
    file.write_all(&page)
        .with_context(|| format!("writing {}", main.display()))?;
    println!("wrote man pages into {}", dir.display());
    Ok(())
}

//! `monitor reload`: asks the running daemon to read its policy directory again.

use anyhow::{Context, Result, bail};

use crate::state::daemon::Paths;

/// `monitor reload [--accept-shrink]`: asks the running daemon to re-read its policy
/// (SIGHUP), or to apply it even if it removes much of the policy in force (SIGUSR1).
pub fn reload(paths: &Paths, accept_shrink: bool) -> Result<()> {
    let held = paths
        .running_daemon()?
        .context("no monitor daemon is running")?;
    let info = held
        .0
        .context("the monitor daemon is starting; try again in a moment")?;
    let signal = if accept_shrink {
        libc::SIGUSR1
    } else {
        libc::SIGHUP
    };
    // SAFETY: kill(2) on the pid the lock's holder wrote.
    if unsafe { libc::kill(info.pid as i32, signal) } != 0 {
        bail!(
            "signalling pid {}: {}",
            info.pid,
            std::io::Error::last_os_error()
        );
    }
    if accept_shrink {
        println!(
            "asked the daemon (pid {}) to apply its policy directory, even where it removes much of the policy in force",
            info.pid
        );
    } else {
        println!("asked the daemon (pid {}) to reload its policy", info.pid);
    }
    Ok(())
}

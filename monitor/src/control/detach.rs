//! `monitor detach`: the operator's end of a datapath.

use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::state::{
    baseline::{self, BaselineFile},
    daemon::{DaemonInfo, Paths},
    files,
    lock::WriteLock,
    modes::{Change, History, ModeRecord},
};

/// `monitor detach`: removes the pinned links (detaching the program), programs and maps.
/// Refused while a daemon runs; holds the daemon's locks meanwhile, so that none starts.
pub fn detach(paths: &Paths) -> Result<()> {
    let info = DaemonInfo {
        pid: std::process::id(),
        interfaces: Vec::new(),
        policies: None,
        pin_dir: paths.pin_dir.clone(),
        state_dir: paths.state.path().to_path_buf(),
        started: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    };
    let locks = paths.take_locks(&info).map_err(|e| {
        anyhow::Error::from(e).context("detach refused: stop the daemon first (`systemctl stop monitor`, or kill -TERM its pid), then detach")
    })?;
    if paths.pin_dir.exists() {
        if let Err(e) = save_baseline_from_pins(paths) {
            log::warn!("could not save the baseline before detaching: {e:#}");
        }
        std::fs::remove_dir_all(&paths.pin_dir)
            .with_context(|| format!("removing {}", paths.pin_dir.display()))?;
        println!(
            "detached: removed pinned links, programs and maps under {}",
            paths.pin_dir.display()
        );
    } else {
        println!("nothing pinned under {}", paths.pin_dir.display());
    }
    // The next start is a first start: the mode in force went with the datapath.
    let write = WriteLock::take(paths.state.path())?;
    History::append(&paths.state, &ModeRecord::new(Change::Detach, None, None))?;
    drop(write);
    let _ = std::fs::remove_file(paths.state.path().join(files::DAEMON));
    let _ = std::fs::remove_file(paths.state.path().join(files::LINKS));
    drop(locks);
    Ok(())
}

fn save_baseline_from_pins(paths: &Paths) -> Result<()> {
    let maps = crate::datapath::MapSet::open_pinned(&paths.pin_dir)?;
    let kept = BaselineFile::read(&paths.state.path().join(files::BASELINE))
        .ok()
        .map(|previous| baseline::KeptTimes::of(&previous));
    let saved = baseline::save(&maps, &paths.state, kept.as_ref())?;
    println!(
        "saved {saved} baseline entries to {}",
        paths.state.path().join(files::BASELINE).display()
    );
    Ok(())
}

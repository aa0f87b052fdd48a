//! The state directory (`/var/lib/monitor`): the files the daemon writes for the CLI and
//! for its own restarts, written atomically, and the locks that keep one daemon per
//! datapath and order the writes of the daemon and the CLI.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::datapath::DatapathError;

pub mod activity;
pub mod audit;
pub mod baseline;
pub mod daemon;
pub mod forward;
pub mod inventory;
pub mod lock;
pub mod modes;
pub mod week;

/// Every file of the state directory, by name: one home for them all.
pub mod files {
    /// The enrolled devices, their slots, overrides and break-glass ([`super::inventory`]).
    pub const INVENTORY: &str = "inventory.json";
    /// The learned baseline ([`super::baseline`]).
    pub const BASELINE: &str = "baseline.json";
    /// Hourly activity per device ([`super::activity`]).
    pub const ACTIVITY: &str = "activity.json";
    /// The running daemon, for programs that read files ([`super::daemon`]).
    pub const DAEMON: &str = "daemon.json";
    /// The pinned links, by interface ([`super::daemon`]).
    pub const LINKS: &str = "links.json";
    /// Violation and controller events, JSON lines (`crate::observe::events`).
    pub const EVENTS: &str = "events.jsonl";
    /// Break-glass records, JSON lines ([`super::audit`]).
    pub const AUDIT: &str = "audit.jsonl";
    /// Mode changes and learning windows, JSON lines ([`super::modes`]).
    pub const MODE_HISTORY: &str = "modes.jsonl";
    /// How far the daemon forwarded the two files above to its events
    /// ([`super::forward`]).
    pub const FORWARDED: &str = "forwarded.json";
    /// Held by the running daemon ([`super::lock`]).
    pub const DAEMON_LOCK: &str = "daemon.lock";
    /// Held for each read-modify-write of shared state ([`super::lock`]).
    pub const WRITE_LOCK: &str = ".write.lock";
    /// The site's hour of the week set by `monitor clock set` ([`super::week`]).
    pub const SITE_CLOCK: &str = "site-clock.json";
    /// Each device's learning coverage: the hours of the week it learned in
    /// ([`super::week`]).
    pub const LEARNING_COVERAGE: &str = "learning-coverage.json";
    /// Every file above.
    pub const ALL: [&str; 13] = [
        INVENTORY,
        BASELINE,
        ACTIVITY,
        DAEMON,
        LINKS,
        EVENTS,
        AUDIT,
        MODE_HISTORY,
        FORWARDED,
        DAEMON_LOCK,
        WRITE_LOCK,
        SITE_CLOCK,
        LEARNING_COVERAGE,
    ];
}

/// Default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/monitor";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("state file {0} is not valid")]
    Json(PathBuf, #[source] serde_json::Error),
    #[error("state file {0} has format version {1}; this monitor reads version {2}")]
    Version(PathBuf, u32, u32),
    #[error("no enrolled device is named or addressed `{0}` (see `monitor devices`)")]
    UnknownDevice(String),
    #[error(
        "device `{0}` is life-critical: enforcing it can cut off patient care; \
         add --confirm-life-critical if its owner has agreed"
    )]
    LifeCriticalNeedsConfirmation(String),
    #[error("writing the datapath maps")]
    Datapath(#[source] DatapathError),
}

/// The state directory, written with atomic replaces (temp file, fsync, rename, fsync dir).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn io(&self, e: std::io::Error) -> StateError {
        StateError::Io(self.root.clone(), e)
    }

    /// Writes `value` as JSON to `name`, replacing it atomically: a crash leaves the old or
    /// the new file, never a torn one.
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(|e| self.io(e))?;
        let path = self.root.join(name);
        // A name of its own: the daemon and a CLI command writing the same file at once
        // each rename a whole file, never one torn by the other's writes.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let tmp = self.root.join(format!(
            ".{name}.{}.{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        // Written as it is serialized, never held whole: the baseline at 100,000 entries
        // is about 30 MB of JSON, which made every save the controller's peak of memory.
        let file = std::fs::File::create(&tmp).map_err(|e| self.io(e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
        let written = serde_json::to_writer_pretty(&mut out, value)
            .map_err(|e| StateError::Json(path.clone(), e))
            .and_then(|()| out.flush().map_err(|e| self.io(e)));
        let file =
            match written.and_then(|()| out.into_inner().map_err(|e| self.io(e.into_error()))) {
                Ok(file) => file,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
        file.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &path).map_err(|e| self.io(e))?;
        std::fs::File::open(&self.root)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Appends `value` as one JSON line to `name`, durably: the line is synced before the
    /// caller acts on what it records (the audit trail, the mode history).
    pub fn append_json_line<T: Serialize>(&self, name: &str, value: &T) -> Result<(), StateError> {
        let path = self.root.join(name);
        let io = |e| StateError::Io(path.clone(), e);
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let mut line =
            serde_json::to_string(value).map_err(|e| StateError::Json(path.clone(), e))?;
        line.push('\n');
        file.write_all(line.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// Reads JSON from `name`, `None` when the file does not exist.
    pub fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StateError> {
        let path = self.root.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StateError::Json(path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_state_file_has_its_own_name() {
        let mut names = super::files::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), super::files::ALL.len());
    }
}

//! Watching the policy directory: a change is reported once the directory has been quiet
//! for [`POLICY_SETTLE`], so that half-written files are never read.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

/// A changed policy directory is read once it has not changed for this long, so that a
/// file being written (an editor, `cp`, `git pull`) is read whole.
pub const POLICY_SETTLE: Duration = Duration::from_millis(1500);

/// What the policy directory looks like: every file's name, length and modification
/// time, and the directory's own. Any write, rename or removal changes it.
fn policy_stamp(dir: &Path) -> Option<Vec<(PathBuf, u64, Option<SystemTime>)>> {
    let meta = std::fs::metadata(dir).ok()?;
    let mut stamp = vec![(dir.to_path_buf(), meta.len(), meta.modified().ok())];
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(meta) = entry.metadata() {
            stamp.push((entry.path(), meta.len(), meta.modified().ok()));
        }
    }
    stamp.sort();
    Some(stamp)
}

/// Watches the policy directory: a change is reported once the directory has been quiet
/// for [`POLICY_SETTLE`], so that half-written files are never read.
pub struct PolicyWatch {
    dir: Option<PathBuf>,
    seen: Option<Vec<(PathBuf, u64, Option<SystemTime>)>>,
    /// When the directory last changed, while a change waits to settle.
    changed_at: Option<Instant>,
}

impl PolicyWatch {
    pub fn new(dir: Option<&Path>) -> PolicyWatch {
        PolicyWatch {
            dir: dir.map(Path::to_path_buf),
            seen: dir.and_then(policy_stamp),
            changed_at: None,
        }
    }

    /// Whether a settled change is ready to be read now.
    pub fn poll(&mut self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        let now = dir.as_path();
        let stamp = policy_stamp(now);
        if stamp != self.seen {
            self.seen = stamp;
            self.changed_at = Some(Instant::now());
            return false;
        }
        match self.changed_at {
            Some(at) if at.elapsed() >= POLICY_SETTLE => {
                self.changed_at = None;
                true
            }
            _ => false,
        }
    }

    /// A reload happened for another reason: the pending change is part of it.
    pub fn reloaded(&mut self) {
        if let Some(dir) = &self.dir {
            self.seen = policy_stamp(dir);
        }
        self.changed_at = None;
    }
}

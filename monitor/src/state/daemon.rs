//! Who runs: the daemon that owns a datapath and a state directory, as its locks and
//! `daemon.json` tell other processes, and where it keeps its things.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    StateDir, files,
    lock::{self, Held, InstanceLock},
};

/// Why a command cannot run beside (or instead of) the running daemon.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error(
        "{holder}; {what} is refused while it runs: stop it first (`systemctl stop monitor`, \
         or kill -TERM its pid)"
    )]
    Running { holder: String, what: String },
    #[error("{holder}; refused: nothing was changed, the running datapath is untouched")]
    Taken { holder: String },
    #[error("the daemon's lock")]
    Lock(#[from] lock::LockError),
}

/// Where the daemon keeps its things.
#[derive(Clone, Debug)]
pub struct Paths {
    pub pin_dir: PathBuf,
    pub state: StateDir,
    /// Where the pin directory's lock file lives (`/run/monitor`).
    pub run_dir: PathBuf,
}

impl Paths {
    /// The lock file tied to the pin directory.
    pub fn pin_lock(&self) -> PathBuf {
        lock::pin_lock_path(&self.run_dir, &self.pin_dir)
    }

    /// The lock file of the state directory.
    pub fn state_lock(&self) -> PathBuf {
        self.state.path().join(files::DAEMON_LOCK)
    }

    /// The daemon that owns this datapath or this state directory, if one runs: told by
    /// the locks it holds (the kernel drops them when it dies), not by a file it left.
    pub fn running_daemon(&self) -> Result<Option<Held<DaemonInfo>>, lock::LockError> {
        match InstanceLock::probe(&self.pin_lock())? {
            Some(held) => Ok(Some(held)),
            None => InstanceLock::probe(&self.state_lock()),
        }
    }

    /// Fails, saying who runs, when a daemon owns this datapath or state directory:
    /// for commands that must not run beside one (`detach`, `baseline import`).
    pub fn refuse_while_running(&self, what: &str) -> Result<(), OwnerError> {
        match self.running_daemon()? {
            Some(held) => Err(OwnerError::Running {
                holder: describe_holder(&held, &self.pin_dir),
                what: what.into(),
            }),
            None => Ok(()),
        }
    }

    /// Takes the daemon's locks (the datapath's and the state directory's) for `info`, or
    /// says who holds them.
    pub fn take_locks(
        &self,
        info: &DaemonInfo,
    ) -> Result<(InstanceLock, InstanceLock), OwnerError> {
        let refuse = |held: Held<DaemonInfo>| OwnerError::Taken {
            holder: describe_holder(&held, &self.pin_dir),
        };
        let pin = InstanceLock::acquire(&self.pin_lock(), info)?.map_err(refuse)?;
        let state = InstanceLock::acquire(&self.state_lock(), info)?.map_err(refuse)?;
        Ok((pin, state))
    }
}

/// "the monitor daemon (pid N, state directory S, since T) owns the datapath pinned at P".
pub fn describe_holder(held: &Held<DaemonInfo>, pin_dir: &Path) -> String {
    match &held.0 {
        Some(info) => format!(
            "the monitor daemon (pid {}, state directory {}, running since {}) owns the datapath pinned at {}",
            info.pid,
            info.state_dir.display(),
            if info.started.is_empty() {
                "?"
            } else {
                &info.started
            },
            info.pin_dir.display()
        ),
        None => format!(
            "a monitor daemon that is starting owns the datapath pinned at {}",
            pin_dir.display()
        ),
    }
}

/// Who runs: written into the daemon's lock files (and `daemon.json`, for programs that
/// read the state directory), shown by `monitor status`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub interfaces: Vec<AttachedInterface>,
    pub policies: Option<PathBuf>,
    #[serde(default)]
    pub pin_dir: PathBuf,
    #[serde(default)]
    pub state_dir: PathBuf,
    /// RFC 3339.
    #[serde(default)]
    pub started: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AttachedInterface {
    pub name: String,
    pub xdp_mode: String,
    /// Where its verdicts are counted apart (IFACE_VERDICTS block).
    #[serde(default)]
    pub slot: u32,
    /// `ward` (source MACs judged) or `core`.
    #[serde(default)]
    pub role: String,
}

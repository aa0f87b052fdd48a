//! One controller per datapath, and orderly writes to shared state.
//!
//! `monitor run` holds two exclusive locks for as long as it runs, taken before it writes
//! anything: one tied to the pin directory (a file under the run directory, `/run/monitor`
//! by default, since bpffs holds no regular files) and one on its state directory. A second
//! `monitor run` on the same pins or the same state refuses with the first one's PID and
//! leaves the running datapath untouched; `detach` and `baseline import` refuse while a
//! daemon holds the lock; `status` asks the lock, not a file, whether a daemon lives. The
//! kernel drops a lock when its holder dies, so a SIGKILLed daemon never leaves a stale one.
//!
//! A third, short-lived lock ([`WriteLock`]) orders the read-modify-write of shared state
//! between the daemon and the CLI: the inventory file and the pinned `CONFIG` entry.
//!
//! The locks are open file description locks (`F_OFD_SETLK`): unlike `flock`, they can
//! be tested (`F_OFD_GETLK`) without being taken, so a `status` at the wrong moment never
//! makes a starting daemon believe another one runs.

use std::{
    fs::{File, OpenOptions},
    io::{Read as _, Write as _},
    os::{
        fd::AsRawFd,
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
};

use super::files;
use serde::{Serialize, de::DeserializeOwned};

/// Default directory of the pin directory's lock file.
pub const DEFAULT_RUN_DIR: &str = "/run/monitor";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock file {0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("lock file {0}: writing who holds it")]
    Encode(PathBuf, #[source] serde_json::Error),
}

/// The lock file of the datapath pinned at `pin_dir`: under `run_dir`, named after the pin
/// directory's absolute path as systemd escapes unit names (`/sys/fs/bpf/monitor` →
/// `sys-fs-bpf-monitor.lock`).
pub fn pin_lock_path(run_dir: &Path, pin_dir: &Path) -> PathBuf {
    let absolute = std::path::absolute(pin_dir).unwrap_or_else(|_| pin_dir.to_path_buf());
    let mut name = String::new();
    for part in absolute.components() {
        if let std::path::Component::Normal(part) = part {
            if !name.is_empty() {
                name.push('-');
            }
            for c in part.to_string_lossy().chars() {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    name.push(c);
                } else {
                    name.push_str(&format!("\\x{:02x}", u32::from(c) & 0xff));
                }
            }
        }
    }
    if name.is_empty() {
        name.push('-');
    }
    run_dir.join(format!("{name}.lock"))
}

fn ofd_lock(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Whether another open file description holds a lock on `file` (nothing is taken).
fn is_locked(file: &File) -> std::io::Result<bool> {
    let mut probe = ofd_lock(libc::F_WRLCK as libc::c_short);
    // SAFETY: F_OFD_GETLK with a valid flock struct on an open descriptor.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut probe) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
}

/// Takes an exclusive lock on `file`: waiting for it when `wait`, else `Ok(false)` when
/// another holds it.
fn lock(file: &File, wait: bool) -> std::io::Result<bool> {
    let request = ofd_lock(libc::F_WRLCK as libc::c_short);
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: F_OFD_SETLK(W) with a valid flock struct on an open descriptor.
        if unsafe { libc::fcntl(file.as_raw_fd(), command, &request) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) if !wait => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// An exclusive lock held for as long as this value lives. The file says who holds it
/// (JSON); it is removed when the holder lets go, and only by the holder.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

/// A lock someone else holds: what its file says about the holder, or `None` when it says
/// nothing readable yet (the holder is between taking the lock and writing the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held<T>(pub Option<T>);

impl InstanceLock {
    /// Takes the lock at `path` and writes `holder` into it, or returns who holds it.
    pub fn acquire<T: Serialize + DeserializeOwned>(
        path: &Path,
        holder: &T,
    ) -> Result<Result<InstanceLock, Held<T>>, LockError> {
        let io = |e| LockError::Io(path.to_path_buf(), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(io)?;
            if !lock(&file, false).map_err(io)? {
                return Ok(Err(Held(read_holder(&file))));
            }
            // The previous holder may have removed the file between our open and our
            // lock: then we hold a lock on a name nobody else can find. Try again.
            let same = match std::fs::metadata(path) {
                Ok(meta) => {
                    let ours = file.metadata().map_err(io)?;
                    meta.ino() == ours.ino() && meta.dev() == ours.dev()
                }
                Err(_) => false,
            };
            if !same {
                continue;
            }
            let mut lock = InstanceLock {
                file,
                path: path.to_path_buf(),
            };
            lock.update(holder)?;
            return Ok(Ok(lock));
        }
    }

    /// Rewrites what the lock file says about its holder.
    pub fn update<T: Serialize>(&mut self, holder: &T) -> Result<(), LockError> {
        let io = |e| LockError::Io(self.path.clone(), e);
        let text = serde_json::to_vec_pretty(holder)
            .map_err(|e| LockError::Encode(self.path.clone(), e))?;
        self.file.set_len(0).map_err(io)?;
        // The descriptor is not in append mode: write from the start.
        std::os::unix::fs::FileExt::write_all_at(&self.file, &text, 0).map_err(io)?;
        self.file.sync_all().map_err(io)
    }

    /// Who holds the lock at `path`, `None` when nobody does.
    pub fn probe<T: DeserializeOwned>(path: &Path) -> Result<Option<Held<T>>, LockError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LockError::Io(path.to_path_buf(), e)),
        };
        if is_locked(&file).map_err(|e| LockError::Io(path.to_path_buf(), e))? {
            Ok(Some(Held(read_holder(&file))))
        } else {
            Ok(None)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Removed while still held, so that no one takes a lock on a file about to vanish;
        // `acquire` checks that the file it locked is still the one under the name.
        let _ = std::fs::remove_file(&self.path);
    }
}

fn read_holder<T: DeserializeOwned>(mut file: &File) -> Option<T> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

/// Held while the daemon or a CLI command reads, changes and writes shared state (the
/// inventory file and the pinned CONFIG), so that neither undoes the other's change.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Waits for the state directory's write lock.
    pub fn take(state_dir: &Path) -> Result<WriteLock, LockError> {
        let path = state_dir.join(files::WRITE_LOCK);
        let io = |e| LockError::Io(path.clone(), e);
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .map_err(io)?;
        lock(&file, true).map_err(io)?;
        // Nothing to say; the write keeps the file's mtime telling when it was last used.
        let _ = file.write(b"");
        Ok(WriteLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("monitor-lock-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn pin_directories_map_to_distinct_lock_files() {
        let run = Path::new("/run/monitor");
        assert_eq!(
            pin_lock_path(run, Path::new("/sys/fs/bpf/monitor")),
            run.join("sys-fs-bpf-monitor.lock")
        );
        assert_ne!(
            pin_lock_path(run, Path::new("/sys/fs/bpf/a-b")),
            pin_lock_path(run, Path::new("/sys/fs/bpf/a/b"))
        );
    }

    #[test]
    fn a_second_holder_is_refused_and_told_who_holds_it() {
        let dir = temp("second");
        let path = dir.join("x.lock");
        let first = InstanceLock::acquire(&path, &41u32)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|_| panic!("the first lock was refused"));
        // Another open file description, as another process would have.
        match InstanceLock::acquire(&path, &42u32).unwrap_or_else(|e| panic!("{e}")) {
            Ok(_) => panic!("a second holder got the lock"),
            Err(held) => assert_eq!(held, Held(Some(41))),
        }
        assert_eq!(
            InstanceLock::probe::<u32>(&path).unwrap_or_else(|e| panic!("{e}")),
            Some(Held(Some(41)))
        );
        // Probing takes nothing: the holder's lock is intact and a later taker is refused.
        assert!(
            InstanceLock::acquire(&path, &43u32)
                .unwrap_or_else(|e| panic!("{e}"))
                .is_err()
        );
        drop(first);
        assert!(!path.exists(), "the holder removes its lock file");
        assert_eq!(
            InstanceLock::probe::<u32>(&path).unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let again = InstanceLock::acquire(&path, &44u32).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.is_ok(), "free again after the holder let go");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_stale_lock_file_is_not_a_holder() {
        let dir = temp("stale");
        let path = dir.join("x.lock");
        std::fs::write(&path, "7").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            InstanceLock::probe::<u32>(&path).unwrap_or_else(|e| panic!("{e}")),
            None
        );
        let lock = InstanceLock::acquire(&path, &8u32).unwrap_or_else(|e| panic!("{e}"));
        assert!(lock.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Noticing a changed policy directory ([`PolicyWatch`]): every file under it, `mud/` and
//! any other subdirectory included, seen through inotify (the `notify` crate): writes, edits
//! in place, creation, deletion and renames. A change is reported once the directory has
//! been quiet for [`SETTLE`], so that a file being written (an editor, `cp`, `git pull`) is
//! read whole. The directory itself being deleted, replaced or renamed is a change too (the
//! reload that follows refuses a missing or empty directory and keeps the running policy),
//! and the directory is watched again as soon as it is back.
//!
//! The watch does no work of its own between calls: inotify's events queue up and are
//! taken in by [`PolicyWatch::poll`], which a blocking loop calls every 250 ms or so:
//!
//! ```no_run
//! # use std::{path::Path, time::Duration};
//! # use monitor::policy::watch::PolicyWatch;
//! # fn reload() {}
//! # fn signalled() -> bool { false }
//! let mut watch = PolicyWatch::new(Some(Path::new("/etc/monitor/policies")));
//! loop {
//!     if watch.poll() || signalled() {
//!         // Whatever asked for it, this reload reads what the watch has seen so far.
//!         watch.reloaded();
//!         reload();
//!     }
//!     std::thread::sleep(Duration::from_millis(250));
//! }
//! ```
//!
//! Opening and reading the files (the reload itself) is no change.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use notify::{
    Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher,
    event::{AccessKind, AccessMode, ModifyKind},
};

/// A changed policy directory is read once it has not changed for this long, so that a
/// file being written (an editor, `cp`, `git pull`) is read whole.
pub const SETTLE: Duration = Duration::from_millis(1500);
/// How soon a directory that exists but could not be watched is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// Which watch an event comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The directory and everything under it.
    Tree,
    /// The directory's parent: the directory itself created, removed or renamed.
    Parent,
}

/// An event as the watch threads hand it over, with when it happened.
type Message = (Source, Instant, notify::Result<Event>);

/// Watches a policy directory; see the module's documentation.
#[derive(Debug)]
pub struct PolicyWatch {
    /// The directory, absolute; `None`: nothing to watch, never a change.
    dir: Option<PathBuf>,
    sender: mpsc::Sender<Message>,
    events: mpsc::Receiver<Message>,
    /// The watch of the directory's tree; `None` while it is missing or cannot be watched.
    tree: Option<RecommendedWatcher>,
    /// The watch of the parent; `None` when it cannot be watched.
    parent: Option<RecommendedWatcher>,
    /// When the directory last changed, while the change waits to settle.
    changed_at: Option<Instant>,
    /// The tree is to be watched anew (the directory was replaced or came back).
    rewatch: bool,
    /// When an unwatched directory is tried again, and why it was not watched (logged once).
    retry_at: Option<Instant>,
    unwatched: Option<String>,
}

impl PolicyWatch {
    /// Starts watching `dir` (nothing when `None`). A directory that cannot be watched
    /// yet (missing, say) is logged and tried again by [`PolicyWatch::poll`].
    pub fn new(dir: Option<&Path>) -> PolicyWatch {
        let (sender, events) = mpsc::channel();
        let mut watch = PolicyWatch {
            dir: dir.map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf())),
            sender,
            events,
            tree: None,
            parent: None,
            changed_at: None,
            rewatch: false,
            retry_at: None,
            unwatched: None,
        };
        watch.watch_parent();
        watch.watch_tree();
        watch
    }

    /// Whether a change has settled and is to be read now. Once it has said so, the same
    /// change is not reported again.
    pub fn poll(&mut self) -> bool {
        if self.dir.is_none() {
            return false;
        }
        self.take_events();
        self.keep_watching();
        match self.changed_at {
            Some(at) if at.elapsed() >= SETTLE => {
                self.changed_at = None;
                true
            }
            _ => false,
        }
    }

    /// A reload happened for another reason (a signal, `monitor reload`): what changed so
    /// far is part of it, and only what changes from now on is reported.
    pub fn reloaded(&mut self) {
        if self.dir.is_none() {
            return;
        }
        self.take_events();
        self.keep_watching();
        self.changed_at = None;
    }

    /// Takes in the events inotify gave since the last call.
    fn take_events(&mut self) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        while let Ok((source, at, event)) = self.events.try_recv() {
            let event = match event {
                Ok(event) => event,
                Err(e) => {
                    // Events may be lost (a full queue, too many directories): read it all.
                    log::warn!(
                        "watching policy directory {}: {e}; it is read again",
                        dir.display()
                    );
                    self.changed(at);
                    continue;
                }
            };
            if !is_change(&event.kind) {
                continue;
            }
            let about_dir = event.paths.iter().any(|p| p == &dir);
            match source {
                Source::Tree => {
                    if about_dir
                        && matches!(
                            event.kind,
                            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                        )
                    {
                        self.rewatch = true;
                    }
                }
                // The parent's other entries are none of our business.
                Source::Parent if !about_dir => continue,
                Source::Parent => self.rewatch = true,
            }
            self.changed(at);
        }
    }

    fn changed(&mut self, at: Instant) {
        self.changed_at = Some(self.changed_at.map_or(at, |before| before.max(at)));
    }

    /// Watches the tree anew when it was replaced, or when it could not be watched and may
    /// be watchable now; a directory watched again after a gap is a change.
    fn keep_watching(&mut self) {
        if self.rewatch {
            self.rewatch = false;
            self.tree = None;
            self.retry_at = None;
        }
        if self.tree.is_some() || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if self.parent.is_none() {
            self.watch_parent();
        }
        if self.watch_tree() {
            self.changed(Instant::now());
        }
    }

    /// Watches the directory and everything under it; false when it cannot.
    fn watch_tree(&mut self) -> bool {
        let Some(dir) = self.dir.clone() else {
            return false;
        };
        let watched = if dir.is_dir() {
            self.watcher(Source::Tree)
                .and_then(|mut watcher| {
                    watcher.watch(&dir, RecursiveMode::Recursive)?;
                    Ok(watcher)
                })
                .map_err(|e| {
                    self.retry_at = Some(Instant::now() + RETRY);
                    e.to_string()
                })
        } else {
            Err("it is missing or not a directory".to_string())
        };
        match watched {
            Ok(watcher) => {
                self.tree = Some(watcher);
                if self.unwatched.take().is_some() {
                    log::info!("policy directory {} is watched again", dir.display());
                }
                true
            }
            Err(why) => {
                if self.unwatched.is_none() {
                    log::warn!(
                        "policy directory {} is not watched: {why}; the running policy stays, \
                         and the directory is read once it is back (or on `monitor reload`)",
                        dir.display()
                    );
                }
                self.unwatched = Some(why);
                false
            }
        }
    }

    /// Watches the directory's parent, which sees the directory itself come and go.
    fn watch_parent(&mut self) {
        let Some(parent) = self
            .dir
            .as_deref()
            .filter(|dir| dir.file_name().is_some())
            .and_then(Path::parent)
            .filter(|parent| parent.is_dir())
            .map(Path::to_path_buf)
        else {
            return;
        };
        self.parent = self
            .watcher(Source::Parent)
            .and_then(|mut watcher| {
                watcher.watch(&parent, RecursiveMode::NonRecursive)?;
                Ok(watcher)
            })
            .map_err(|e| log::debug!("not watching {}: {e}", parent.display()))
            .ok();
    }

    /// An inotify watcher whose events come to this watch, marked with `source`.
    fn watcher(&self, source: Source) -> notify::Result<RecommendedWatcher> {
        let sender = self.sender.clone();
        notify::recommended_watcher(move |event| {
            // The watch is gone when nobody receives.
            let _ = sender.send((source, Instant::now(), event));
        })
    }
}

/// Whether an event changes what a reload would read: everything but opening and reading
/// (the reload's own), while closing a file written to ends a write.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, io::Write};

    use super::*;

    /// A temporary policy directory under a temporary parent, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let parent = std::env::temp_dir().join(format!(
                "policy-watch-{name}-{}-{:?}",
                std::process::id(),
                Instant::now()
            ));
            let dir = parent.join("policies");
            fs::create_dir_all(dir.join("mud")).unwrap_or_else(|e| panic!("{e}"));
            fs::write(dir.join("ward.yaml"), "devices: []\n").unwrap_or_else(|e| panic!("{e}"));
            fs::write(dir.join("mud/pump.json"), "{}\n").unwrap_or_else(|e| panic!("{e}"));
            Scratch(parent)
        }

        fn dir(&self) -> PathBuf {
            self.0.join("policies")
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Polls as the daemon does (more often, for timing) for `window`: when each settled
    /// change was reported, after `since`.
    fn reports(watch: &mut PolicyWatch, since: Instant, window: Duration) -> Vec<Duration> {
        let mut out = Vec::new();
        while since.elapsed() < window {
            if watch.poll() {
                out.push(since.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        out
    }

    /// One settled change, reported no sooner than [`SETTLE`] after `last_write` (taken
    /// just before the last write began: inotify's events, timed by the watcher's thread,
    /// may come before the writing call returns).
    fn assert_one_settled_change(watch: &mut PolicyWatch, last_write: Instant, what: &str) {
        let seen = reports(watch, last_write, SETTLE + Duration::from_millis(1500));
        assert_eq!(
            seen.len(),
            1,
            "{what}: settled changes reported at {seen:?}"
        );
        assert!(
            seen[0] >= SETTLE,
            "{what}: reported {:?} after the last write, before it settled",
            seen[0]
        );
    }

    fn write(path: &Path, text: &str) {
        fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    #[test]
    fn a_new_file_is_one_settled_change() {
        let scratch = Scratch::new("write");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        let last_write = Instant::now();
        write(&scratch.dir().join("pumps.yaml"), "devices: []\n");
        assert_one_settled_change(&mut watch, last_write, "a new file");
    }

    #[test]
    fn an_edit_in_place_under_mud_is_one_settled_change() {
        let scratch = Scratch::new("mud");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        let file = scratch.dir().join("mud/pump.json");
        let mut open = fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap_or_else(|e| panic!("{e}"));
        // Same length: only the content changes.
        let last_write = Instant::now();
        open.write_all(b"[]\n").unwrap_or_else(|e| panic!("{e}"));
        drop(open);
        assert_one_settled_change(&mut watch, last_write, "an edit in mud/");
    }

    #[test]
    fn a_file_renamed_over_another_is_one_settled_change() {
        let scratch = Scratch::new("rename");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        let temporary = scratch.dir().join(".ward.yaml.partial");
        write(&temporary, "devices: []\ngroups: []\n");
        let last_write = Instant::now();
        fs::rename(&temporary, scratch.dir().join("ward.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_one_settled_change(&mut watch, last_write, "a rename over");
    }

    #[test]
    fn a_file_written_in_two_parts_is_reported_once_and_whole() {
        let scratch = Scratch::new("half");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        let file = scratch.dir().join("ward.yaml");
        let whole = "devices: []\ngroups: []\nrules: []\n";
        let mut open = fs::File::create(&file).unwrap_or_else(|e| panic!("{e}"));
        open.write_all(&whole.as_bytes()[..12])
            .unwrap_or_else(|e| panic!("{e}"));
        let started = Instant::now();
        // The writer pauses for half the settle time, as a slow copy might.
        while started.elapsed() < SETTLE / 2 {
            assert!(!watch.poll(), "reported while the file was half written");
            std::thread::sleep(Duration::from_millis(20));
        }
        open.write_all(&whole.as_bytes()[12..])
            .unwrap_or_else(|e| panic!("{e}"));
        drop(open);
        let last_write = Instant::now();
        let mut seen = Vec::new();
        while last_write.elapsed() < SETTLE + Duration::from_millis(1500) {
            if watch.poll() {
                seen.push(last_write.elapsed());
                assert_eq!(
                    fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}")),
                    whole,
                    "reported before the file was whole"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seen.len(), 1, "settled changes reported at {seen:?}");
        assert!(
            seen[0] >= SETTLE,
            "reported {:?} after the last write",
            seen[0]
        );
    }

    #[test]
    fn a_new_subdirectory_is_watched_too() {
        let scratch = Scratch::new("subdir");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        let sub = scratch.dir().join("vendors");
        fs::create_dir(&sub).unwrap_or_else(|e| panic!("{e}"));
        let last_write = Instant::now();
        write(&sub.join("a.json"), "{}\n");
        assert_one_settled_change(&mut watch, last_write, "a new subdirectory");
        write(&sub.join("a.json"), "{ }\n");
        assert_one_settled_change(
            &mut watch,
            Instant::now(),
            "an edit in the new subdirectory",
        );
    }

    #[test]
    fn the_directory_deleted_and_recreated_is_seen_and_watched_again() {
        let scratch = Scratch::new("recreate");
        let dir = scratch.dir();
        let mut watch = PolicyWatch::new(Some(&dir));
        let last_write = Instant::now();
        fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_one_settled_change(&mut watch, last_write, "the directory deleted");
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let last_write = Instant::now();
        write(&dir.join("ward.yaml"), "devices: []\n");
        assert_one_settled_change(&mut watch, last_write, "the directory recreated");
        let last_write = Instant::now();
        write(&dir.join("ward.yaml"), "devices: [] \n");
        assert_one_settled_change(&mut watch, last_write, "an edit in the new directory");
    }

    #[test]
    fn reading_the_files_is_no_change_and_a_reload_takes_in_what_changed() {
        let scratch = Scratch::new("read");
        let mut watch = PolicyWatch::new(Some(&scratch.dir()));
        for entry in fs::read_dir(scratch.dir()).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_file() {
                fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        fs::read_to_string(scratch.dir().join("mud/pump.json")).unwrap_or_else(|e| panic!("{e}"));
        let seen = reports(
            &mut watch,
            Instant::now(),
            SETTLE + Duration::from_millis(500),
        );
        assert!(seen.is_empty(), "reading reported changes at {seen:?}");
        write(&scratch.dir().join("ward.yaml"), "devices: [ ]\n");
        std::thread::sleep(Duration::from_millis(200));
        watch.reloaded();
        let seen = reports(
            &mut watch,
            Instant::now(),
            SETTLE + Duration::from_millis(500),
        );
        assert!(
            seen.is_empty(),
            "a change already reloaded reported at {seen:?}"
        );
    }

    #[test]
    fn no_directory_is_never_a_change() {
        let mut watch = PolicyWatch::new(None);
        assert!(!watch.poll());
        watch.reloaded();
        assert!(!watch.poll());
    }
}

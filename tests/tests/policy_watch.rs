//! The policy watch as the daemon drives it: a loop that wakes every 250 ms and reads the
//! policy directory (`Policy::load_dir`) when `PolicyWatch::poll` says a change has
//! settled. Each change an operator makes (a file copied in slowly, a MUD file edited in
//! place under `mud/`, a file renamed over another as `git pull` does, a file deleted, the
//! whole directory deleted and created again) is read exactly once and whole; the reads
//! themselves cause none.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use monitor::policy::{Policy, PortsSpec, watch::PolicyWatch, watch::SETTLE};
use monitor_tests::harness::{TempDir, example_policy};

const PUMP_MUD: &str = include_str!("../../policies/mud/infusion-pump.json");
const MUD_ENTRY: &str = "mud:\n  - kind: infusion-pump\n    file: mud/pump.json\n";
const EXTRA: &str =
    "devices:\n  - name: pump-extra-01\n    kind: infusion-pump\n    addresses: [10.10.1.99]\n";
/// How often the daemon's loop wakes.
const TICK: Duration = Duration::from_millis(250);

/// What one read of the directory gave: the devices and the MUD file's fixed rule's ports,
/// or why it failed.
type Read = Result<(usize, Option<PortsSpec>), String>;

/// A daemon-like loop on its own thread, recording every read.
struct Reloader {
    reads: Arc<Mutex<Vec<Read>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    fn start(dir: &Path) -> Reloader {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (dir, reads, stop) = (dir.to_path_buf(), reads.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut watch = PolicyWatch::new(Some(&dir));
                while !stop.load(Ordering::Relaxed) {
                    if watch.poll() {
                        watch.reloaded();
                        let read = read(&dir);
                        reads.lock().unwrap_or_else(|e| panic!("{e}")).push(read);
                    }
                    std::thread::sleep(TICK);
                }
            })
        };
        Reloader {
            reads,
            stop,
            thread: Some(thread),
        }
    }

    fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap_or_else(|e| panic!("{e}")).clone()
    }

    /// Waits for the read of the change just made, then for quiet: exactly one read more
    /// than `before`, and that read.
    fn one_read_after(&self, before: usize, change: &str) -> Read {
        let started = Instant::now();
        while self.reads().len() == before {
            assert!(
                started.elapsed() < SETTLE + Duration::from_secs(5),
                "{change}: never read"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Long enough for a second, spurious read to settle and show.
        std::thread::sleep(SETTLE + 2 * TICK + Duration::from_millis(500));
        let reads = self.reads();
        assert_eq!(
            reads.len(),
            before + 1,
            "{change}: read {} times: {:?}",
            reads.len() - before,
            &reads[before..]
        );
        reads[before].clone()
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read(dir: &Path) -> Read {
    let policy = Policy::load_dir(dir).map_err(|e| e.to_string())?;
    let ports = policy
        .mud
        .first()
        .and_then(|import| {
            import
                .fixed_rules()
                .first()
                .map(|(_, rule)| rule.ports.clone())
        })
        .flatten();
    Ok((policy.devices.len(), ports))
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The example ward and the pump's MUD file.
fn fill(dir: &Path) {
    std::fs::create_dir_all(dir.join("mud")).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.join("ward.yaml"), &example_policy());
    write(&dir.join("mud.yaml"), MUD_ENTRY);
    write(&dir.join("mud/pump.json"), PUMP_MUD);
}

#[test]
fn each_policy_change_is_read_once_and_whole() {
    let scratch = TempDir::new(&std::env::temp_dir(), "mwatch");
    let dir: PathBuf = scratch.0.join("policies");
    fill(&dir);
    let (base, ntp) = match read(&dir) {
        Ok(read) => read,
        Err(e) => panic!("the example policy does not load: {e}"),
    };
    assert_eq!(
        ntp,
        Some(PortsSpec::One(123)),
        "the pump's MUD file allows NTP"
    );
    let reloader = Reloader::start(&dir);
    std::thread::sleep(SETTLE + 4 * TICK);
    assert!(reloader.reads().is_empty(), "read with nothing changed");

    // A file copied in slowly: half, a pause, the rest.
    let extra = dir.join("extra.yaml");
    let mut file = std::fs::File::create(&extra).unwrap_or_else(|e| panic!("{e}"));
    std::io::Write::write_all(&mut file, &EXTRA.as_bytes()[..40]).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(SETTLE / 2);
    std::io::Write::write_all(&mut file, &EXTRA.as_bytes()[40..]).unwrap_or_else(|e| panic!("{e}"));
    drop(file);
    assert_eq!(
        reloader.one_read_after(0, "a file copied in"),
        Ok((base + 1, Some(PortsSpec::One(123))))
    );

    // The MUD file edited in place under mud/.
    write(
        &dir.join("mud/pump.json"),
        &PUMP_MUD.replace("\"port\": 123", "\"port\": 124"),
    );
    assert_eq!(
        reloader.one_read_after(1, "the MUD file edited"),
        Ok((base + 1, Some(PortsSpec::One(124))))
    );

    // A new version renamed over the old one, as `git pull` writes files.
    let partial = dir.join(".extra.yaml.partial");
    write(&partial, &EXTRA.replace("10.10.1.99", "10.10.1.98"));
    std::fs::rename(&partial, &extra).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reloader.one_read_after(2, "a file renamed over"),
        Ok((base + 1, Some(PortsSpec::One(124))))
    );

    // A file deleted.
    std::fs::remove_file(&extra).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        reloader.one_read_after(3, "a file deleted"),
        Ok((base, Some(PortsSpec::One(124))))
    );

    // The whole directory deleted: read once, refused (the daemon keeps its policy).
    std::fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let refused = reloader.one_read_after(4, "the directory deleted");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("reading policy directory")),
        "{refused:?}"
    );

    // ... and created again.
    fill(&dir);
    assert_eq!(
        reloader.one_read_after(5, "the directory created again"),
        Ok((base, Some(PortsSpec::One(123))))
    );

    // Watched again: an edit in the new directory's mud/ is read.
    write(
        &dir.join("mud/pump.json"),
        &PUMP_MUD.replace("\"port\": 123", "\"port\": 125"),
    );
    assert_eq!(
        reloader.one_read_after(6, "the new directory's MUD file edited"),
        Ok((base, Some(PortsSpec::One(125))))
    );
}

//! The activity sampler: a thread that samples every device's counters every
//! [`SAMPLE_INTERVAL`] into the [`Activity`] history, which it keeps in memory for the
//! device map served beside the metrics, logs learning progress once an hour, and writes
//! to `activity.json` when it changed (for `monitor map` in other processes, and for the
//! next start: the only time the file is read here).

use std::{
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::live::Live;
use crate::{
    state::{
        StateDir,
        activity::{Activity, ActivityError, DeviceActivity, SAMPLE_INTERVAL, format_local},
        inventory::Inventory,
    },
    support::{clock::unix_now, error_chain},
};

/// The history the sampler keeps, shared with its readers. Empty until the sampler has
/// read the file of the previous run: readers wait for that.
#[derive(Clone, Debug, Default)]
pub struct SharedActivity(Arc<OnceLock<Mutex<Activity>>>);

impl SharedActivity {
    /// The history, once it is read; a reader holds the sampler up while it holds this.
    pub fn lock(&self) -> MutexGuard<'_, Activity> {
        self.0
            .wait()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the history read at start; later calls change nothing.
    fn begin(&self, activity: Activity) {
        let _ = self.0.set(Mutex::new(activity));
    }
}

/// The history of the previous run, or a new one.
fn load(state: &StateDir) -> Activity {
    Activity::load(state).unwrap_or_else(|e| {
        // A damaged history must not stop the monitor: start a new one.
        log::warn!("{}: starting a new activity history", error_chain(&e));
        Activity::new()
    })
}

/// The running sampler; stops (after a last sample) when dropped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    activity: SharedActivity,
}

impl Sampler {
    /// Starts sampling the daemon's maps for its inventory in force, writing the history
    /// into `state`. Returns at once: the history of the previous run is read on the
    /// sampler's own thread, so that the daemon's start is not held up.
    pub fn start(live: &Live, state: StateDir) -> Result<Sampler, std::io::Error> {
        let stop = Arc::new(AtomicBool::new(false));
        let activity = SharedActivity::default();
        let thread = {
            let (stop, activity, live) = (stop.clone(), activity.clone(), live.clone());
            std::thread::Builder::new()
                .name("activity".into())
                .spawn(move || run(&live, &state, &activity, &stop))?
        };
        Ok(Sampler {
            stop,
            thread: Some(thread),
            activity,
        })
    }

    /// The history, as the sampler keeps it.
    pub fn activity(&self) -> SharedActivity {
        self.activity.clone()
    }

    /// What the readers get when no sampler runs: the history of the previous run, which
    /// nothing will change.
    pub fn without(state: &StateDir) -> SharedActivity {
        let activity = SharedActivity::default();
        activity.begin(load(state));
        activity
    }
}

fn run(live: &Live, state: &StateDir, activity: &SharedActivity, stop: &AtomicBool) {
    activity.begin(load(state));
    let mut last_log_hour = unix_now() / 3600;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if let Err(e) = sample_once(live, state, activity) {
            log::warn!("activity sample: {}", error_chain(&e));
        }
        if stopping {
            break;
        }
        let hour = unix_now() / 3600;
        if hour != last_log_hour {
            last_log_hour = hour;
            log_learning_progress(&activity.lock(), &live.inventory());
        }
        // Sleep in short steps so that stopping is prompt.
        let wake = Instant::now() + SAMPLE_INTERVAL;
        while Instant::now() < wake && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn sample_once(
    live: &Live,
    state: &StateDir,
    activity: &SharedActivity,
) -> Result<(), ActivityError> {
    let inventory = live.inventory();
    let mut activity = activity.lock();
    if activity.sample(&live.maps, &inventory)? {
        activity.save(state)?;
    }
    Ok(())
}

/// "learning: 3 devices, 12 new baseline entries in the last hour; stable since ..."
fn log_learning_progress(activity: &Activity, inventory: &Inventory) {
    let now = unix_now();
    let learning: Vec<(&String, &DeviceActivity)> = activity
        .devices
        .iter()
        .filter(|(name, d)| {
            d.learning_since.is_some() && inventory.devices.iter().any(|i| &i.spec.name == *name)
        })
        .collect();
    if learning.is_empty() {
        return;
    }
    let last_hour: u64 = learning
        .iter()
        .map(|(name, _)| activity.baseline_growth(name, now.saturating_sub(3600), 1)[0])
        .sum();
    let stable_since = learning
        .iter()
        .filter_map(|(_, d)| d.baseline_grew_at)
        .max();
    log::info!(
        "learning: {} devices, {last_hour} new baseline entries in the last hour; {}",
        learning.len(),
        match stable_since {
            Some(t) => format!("baselines stable since {}", format_local(t)),
            None => "no baseline entry learned yet".into(),
        }
    );
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

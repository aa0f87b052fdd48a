//! What the device map is made from, read once: the inventory, the activity history, the
//! daemon's interfaces, and the datapath's counters, baseline and flows. The CLI reads
//! the first three from the state directory ([`Inputs::read`]); the daemon hands over
//! what it holds in memory ([`Inputs::in_memory`]) and reads back none of the files it
//! writes.

use std::{borrow::Cow, sync::Arc};

use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, FlowKey, FlowStats, StationKey, StationStats},
};

use crate::{
    datapath::DatapathError,
    state::{StateError, activity::ActivityError},
};
use crate::{
    datapath::MapSet,
    state::{
        StateDir, activity::Activity, daemon::DaemonInfo, files, inventory::Inventory,
        week::Coverage,
    },
    support::clock::{monotonic_now_ns, unix_now},
    view::oui::OuiDb,
};

/// A device learning for longer than this stands out: a baseline is meant to be learned
/// and then enforced, and an endless learn phase protects nothing.
pub const DEFAULT_MAX_LEARNING_DAYS: u64 = 7;
#[derive(Debug, thiserror::Error)]
pub enum DevMapError {
    #[error("reading the datapath maps")]
    Datapath(#[from] DatapathError),
    #[error("reading the state directory")]
    State(#[from] StateError),
    #[error("reading the activity history")]
    Activity(#[source] Box<ActivityError>),
    #[error("encoding JSON")]
    Json(#[from] serde_json::Error),
}

impl From<ActivityError> for DevMapError {
    fn from(e: ActivityError) -> Self {
        DevMapError::Activity(Box::new(e))
    }
}

/// Everything the map is made from, read once.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub inventory: Arc<Inventory>,
    pub activity: Cow<'a, Activity>,
    pub daemon: Option<Arc<DaemonInfo>>,
    pub global_mode: Mode,
    /// Counters of each device of `inventory`, in its order.
    pub stats: Vec<DeviceStats>,
    pub baseline: Vec<(FlowKey, BaselineEntry)>,
    pub flows: Vec<(FlowKey, FlowStats)>,
    /// The discovery table (source MACs on ward legs outside the inventory).
    pub stations: Vec<(StationKey, StationStats)>,
    pub oui: Option<&'a OuiDb>,
    pub now_unix: u64,
    pub now_mono_ns: u64,
    pub max_learning_days: u64,
    /// Each device's learning coverage (hours of the week it learned in).
    pub coverage: Coverage,
}

impl<'a> Inputs<'a> {
    /// From the state directory and the pinned maps, as a process other than the daemon
    /// (`monitor map`) sees the running monitor.
    pub fn read(
        maps: &MapSet,
        state: &StateDir,
        oui: Option<&'a OuiDb>,
    ) -> Result<Inputs<'a>, DevMapError> {
        let inventory = Arc::new(Inventory::load(state)?);
        let activity = Cow::Owned(Activity::load(state)?);
        let daemon = state.read_json::<DaemonInfo>(files::DAEMON)?.map(Arc::new);
        let coverage = Coverage::load(state)?;
        Inputs::with_maps(maps, inventory, activity, daemon, oui, coverage)
    }

    /// From what the daemon holds in memory: its maps, its inventory in force, itself,
    /// and the history its activity sampler keeps. The learning coverage is read from
    /// the file the daemon's clock keeps (a small file, written at most once an hour).
    pub fn in_memory(
        maps: &MapSet,
        inventory: Arc<Inventory>,
        daemon: Arc<DaemonInfo>,
        activity: &'a Activity,
        oui: Option<&'a OuiDb>,
    ) -> Result<Inputs<'a>, DevMapError> {
        let coverage = Coverage::load(&StateDir::new(daemon.state_dir.clone()))?;
        Inputs::with_maps(
            maps,
            inventory,
            Cow::Borrowed(activity),
            Some(daemon),
            oui,
            coverage,
        )
    }

    /// The rest, read from the maps now.
    fn with_maps(
        maps: &MapSet,
        inventory: Arc<Inventory>,
        activity: Cow<'a, Activity>,
        daemon: Option<Arc<DaemonInfo>>,
        oui: Option<&'a OuiDb>,
        coverage: Coverage,
    ) -> Result<Inputs<'a>, DevMapError> {
        let stats = maps.devices_stats(inventory.devices.iter().map(|d| d.slot))?;
        Ok(Inputs {
            global_mode: Mode::try_from(maps.config()?.mode).unwrap_or(Mode::Learn),
            stats,
            baseline: maps.baseline()?,
            flows: maps.enrolled_flows()?,
            stations: maps.stations()?,
            inventory,
            activity,
            daemon,
            oui,
            now_unix: unix_now(),
            now_mono_ns: monotonic_now_ns(),
            max_learning_days: DEFAULT_MAX_LEARNING_DAYS,
            coverage,
        })
    }
}

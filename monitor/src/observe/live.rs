//! What the running daemon knows, handed to the parts that report it.
//!
//! The daemon opens the datapath's maps once and keeps the inventory in memory; the
//! metrics server, the activity sampler, the device map and the event writer read them
//! from here. The state directory is written for other processes and for restarts, and is
//! never read back by the daemon that wrote it.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    datapath::MapSet,
    observe::stats::ControllerStats,
    state::{daemon::DaemonInfo, inventory::Inventory},
};

/// The readers' view of the running daemon. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Live {
    /// The daemon's maps ([`MapSet::share`]: the same kernel maps, read without waiting
    /// on the daemon's writes).
    pub maps: Arc<MapSet>,
    /// The inventory in force; a new value is published whenever it changes.
    pub inventory: watch::Receiver<Arc<Inventory>>,
    /// Who runs and where it is attached.
    pub daemon: watch::Receiver<Arc<DaemonInfo>>,
    /// The daemon's own counters.
    pub stats: Arc<ControllerStats>,
}

/// The daemon's side of [`Live`]: publishes what changed.
#[derive(Debug)]
pub struct Publisher {
    inventory: watch::Sender<Arc<Inventory>>,
    daemon: watch::Sender<Arc<DaemonInfo>>,
}

impl Publisher {
    /// A publisher and the readers' view, starting from these values.
    pub fn new(
        maps: MapSet,
        inventory: Inventory,
        daemon: DaemonInfo,
        stats: Arc<ControllerStats>,
    ) -> (Publisher, Live) {
        let (inventory_tx, inventory_rx) = watch::channel(Arc::new(inventory));
        let (daemon_tx, daemon_rx) = watch::channel(Arc::new(daemon));
        (
            Publisher {
                inventory: inventory_tx,
                daemon: daemon_tx,
            },
            Live {
                maps: Arc::new(maps),
                inventory: inventory_rx,
                daemon: daemon_rx,
                stats,
            },
        )
    }

    pub fn inventory(&self, inventory: Inventory) {
        self.inventory.send_replace(Arc::new(inventory));
    }

    pub fn daemon(&self, daemon: DaemonInfo) {
        self.daemon.send_replace(Arc::new(daemon));
    }
}

impl Live {
    /// The inventory in force now.
    pub fn inventory(&self) -> Arc<Inventory> {
        self.inventory.borrow().clone()
    }

    /// The daemon as it runs now.
    pub fn daemon(&self) -> Arc<DaemonInfo> {
        self.daemon.borrow().clone()
    }
}

//! The inventory in force, kept in memory by the daemon.
//!
//! The daemon writes `inventory.json` for the CLI and for its restarts, and never reads
//! back what it wrote. CLI commands (`monitor mode --device`, `monitor allow`) change the
//! file under the state's write lock; the keeper notices a file it did not write (its
//! identity changed: every write is an atomic rename) and takes that change in.

use std::{os::unix::fs::MetadataExt as _, time::SystemTime};

use crate::{
    observe::live::Publisher,
    state::{StateDir, StateError, files, inventory::Inventory},
};

/// Inode, length and modification time: a new file replaces the old one on every write.
type Stamp = Option<(u64, u64, Option<SystemTime>)>;

fn stamp(state: &StateDir) -> Stamp {
    let meta = std::fs::metadata(state.path().join(files::INVENTORY)).ok()?;
    Some((meta.ino(), meta.len(), meta.modified().ok()))
}

#[derive(Debug)]
pub struct InventoryKeeper {
    inventory: Inventory,
    /// The file as this daemon last wrote or read it.
    seen: Stamp,
}

impl InventoryKeeper {
    /// The inventory of the state directory at start (written by an earlier run).
    pub fn load(state: &StateDir) -> Result<InventoryKeeper, StateError> {
        let seen = stamp(state);
        Ok(InventoryKeeper {
            inventory: Inventory::load(state)?,
            seen,
        })
    }

    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Takes in what another process wrote since (call with the state's write lock held);
    /// returns whether it did.
    pub fn take_in_changes(
        &mut self,
        state: &StateDir,
        publisher: &Publisher,
    ) -> Result<bool, StateError> {
        let now = stamp(state);
        if now == self.seen {
            return Ok(false);
        }
        self.inventory = Inventory::load(state)?;
        self.seen = now;
        publisher.inventory(self.inventory.clone());
        Ok(true)
    }

    /// `inventory` is in force and was just written by this daemon.
    pub fn wrote(&mut self, state: &StateDir, inventory: Inventory, publisher: &Publisher) {
        self.seen = stamp(state);
        self.inventory = inventory;
        publisher.inventory(self.inventory.clone());
    }

    /// For changes made in place and then written (break-glass expiry).
    pub fn inventory_mut(&mut self) -> &mut Inventory {
        &mut self.inventory
    }
}

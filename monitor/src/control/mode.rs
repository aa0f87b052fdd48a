//! `monitor mode`: the operator's command, the only thing that changes a mode in force.
//!
//! Anything the command makes learn is learned under a new learning window, recorded in
//! the mode history before the mode changes: no entry is learned without the command that
//! allowed it (see [`crate::state::modes`]).

use anyhow::{Result, bail};
use monitor_common::{Mode, maps::Config};

use crate::{
    datapath::MapSet,
    state::{
        StateDir,
        inventory::Inventory,
        lock::WriteLock,
        modes::{Change, History, ModeRecord},
        week::Coverage,
    },
};

/// What a mode command changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// The router-wide mode; the life-critical devices it leaves audited.
    Global { mode: Mode, spared: Vec<String> },
    /// One device, and the mode it is in now (as operators read it).
    Device { name: String, effective: String },
}

/// The outcome of a mode command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeChange {
    pub changed: Changed,
    /// The learning window it opened, if it made something learn.
    pub window: Option<u32>,
    /// Devices it enforces whose learning covered less than a whole week, with the hours
    /// it covered: their baselines and schedules have not seen every shift.
    pub short_coverage: Vec<(String, u32)>,
}

/// Of the devices named, those enforced under `mode` whose learning covered less than
/// the whole week, with the hours it covered.
fn short_coverage<'a>(
    state: &StateDir,
    mode: Mode,
    names: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, u32)>> {
    if mode != Mode::Enforce {
        return Ok(Vec::new());
    }
    let coverage = Coverage::load(state)?;
    Ok(names
        .filter(|name| !coverage.is_full_week(name))
        .map(|name| (name.to_owned(), coverage.hours(name)))
        .collect())
}

/// Sets the router-wide mode (`device` none) or one device's (`mode` none: inherit the
/// router's again). Enforcing a life-critical device needs `confirmed`.
pub fn set(
    maps: &mut MapSet,
    state: &StateDir,
    mode: Option<Mode>,
    device: Option<&str>,
    confirmed: bool,
) -> Result<ModeChange> {
    // The daemon reads and writes CONFIG and the inventory too (reloads): one at a time.
    let _write = WriteLock::take(state.path())?;
    let history = History::load(state)?;
    let mut config = maps.config()?;
    let global = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
    match (device, mode) {
        (None, None) => bail!("`inherit` applies to one device: add --device NAME"),
        (None, Some(mode)) => {
            let mut record = ModeRecord::new(Change::Global, None, Some(mode.name()));
            if mode == Mode::Learn {
                open_window(&mut config, &mut record, &history);
            }
            History::append(state, &record)?;
            config.mode = mode as u8;
            maps.set_config(config)?;
            let inventory = Inventory::load(state)?;
            let spared = inventory
                .devices
                .iter()
                .filter(|d| d.effective_mode(mode).contains("life-critical"))
                .map(|d| d.spec.name.clone())
                .collect();
            let enforced = inventory
                .devices
                .iter()
                .filter(|d| d.effective_mode(mode) == Mode::Enforce.name())
                .map(|d| d.spec.name.as_str());
            Ok(ModeChange {
                changed: Changed::Global { mode, spared },
                window: record.window,
                short_coverage: short_coverage(state, mode, enforced)?,
            })
        }
        (Some(name), mode) => {
            let mut inventory = Inventory::load(state)?;
            let device = inventory.set_override(name, mode, confirmed)?.clone();
            let choice = mode.map_or("inherit", |m| m.name());
            let mut record = ModeRecord::new(Change::Device, Some(&device.spec.name), Some(choice));
            let effective = device.effective_mode(global);
            if effective == Mode::Learn.name() {
                open_window(&mut config, &mut record, &history);
            }
            History::append(state, &record)?;
            if record.window.is_some() {
                maps.set_config(config)?;
            }
            inventory.save(state)?;
            for addr in &device.spec.addresses {
                maps.enroll(*addr, device.entry())?;
            }
            // Enforced now (a life-critical device not confirmed stays audited).
            let enforced = if effective == Mode::Enforce.name() {
                Mode::Enforce
            } else {
                Mode::Audit
            };
            let short_coverage =
                short_coverage(state, enforced, std::iter::once(device.spec.name.as_str()))?;
            Ok(ModeChange {
                changed: Changed::Device {
                    name: device.spec.name.clone(),
                    effective: effective.to_owned(),
                },
                window: record.window,
                short_coverage,
            })
        }
    }
}

/// A new learning window in `config` and `record`.
fn open_window(config: &mut Config, record: &mut ModeRecord, history: &History) {
    let window = config.learn_window.max(history.last_window()) + 1;
    config.learn_window = window;
    record.window = Some(window);
}

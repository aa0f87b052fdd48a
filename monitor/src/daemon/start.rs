//! Starting `monitor run`: what must hold before anything is written, the mode of a first
//! start, attaching to (or adopting the pinned links of) each interface, and removing
//! again what a failed start pinned.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::programs::xdp::XdpMode;
use monitor_common::Mode;
use serde::{Deserialize, Serialize};

use crate::{
    datapath::{self, Datapath},
    policy::{Policy, PolicyError},
    state::{
        StateDir,
        daemon::AttachedInterface,
        modes::{Change, History, ModeRecord},
    },
};

/// The name operators know an XDP attach mode by.
pub fn mode_name(mode: XdpMode) -> &'static str {
    match mode {
        XdpMode::Driver => "native",
        XdpMode::Skb => "generic",
        XdpMode::Hardware => "offload",
        _ => "default",
    }
}

/// The link pin of `iface` under the pin directory.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("link_{iface}"))
}

/// A pinned link, as `links.json` records it: which ifindex and mode it was attached with.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LinkRecord {
    pub ifindex: u32,
    pub xdp_mode: String,
}

/// Checked before anything is loaded or pinned: an empty or missing directory is a
/// mistake, never a policy; a policy that does not load can be kept waiting for a fix only
/// when a pinned one stays in force meanwhile (`adopted`).
pub fn check_policy_dir(dir: &Path, adopted: bool) -> Result<()> {
    match Policy::load_dir(dir) {
        Ok(_) => Ok(()),
        Err(PolicyError::Invalid(_)) if adopted => Ok(()),
        Err(e) => Err(anyhow::Error::from(e).context(format!(
            "policy directory {} not usable; nothing was started or changed",
            dir.display()
        ))),
    }
}

/// Pins this start created, removed again if the start fails: a start that fails leaves
/// nothing behind (an adopted datapath is left as it was, enforcing).
pub struct StartCleanup {
    pin_dir: PathBuf,
    /// The pin directory's entries before the start; `None` when it did not exist.
    before: Option<std::collections::BTreeSet<std::ffi::OsString>>,
    pub armed: bool,
}

impl StartCleanup {
    pub fn new(pin_dir: &Path) -> StartCleanup {
        let before = std::fs::read_dir(pin_dir).ok().map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name())
                .collect::<std::collections::BTreeSet<_>>()
        });
        StartCleanup {
            pin_dir: pin_dir.to_path_buf(),
            before,
            armed: true,
        }
    }
}

impl Drop for StartCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.before {
            None => {
                let _ = std::fs::remove_dir_all(&self.pin_dir);
            }
            Some(before) => {
                for entry in std::fs::read_dir(&self.pin_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    if !before.contains(&entry.file_name()) {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
    }
}

/// Sets the router-wide mode at start: a first start takes `--mode`, the policy's
/// starting mode or learn; any other start keeps the mode in force (pinned, or recorded in
/// the mode history when the pins are gone, e.g. after a reboot). Returns the history
/// record of a first start, to append once the start has succeeded (a failed start leaves
/// no mode behind).
pub fn start_mode(
    datapath: &mut Datapath,
    state: &StateDir,
    adopted: bool,
    asked: Option<Mode>,
    policy_mode: Option<Mode>,
) -> Result<Option<ModeRecord>> {
    let history = History::load(state).context("reading the mode history")?;
    let mut config = datapath.maps().config()?;
    let ignored = |in_force: Mode, how: &str| {
        if let Some(asked) = asked.filter(|m| *m != in_force) {
            log::warn!(
                "--mode {} ignored: the mode in force is {} ({how}); only `monitor mode {}` \
                 changes it",
                asked.name(),
                in_force.name(),
                asked.name()
            );
        }
    };
    if adopted {
        let in_force = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
        ignored(in_force, "kept from the running datapath");
        return Ok(None);
    }
    if let Some(recorded) = history.global_mode() {
        ignored(recorded, "restored from the mode history");
        config.mode = recorded as u8;
        config.learn_window = history.last_window();
        datapath.maps_mut().set_config(config)?;
        log::warn!(
            "the pinned datapath was gone (a reboot?): restored the {} mode in force from {}",
            recorded.name(),
            state
                .path()
                .join(crate::state::files::MODE_HISTORY)
                .display()
        );
        return Ok(None);
    }
    let mode = asked.or(policy_mode).unwrap_or(Mode::Learn);
    let mut record = ModeRecord::new(Change::FirstStart, None, Some(mode.name()));
    config.learn_window = history.last_window();
    if mode == Mode::Learn {
        config.learn_window += 1;
        record.window = Some(config.learn_window);
    }
    config.mode = mode as u8;
    datapath.maps_mut().set_config(config)?;
    Ok(Some(record))
}

/// Attaches to every interface (or adopts its pinned link) and counts each one's verdicts
/// apart; returns what was attached and the links to record.
pub fn attach_all(
    datapath: &mut Datapath,
    pin_dir: &Path,
    interfaces: &[String],
    ward_legs: &std::collections::BTreeSet<String>,
    xdp_mode: XdpMode,
    mut links: BTreeMap<String, LinkRecord>,
) -> Result<(Vec<AttachedInterface>, BTreeMap<String, LinkRecord>)> {
    let mut attached = Vec::new();
    for (slot, iface) in interfaces.iter().enumerate() {
        let pin = link_pin(pin_dir, iface);
        let previous = links.get(iface).map(|r| r.ifindex);
        let (mode, adopted_link) = datapath
            .attach_pinned(iface, xdp_mode, &pin, previous)
            .with_context(|| format!("attaching to {iface}"))?;
        let record = if adopted_link {
            let record = links.get(iface).cloned().unwrap_or_default();
            log::info!(
                interface = iface.as_str();
                "adopted the pinned link on {iface} ({} mode): program replaced without a gap",
                record.xdp_mode
            );
            if record.xdp_mode == mode_name(XdpMode::Skb) {
                log::warn!(
                    interface = iface.as_str(), reason = "no-native-xdp";
                    "{iface} runs the program in generic mode: {}",
                    datapath::GENERIC_XDP_COST
                );
            }
            record
        } else {
            log::info!(interface = iface.as_str(); "attached to {iface} in {} mode", mode_name(mode));
            LinkRecord {
                ifindex: datapath::if_index(iface).unwrap_or(0),
                xdp_mode: mode_name(mode).into(),
            }
        };
        let ward = ward_legs.contains(iface);
        count_interface(datapath, iface, slot, ward);
        attached.push(AttachedInterface {
            name: iface.clone(),
            xdp_mode: record.xdp_mode.clone(),
            slot: slot as u32,
            role: if ward { "ward" } else { "core" }.into(),
        });
        links.insert(iface.clone(), record);
    }
    Ok((attached, links))
}

/// Counts the verdicts of `iface` apart, in the IFACE_VERDICTS block of its position on
/// the command line (the first [`MAX_IFACES`](monitor_common::maps::MAX_IFACES) only), and
/// marks it a ward leg (source MACs judged) or not.
pub fn count_interface(datapath: &mut Datapath, iface: &str, slot: usize, ward: bool) {
    let slot = u32::try_from(slot)
        .ok()
        .filter(|s| *s < monitor_common::maps::MAX_IFACES);
    if slot.is_none() {
        log::warn!(
            "{iface}: only the first {} interfaces have their verdicts counted apart",
            monitor_common::maps::MAX_IFACES
        );
    }
    if let Some(ifindex) = datapath::if_index(iface)
        && let Err(e) = datapath.maps_mut().set_interface_slot(ifindex, slot, ward)
    {
        log::error!(interface = iface; "counting {iface}'s verdicts: {e:#}");
    }
}

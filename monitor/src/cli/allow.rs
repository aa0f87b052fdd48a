//! `monitor allow`: break-glass, and a timed acceptance of another MAC for a device.

use anyhow::{Result, bail};
use monitor::{
    control::breakglass,
    policy::Policy,
    state::{daemon::Paths, inventory::Inventory, lock::Held},
};

use super::open_maps;

pub fn allow(
    paths: &Paths,
    mut devices: Vec<String>,
    group: Option<&str>,
    duration: std::time::Duration,
    reason: &str,
) -> Result<()> {
    let mut maps = open_maps(paths)?;
    if let Some(group) = group {
        let inventory = Inventory::load(&paths.state)?;
        let daemon = paths.running_daemon()?.and_then(|Held(info)| info);
        let policy = daemon
            .and_then(|d| d.policies)
            .map(|dir| Policy::load_dir(&dir))
            .transpose()?;
        devices.extend(breakglass::members(group, policy.as_ref(), &inventory)?);
    }
    devices.sort();
    devices.dedup();
    breakglass::allow(&mut maps, &paths.state, &devices, duration, reason)
}

pub fn allow_mac(
    paths: &Paths,
    devices: &[String],
    mac: &str,
    duration: std::time::Duration,
    reason: &str,
) -> Result<()> {
    let [device] = devices else {
        bail!("--mac accepts a MAC for one device: name exactly one --device");
    };
    let mut maps = open_maps(paths)?;
    breakglass::allow_mac(&mut maps, &paths.state, device, mac, duration, reason)
}

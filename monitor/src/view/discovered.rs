//! Discovered devices: every source MAC the datapath saw on a ward leg that the inventory
//! does not name (`STATIONS`), with its vendor, addresses, when it was seen, what it sent
//! and the enrolled devices' services it used; as a table, JSON, or inventory stubs (YAML)
//! to review and drop into the policy directory.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use monitor_common::maps::{Direction, StationKey, StationStats};
use serde::Serialize;

use crate::{
    datapath::{self, MapSet},
    policy::format_mac,
    state::{StateDir, StateError, inventory::Inventory},
    support::{
        clock::{monotonic_now_ns, rfc3339_unix, unix_now, unix_of_monotonic},
        proto,
    },
    view::oui::{OuiDb, Vendor},
};

/// One discovered device: a MAC outside the inventory.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Discovered {
    pub mac: String,
    pub vendor: String,
    /// Addresses it sent from, most recently seen first.
    pub addresses: Vec<IpAddr>,
    pub first_seen: String,
    pub last_seen: String,
    /// `CLOCK_MONOTONIC` ns of `last_seen` (for ordering and flip-flops).
    #[serde(skip)]
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    /// The leg it was last seen on.
    pub interface: String,
    /// Services of enrolled devices it used, as `device proto/port`.
    pub services: Vec<String>,
    /// Addresses it shares with an enrolled device (an impostor, or a replaced NIC).
    pub enrolled_addresses: Vec<String>,
}

/// A MAC's vendor as people read it.
pub fn vendor_label(oui: Option<&OuiDb>, mac: [u8; 6]) -> String {
    match oui.map(|db| db.lookup(mac)) {
        Some(Vendor::Registered(name)) => name,
        Some(Vendor::LocallyAdministered) => "locally administered".into(),
        Some(Vendor::Group) => "group address".into(),
        Some(Vendor::Unknown) | None => "unknown vendor".into(),
    }
}

/// Interface index → name, from the daemon's `links.json`.
fn interface_names(state: &StateDir) -> BTreeMap<u32, String> {
    let links: Option<BTreeMap<String, serde_json::Value>> =
        state.read_json(crate::state::files::LINKS).ok().flatten();
    links
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, record)| Some((record["ifindex"].as_u64()? as u32, name)))
        .collect()
}

/// The discovered devices of the stations table, newest first.
pub fn discovered(
    stations: &[(StationKey, StationStats)],
    flows: &[(
        monitor_common::maps::FlowKey,
        monitor_common::maps::FlowStats,
    )],
    inventory: &Inventory,
    interfaces: &BTreeMap<u32, String>,
    oui: Option<&OuiDb>,
) -> Vec<Discovered> {
    let enrolled_macs: BTreeSet<[u8; 6]> = inventory
        .devices
        .iter()
        .flat_map(|d| d.bound_macs())
        .collect();
    let by_address = inventory.by_address();
    let mut by_mac: BTreeMap<[u8; 6], Vec<(IpAddr, StationStats)>> = BTreeMap::new();
    for (key, stats) in stations {
        // `::` and 0.0.0.0: duplicate address detection, a DHCP request; no address yet.
        if enrolled_macs.contains(&key.mac) || datapath::addr_of(&key.addr).is_unspecified() {
            continue;
        }
        by_mac
            .entry(key.mac)
            .or_default()
            .push((datapath::addr_of(&key.addr), *stats));
    }
    let (now_mono, now_unix) = (monotonic_now_ns(), unix_now());
    let time =
        |ns: u64| unix_of_monotonic(ns, now_mono, now_unix).map_or_else(String::new, rfc3339_unix);
    let mut out: Vec<Discovered> = by_mac
        .into_iter()
        .map(|(mac, mut seen)| {
            seen.sort_by_key(|(_, s)| std::cmp::Reverse(s.last_seen_ns));
            let addresses: Vec<IpAddr> = seen.iter().map(|(a, _)| *a).collect();
            let first = seen.iter().map(|(_, s)| s.first_seen_ns).min().unwrap_or(0);
            let last = seen.first().map_or(0, |(_, s)| s.last_seen_ns);
            let ifindex = seen.first().map_or(0, |(_, s)| s.ifindex);
            let mut services = BTreeSet::new();
            for (key, _) in flows {
                let peer = datapath::addr_of(&key.peer);
                // An enrolled address's flows are its device's, not an impostor's.
                if !addresses.contains(&peer)
                    || by_address.contains_key(&peer)
                    || key.direction != Direction::Inbound as u8
                {
                    continue;
                }
                let device = datapath::addr_of(&key.device);
                let name = by_address
                    .get(&device)
                    .map_or_else(|| device.to_string(), |d| d.spec.name.clone());
                services.insert(format!(
                    "{name} {}/{}",
                    proto::name(key.protocol),
                    key.service_port
                ));
            }
            Discovered {
                mac: format_mac(mac),
                vendor: vendor_label(oui, mac),
                enrolled_addresses: addresses
                    .iter()
                    .filter_map(|a| by_address.get(a).map(|d| format!("{a} ({})", d.spec.name)))
                    .collect(),
                addresses,
                first_seen: time(first),
                last_seen: time(last),
                last_seen_ns: last,
                packets: seen.iter().map(|(_, s)| s.packets).sum(),
                bytes: seen.iter().map(|(_, s)| s.bytes).sum(),
                interface: interfaces
                    .get(&ifindex)
                    .cloned()
                    .unwrap_or_else(|| format!("ifindex {ifindex}")),
                services: services.into_iter().collect(),
            }
        })
        .collect();
    out.sort_by_key(|d| std::cmp::Reverse(d.last_seen_ns));
    out
}

/// The discovered devices of a running (or stopped) datapath.
pub fn read(maps: &MapSet, state: &StateDir) -> Result<Vec<Discovered>, StateError> {
    let inventory = Inventory::load(state)?;
    let stations = maps.stations().map_err(StateError::Datapath)?;
    let flows = maps.flows(true).map_err(StateError::Datapath)?;
    let oui = OuiDb::load_default().ok();
    Ok(discovered(
        &stations,
        &flows,
        &inventory,
        &interface_names(state),
        oui.as_ref(),
    ))
}

fn is_link_local(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// A table for the terminal.
pub fn table(devices: &[Discovered]) -> String {
    if devices.is_empty() {
        return "no discovered devices: every source MAC seen on a ward leg is enrolled\n".into();
    }
    let mut out = format!(
        "{:<17}  {:<28}  {:<18}  {:<20}  {:>8}  {:>10}  {:<10}  services\n",
        "mac", "vendor", "addresses", "last seen", "packets", "bytes", "leg"
    );
    for d in devices {
        let addresses: Vec<String> = d.addresses.iter().map(IpAddr::to_string).collect();
        out.push_str(&format!(
            "{:<17}  {:<28}  {:<18}  {:<20}  {:>8}  {:>10}  {:<10}  {}\n",
            d.mac,
            d.vendor.chars().take(28).collect::<String>(),
            addresses.join(","),
            d.last_seen,
            d.packets,
            d.bytes,
            d.interface,
            d.services.join(", ")
        ));
    }
    out
}

/// Inventory entries to review: a name stub, `kind: unknown`, the MAC and addresses, the
/// vendor and what was seen in `notes`. They pass `monitor policy check` as they are; give
/// each a real name and kind (and its location) before enrolling it.
pub fn yaml_stubs(devices: &[Discovered]) -> String {
    let mut out = String::from(
        "# Discovered devices: review each, give it its real name, kind and location,\n\
         # then drop the entries into the policy directory.\ndevices:\n",
    );
    for d in devices {
        // Link-local addresses are every device's own: no inventory entry names them.
        // An impostor's use of an enrolled address is no address of its own.
        let addresses: Vec<String> = d
            .addresses
            .iter()
            .filter(|a| !is_link_local(a))
            .map(IpAddr::to_string)
            .filter(|a| {
                !d.enrolled_addresses
                    .iter()
                    .any(|e| e.starts_with(&format!("{a} ")))
            })
            .collect();
        if addresses.is_empty() {
            continue;
        }
        let notes = format!(
            "discovered: {}; first seen {} on {}; {} packets{}",
            d.vendor,
            d.first_seen,
            d.interface,
            d.packets,
            if d.services.is_empty() {
                String::new()
            } else {
                format!("; used {}", d.services.join(", "))
            }
        );
        out.push_str(&format!(
            "  - name: discovered-{}\n    kind: unknown\n    addresses: [{}]\n    mac: \"{}\"\n    \
             notes: {}\n",
            d.mac.replace(':', ""),
            addresses.join(", "),
            d.mac,
            serde_json::to_string(&notes).unwrap_or_default()
        ));
    }
    out
}

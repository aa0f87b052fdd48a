//! Devices given by `mac:` alone: their addresses are learned from what they send on a
//! ward leg (the discovery table counts a MAC's frames while their source address is no
//! enrolled device's) and followed when a new lease gives them another. The device keeps
//! its name, slot (counters), mode and baseline, which moves to the new address, and the
//! policy's rules about it are compiled again at its new addresses.
//!
//! Devices given by their addresses alone are bound, when they leave learn mode, to the
//! MACs they were seen with on a ward leg while they learned (`bind_learned`).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use anyhow::Result;
use monitor_common::{
    Mode,
    maps::{BaselineEntry, FlowKey, StationKey, StationStats},
};

use crate::{
    datapath::{MapSet, addr_key, addr_of},
    policy::{Policy, PolicyError, format_mac},
    state::inventory::{EnrolledDevice, Inventory},
};

/// A MAC-only device whose addresses changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub device: String,
    pub from: Vec<IpAddr>,
    pub to: Vec<IpAddr>,
}

/// Whether `addr` can be a device's address in an inventory (not `::`, 0.0.0.0 or
/// link-local).
fn usable(addr: &IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_link_local() && !v4.is_broadcast(),
        IpAddr::V6(v6) => !v6.is_unspecified() && v6.segments()[0] & 0xffc0 != 0xfe80,
    }
}

/// The addresses `device` sends from now, by what the stations table says: its newest
/// IPv4 and newest IPv6 address seen, else those it has.
pub fn current_addresses(
    device: &EnrolledDevice,
    stations: &[(StationKey, StationStats)],
) -> Vec<IpAddr> {
    let macs = device.spec.macs();
    let mut newest: BTreeMap<bool, (u64, IpAddr)> = BTreeMap::new();
    for (key, stats) in stations {
        let addr = addr_of(&key.addr);
        if !macs.contains(&key.mac) || !usable(&addr) {
            continue;
        }
        let slot = newest.entry(addr.is_ipv6()).or_insert((0, addr));
        if stats.last_seen_ns >= slot.0 {
            *slot = (stats.last_seen_ns, addr);
        }
    }
    let mut addresses = device.spec.addresses.clone();
    for (v6, (_, addr)) in newest {
        // A station entry exists only while the address is not enrolled: a newer one is a
        // new lease (or the first).
        addresses.retain(|a| a.is_ipv6() != v6);
        addresses.push(addr);
    }
    addresses.sort();
    addresses
}

/// What following the MAC-only devices came to.
#[derive(Debug)]
pub enum Followed {
    /// These devices moved (none: nothing did).
    Moved(Vec<Move>),
    /// The policy in force does not compile with the devices at their new addresses:
    /// nothing moved, the datapath and the inventory are as they were.
    Held {
        moves: Vec<Move>,
        error: PolicyError,
    },
}

/// Follows every MAC-only device of `inventory` to the addresses it sends from now: the
/// datapath's entries, MAC bindings and baseline move with it; the inventory is changed in
/// place (the caller writes it).
///
/// With `policy` (the policy in force, as installed), its rules are compiled again with
/// the devices at their new addresses (a device's own rules and those naming it as a peer)
/// and installed with the devices in one switch ([`Inventory::apply`]): the same policy,
/// only the moved devices' addresses changed. If it does not compile, nothing moves
/// ([`Followed::Held`]). Without one (no policy was loaded) only the devices' entries move.
pub fn follow(
    maps: &mut MapSet,
    inventory: &mut Inventory,
    policy: Option<&Policy>,
) -> Result<Followed> {
    let stations = maps.stations()?;
    let mut next = inventory.clone();
    let mut moves = Vec::new();
    for device in &mut next.devices {
        if !device.mac_only {
            continue;
        }
        let to = current_addresses(device, &stations);
        if to == device.spec.addresses {
            continue;
        }
        moves.push(Move {
            device: device.spec.name.clone(),
            from: std::mem::replace(&mut device.spec.addresses, to.clone()),
            to,
        });
    }
    if moves.is_empty() {
        return Ok(Followed::Moved(moves));
    }
    let rules = match policy.map(|p| next.with_learned_addresses(p).rule_sets()) {
        None => None,
        Some(Ok(rules)) => Some(rules),
        Some(Err(error)) => return Ok(Followed::Held { moves, error }),
    };
    // The baseline at the new addresses before the devices are there; the old entries go
    // once they have left.
    let stale = rekey_baseline(maps, &moves)?;
    match rules {
        Some(rules) => {
            next.mark_ruled(&rules);
            next.apply(maps, &[], &rules)?;
        }
        None => {
            for m in &moves {
                let device = next
                    .devices
                    .iter()
                    .find(|d| d.spec.name == m.device)
                    .ok_or_else(|| anyhow::anyhow!("{} left the inventory", m.device))?;
                for addr in &m.to {
                    maps.enroll(*addr, device.entry())?;
                }
                maps.put_mac_bindings(&device.mac_bindings())?;
                for addr in m.from.iter().filter(|a| !m.to.contains(a)) {
                    maps.unenroll(*addr)?;
                }
            }
            maps.retain_mac_bindings(&next.mac_bindings())?;
        }
    }
    maps.remove_baseline_entries(&stale)?;
    *inventory = next;
    Ok(Followed::Moved(moves))
}

/// Most MACs a device is bound to by what it was seen with while it learned: a device
/// with two NICs. More is something that is not one device (a bridge or NAT in front of
/// it, or impostors during learning), which the operator should look at.
pub const LEARNED_MACS_BOUND_AT_MOST: usize = 2;

/// What leaving learn mode did with a device's MACs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LearnedMacs {
    /// Bound to these MACs.
    Bound { device: String, macs: Vec<String> },
    /// Seen with more MACs than [`LEARNED_MACS_BOUND_AT_MOST`] (`more`: frames from
    /// MACs beyond those the datapath holds): not bound.
    NotBound {
        device: String,
        macs: Vec<String>,
        more: u64,
    },
}

/// Binds every device of `left_learning` (names) the inventory gives no `mac:`, and that is
/// out of learn mode under `global` now, to the MACs the datapath saw it send from on a ward leg while it
/// learned (`LEARNED_MACS`): its addresses' MAC bindings are installed, then its entries
/// marked MAC-bound; the inventory is changed in place (the caller writes it). A device
/// seen with too many MACs is reported once (`reported` holds the names) and not bound;
/// one never seen on a ward leg while learning has nothing to bind.
pub fn bind_learned(
    maps: &mut MapSet,
    inventory: &mut Inventory,
    global: Mode,
    left_learning: &BTreeSet<String>,
    reported: &mut BTreeSet<String>,
) -> Result<Vec<LearnedMacs>> {
    let mut done = Vec::new();
    for i in 0..inventory.devices.len() {
        let device = &inventory.devices[i];
        if !left_learning.contains(&device.spec.name)
            || !device.spec.macs().is_empty()
            || !device.learned_macs.is_empty()
            || device.spec.addresses.is_empty()
            || device.mode(global) == Mode::Learn
        {
            continue;
        }
        let seen = maps.learned_macs(device.slot)?;
        let name = device.spec.name.clone();
        let macs = match binding_of(&name, &seen) {
            None => continue,
            Some(LearnedMacs::Bound { macs, .. }) => macs,
            Some(not_bound) => {
                if reported.insert(name) {
                    done.push(not_bound);
                }
                continue;
            }
        };
        inventory.devices[i].learned_macs = macs.clone();
        let device = &inventory.devices[i];
        // The bindings first: marked MAC-bound without them, its own frames would be
        // spoofed.
        maps.put_mac_bindings(&device.mac_bindings())?;
        for addr in &device.spec.addresses {
            maps.enroll(*addr, device.entry())?;
        }
        done.push(LearnedMacs::Bound { device: name, macs });
    }
    Ok(done)
}

/// What the MACs `seen` while device `name` learned bind it to: nothing when none was
/// seen, else bound to them, or not bound when there were more than
/// [`LEARNED_MACS_BOUND_AT_MOST`].
fn binding_of(name: &str, seen: &monitor_common::maps::LearnedMacs) -> Option<LearnedMacs> {
    let macs: Vec<String> = seen.macs().map(format_mac).collect();
    if macs.is_empty() && seen.more == 0 {
        return None;
    }
    let device = name.to_string();
    Some(
        if macs.len() > LEARNED_MACS_BOUND_AT_MOST || seen.more > 0 {
            LearnedMacs::NotBound {
                device,
                macs,
                more: seen.more,
            }
        } else {
            LearnedMacs::Bound { device, macs }
        },
    )
}

/// Copies the baseline entries of the moved devices' old addresses (as the device, and as
/// other devices' peer) to the new address of the same family; returns the old entries,
/// for the caller to remove once the devices have left those addresses.
fn rekey_baseline(maps: &mut MapSet, moves: &[Move]) -> Result<Vec<FlowKey>> {
    let moved: BTreeMap<[u8; 16], [u8; 16]> = moves
        .iter()
        .flat_map(|m| {
            m.from
                .iter()
                .filter(|old| !m.to.contains(old))
                .filter_map(|old| {
                    let new = m.to.iter().find(|n| n.is_ipv6() == old.is_ipv6())?;
                    Some((addr_key(*old), addr_key(*new)))
                })
        })
        .collect();
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    let mut added: Vec<(FlowKey, BaselineEntry)> = Vec::new();
    let mut removed = Vec::new();
    for (key, entry) in maps.baseline()? {
        let device = moved.get(&key.device).copied();
        let peer = moved.get(&key.peer).copied();
        if device.is_none() && peer.is_none() {
            continue;
        }
        let mut new = key;
        new.device = device.unwrap_or(key.device);
        new.peer = peer.unwrap_or(key.peer);
        added.push((new, entry));
        removed.push(key);
    }
    maps.insert_baseline(&added)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DeviceSpec;

    fn station(mac: [u8; 6], addr: &str, last_seen_ns: u64) -> (StationKey, StationStats) {
        let addr: IpAddr = addr.parse().unwrap_or_else(|e| panic!("{e}"));
        (
            StationKey {
                mac,
                _pad: 0,
                addr: addr_key(addr),
            },
            StationStats {
                last_seen_ns,
                ..StationStats::default()
            },
        )
    }

    #[test]
    fn a_device_is_bound_to_one_or_two_macs_it_learned_with_not_to_more() {
        use monitor_common::maps::{LearnedMacs as Seen, source_id};
        let a = [0, 0x0c, 0x29, 0, 0, 1];
        let b = [0, 0x0c, 0x29, 0, 0, 2];
        let c = [0, 0x0c, 0x29, 0, 0, 3];
        let seen = |macs: &[[u8; 6]], more: u64| {
            let mut s = Seen::default();
            for (i, m) in macs.iter().enumerate() {
                s.ids[i] = source_id(m);
            }
            s.more = more;
            s
        };
        let bound = |macs: &[&str]| {
            Some(LearnedMacs::Bound {
                device: "ws".into(),
                macs: macs.iter().map(|m| (*m).to_string()).collect(),
            })
        };
        assert_eq!(binding_of("ws", &seen(&[], 0)), None, "never seen");
        assert_eq!(
            binding_of("ws", &seen(&[a], 0)),
            bound(&["00:0c:29:00:00:01"])
        );
        assert_eq!(
            binding_of("ws", &seen(&[a, b], 0)),
            bound(&["00:0c:29:00:00:01", "00:0c:29:00:00:02"]),
            "two NICs"
        );
        assert!(matches!(
            binding_of("ws", &seen(&[a, b, c], 0)),
            Some(LearnedMacs::NotBound { ref macs, more: 0, .. }) if macs.len() == 3
        ));
        assert!(matches!(
            binding_of("ws", &seen(&[a, b, c, [2, 0, 0, 0, 0, 4]], 7)),
            Some(LearnedMacs::NotBound { more: 7, .. })
        ));
    }

    #[test]
    fn a_mac_only_device_takes_its_newest_usable_address_of_each_family() {
        let mac = [0, 0x0c, 0x29, 0x11, 0x22, 0x33];
        let spec: DeviceSpec = serde_json::from_value(serde_json::json!({
            "name": "pump-dhcp-01", "kind": "infusion-pump", "mac": "00:0c:29:11:22:33"
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut device: EnrolledDevice = serde_json::from_value(serde_json::json!({
            "slot": 3, "name": "pump-dhcp-01", "kind": "infusion-pump",
            "mac": "00:0c:29:11:22:33", "addresses": [], "mac-only": true
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(device.spec.macs(), spec.macs());
        let stations = vec![
            station(mac, "0.0.0.0", 50),
            station(mac, "10.10.1.101", 10),
            station(mac, "10.10.1.102", 20),
            station(mac, "fe80::20c:29ff:fe11:2233", 60),
            station(mac, "fd00:10::5", 30),
            station([2, 0, 0, 0, 0, 9], "10.10.1.103", 90),
        ];
        let got = current_addresses(&device, &stations);
        let want: Vec<IpAddr> = ["10.10.1.102", "fd00:10::5"]
            .iter()
            .map(|a| a.parse().unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(got, want);
        // Nothing seen: it keeps what it has.
        device.spec.addresses = want.clone();
        assert_eq!(current_addresses(&device, &[]), want);
    }
}

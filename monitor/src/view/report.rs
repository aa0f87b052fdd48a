//! What the CLI shows: devices, flows and status, read from the maps and the inventory,
//! as rows for a terminal table or JSON for scripts.

use std::net::IpAddr;

use monitor_common::{
    Action, FrameClass, Mode, Reason,
    maps::{Direction, FlowKey, FlowStats},
};
use serde::Serialize;

use crate::{
    datapath::{DatapathError, MapSet, addr_of},
    state::{inventory::Inventory, week::Coverage},
    support::proto,
};

/// "3s", "5m", "2h", "never".
pub fn age(now_ns: u64, then_ns: u64) -> String {
    if then_ns == 0 {
        return "never".into();
    }
    let secs = now_ns.saturating_sub(then_ns) / 1_000_000_000;
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

/// A table for a terminal: columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|s| s.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// One enrolled device with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceRow {
    pub name: String,
    pub kind: String,
    pub addresses: Vec<IpAddr>,
    /// The MACs its addresses are bound to (the inventory's, or those learned).
    pub macs: Vec<String>,
    /// `macs` were learned while it learned, not given by the inventory.
    pub mac_learned: bool,
    pub location: String,
    pub criticality: String,
    pub mode: String,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub dropped_packets: u64,
    pub would_drop_packets: u64,
    pub learned_flows: u64,
    pub baseline_entries: usize,
    /// Hours of the week (of 168) the device was seen learning in: its baseline's
    /// learning coverage.
    pub learning_coverage_hours: u32,
    pub last_seen_ns: u64,
}

/// An address outside the inventory with its counters.
#[derive(Clone, Debug, Serialize)]
pub struct UnenrolledRow {
    pub address: IpAddr,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub last_seen_ns: u64,
}

pub fn device_rows(
    maps: &MapSet,
    inventory: &Inventory,
    coverage: &Coverage,
) -> Result<Vec<DeviceRow>, DatapathError> {
    let global = Mode::try_from(maps.config()?.mode).unwrap_or(Mode::Learn);
    let baseline = maps.baseline()?;
    let all_stats = maps.devices_stats(inventory.devices.iter().map(|d| d.slot))?;
    inventory
        .devices
        .iter()
        .zip(all_stats)
        .map(|(device, stats)| {
            let baseline_entries = baseline
                .iter()
                .filter(|(key, _)| device.spec.addresses.contains(&addr_of(&key.device)))
                .count();
            Ok(DeviceRow {
                name: device.spec.name.clone(),
                kind: device.spec.kind.clone(),
                addresses: device.spec.addresses.clone(),
                macs: device
                    .bound_macs()
                    .into_iter()
                    .map(crate::policy::format_mac)
                    .collect(),
                mac_learned: device.spec.macs().is_empty() && !device.learned_macs.is_empty(),
                location: device.spec.location.label(),
                criticality: device.spec.criticality.name().into(),
                mode: device.effective_mode(global).into(),
                packets_sent: stats.packets_sent,
                bytes_sent: stats.bytes_sent,
                packets_received: stats.packets_received,
                bytes_received: stats.bytes_received,
                dropped_packets: stats.dropped_packets,
                would_drop_packets: stats.would_drop_packets,
                learned_flows: stats.learned_flows,
                baseline_entries,
                learning_coverage_hours: coverage.hours(&device.spec.name),
                last_seen_ns: stats.last_seen_ns,
            })
        })
        .collect()
}

pub fn unenrolled_rows(maps: &MapSet) -> Result<Vec<UnenrolledRow>, DatapathError> {
    let mut rows: Vec<UnenrolledRow> = maps
        .unenrolled_stats()?
        .into_iter()
        .map(|(address, s)| UnenrolledRow {
            address,
            packets_sent: s.packets_sent,
            bytes_sent: s.bytes_sent,
            packets_received: s.packets_received,
            bytes_received: s.bytes_received,
            last_seen_ns: s.last_seen_ns,
        })
        .collect();
    rows.sort_by(|a, b| {
        (b.packets_sent + b.packets_received).cmp(&(a.packets_sent + a.packets_received))
    });
    Ok(rows)
}

/// One flow with its counters and whether the baseline allows it.
#[derive(Clone, Debug, Serialize)]
pub struct FlowRow {
    /// Device name, or its address when unenrolled.
    pub device: String,
    pub device_address: IpAddr,
    pub direction: String,
    pub peer: String,
    pub peer_address: IpAddr,
    pub protocol: String,
    pub service_port: u16,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    pub dropped_packets: u64,
    pub in_baseline: bool,
    /// The hours of the week its baseline entry was seen in while learning
    /// (`mon-fri 07-19`); none when not in the baseline or none were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    pub last_seen_ns: u64,
}

pub fn flow_rows(
    maps: &MapSet,
    inventory: &Inventory,
    enrolled_only: bool,
) -> Result<Vec<FlowRow>, DatapathError> {
    let by_address = inventory.by_address();
    let name_of = |addr: IpAddr| {
        by_address
            .get(&addr)
            .map_or_else(|| addr.to_string(), |d| d.spec.name.clone())
    };
    let baseline: std::collections::HashMap<FlowKey, monitor_common::schedule::Schedule> = maps
        .baseline()?
        .into_iter()
        .map(|(k, e)| (k, e.schedule))
        .collect();
    let mut flows: Vec<(FlowKey, FlowStats)> = maps.flows(true)?;
    // The second table holds flows between unenrolled addresses and enrolled devices'
    // violating flows (kept apart so floods cannot evict the legitimate ones).
    flows.extend(
        maps.flows(false)?
            .into_iter()
            .filter(|(key, _)| !enrolled_only || by_address.contains_key(&addr_of(&key.device))),
    );
    let mut rows: Vec<FlowRow> = flows
        .into_iter()
        .map(|(key, stats)| {
            let device = addr_of(&key.device);
            let peer = addr_of(&key.peer);
            FlowRow {
                device: name_of(device),
                device_address: device,
                direction: Direction::try_from(key.direction)
                    .map_or("?", Direction::name)
                    .into(),
                peer: name_of(peer),
                peer_address: peer,
                protocol: proto::name(key.protocol),
                service_port: key.service_port,
                packets_sent: stats.packets_sent,
                bytes_sent: stats.bytes_sent,
                packets_received: stats.packets_received,
                bytes_received: stats.bytes_received,
                dropped_packets: stats.dropped_packets,
                in_baseline: baseline.contains_key(&key),
                schedule: baseline
                    .get(&key)
                    .filter(|s| monitor_common::schedule::is_recorded(s))
                    .map(crate::support::week::format),
                last_seen_ns: stats.last_seen_ns,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        (&a.device, &a.peer, a.service_port).cmp(&(&b.device, &b.peer, b.service_port))
    });
    Ok(rows)
}

/// Global state and counters.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub mode: String,
    pub unenrolled: String,
    pub policy_generation: u32,
    pub enrolled_devices: usize,
    pub enrolled_addresses: usize,
    pub baseline_entries: usize,
    pub verdicts: Vec<VerdictRow>,
    pub classes: Vec<ClassRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerdictRow {
    pub action: String,
    pub reason: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassRow {
    pub class: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Verdict counters as a terminal table, under `first` (the first column's title).
pub fn verdict_table(first: &str, rows: &[VerdictRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|v| {
            vec![
                v.action.clone(),
                v.reason.clone(),
                v.packets.to_string(),
                v.bytes.to_string(),
            ]
        })
        .collect();
    table(&[first, "REASON", "PACKETS", "BYTES"], &rows)
}

/// Frame-class counters as a terminal table, under `first`.
pub fn class_table(first: &str, rows: &[ClassRow]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|c| vec![c.class.clone(), c.packets.to_string(), c.bytes.to_string()])
        .collect();
    table(&[first, "PACKETS", "BYTES"], &rows)
}

pub fn status(maps: &MapSet, inventory: &Inventory) -> Result<Status, DatapathError> {
    let config = maps.config()?;
    let devices = maps.devices()?;
    Ok(Status {
        mode: Mode::try_from(config.mode).map_or("?", Mode::name).into(),
        unenrolled: if config.flags & monitor_common::maps::CONFIG_UNENROLLED_DROP != 0 {
            "drop (in enforce mode)".into()
        } else {
            "pass".into()
        },
        policy_generation: config.generation,
        enrolled_devices: inventory.devices.len(),
        enrolled_addresses: devices.len(),
        baseline_entries: maps.baseline()?.len(),
        verdicts: maps
            .verdicts()?
            .into_iter()
            .filter(|(_, _, c)| c.packets > 0)
            .map(|(action, reason, c): (Action, Reason, _)| VerdictRow {
                action: action.name().into(),
                reason: reason.label().into(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect(),
        classes: maps
            .classes()?
            .into_iter()
            .map(|(class, c): (FrameClass, _)| ClassRow {
                class: class.label().into(),
                packets: c.packets,
                bytes: c.bytes,
            })
            .collect(),
    })
}

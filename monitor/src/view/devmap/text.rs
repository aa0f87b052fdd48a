//! The device map as a terminal table (`monitor map`): one row per device, then what
//! needs attention; and the words for times both this and the page use.

use std::fmt::Write as _;

use super::model::DeviceMap;
use crate::{state::activity::format_local, view::report};

/// "5m ago", "never".
pub(super) fn ago(now: u64, then: Option<u64>) -> String {
    let Some(then) = then else {
        return "never".into();
    };
    let secs = now.saturating_sub(then);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        7200..=172_799 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86_400),
    }
}

/// "90s", "5m", "3h", "2d".
pub(super) fn duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The map as a terminal table, one row per device, and what needs attention.
pub fn table(map: &DeviceMap) -> String {
    let now = map.generated_at;
    let mut out = format!(
        "{} devices in {} wards; router mode {}; {} enforced, {} audited, {} learning, {} break-glass\n\n",
        map.summary.devices,
        map.summary.wards,
        map.mode,
        map.summary.enforced,
        map.summary.audited,
        map.summary.learning,
        map.summary.break_glass
    );
    let rows: Vec<Vec<String>> = map
        .wards
        .iter()
        .flat_map(|w| &w.devices)
        .map(|d| {
            let peers: usize = d.peers.iter().map(|g| g.peers.len()).sum();
            let growth = &d.baseline.new_entries_per_hour;
            let last6: Vec<String> = growth
                .iter()
                .skip(growth.len().saturating_sub(6))
                .map(u64::to_string)
                .collect();
            vec![
                d.ward.clone(),
                d.name.clone(),
                d.kind.clone(),
                d.vendor.clone().unwrap_or_else(|| "-".into()),
                d.criticality.clone(),
                d.protection.label().into(),
                peers.to_string(),
                format!(
                    "{}/{}",
                    d.violations.dropped_packets, d.violations.would_drop_packets
                ),
                d.baseline.entries.to_string(),
                last6.join(" "),
                d.baseline
                    .stable_since
                    .map_or_else(|| "-".into(), format_local),
                format!("{}/168", d.active_hours),
                ago(now, d.traffic.last_seen),
            ]
        })
        .collect();
    out.push_str(&report::table(
        &[
            "WARD",
            "DEVICE",
            "KIND",
            "VENDOR",
            "CRITICALITY",
            "PROTECTION",
            "PEERS",
            "DROP/WOULD",
            "BASELINE",
            "NEW/H (6H)",
            "STABLE SINCE",
            "ACTIVE H",
            "LAST SEEN",
        ],
        &rows,
    ));
    if !map.attention.is_empty() {
        out.push_str("\nNeeds attention:\n");
        for a in &map.attention {
            let _ = writeln!(out, "  {} ({}): {}", a.device, a.ward, a.reasons.join("; "));
        }
    }
    if !map.discovered.is_empty() {
        let _ = writeln!(
            out,
            "\nDiscovered, not in the inventory ({}):",
            map.discovered.len()
        );
        out.push_str(&crate::view::discovered::table(&map.discovered));
    }
    out
}

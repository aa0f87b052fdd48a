//! Break-glass: lift enforcement for a device or a group at once, for a limited time,
//! with an audit record of who, when, why and what was let through.
//!
//! The expiry lives in the datapath (each device entry carries its deadline), so it
//! expires on time even if no controller runs; the controller only writes the closing
//! audit record.

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::{
    datapath::MapSet,
    inventory::{BreakGlass, Inventory, StateDir},
    report::monotonic_now_ns,
};

pub const AUDIT_FILE: &str = "audit.jsonl";

/// Who asked: the sudo user if any, else the login user, else the uid.
pub fn who() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            format!("uid {}", unsafe { libc::getuid() })
        })
}

#[derive(Serialize)]
struct AuditRecord<'a> {
    time: String,
    event: &'a str,
    who: &'a str,
    reason: &'a str,
    devices: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    /// Packets let through by break-glass, per device (closing records).
    #[serde(skip_serializing_if = "Option::is_none")]
    let_through: Option<std::collections::BTreeMap<String, u64>>,
}

fn append_audit(state: &StateDir, record: &AuditRecord<'_>) -> Result<()> {
    std::fs::create_dir_all(state.path())?;
    let path = state.path().join(AUDIT_FILE);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut line = serde_json::to_string(record)?;
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// `monitor allow`: lifts enforcement for `devices` (names or addresses) for `duration`.
pub fn allow(
    maps: &mut MapSet,
    state: &StateDir,
    devices: &[String],
    duration: Duration,
    reason: &str,
) -> Result<()> {
    if reason.trim().is_empty() {
        bail!("break-glass needs a --reason: the audit record says why");
    }
    if devices.is_empty() {
        bail!("name at least one device (--device) or a group (--group)");
    }
    let mut inventory = Inventory::load(state)?;
    let who = who();
    let until_unix = SystemTime::now() + duration;
    let glass = BreakGlass {
        until_monotonic_ns: monotonic_now_ns() + duration.as_nanos() as u64,
        until_unix: until_unix
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        reason: reason.to_string(),
        who: who.clone(),
        packets_at_start: 0,
    };
    let mut names = Vec::new();
    for name in devices {
        let slot = inventory.find(name)?.slot;
        let start = maps.device_stats(slot)?.break_glass_packets;
        let device = inventory.device_mut(name)?;
        device.break_glass = Some(BreakGlass {
            packets_at_start: start,
            ..glass.clone()
        });
        names.push(device.spec.name.clone());
    }
    // The record first: nothing is let through without one.
    append_audit(
        state,
        &AuditRecord {
            time: rfc3339(SystemTime::now()),
            event: "break-glass-start",
            who: &who,
            reason,
            devices: names.clone(),
            until: Some(rfc3339(until_unix)),
            let_through: None,
        },
    )?;
    inventory.save(state)?;
    for name in &names {
        let device = inventory.find(name)?;
        for addr in &device.spec.addresses {
            maps.enroll(*addr, device.entry())?;
        }
    }
    println!(
        "break-glass: enforcement lifted for {} until {} ({}); recorded in {}",
        names.join(", "),
        rfc3339(until_unix),
        humantime::format_duration(duration),
        state.path().join(AUDIT_FILE).display()
    );
    Ok(())
}

/// Closes break-glass windows that have expired: clears them from the inventory (the
/// datapath already stopped honouring them) and writes what was let through.
pub fn expire(maps: &mut MapSet, state: &StateDir) -> Result<()> {
    let mut inventory = Inventory::load(state)?;
    let now = monotonic_now_ns();
    let mut closed = std::collections::BTreeMap::new();
    let mut records = Vec::new();
    for device in &mut inventory.devices {
        let Some(glass) = &device.break_glass else {
            continue;
        };
        if glass.until_monotonic_ns > now {
            continue;
        }
        let total = maps.device_stats(device.slot)?.break_glass_packets;
        closed.insert(
            device.spec.name.clone(),
            total.saturating_sub(glass.packets_at_start),
        );
        records.push((glass.who.clone(), glass.reason.clone()));
        device.break_glass = None;
    }
    if closed.is_empty() {
        return Ok(());
    }
    let (who, reason) = records.swap_remove(0);
    append_audit(
        state,
        &AuditRecord {
            time: rfc3339(SystemTime::now()),
            event: "break-glass-end",
            who: &who,
            reason: &reason,
            devices: closed.keys().cloned().collect(),
            until: None,
            let_through: Some(closed.clone()),
        },
    )?;
    inventory.save(state)?;
    for name in closed.keys() {
        let device = inventory.find(name)?;
        for addr in &device.spec.addresses {
            maps.enroll(*addr, device.entry())?;
        }
    }
    log::info!(
        "break-glass expired for {}",
        closed.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}

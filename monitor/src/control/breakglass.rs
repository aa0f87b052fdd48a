//! Break-glass: lift enforcement for a device or a group at once, for a limited time,
//! with an audit record of who, when, why and what was let through.
//!
//! The expiry lives in the datapath (each device entry carries its deadline), so it
//! expires on time even if no controller runs; the controller only writes the closing
//! audit record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::state::files;
use crate::{
    datapath::MapSet,
    policy::BREAK_GLASS_MAX_CEILING,
    state::StateDir,
    state::audit::{self, AuditRecord},
    state::inventory::{BreakGlass, BreakGlassLimit, Inventory},
    support::{
        clock::{monotonic_now_ns, rfc3339},
        operator,
    },
};

/// A break-glass longer than the policy in force allows.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: break-glass for {} is longer than the {} allowed ({}); nothing was changed",
    humantime::format_duration(*.asked),
    humantime::format_duration(*.max),
    match .set_in {
        Some(file) => format!("`defaults: break-glass-max` in {}", file.display()),
        None => format!(
            "the built-in default; a policy may set another with `defaults: break-glass-max`, up to {}",
            humantime::format_duration(BREAK_GLASS_MAX_CEILING)
        ),
    }
)]
pub struct TooLong {
    pub asked: Duration,
    pub max: Duration,
    pub set_in: Option<std::path::PathBuf>,
}

/// Whether a break-glass of `duration` is within `limit` (never beyond the ceiling a policy
/// may set, whatever the state file says).
pub fn check_duration(duration: Duration, limit: &BreakGlassLimit) -> Result<(), TooLong> {
    let max = Duration::from_secs(limit.max_seconds).min(BREAK_GLASS_MAX_CEILING);
    if duration > max {
        return Err(TooLong {
            asked: duration,
            max,
            set_in: limit.set_in.clone(),
        });
    }
    Ok(())
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
    if duration.is_zero() {
        bail!("break-glass --for 0s would lift nothing; give how long, e.g. --for 30m");
    }
    let mut inventory = Inventory::load(state)?;
    // Before anything is written: a refused break-glass leaves no record and no trace.
    check_duration(duration, &inventory.break_glass_limit)?;
    let who = operator();
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
    AuditRecord {
        time: rfc3339(SystemTime::now()),
        event: audit::START.into(),
        who: who.clone(),
        reason: reason.into(),
        devices: names.clone(),
        until: Some(rfc3339(until_unix)),
        let_through: None,
        mac: None,
    }
    .append(state)?;
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
        state.path().join(files::AUDIT).display()
    );
    Ok(())
}

/// `monitor allow --device X --mac M --for D`: lets frames from MAC `mac` use the
/// addresses of MAC-bound device `device` on ward legs for `duration` (a replaced NIC,
/// until the inventory names it). Recorded in the audit trail like a break-glass, within
/// the same limit; it expires in the datapath.
pub fn allow_mac(
    maps: &mut MapSet,
    state: &StateDir,
    device: &str,
    mac: &str,
    duration: Duration,
    reason: &str,
) -> Result<()> {
    if reason.trim().is_empty() {
        bail!("accepting a MAC needs a --reason: the audit record says why");
    }
    if duration.is_zero() {
        bail!("--for 0s would accept nothing; give how long, e.g. --for 30m");
    }
    let Some(bytes) = crate::policy::parse_mac(mac) else {
        bail!("--mac `{mac}` is not six hex bytes like 00:1b:44:11:3a:b7; nothing was changed");
    };
    let mac = crate::policy::format_mac(bytes);
    let mut inventory = Inventory::load(state)?;
    check_duration(duration, &inventory.break_glass_limit)?;
    let name = inventory.find(device)?.spec.name.clone();
    if inventory.find(&name)?.bound_macs().is_empty() {
        bail!(
            "device `{name}` has no `mac:` in the inventory and none learned, so its MAC is not \
             checked: there is nothing to accept (give it `mac:` in its policy file to bind it)"
        );
    }
    let who = operator();
    let until_unix = SystemTime::now() + duration;
    let until_monotonic_ns = monotonic_now_ns() + duration.as_nanos() as u64;
    AuditRecord {
        time: rfc3339(SystemTime::now()),
        event: audit::MAC_ALLOW.into(),
        who: who.clone(),
        reason: reason.into(),
        devices: vec![name.clone()],
        until: Some(rfc3339(until_unix)),
        let_through: None,
        mac: Some(mac.clone()),
    }
    .append(state)?;
    let entry = inventory.device_mut(&name)?;
    entry.mac_allows.retain(|a| a.mac != mac);
    entry.mac_allows.push(crate::state::inventory::MacAllow {
        mac: mac.clone(),
        until_monotonic_ns,
        until_unix: until_unix
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        reason: reason.to_string(),
        who,
    });
    inventory.save(state)?;
    maps.put_mac_bindings(&inventory.find(&name)?.mac_bindings())?;
    // Spoof verdicts cached for the MAC are judged again.
    maps.bump_cache_epoch()?;
    println!(
        "MAC {mac} accepted for {name} until {} ({}); recorded in {}",
        rfc3339(until_unix),
        humantime::format_duration(duration),
        state.path().join(files::AUDIT).display()
    );
    Ok(())
}

/// Closes break-glass windows that have expired: clears them from the inventory (the
/// datapath already stopped honouring them) and writes what was let through.
///
/// Works on `inventory`, the inventory in force (the daemon keeps it in memory), and
/// writes it when something expired; returns whether something did.
pub fn expire(maps: &mut MapSet, state: &StateDir, inventory: &mut Inventory) -> Result<bool> {
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
        return Ok(false);
    }
    let (who, reason) = records.swap_remove(0);
    AuditRecord {
        time: rfc3339(SystemTime::now()),
        event: audit::END.into(),
        who,
        reason,
        devices: closed.keys().cloned().collect(),
        until: None,
        let_through: Some(closed.clone()),
        mac: None,
    }
    .append(state)?;
    inventory.save(state)?;
    for name in closed.keys() {
        let device = inventory.find(name)?;
        for addr in &device.spec.addresses {
            maps.enroll(*addr, device.entry())?;
        }
    }
    for name in closed.keys() {
        log::info!(device = name.as_str(), reason = "break-glass-expired"; "break-glass expired for {name}");
    }
    Ok(true)
}

/// The devices `monitor allow --group G` lifts enforcement for: the members of the policy
/// group `G` (by name, and every device of its kinds), else every device of kind `G` or in
/// ward `G`.
pub fn members(
    group: &str,
    policy: Option<&crate::policy::Policy>,
    inventory: &Inventory,
) -> Result<Vec<String>> {
    let from_group: Vec<String> = policy
        .iter()
        .flat_map(|p| p.groups.iter())
        .filter(|g| g.name == group)
        .flat_map(|g| {
            g.members.iter().cloned().chain(
                inventory
                    .devices
                    .iter()
                    .filter(|d| g.kinds.contains(&d.spec.kind))
                    .map(|d| d.spec.name.clone()),
            )
        })
        .collect();
    let members: Vec<String> = if from_group.is_empty() {
        inventory
            .devices
            .iter()
            .filter(|d| d.spec.kind == group || d.spec.location.ward.as_deref() == Some(group))
            .map(|d| d.spec.name.clone())
            .collect()
    } else {
        from_group
    };
    if members.is_empty() {
        bail!("`{group}` is no group of the policy, device kind or ward");
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use super::{TooLong, check_duration};
    use crate::{policy::DEFAULT_BREAK_GLASS_MAX, state::inventory::BreakGlassLimit};

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_default_limit_allows_up_to_four_hours_and_says_where_it_comes_from() {
        let limit = BreakGlassLimit::default();
        assert_eq!(DEFAULT_BREAK_GLASS_MAX, 4 * HOUR);
        assert!(check_duration(30 * 60 * Duration::from_secs(1), &limit).is_ok());
        assert!(check_duration(4 * HOUR, &limit).is_ok());
        let err = check_duration(4 * HOUR + Duration::from_secs(1), &limit)
            .expect_err("one second too long");
        let message = err.to_string();
        assert!(
            message.contains("break-glass for 4h 1s is longer than the 4h allowed")
                && message.contains("the built-in default")
                && message.contains("nothing was changed"),
            "{message}"
        );
        let err = check_duration(100_000 * 24 * HOUR, &limit).expect_err("100000 days");
        assert!(err.to_string().contains("for 273years"), "{err}");
    }

    #[test]
    fn a_policy_limit_is_named_with_its_file_and_never_exceeds_the_ceiling() {
        let limit = BreakGlassLimit {
            max_seconds: 8 * 3600,
            set_in: Some(PathBuf::from("/etc/monitor/policies/ward.yaml")),
        };
        assert!(check_duration(8 * HOUR, &limit).is_ok());
        let TooLong { max, set_in, .. } = check_duration(9 * HOUR, &limit).expect_err("9h over 8h");
        assert_eq!(max, 8 * HOUR);
        assert_eq!(set_in, limit.set_in);
        let message = check_duration(9 * HOUR, &limit)
            .expect_err("9h over 8h")
            .to_string();
        assert!(
            message.contains("longer than the 8h allowed (`defaults: break-glass-max` in /etc/monitor/policies/ward.yaml)"),
            "{message}"
        );
        // A state file edited by hand past the ceiling still gets the ceiling.
        let edited = BreakGlassLimit {
            max_seconds: u64::MAX,
            set_in: None,
        };
        assert!(check_duration(7 * 24 * HOUR, &edited).is_ok());
        assert!(check_duration(7 * 24 * HOUR + Duration::from_secs(1), &edited).is_err());
    }
}

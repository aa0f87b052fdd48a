//! The enrolled devices as the running monitor knows them: the policy's devices with their
//! counter slots and the operator's mode overrides, kept in the state directory so that
//! CLI commands and restarts see the same names and slots.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::PathBuf,
};

use monitor_common::{
    Mode,
    maps::{
        CONFIG_UNENROLLED_DROP, DEVICE_ENFORCE_CONFIRMED, DEVICE_HAS_RULES, DEVICE_MAC_BOUND,
        DeviceEntry, MODE_INHERIT, RuleKeyData, RuleSet,
    },
};
use serde::{Deserialize, Serialize};

use super::{StateDir, StateError, files};
use crate::{
    datapath::MapSet,
    policy::guard::AppliedPolicy,
    policy::{Criticality, DEFAULT_BREAK_GLASS_MAX, Defaults, DeviceSpec, Policy, UnenrolledSpec},
};

const INVENTORY_VERSION: u32 = 1;

/// An operator's `monitor mode ... --device X`, kept across policy reloads and restarts.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ModeOverride {
    #[serde(with = "crate::support::mode_name")]
    pub mode: Mode,
    /// Given with --confirm-life-critical.
    pub confirmed: bool,
}

/// Break-glass in force for a device: enforcement lifted until it expires.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BreakGlass {
    /// Expiry on CLOCK_MONOTONIC, as the datapath compares it.
    pub until_monotonic_ns: u64,
    /// Expiry, seconds since the Unix epoch (for people and for restarts).
    pub until_unix: u64,
    pub reason: String,
    pub who: String,
    /// The device's break-glass packet counter when it started (for the closing record).
    #[serde(default)]
    pub packets_at_start: u64,
}

/// An operator's timed acceptance of another MAC for a device (`monitor allow --mac`): a
/// replaced NIC let through until the inventory names it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct MacAllow {
    pub mac: String,
    /// Expiry on CLOCK_MONOTONIC, as the datapath compares it.
    pub until_monotonic_ns: u64,
    /// Expiry, seconds since the Unix epoch.
    pub until_unix: u64,
    pub reason: String,
    pub who: String,
}

/// One enrolled device.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct EnrolledDevice {
    /// Index of its counters in DEVICE_STATS.
    pub slot: u32,
    #[serde(flatten)]
    pub spec: DeviceSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_override: Option<ModeOverride>,
    /// Policy rules apply to it (the datapath looks up RULES only then).
    #[serde(default)]
    pub has_rules: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<BreakGlass>,
    /// Other MACs an operator accepted for a while (`monitor allow --mac`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mac_allows: Vec<MacAllow>,
    /// Given by `mac:` alone: `spec.addresses` are the addresses learned from what it
    /// sends on a ward leg, followed when they change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mac_only: bool,
    /// For a device the inventory gives no `mac:`: the MACs it was seen with on a ward
    /// leg while it learned, bound to its addresses when it left learn mode
    /// (`control::identity::bind_learned`). Dropped when the inventory names its MACs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learned_macs: Vec<String>,
}

impl EnrolledDevice {
    /// Its address–MAC bindings (`MAC_BINDINGS`): every address with every MAC of the
    /// inventory (lasting) and of the operator's timed acceptances (until they end).
    pub fn mac_bindings(&self) -> Vec<(IpAddr, [u8; 6], u64)> {
        let macs = self.bound_macs();
        if macs.is_empty() {
            return Vec::new();
        }
        let allowed = self.mac_allows.iter().filter_map(|a| {
            crate::policy::parse_mac(&a.mac).map(|mac| (mac, a.until_monotonic_ns.max(1)))
        });
        let all: Vec<([u8; 6], u64)> = macs.iter().map(|m| (*m, 0)).chain(allowed).collect();
        self.spec
            .addresses
            .iter()
            .flat_map(|addr| all.iter().map(move |(mac, until)| (*addr, *mac, *until)))
            .collect()
    }

    /// The MACs its addresses are bound to: the inventory's, else those learned.
    pub fn bound_macs(&self) -> Vec<[u8; 6]> {
        let given = self.spec.macs();
        if !given.is_empty() {
            return given;
        }
        self.learned_macs
            .iter()
            .filter_map(|m| crate::policy::parse_mac(m))
            .collect()
    }

    /// The mode it is in under `global` (the operator's override, else the policy's).
    pub fn mode(&self, global: Mode) -> Mode {
        let entry = self.entry();
        if entry.mode == MODE_INHERIT {
            global
        } else {
            Mode::try_from(entry.mode).unwrap_or(global)
        }
    }

    /// The entry the XDP program reads: the operator's override beats the policy's mode.
    pub fn entry(&self) -> DeviceEntry {
        let mut entry = self.spec.entry(self.slot);
        if self.has_rules {
            entry.flags |= DEVICE_HAS_RULES;
        }
        if !self.bound_macs().is_empty() {
            entry.flags |= DEVICE_MAC_BOUND;
        }
        if let Some(glass) = &self.break_glass {
            entry.break_glass_until_ns = glass.until_monotonic_ns;
        }
        if let Some(over) = self.operator_override {
            entry.mode = over.mode as u8;
            if over.mode == Mode::Enforce && over.confirmed {
                entry.flags |= DEVICE_ENFORCE_CONFIRMED;
            } else if over.mode != Mode::Enforce {
                entry.flags &= !DEVICE_ENFORCE_CONFIRMED;
            }
        }
        entry
    }

    /// The mode this device is in under `global`, as operators read it.
    pub fn effective_mode(&self, global: Mode) -> &'static str {
        let entry = self.entry();
        let mode = self.mode(global);
        if mode == Mode::Enforce
            && self.spec.criticality == Criticality::LifeCritical
            && entry.flags & DEVICE_ENFORCE_CONFIRMED == 0
        {
            "audit (life-critical, not confirmed for enforce)"
        } else {
            mode.name()
        }
    }
}

/// The longest break-glass the policy in force allows, kept here so that `monitor allow`
/// reads the limit of the policy the daemon applied (not of files it may not have taken).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BreakGlassLimit {
    pub max_seconds: u64,
    /// The policy file whose `defaults: break-glass-max` sets it; none: the built-in default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_in: Option<PathBuf>,
}

impl Default for BreakGlassLimit {
    /// Also what an inventory written before the limit existed gets: never unlimited.
    fn default() -> BreakGlassLimit {
        BreakGlassLimit {
            max_seconds: DEFAULT_BREAK_GLASS_MAX.as_secs(),
            set_in: None,
        }
    }
}

impl BreakGlassLimit {
    pub fn of(defaults: &Defaults) -> BreakGlassLimit {
        match defaults.break_glass_max {
            Some(max) => BreakGlassLimit {
                max_seconds: max.as_secs(),
                set_in: defaults.file.clone(),
            },
            None => BreakGlassLimit::default(),
        }
    }
}

/// Every enrolled device, with slots that stay with a device's name.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Inventory {
    pub version: u32,
    pub devices: Vec<EnrolledDevice>,
    pub unenrolled: UnenrolledSpec,
    #[serde(default)]
    pub break_glass_limit: BreakGlassLimit,
    /// The rules and defaults of the policy in force, which the next load is compared with
    /// ([`crate::policy::guard`]).
    #[serde(default)]
    pub applied: AppliedPolicy,
    /// The site's clock for the baseline's schedules, from the policy's `defaults:`.
    #[serde(default)]
    pub schedule_clock: ScheduleClock,
}

/// How the site's hour of the week is told: the policy's `time-zone` and
/// `schedule-tolerance`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ScheduleClock {
    /// IANA name; none: the router's own time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    pub tolerance: u8,
}

impl Default for ScheduleClock {
    fn default() -> ScheduleClock {
        ScheduleClock {
            time_zone: None,
            tolerance: monitor_common::schedule::DEFAULT_TOLERANCE,
        }
    }
}

impl ScheduleClock {
    pub fn of(defaults: &Defaults) -> ScheduleClock {
        ScheduleClock {
            time_zone: defaults.time_zone.clone(),
            tolerance: defaults
                .schedule_tolerance
                .unwrap_or(monitor_common::schedule::DEFAULT_TOLERANCE),
        }
    }
}

impl Inventory {
    /// Reads the inventory from the state directory (empty when none was written yet).
    pub fn load(state: &StateDir) -> Result<Inventory, StateError> {
        match state.read_json::<Inventory>(files::INVENTORY)? {
            Some(inventory) if inventory.version != INVENTORY_VERSION => Err(StateError::Version(
                state.path().join(files::INVENTORY),
                inventory.version,
                INVENTORY_VERSION,
            )),
            Some(inventory) => Ok(inventory),
            None => Ok(Inventory {
                version: INVENTORY_VERSION,
                ..Inventory::default()
            }),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        state.write_json(files::INVENTORY, self)
    }

    /// The inventory for `policy`: devices keep their slot and operator override by name;
    /// new devices get the lowest free slot. Also returns the slots handed to new devices
    /// (their counters must start from zero).
    pub fn from_policy(
        policy: &Policy,
        previous: &Inventory,
        rules: &[(u32, RuleKeyData, RuleSet)],
    ) -> (Inventory, Vec<u32>) {
        let ruled = ruled_addresses(rules);
        let old: BTreeMap<&str, &EnrolledDevice> = previous
            .devices
            .iter()
            .map(|d| (d.spec.name.as_str(), d))
            .collect();
        let mut used: BTreeSet<u32> = policy
            .devices
            .iter()
            .filter_map(|d| old.get(d.name.as_str()).map(|o| o.slot))
            .collect();
        let mut fresh = Vec::new();
        let mut next_free = 0u32;
        let devices = policy
            .devices
            .iter()
            .map(|spec| {
                let (slot, operator_override, break_glass, mac_allows, learned_macs) =
                    match old.get(spec.name.as_str()) {
                        Some(prev) => (
                            prev.slot,
                            prev.operator_override,
                            prev.break_glass.clone(),
                            prev.mac_allows.clone(),
                            // The inventory's MACs, once given, replace what was learned.
                            if spec.macs().is_empty() {
                                prev.learned_macs.clone()
                            } else {
                                Vec::new()
                            },
                        ),
                        None => {
                            while used.contains(&next_free) {
                                next_free += 1;
                            }
                            used.insert(next_free);
                            fresh.push(next_free);
                            (next_free, None, None, Vec::new(), Vec::new())
                        }
                    };
                let mac_only = is_mac_only(spec);
                let mut spec = spec.clone();
                if mac_only {
                    // The addresses learned so far stay with the device.
                    spec.addresses = previous.learned_addresses(&spec).unwrap_or_default();
                }
                // The kind's schedule, where the device names none of its own.
                if spec.schedule.is_none() {
                    spec.schedule = policy.defaults.schedule_by_kind.get(&spec.kind).copied();
                }
                let has_rules = has_rules(&spec, &ruled);
                EnrolledDevice {
                    slot,
                    mac_only,
                    spec,
                    operator_override,
                    has_rules,
                    break_glass,
                    mac_allows,
                    learned_macs,
                }
            })
            .collect();
        (
            Inventory {
                version: INVENTORY_VERSION,
                devices,
                unenrolled: policy.defaults.unenrolled,
                break_glass_limit: BreakGlassLimit::of(&policy.defaults),
                applied: AppliedPolicy::of(policy),
                schedule_clock: ScheduleClock::of(&policy.defaults),
            },
            fresh,
        )
    }

    /// The addresses this inventory learned for `spec`'s device, when both the policy
    /// (`spec`) and this inventory know it by `mac:` alone.
    fn learned_addresses(&self, spec: &DeviceSpec) -> Option<Vec<IpAddr>> {
        if !is_mac_only(spec) {
            return None;
        }
        self.devices
            .iter()
            .find(|d| d.mac_only && d.spec.name == spec.name)
            .map(|d| d.spec.addresses.clone())
    }

    /// `policy` with every device it gives by `mac:` alone at the addresses this inventory
    /// learned for it (as [`Inventory::from_policy`] keeps them): what the policy's rules
    /// are compiled with, so that a device's own rules and the rules naming it as a peer
    /// follow it to its addresses.
    pub fn with_learned_addresses(&self, policy: &Policy) -> Policy {
        let mut policy = policy.clone();
        for spec in &mut policy.devices {
            if let Some(addresses) = self.learned_addresses(spec) {
                spec.addresses = addresses;
            }
        }
        policy
    }

    /// Marks the devices `rules` apply to (the datapath looks their rules up only then).
    pub fn mark_ruled(&mut self, rules: &[(u32, RuleKeyData, RuleSet)]) {
        let ruled = ruled_addresses(rules);
        for device in &mut self.devices {
            device.has_rules = has_rules(&device.spec, &ruled);
        }
    }

    /// Keeps the mode in force of every device `previous` enrolled: a policy load may set
    /// the starting mode of a device it enrolls, but only an operator's `monitor mode`
    /// changes the mode of a device already enrolled. Returns a message for each device
    /// whose policy now asks for another mode than the one kept.
    pub fn keep_modes_in_force(&mut self, previous: &Inventory) -> Vec<String> {
        let old: BTreeMap<&str, &EnrolledDevice> = previous
            .devices
            .iter()
            .map(|d| (d.spec.name.as_str(), d))
            .collect();
        let mut held = Vec::new();
        for device in &mut self.devices {
            let Some(prev) = old.get(device.spec.name.as_str()) else {
                continue;
            };
            let asked = (device.spec.mode, device.spec.confirm_enforce);
            let in_force = (prev.spec.mode, prev.spec.confirm_enforce);
            if asked == in_force {
                continue;
            }
            let name = |mode: Option<Mode>| mode.map_or("inherit", |m| m.name());
            let command = match asked.0 {
                Some(Mode::Enforce) if asked.1 => format!(
                    "monitor mode enforce --device {} --confirm-life-critical",
                    device.spec.name
                ),
                mode => format!("monitor mode {} --device {}", name(mode), device.spec.name),
            };
            held.push(format!(
                "device `{}`: the policy now says mode {}{}, but a reload does not change the \
                 mode in force; it stays {}{} (run `{command}` to change it)",
                device.spec.name,
                name(asked.0),
                if asked.1 { " (confirmed)" } else { "" },
                name(in_force.0),
                if in_force.1 { " (confirmed)" } else { "" },
            ));
            device.spec.mode = in_force.0;
            device.spec.confirm_enforce = in_force.1;
        }
        held
    }

    /// The device named `name`, or owning the address `name`.
    pub fn find(&self, name: &str) -> Result<&EnrolledDevice, StateError> {
        let ip: Option<IpAddr> = name.parse().ok();
        self.devices
            .iter()
            .find(|d| d.spec.name == name || ip.is_some_and(|ip| d.spec.addresses.contains(&ip)))
            .ok_or_else(|| StateError::UnknownDevice(name.to_string()))
    }

    fn find_mut(&mut self, name: &str) -> Result<&mut EnrolledDevice, StateError> {
        let ip: Option<IpAddr> = name.parse().ok();
        self.devices
            .iter_mut()
            .find(|d| d.spec.name == name || ip.is_some_and(|ip| d.spec.addresses.contains(&ip)))
            .ok_or_else(|| StateError::UnknownDevice(name.to_string()))
    }

    /// Sets (or with `None` clears) the operator's mode override of a device. Enforcing a
    /// life-critical device needs `confirmed`.
    pub fn set_override(
        &mut self,
        name: &str,
        mode: Option<Mode>,
        confirmed: bool,
    ) -> Result<&EnrolledDevice, StateError> {
        let device = self.find_mut(name)?;
        if mode == Some(Mode::Enforce)
            && device.spec.criticality == Criticality::LifeCritical
            && !confirmed
        {
            return Err(StateError::LifeCriticalNeedsConfirmation(
                device.spec.name.clone(),
            ));
        }
        device.operator_override = mode.map(|mode| ModeOverride { mode, confirmed });
        Ok(device)
    }

    /// The device owning `addr`.
    pub fn by_address(&self) -> BTreeMap<IpAddr, &EnrolledDevice> {
        self.devices
            .iter()
            .flat_map(|d| d.spec.addresses.iter().map(move |a| (*a, d)))
            .collect()
    }

    /// Installs the inventory and `rules` as the policy packets read, in one atomic
    /// switch (see [`MapSet::install_policy`]); zeroes the counters of `fresh_slots` first
    /// (and what the decision cache held for their previous owners, after the switch) and
    /// sets the unenrolled default.
    pub fn apply(
        &self,
        maps: &mut MapSet,
        fresh_slots: &[u32],
        rules: &[(u32, RuleKeyData, RuleSet)],
    ) -> Result<(), StateError> {
        for slot in fresh_slots {
            maps.reset_device_stats(*slot)
                .map_err(StateError::Datapath)?;
        }
        let devices: Vec<(IpAddr, DeviceEntry)> = self
            .by_address()
            .into_iter()
            .map(|(addr, device)| (addr, device.entry()))
            .collect();
        // The bindings before the entries that ask for them: a device bound by the new
        // policy never meets an empty binding set; bindings it drops go after the switch.
        let bindings = self.mac_bindings();
        maps.put_mac_bindings(&bindings)
            .map_err(StateError::Datapath)?;
        maps.install_policy(&devices, rules)
            .map_err(StateError::Datapath)?;
        // After the switch: what the previous owners' cache entries held stays theirs.
        maps.forget_held_charges(fresh_slots)
            .map_err(StateError::Datapath)?;
        maps.retain_mac_bindings(&bindings)
            .map_err(StateError::Datapath)?;
        maps.set_flags(
            CONFIG_UNENROLLED_DROP,
            self.unenrolled == UnenrolledSpec::Drop,
        )
        .map_err(StateError::Datapath)?;
        let hour = maps.config().map_err(StateError::Datapath)?.hour_of_week;
        maps.set_schedule_clock(hour, self.schedule_clock.tolerance)
            .map_err(StateError::Datapath)
            .map(drop)
    }

    /// Every device's address–MAC bindings ([`EnrolledDevice::mac_bindings`]).
    pub fn mac_bindings(&self) -> Vec<(IpAddr, [u8; 6], u64)> {
        self.devices
            .iter()
            .flat_map(EnrolledDevice::mac_bindings)
            .collect()
    }

    /// The device named (or addressed) `name`, for changes.
    pub fn device_mut(&mut self, name: &str) -> Result<&mut EnrolledDevice, StateError> {
        self.find_mut(name)
    }
}

/// Whether the policy gives the device by `mac:` alone (its addresses are learned).
fn is_mac_only(spec: &DeviceSpec) -> bool {
    spec.addresses.is_empty() && !spec.macs().is_empty()
}

/// The device addresses that rule sets are keyed by.
fn ruled_addresses(rules: &[(u32, RuleKeyData, RuleSet)]) -> BTreeSet<[u8; 16]> {
    rules.iter().map(|(_, key, _)| key.device).collect()
}

/// Whether any of the device's addresses has rule sets.
fn has_rules(spec: &DeviceSpec, ruled: &BTreeSet<[u8; 16]>) -> bool {
    spec.addresses
        .iter()
        .any(|a| ruled.contains(&crate::datapath::addr_key(*a)))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use monitor_common::maps::{DEVICE_SCHEDULE_ENFORCE, DEVICE_SCHEDULE_IGNORE};

    use super::*;

    /// A device's own `schedule:` wins over its kind's; the clock settings come from the
    /// defaults.
    #[test]
    fn schedules_resolve_by_device_then_kind() {
        let policy = Policy::from_sources(&[(
            PathBuf::from("ward.yaml"),
            "defaults:\n  time-zone: UTC\n  schedule-tolerance: 0\n  schedule-by-kind:\n    \
             patient-monitor: ignore\n    badge-reader: enforce\ndevices:\n  \
             - {name: m1, kind: patient-monitor, addresses: [10.0.0.1]}\n  \
             - {name: m2, kind: patient-monitor, addresses: [10.0.0.2], schedule: audit}\n  \
             - {name: b1, kind: badge-reader, addresses: [10.0.0.3]}\n  \
             - {name: w1, kind: workstation, addresses: [10.0.0.4]}\n"
                .into(),
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let (inventory, _) = Inventory::from_policy(&policy, &Inventory::default(), &[]);
        let flags: BTreeMap<&str, u8> = inventory
            .devices
            .iter()
            .map(|d| {
                let schedule = d.entry().flags & (DEVICE_SCHEDULE_ENFORCE | DEVICE_SCHEDULE_IGNORE);
                (d.spec.name.as_str(), schedule)
            })
            .collect();
        assert_eq!(
            flags,
            BTreeMap::from([
                ("b1", DEVICE_SCHEDULE_ENFORCE),
                ("m1", DEVICE_SCHEDULE_IGNORE),
                ("m2", 0),
                ("w1", 0)
            ])
        );
        assert_eq!(
            inventory.schedule_clock,
            ScheduleClock {
                time_zone: Some("UTC".into()),
                tolerance: 0
            }
        );
        assert_eq!(
            Inventory::default().schedule_clock.tolerance,
            monitor_common::schedule::DEFAULT_TOLERANCE
        );
    }

    /// A MAC learned for a device without `mac:` binds its addresses as the inventory's
    /// would, stays across reloads, and gives way once the inventory names a MAC.
    #[test]
    fn learned_macs_bind_until_the_inventory_gives_one() {
        let policy = |ws: &str| {
            Policy::from_sources(&[(
                PathBuf::from("ward.yaml"),
                format!(
                    "devices:\n  - {{name: ws, kind: workstation, addresses: [10.0.0.4]{ws}}}\n"
                ),
            )])
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let (mut inventory, _) = Inventory::from_policy(&policy(""), &Inventory::default(), &[]);
        assert!(inventory.devices[0].bound_macs().is_empty());
        assert_eq!(inventory.devices[0].entry().flags & DEVICE_MAC_BOUND, 0);
        inventory.devices[0].learned_macs = vec!["00:0c:29:00:00:01".into()];
        let addr: IpAddr = "10.0.0.4".parse().unwrap_or_else(|e| panic!("{e}"));
        let learned = [0, 0x0c, 0x29, 0, 0, 1];
        assert_eq!(
            inventory.devices[0].mac_bindings(),
            vec![(addr, learned, 0)]
        );
        assert_ne!(inventory.devices[0].entry().flags & DEVICE_MAC_BOUND, 0);
        // A reload keeps it.
        let (reloaded, _) = Inventory::from_policy(&policy(""), &inventory, &[]);
        assert_eq!(reloaded.devices[0].mac_bindings(), vec![(addr, learned, 0)]);
        // The inventory's MAC replaces it.
        let given = [0, 0x0c, 0x29, 0, 0, 9];
        let (named, _) =
            Inventory::from_policy(&policy(", mac: \"00:0c:29:00:00:09\""), &reloaded, &[]);
        assert!(named.devices[0].learned_macs.is_empty());
        assert_eq!(named.devices[0].mac_bindings(), vec![(addr, given, 0)]);
    }

    /// A device given by `mac:` alone has its rules, and the mirror of a rule naming it as
    /// a peer, compiled at the addresses the inventory learned for it; with none learned
    /// they apply to no address. A device given by its addresses is compiled as written.
    #[test]
    fn rules_are_compiled_at_the_addresses_a_mac_only_device_learned() {
        let policy = Policy::from_sources(&[(
            PathBuf::from("ward.yaml"),
            "devices:\n  - {name: pump, kind: infusion-pump, mac: \"00:0c:29:11:22:33\"}\n  \
             - {name: pacs, kind: pacs, addresses: [10.20.0.30]}\nrules:\n  \
             - {devices: {device: pump}, peer: {device: pacs}, protocol: tcp, ports: 104, \
             action: allow}\n"
                .into(),
        )])
        .unwrap_or_else(|e| panic!("{e}"));
        let ip = |a: &str| -> IpAddr { a.parse().unwrap_or_else(|e| panic!("{e}")) };
        let keys = |rules: &[(u32, RuleKeyData, RuleSet)]| -> Vec<(IpAddr, IpAddr)> {
            let mut keys: Vec<_> = rules
                .iter()
                .map(|(_, k, _)| {
                    (
                        crate::datapath::addr_of(&k.device),
                        crate::datapath::addr_of(&k.peer),
                    )
                })
                .collect();
            keys.sort();
            keys
        };
        let none = Inventory::default()
            .with_learned_addresses(&policy)
            .rule_sets()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(keys(&none).is_empty(), "{:?}", keys(&none));
        let (mut inventory, _) = Inventory::from_policy(&policy, &Inventory::default(), &none);
        let pump = |inventory: &Inventory| -> EnrolledDevice {
            inventory
                .find("pump")
                .unwrap_or_else(|e| panic!("{e}"))
                .clone()
        };
        assert!(pump(&inventory).mac_only);
        inventory
            .device_mut("pump")
            .unwrap_or_else(|e| panic!("{e}"))
            .spec
            .addresses = vec![ip("10.10.1.101")];
        let rules = inventory
            .with_learned_addresses(&policy)
            .rule_sets()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            keys(&rules),
            vec![
                (ip("10.10.1.101"), ip("10.20.0.30")),
                (ip("10.20.0.30"), ip("10.10.1.101"))
            ]
        );
        inventory.mark_ruled(&rules);
        assert!(inventory.devices.iter().all(|d| d.has_rules));
        // A reload keeps the learned address, and the device stays known by its MAC.
        let (reloaded, _) = Inventory::from_policy(&policy, &inventory, &rules);
        assert!(pump(&reloaded).mac_only && pump(&reloaded).has_rules);
        assert_eq!(pump(&reloaded).spec.addresses, vec![ip("10.10.1.101")]);
    }
}

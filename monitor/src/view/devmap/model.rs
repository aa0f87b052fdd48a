//! The device map's model and [`build`], which makes it from [`Inputs`]: each device
//! with its protection, baseline, peers by role, violations, activity grid and the flags
//! that put it under "Needs attention"; devices grouped by ward, most critical first.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
};

use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, Direction, FlowKey, FlowStats},
};
use serde::Serialize;

use super::inputs::Inputs;
use crate::{
    datapath::addr_of,
    policy::{DeviceSpec, parse_mac},
    state::activity::{self, DeviceActivity, GridDay, format_local},
    state::{daemon::AttachedInterface, inventory::EnrolledDevice},
    support::{clock::unix_of_monotonic, proto},
    view::oui::{OuiDb, Vendor},
};

/// The group of devices whose policy entry says nothing about where they are.
pub const NO_LOCATION: &str = "(no location)";

/// The ward a device is grouped (and labelled in metrics) by: its location's ward, else
/// its whole location, else [`NO_LOCATION`].
pub fn ward_of(spec: &DeviceSpec) -> String {
    match &spec.location.ward {
        Some(ward) => ward.clone(),
        None => spec.location.label(),
    }
}

/// Violating flows listed per device (the rest are counted).
const TOP_VIOLATIONS: usize = 10;

#[derive(Clone, Debug, Serialize)]
pub struct DeviceMap {
    /// Unix seconds, and local time for people.
    pub generated_at: u64,
    pub generated_at_local: String,
    /// The router-wide mode.
    pub mode: String,
    pub interfaces: Vec<AttachedInterface>,
    pub summary: Summary,
    /// Devices that need someone to look: no location, learning too long, violations.
    pub attention: Vec<Attention>,
    pub wards: Vec<WardGroup>,
    /// Source MACs on ward legs that the inventory does not name (`monitor discovered`).
    pub discovered: Vec<crate::view::discovered::Discovered>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub devices: usize,
    pub wards: usize,
    pub enforced: usize,
    pub audited: usize,
    pub learning: usize,
    pub break_glass: usize,
    pub with_violations: usize,
    pub needing_attention: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Attention {
    pub device: String,
    pub ward: String,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WardGroup {
    pub name: String,
    pub devices: Vec<MapDevice>,
}

/// The protection in force for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protection {
    /// Traffic outside the baseline is dropped.
    Enforced,
    /// Traffic outside the baseline is counted (would-drop) and passed.
    Audited,
    /// Traffic is learned into the baseline; nothing is checked.
    Learning,
    /// Enforcement lifted for an emergency, until it expires.
    BreakGlass,
}

impl Protection {
    pub fn label(self) -> &'static str {
        match self {
            Protection::Enforced => "enforced",
            Protection::Audited => "audited",
            Protection::Learning => "learning",
            Protection::BreakGlass => "break-glass",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct MapDevice {
    pub name: String,
    pub kind: String,
    pub addresses: Vec<IpAddr>,
    pub mac: Option<String>,
    /// The MAC's registered organization (IEEE), if any.
    pub vendor: Option<String>,
    /// Why there is no vendor: "no MAC in the inventory", "locally administered (random)
    /// MAC", "not in the IEEE registry", "IEEE registry not installed".
    pub vendor_note: Option<String>,
    pub ward: String,
    pub location: String,
    pub has_location: bool,
    pub criticality: String,
    pub owner: Option<String>,
    pub notes: Option<String>,
    /// The effective mode as operators read it.
    pub mode: String,
    pub protection: Protection,
    /// What the protection means for this device, in words.
    pub protection_detail: String,
    pub traffic: Traffic,
    pub peers: Vec<PeerGroup>,
    pub violations: Violations,
    pub baseline: BaselineInfo,
    /// Hour of day by day of week over the last 7 days (packets, local time).
    pub activity: Vec<GridDay>,
    /// Hours (of the 168) in which the device sent or received anything.
    pub active_hours: usize,
    /// Hours of the week (of the 168) its learning covered: under 168, its baseline and
    /// schedules have not seen every shift.
    pub learning_coverage_hours: u32,
    /// "no-location", "learning-too-long", "violations", "never-seen".
    pub flags: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Traffic {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Unix seconds.
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
}

/// Peers in one role toward the device.
#[derive(Clone, Debug, Serialize)]
pub struct PeerGroup {
    /// "server" (the device uses its services), "client" (it uses the device's), or
    /// "peer" (both sides use one port, or the protocol has none).
    pub role: String,
    pub peers: Vec<Peer>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Peer {
    /// The enrolled device's name, else the address.
    pub name: String,
    pub address: IpAddr,
    pub enrolled: bool,
    pub kind: Option<String>,
    /// "tcp/104 (dicom)".
    pub services: Vec<String>,
    /// Packets both ways seen on these flows (flows table; 0 when only in the baseline).
    pub packets: u64,
    pub bytes: u64,
    pub last_seen: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Violations {
    pub dropped_packets: u64,
    pub would_drop_packets: u64,
    /// Flows seen that are not in the baseline.
    pub flows: usize,
    /// The busiest of them.
    pub top: Vec<ViolatingFlow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ViolatingFlow {
    pub peer: String,
    pub address: IpAddr,
    pub role: String,
    pub service: String,
    pub packets: u64,
    pub dropped_packets: u64,
    pub last_seen: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct BaselineInfo {
    pub entries: usize,
    /// Entries the datapath learned (the rest came from policy or files).
    pub learned: usize,
    /// When the oldest and newest learned entries were learned (Unix seconds).
    pub oldest_learned: Option<u64>,
    pub newest_learned: Option<u64>,
    /// Age of the baseline: now minus the oldest learned entry.
    pub age_seconds: Option<u64>,
    /// Learning: no new entry since (Unix seconds).
    pub stable_since: Option<u64>,
    /// Learning since (Unix seconds), as the activity history saw it.
    pub learning_since: Option<u64>,
    /// New entries per hour over the last 24 hours, oldest first.
    pub new_entries_per_hour: Vec<u64>,
}

/// Well-known service names, for people.
fn service_name(protocol: u8, port: u16) -> Option<&'static str> {
    Some(match (protocol, port) {
        (6, 22) => "ssh",
        (6, 23) => "telnet",
        (_, 53) => "dns",
        (6, 80) => "http",
        (17, 67 | 68) => "dhcp",
        (6, 104) => "dicom",
        (17, 123) => "ntp",
        (6, 135) => "msrpc",
        (17, 161) => "snmp",
        (6, 443) => "https",
        (6, 445) => "smb",
        (17, 514) => "syslog",
        (6, 2575) => "hl7-mllp",
        (6, 3389) => "rdp",
        (6, 8080) => "http-alt",
        (6, 11112) => "dicom",
        (1 | 58, _) => "ping",
        _ => return None,
    })
}

fn service_label(protocol: u8, port: u16) -> String {
    let proto = proto::name(protocol);
    let base = if matches!(protocol, 6 | 17 | 132) {
        format!("{proto}/{port}")
    } else {
        proto
    };
    match service_name(protocol, port) {
        Some(name) => format!("{base} ({name})"),
        None => base,
    }
}

fn role_of(direction: u8) -> &'static str {
    match Direction::try_from(direction) {
        Ok(Direction::Outbound) => "server",
        Ok(Direction::Inbound) => "client",
        _ => "peer",
    }
}

/// Break-glass in force for `device` (enforcement lifted until it expires), in words.
fn break_glass(device: &EnrolledDevice, now_unix: u64) -> Option<String> {
    let glass = device
        .break_glass
        .as_ref()
        .filter(|g| g.until_unix > now_unix)?;
    Some(format!(
        "break-glass until {} by {}: {}",
        format_local(glass.until_unix),
        glass.who,
        glass.reason
    ))
}

/// The vendor of `mac` (the inventory's, else the one learned).
fn vendor_of(mac: Option<&str>, oui: Option<&OuiDb>) -> (Option<String>, Option<String>) {
    let Some(mac) = mac else {
        return (None, Some("no MAC in the inventory".into()));
    };
    let Some(bytes) = parse_mac(mac) else {
        return (None, Some("MAC not readable".into()));
    };
    let Some(db) = oui else {
        return (None, Some("IEEE registry not installed".into()));
    };
    match db.lookup(bytes) {
        Vendor::Registered(name) => (Some(name), None),
        Vendor::LocallyAdministered => (None, Some("locally administered (random) MAC".into())),
        Vendor::Group => (None, Some("group (multicast) MAC".into())),
        Vendor::Unknown => (None, Some("not in the IEEE registry".into())),
    }
}

fn has_location(spec: &DeviceSpec) -> bool {
    spec.location.label() != NO_LOCATION
}

/// Builds the map.
/// The discovered devices, their legs named by the daemon's interfaces.
fn discovered_devices(inputs: &Inputs<'_>) -> Vec<crate::view::discovered::Discovered> {
    let legs: BTreeMap<u32, String> = inputs
        .daemon
        .iter()
        .flat_map(|d| d.interfaces.iter())
        .filter_map(|i| Some((crate::datapath::if_index(&i.name)?, i.name.clone())))
        .collect();
    crate::view::discovered::discovered(
        &inputs.stations,
        &inputs.flows,
        &inputs.inventory,
        &legs,
        inputs.oui,
    )
}

pub fn build(inputs: &Inputs<'_>) -> DeviceMap {
    let index = Index::new(inputs);
    let mut wards: BTreeMap<String, Vec<MapDevice>> = BTreeMap::new();
    for (device, stats) in inputs.inventory.devices.iter().zip(&inputs.stats) {
        let device = map_device(inputs, &index, device, stats);
        wards.entry(device.ward.clone()).or_default().push(device);
    }
    let groups = ward_groups(wards);
    let attention = attention(&groups, inputs.max_learning_days);
    let summary = summary(&groups, &attention);
    DeviceMap {
        generated_at: inputs.now_unix,
        generated_at_local: format_local(inputs.now_unix),
        mode: inputs.global_mode.name().into(),
        interfaces: inputs
            .daemon
            .as_ref()
            .map(|d| d.interfaces.clone())
            .unwrap_or_default(),
        summary,
        attention,
        wards: groups,
        discovered: discovered_devices(inputs),
    }
}

/// The inputs' tables by device address, made once for every device.
struct Index<'i> {
    by_address: BTreeMap<IpAddr, &'i EnrolledDevice>,
    baseline_keys: BTreeSet<FlowKey>,
    baseline_by_addr: HashMap<IpAddr, Vec<&'i (FlowKey, BaselineEntry)>>,
    flows_by_addr: HashMap<IpAddr, Vec<&'i (FlowKey, FlowStats)>>,
    now_unix: u64,
    now_mono_ns: u64,
}

impl<'i> Index<'i> {
    fn new(inputs: &'i Inputs<'_>) -> Index<'i> {
        let mut baseline_by_addr: HashMap<IpAddr, Vec<_>> = HashMap::new();
        for entry in &inputs.baseline {
            baseline_by_addr
                .entry(addr_of(&entry.0.device))
                .or_default()
                .push(entry);
        }
        let mut flows_by_addr: HashMap<IpAddr, Vec<_>> = HashMap::new();
        for flow in &inputs.flows {
            flows_by_addr
                .entry(addr_of(&flow.0.device))
                .or_default()
                .push(flow);
        }
        Index {
            by_address: inputs.inventory.by_address(),
            baseline_keys: inputs.baseline.iter().map(|(k, _)| *k).collect(),
            baseline_by_addr,
            flows_by_addr,
            now_unix: inputs.now_unix,
            now_mono_ns: inputs.now_mono_ns,
        }
    }

    /// A datapath time (CLOCK_MONOTONIC) as Unix seconds; `None` for never.
    fn to_unix(&self, mono: u64) -> Option<u64> {
        unix_of_monotonic(mono, self.now_mono_ns, self.now_unix)
    }

    /// The baseline entries of the device's addresses.
    fn baseline_of(&self, spec: &DeviceSpec) -> Vec<&'i (FlowKey, BaselineEntry)> {
        spec.addresses
            .iter()
            .flat_map(|a| self.baseline_by_addr.get(a).into_iter().flatten().copied())
            .collect()
    }

    /// The flows seen of the device's addresses.
    fn flows_of(&self, spec: &DeviceSpec) -> Vec<&'i (FlowKey, FlowStats)> {
        spec.addresses
            .iter()
            .flat_map(|a| self.flows_by_addr.get(a).into_iter().flatten().copied())
            .collect()
    }

    /// The enrolled device at `addr`, if any.
    fn device_at(&self, addr: &IpAddr) -> Option<&'i EnrolledDevice> {
        self.by_address.get(addr).copied()
    }
}

/// One device as the map shows it.
fn map_device(
    inputs: &Inputs<'_>,
    index: &Index<'_>,
    device: &EnrolledDevice,
    stats: &DeviceStats,
) -> MapDevice {
    let now = inputs.now_unix;
    let spec = &device.spec;
    let history = inputs.activity.devices.get(&spec.name);
    let mode = device.effective_mode(inputs.global_mode).to_string();
    let glass = break_glass(device, now);
    let protection = if glass.is_some() {
        Protection::BreakGlass
    } else if mode == Mode::Enforce.name() {
        Protection::Enforced
    } else if mode == Mode::Learn.name() {
        Protection::Learning
    } else {
        Protection::Audited
    };
    let own_baseline = index.baseline_of(spec);
    let baseline = baseline_info(
        inputs,
        index,
        &own_baseline,
        history,
        protection,
        &spec.name,
    );
    let (peers, violations) = peers_and_violations(index, spec, &own_baseline, stats);
    let grid = activity::grid(history, now);
    let active_hours = grid
        .iter()
        .flat_map(|d| &d.cells)
        .filter(|c| c.packets > 0)
        .count();
    let traffic = Traffic {
        packets_sent: stats.packets_sent,
        packets_received: stats.packets_received,
        bytes_sent: stats.bytes_sent,
        bytes_received: stats.bytes_received,
        first_seen: index.to_unix(stats.first_seen_ns),
        last_seen: index.to_unix(stats.last_seen_ns),
    };
    let learning_too_long = protection == Protection::Learning
        && baseline
            .learning_since
            .is_some_and(|t| now.saturating_sub(t) > inputs.max_learning_days * 86_400);
    let flags = flags(spec, learning_too_long, &violations, &traffic);
    let protection_detail = match glass {
        Some(glass) => glass,
        None => protection_detail(protection, &mode, device.has_rules, &baseline),
    };
    let learned_mac = device.learned_macs.first().map(String::as_str);
    let (vendor, vendor_note) = vendor_of(spec.mac.as_deref().or(learned_mac), inputs.oui);
    MapDevice {
        name: spec.name.clone(),
        kind: spec.kind.clone(),
        addresses: spec.addresses.clone(),
        mac: spec.mac.clone().or_else(|| {
            learned_mac.map(|_| format!("{} (learned)", device.learned_macs.join(", ")))
        }),
        vendor,
        vendor_note,
        ward: ward_of(spec),
        location: spec.location.label(),
        has_location: has_location(spec),
        criticality: spec.criticality.name().into(),
        owner: spec.owner.clone(),
        notes: spec.notes.clone(),
        mode,
        protection,
        protection_detail,
        traffic,
        peers,
        violations,
        baseline,
        activity: grid,
        active_hours,
        learning_coverage_hours: inputs.coverage.hours(&spec.name),
        flags,
    }
}

/// The device's baseline: its size, when it was learned, and how it grows.
fn baseline_info(
    inputs: &Inputs<'_>,
    index: &Index<'_>,
    own_baseline: &[&(FlowKey, BaselineEntry)],
    history: Option<&DeviceActivity>,
    protection: Protection,
    name: &str,
) -> BaselineInfo {
    let now = inputs.now_unix;
    let learned_times: Vec<u64> = own_baseline
        .iter()
        .filter(|(_, e)| e.learned_ns != 0)
        .filter_map(|(_, e)| index.to_unix(e.learned_ns))
        .collect();
    let oldest = learned_times.iter().min().copied();
    let newest = learned_times.iter().max().copied();
    let learning_since = history.and_then(|h| h.learning_since);
    BaselineInfo {
        entries: own_baseline.len(),
        learned: learned_times.len(),
        oldest_learned: oldest,
        newest_learned: newest,
        age_seconds: oldest.map(|t| now.saturating_sub(t)),
        stable_since: (protection == Protection::Learning)
            .then(|| {
                newest
                    .or(history.and_then(|h| h.baseline_grew_at))
                    .or(learning_since)
            })
            .flatten(),
        learning_since,
        new_entries_per_hour: inputs.activity.baseline_growth(name, now, 24),
    }
}

/// What a device's peers in one role and on one address add up to.
#[derive(Default)]
struct PeerAcc {
    services: BTreeSet<(u8, u16)>,
    packets: u64,
    bytes: u64,
    last_seen: u64,
}

/// Peers (allowed: in the baseline) grouped by role, and violations (flows seen that are
/// not in the baseline), the busiest first.
fn peers_and_violations(
    index: &Index<'_>,
    spec: &DeviceSpec,
    own_baseline: &[&(FlowKey, BaselineEntry)],
    stats: &DeviceStats,
) -> (Vec<PeerGroup>, Violations) {
    let mut peers: BTreeMap<(&'static str, IpAddr), PeerAcc> = BTreeMap::new();
    for (key, _) in own_baseline {
        let acc = peers
            .entry((role_of(key.direction), addr_of(&key.peer)))
            .or_default();
        acc.services.insert((key.protocol, key.service_port));
    }
    let mut violating: Vec<ViolatingFlow> = Vec::new();
    for (key, flow) in index.flows_of(spec) {
        let peer = addr_of(&key.peer);
        let role = role_of(key.direction);
        let packets = flow.packets_sent + flow.packets_received;
        if index.baseline_keys.contains(key) {
            let acc = peers.entry((role, peer)).or_default();
            acc.packets += packets;
            acc.bytes += flow.bytes_sent + flow.bytes_received;
            acc.last_seen = acc.last_seen.max(flow.last_seen_ns);
        } else if packets > 0 {
            violating.push(ViolatingFlow {
                peer: index
                    .device_at(&peer)
                    .map_or_else(|| peer.to_string(), |d| d.spec.name.clone()),
                address: peer,
                role: role.into(),
                service: service_label(key.protocol, key.service_port),
                packets,
                dropped_packets: flow.dropped_packets,
                last_seen: index.to_unix(flow.last_seen_ns),
            });
        }
    }
    let groups = peer_groups(index, &peers);
    let flows = violating.len();
    violating.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.peer.cmp(&b.peer)));
    violating.truncate(TOP_VIOLATIONS);
    let violations = Violations {
        dropped_packets: stats.dropped_packets,
        would_drop_packets: stats.would_drop_packets,
        flows,
        top: violating,
    };
    (groups, violations)
}

/// The peers of each role (servers, clients, symmetric peers), roles without any left out.
fn peer_groups(
    index: &Index<'_>,
    peers: &BTreeMap<(&'static str, IpAddr), PeerAcc>,
) -> Vec<PeerGroup> {
    let mut groups = Vec::new();
    for role in ["server", "client", "peer"] {
        let members: Vec<Peer> = peers
            .iter()
            .filter(|((r, _), _)| *r == role)
            .map(|((_, addr), acc)| {
                let enrolled = index.device_at(addr);
                Peer {
                    name: enrolled.map_or_else(|| addr.to_string(), |d| d.spec.name.clone()),
                    address: *addr,
                    enrolled: enrolled.is_some(),
                    kind: enrolled.map(|d| d.spec.kind.clone()),
                    services: acc
                        .services
                        .iter()
                        .map(|(p, s)| service_label(*p, *s))
                        .collect(),
                    packets: acc.packets,
                    bytes: acc.bytes,
                    last_seen: index.to_unix(acc.last_seen),
                }
            })
            .collect();
        if !members.is_empty() {
            groups.push(PeerGroup {
                role: role.into(),
                peers: members,
            });
        }
    }
    groups
}

/// "no-location", "learning-too-long", "violations", "never-seen".
fn flags(
    spec: &DeviceSpec,
    learning_too_long: bool,
    violations: &Violations,
    traffic: &Traffic,
) -> Vec<String> {
    let mut flags = Vec::new();
    if !has_location(spec) {
        flags.push("no-location".to_string());
    }
    if learning_too_long {
        flags.push("learning-too-long".into());
    }
    if violations.dropped_packets + violations.would_drop_packets > 0 || violations.flows > 0 {
        flags.push("violations".into());
    }
    if traffic.last_seen.is_none() {
        flags.push("never-seen".into());
    }
    flags
}

/// What the protection (other than break-glass) means for the device, in words.
fn protection_detail(
    protection: Protection,
    mode: &str,
    has_rules: bool,
    baseline: &BaselineInfo,
) -> String {
    match protection {
        Protection::BreakGlass => String::new(),
        Protection::Enforced => format!(
            "traffic outside its {}-entry baseline{} is dropped",
            baseline.entries,
            if has_rules {
                " and its policy rules"
            } else {
                ""
            }
        ),
        Protection::Audited if mode.contains("life-critical") => {
            "life-critical and not confirmed for enforcement: violations are counted, never dropped"
                .into()
        }
        Protection::Audited => "violations are counted (would-drop), nothing is dropped".into(),
        Protection::Learning => match (baseline.learning_since, baseline.stable_since) {
            (Some(since), Some(stable)) => format!(
                "learning since {}; baseline stable since {}",
                format_local(since),
                format_local(stable)
            ),
            (Some(since), None) => {
                format!(
                    "learning since {}; nothing learned yet",
                    format_local(since)
                )
            }
            _ => "learning; nothing is checked".into(),
        },
    }
}

/// Wards by name, the no-location group last; in each, the most critical devices first,
/// then by name.
fn ward_groups(wards: BTreeMap<String, Vec<MapDevice>>) -> Vec<WardGroup> {
    let criticality_rank = |c: &str| match c {
        "life-critical" => 0,
        "high" => 1,
        "normal" => 2,
        _ => 3,
    };
    let mut groups: Vec<WardGroup> = wards
        .into_iter()
        .map(|(name, mut devices)| {
            devices.sort_by(|a, b| {
                (criticality_rank(&a.criticality), &a.name)
                    .cmp(&(criticality_rank(&b.criticality), &b.name))
            });
            WardGroup { name, devices }
        })
        .collect();
    groups.sort_by_key(|g| (g.name == NO_LOCATION, g.name.clone()));
    groups
}

/// The devices that need someone to look, with why.
fn attention(groups: &[WardGroup], max_learning_days: u64) -> Vec<Attention> {
    groups
        .iter()
        .flat_map(|g| &g.devices)
        .filter_map(|d| {
            let reasons: Vec<String> = d
                .flags
                .iter()
                .filter_map(|f| match f.as_str() {
                    "no-location" => Some("no location in the inventory".to_string()),
                    "learning-too-long" => {
                        Some(format!("learning for more than {max_learning_days} days"))
                    }
                    "violations" => Some(format!(
                        "{} dropped, {} would-drop packets; {} flows outside the baseline",
                        d.violations.dropped_packets,
                        d.violations.would_drop_packets,
                        d.violations.flows
                    )),
                    _ => None,
                })
                .collect();
            (!reasons.is_empty()).then(|| Attention {
                device: d.name.clone(),
                ward: d.ward.clone(),
                reasons,
            })
        })
        .collect()
}

fn summary(groups: &[WardGroup], attention: &[Attention]) -> Summary {
    let all: Vec<&MapDevice> = groups.iter().flat_map(|g| &g.devices).collect();
    let count = |p: Protection| all.iter().filter(|d| d.protection == p).count();
    Summary {
        devices: all.len(),
        wards: groups.len(),
        enforced: count(Protection::Enforced),
        audited: count(Protection::Audited),
        learning: count(Protection::Learning),
        break_glass: count(Protection::BreakGlass),
        with_violations: all
            .iter()
            .filter(|d| d.flags.iter().any(|f| f == "violations"))
            .count(),
        needing_attention: attention.len(),
    }
}

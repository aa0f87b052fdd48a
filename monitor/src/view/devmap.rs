//! The device map: every enrolled device with who made it, where it is, how critical it
//! is, what protects it, whom it talks to (grouped by role), when it is used, and what it
//! did wrong — grouped by ward, with the devices that need a person's attention first.
//!
//! [`build`] makes the model from what [`Inputs::read`] takes from the maps and the state
//! directory; [`render`] turns it into a self-contained HTML page (no script, font or
//! picture fetched from anywhere), JSON for scripts, Graphviz DOT, or a terminal table.
//! `monitor map` and the metrics server's `/map` show the same thing.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    net::IpAddr,
};

use monitor_common::{
    Mode,
    maps::{BaselineEntry, Direction, FlowKey, FlowStats},
};
use serde::Serialize;

use crate::{
    datapath::{DatapathError, MapSet, addr_of},
    policy::{DeviceSpec, parse_mac},
    state::activity::{self, Activity, GridDay, format_local},
    state::inventory::{EnrolledDevice, Inventory},
    state::{StateDir, StateError},
    state::{
        daemon::{AttachedInterface, DaemonInfo},
        files,
    },
    support::{
        clock::{monotonic_now_ns, unix_now, unix_of_monotonic},
        proto,
    },
    view::oui::{OuiDb, Vendor},
    view::report::table,
};

/// A device learning for longer than this stands out: a baseline is meant to be learned
/// and then enforced, and an endless learn phase protects nothing.
pub const DEFAULT_MAX_LEARNING_DAYS: u64 = 7;
/// Violating flows listed per device (the rest are counted).
const TOP_VIOLATIONS: usize = 10;
/// The group of devices whose policy entry says nothing about where they are.
pub const NO_LOCATION: &str = "(no location)";

#[derive(Debug, thiserror::Error)]
pub enum DevMapError {
    #[error("reading the datapath maps")]
    Datapath(#[from] DatapathError),
    #[error("reading the state directory")]
    State(#[from] StateError),
    #[error("reading the activity history")]
    Activity(#[source] Box<activity::ActivityError>),
    #[error("encoding JSON")]
    Json(#[from] serde_json::Error),
}

impl From<activity::ActivityError> for DevMapError {
    fn from(e: activity::ActivityError) -> Self {
        DevMapError::Activity(Box::new(e))
    }
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for a terminal.
    Table,
    /// One self-contained page.
    Html,
    Json,
    /// Graphviz: `dot -Tsvg`.
    Dot,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Table | Format::Dot => "text/plain; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// The ward a device is grouped (and labelled in metrics) by: its location's ward, else
/// its whole location, else [`NO_LOCATION`].
pub fn ward_of(spec: &DeviceSpec) -> String {
    match &spec.location.ward {
        Some(ward) => ward.clone(),
        None => spec.location.label(),
    }
}

fn has_location(spec: &DeviceSpec) -> bool {
    spec.location.label() != NO_LOCATION
}

/// Everything the map is made from, read once.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub inventory: Inventory,
    pub activity: Activity,
    pub daemon: Option<DaemonInfo>,
    pub global_mode: Mode,
    /// Counters of each device of `inventory`, in its order.
    pub stats: Vec<monitor_common::maps::DeviceStats>,
    pub baseline: Vec<(FlowKey, BaselineEntry)>,
    pub flows: Vec<(FlowKey, FlowStats)>,
    pub oui: Option<&'a OuiDb>,
    pub now_unix: u64,
    pub now_mono_ns: u64,
    pub max_learning_days: u64,
}

impl<'a> Inputs<'a> {
    pub fn read(
        maps: &MapSet,
        state: &StateDir,
        oui: Option<&'a OuiDb>,
    ) -> Result<Inputs<'a>, DevMapError> {
        let inventory = Inventory::load(state)?;
        let stats = inventory
            .devices
            .iter()
            .map(|d| maps.device_stats(d.slot))
            .collect::<Result<_, _>>()?;
        Ok(Inputs {
            activity: Activity::load(state)?,
            daemon: state.read_json(files::DAEMON)?,
            global_mode: Mode::try_from(maps.config()?.mode).unwrap_or(Mode::Learn),
            stats,
            baseline: maps.baseline()?,
            flows: maps.enrolled_flows()?,
            inventory,
            oui,
            now_unix: unix_now(),
            now_mono_ns: monotonic_now_ns(),
            max_learning_days: DEFAULT_MAX_LEARNING_DAYS,
        })
    }
}

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

fn vendor_of(spec: &DeviceSpec, oui: Option<&OuiDb>) -> (Option<String>, Option<String>) {
    let Some(mac) = spec.mac.as_deref() else {
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

/// Builds the map.
pub fn build(inputs: &Inputs<'_>) -> DeviceMap {
    let now = inputs.now_unix;
    let to_unix = |mono: u64| unix_of_monotonic(mono, inputs.now_mono_ns, now);
    let by_address = inputs.inventory.by_address();
    let baseline_keys: BTreeSet<FlowKey> = inputs.baseline.iter().map(|(k, _)| *k).collect();
    let mut baseline_by_addr: HashMap<IpAddr, Vec<&(FlowKey, BaselineEntry)>> = HashMap::new();
    for entry in &inputs.baseline {
        baseline_by_addr
            .entry(addr_of(&entry.0.device))
            .or_default()
            .push(entry);
    }
    let mut flows_by_addr: HashMap<IpAddr, Vec<&(FlowKey, FlowStats)>> = HashMap::new();
    for flow in &inputs.flows {
        flows_by_addr
            .entry(addr_of(&flow.0.device))
            .or_default()
            .push(flow);
    }
    let mut wards: BTreeMap<String, Vec<MapDevice>> = BTreeMap::new();
    for (device, stats) in inputs.inventory.devices.iter().zip(&inputs.stats) {
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

        // Baseline.
        let own_baseline: Vec<&(FlowKey, BaselineEntry)> = spec
            .addresses
            .iter()
            .flat_map(|a| baseline_by_addr.get(a).into_iter().flatten().copied())
            .collect();
        let learned_times: Vec<u64> = own_baseline
            .iter()
            .filter(|(_, e)| e.learned_ns != 0)
            .filter_map(|(_, e)| to_unix(e.learned_ns))
            .collect();
        let oldest = learned_times.iter().min().copied();
        let newest = learned_times.iter().max().copied();
        let learning_since = history.and_then(|h| h.learning_since);
        let baseline = BaselineInfo {
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
            new_entries_per_hour: inputs.activity.baseline_growth(&spec.name, now, 24),
        };

        // Peers (allowed: in the baseline) and violations (seen, not in the baseline).
        #[derive(Default)]
        struct PeerAcc {
            services: BTreeSet<(u8, u16)>,
            packets: u64,
            bytes: u64,
            last_seen: u64,
        }
        let mut peers: BTreeMap<(&'static str, IpAddr), PeerAcc> = BTreeMap::new();
        for (key, _) in &own_baseline {
            let acc = peers
                .entry((role_of(key.direction), addr_of(&key.peer)))
                .or_default();
            acc.services.insert((key.protocol, key.service_port));
        }
        let name_of = |addr: IpAddr| by_address.get(&addr).map(|d| d.spec.name.clone());
        let mut violating: Vec<ViolatingFlow> = Vec::new();
        for (key, flow) in spec
            .addresses
            .iter()
            .flat_map(|a| flows_by_addr.get(a).into_iter().flatten().copied())
        {
            let peer = addr_of(&key.peer);
            let role = role_of(key.direction);
            let packets = flow.packets_sent + flow.packets_received;
            if baseline_keys.contains(key) {
                let acc = peers.entry((role, peer)).or_default();
                acc.packets += packets;
                acc.bytes += flow.bytes_sent + flow.bytes_received;
                acc.last_seen = acc.last_seen.max(flow.last_seen_ns);
            } else if packets > 0 {
                violating.push(ViolatingFlow {
                    peer: name_of(peer).unwrap_or_else(|| peer.to_string()),
                    address: peer,
                    role: role.into(),
                    service: service_label(key.protocol, key.service_port),
                    packets,
                    dropped_packets: flow.dropped_packets,
                    last_seen: to_unix(flow.last_seen_ns),
                });
            }
        }
        let mut groups: Vec<PeerGroup> = Vec::new();
        for role in ["server", "client", "peer"] {
            let members: Vec<Peer> = peers
                .iter()
                .filter(|((r, _), _)| *r == role)
                .map(|((_, addr), acc)| {
                    let enrolled = by_address.get(addr);
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
                        last_seen: to_unix(acc.last_seen),
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
        let violation_flows = violating.len();
        violating.sort_by(|a, b| b.packets.cmp(&a.packets).then(a.peer.cmp(&b.peer)));
        violating.truncate(TOP_VIOLATIONS);
        let violations = Violations {
            dropped_packets: stats.dropped_packets,
            would_drop_packets: stats.would_drop_packets,
            flows: violation_flows,
            top: violating,
        };

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
            first_seen: to_unix(stats.first_seen_ns),
            last_seen: to_unix(stats.last_seen_ns),
        };
        let mut flags = Vec::new();
        if !has_location(spec) {
            flags.push("no-location".to_string());
        }
        let learning_too_long = protection == Protection::Learning
            && learning_since
                .is_some_and(|t| now.saturating_sub(t) > inputs.max_learning_days * 86_400);
        if learning_too_long {
            flags.push("learning-too-long".into());
        }
        if violations.dropped_packets + violations.would_drop_packets > 0 || violations.flows > 0 {
            flags.push("violations".into());
        }
        if traffic.last_seen.is_none() {
            flags.push("never-seen".into());
        }
        let protection_detail = match protection {
            Protection::BreakGlass => glass.unwrap_or_default(),
            Protection::Enforced => format!(
                "traffic outside its {}-entry baseline{} is dropped",
                baseline.entries,
                if device.has_rules { " and its policy rules" } else { "" }
            ),
            Protection::Audited if mode.contains("life-critical") => {
                "life-critical and not confirmed for enforcement: violations are counted, never dropped"
                    .into()
            }
            Protection::Audited => "violations are counted (would-drop), nothing is dropped".into(),
            Protection::Learning => match (learning_since, baseline.stable_since) {
                (Some(since), Some(stable)) => format!(
                    "learning since {}; baseline stable since {}",
                    format_local(since),
                    format_local(stable)
                ),
                (Some(since), None) => format!("learning since {}; nothing learned yet", format_local(since)),
                _ => "learning; nothing is checked".into(),
            },
        };
        let (vendor, vendor_note) = vendor_of(spec, inputs.oui);
        let ward = ward_of(spec);
        wards.entry(ward.clone()).or_default().push(MapDevice {
            name: spec.name.clone(),
            kind: spec.kind.clone(),
            addresses: spec.addresses.clone(),
            mac: spec.mac.clone(),
            vendor,
            vendor_note,
            ward,
            location: spec.location.label(),
            has_location: has_location(spec),
            criticality: spec.criticality.name().into(),
            owner: spec.owner.clone(),
            notes: spec.notes.clone(),
            mode,
            protection,
            protection_detail,
            traffic,
            peers: groups,
            violations,
            baseline,
            activity: grid,
            active_hours,
            flags,
        });
    }

    // Most critical first within a ward, then by name; the no-location group last.
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

    let all: Vec<&MapDevice> = groups.iter().flat_map(|g| &g.devices).collect();
    let attention: Vec<Attention> = all
        .iter()
        .filter_map(|d| {
            let reasons: Vec<String> = d
                .flags
                .iter()
                .filter_map(|f| match f.as_str() {
                    "no-location" => Some("no location in the inventory".to_string()),
                    "learning-too-long" => Some(format!(
                        "learning for more than {} days",
                        inputs.max_learning_days
                    )),
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
        .collect();
    let count = |p: Protection| all.iter().filter(|d| d.protection == p).count();
    let summary = Summary {
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
    };
    DeviceMap {
        generated_at: now,
        generated_at_local: format_local(now),
        mode: inputs.global_mode.name().into(),
        interfaces: inputs
            .daemon
            .as_ref()
            .map(|d| d.interfaces.clone())
            .unwrap_or_default(),
        summary,
        attention,
        wards: groups,
    }
}

/// Renders the map in `format`.
pub fn render(map: &DeviceMap, format: Format) -> Result<String, DevMapError> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(map)? + "\n",
        Format::Html => html(map),
        Format::Dot => dot(map),
        Format::Table => text_table(map),
    })
}

fn ago(now: u64, then: Option<u64>) -> String {
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

fn duration(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn text_table(map: &DeviceMap) -> String {
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
    out.push_str(&table(
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
    out
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A stable HTML id for a name.
fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

const CSS: &str = r#"
:root{--ink:#1d2733;--muted:#5d6b7a;--line:#d9e0e7;--bg:#f4f6f8;--card:#fff;
--enf:#1e7b34;--aud:#b26a00;--learn:#1f5fb4;--glass:#7b2cbf;--bad:#c62828;}
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--ink);background:var(--bg)}
header{background:#14212e;color:#fff;padding:14px 24px}
header h1{margin:0 0 4px;font-size:20px}
header .sub{color:#b8c4d0;font-size:13px}
main{padding:16px 24px 40px}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 0}
.chip{background:#24374a;border-radius:12px;padding:2px 10px;font-size:13px}
.attention{background:#fff4f4;border:1px solid #f0b8b8;border-left:5px solid var(--bad);border-radius:6px;padding:10px 14px;margin:0 0 18px}
.attention h2{margin:0 0 6px;font-size:16px;color:var(--bad)}
.attention ul{margin:0;padding-left:18px}
.ward{margin:0 0 22px}
.ward>h2{font-size:17px;margin:0 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
.ward>h2 small{color:var(--muted);font-weight:normal}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;overflow:hidden}
.card.flagged{border-color:#e7a3a3;box-shadow:0 0 0 2px #f6d5d5}
.card h3{margin:0;font-size:16px;display:flex;flex-wrap:wrap;gap:6px;align-items:center}
.badge{font-size:11px;font-weight:600;border-radius:10px;padding:1px 8px;color:#fff;text-transform:uppercase;letter-spacing:.03em}
.p-enforced{background:var(--enf)}.p-audited{background:var(--aud)}.p-learning{background:var(--learn)}.p-break-glass{background:var(--glass)}
.c-life-critical{background:var(--bad)}.c-high{background:#8d4a12}.c-normal{background:#607080}.c-low{background:#8a96a3}
.flag{background:#fde2e2;color:var(--bad);border:1px solid #f3b4b4}
.kv{display:grid;grid-template-columns:108px 1fr;gap:2px 10px;margin:8px 0;font-size:13px}
.kv dt{color:var(--muted)}.kv dd{margin:0;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.viol{color:var(--bad);font-weight:600}
table.peers{border-collapse:collapse;width:100%;font-size:12.5px;margin:4px 0 8px}
table.peers th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);padding:2px 4px}
table.peers td{border-bottom:1px solid #eef1f4;padding:2px 4px;vertical-align:top}
h4{margin:10px 0 2px;font-size:13px}
table.grid{border-collapse:separate;border-spacing:2px;font-size:10px}
table.grid td.c{width:13px;height:13px;border-radius:2px;background:#edf0f3;padding:0}
table.grid td.c.l1{background:#c6e5cc}table.grid td.c.l2{background:#86c795}table.grid td.c.l3{background:#3f9e57}table.grid td.c.l4{background:#1b6a31}
table.grid td.c.lastweek{opacity:.55}
table.grid th{font-weight:normal;color:var(--muted);padding:0 4px 0 0;text-align:right}
table.grid thead th{text-align:left;padding:0}
footer{color:var(--muted);font-size:12px;padding:0 24px 20px}
"#;

/// After layout, marks the page as rendered (`data-layout="ok"`) when every device card
/// and activity grid has a size and no card spills over its column: what a browser test
/// reads back. The page reads fine without it.
const SCRIPT: &str = r#"
(function(){
  var cards=document.querySelectorAll('.card'), bad=[];
  cards.forEach(function(c){
    var r=c.getBoundingClientRect(), g=c.querySelector('table.grid');
    if(r.width<200||r.height<80)bad.push(c.id+': card not laid out');
    if(c.scrollWidth>c.clientWidth+1)bad.push(c.id+': content wider than the card');
    if(!g||g.getBoundingClientRect().width<150)bad.push(c.id+': activity grid not laid out');
  });
  document.documentElement.setAttribute('data-layout',bad.length?'bad':'ok');
  document.documentElement.setAttribute('data-layout-problems',bad.join('; '));
  document.documentElement.setAttribute('data-cards',String(cards.length));
})();
"#;

fn level(packets: u64, max: u64) -> &'static str {
    if packets == 0 {
        return "";
    }
    // Log scale against the device's busiest hour, so a quiet device's hours still show.
    let ratio = (packets as f64).ln_1p() / (max as f64).ln_1p().max(1e-9);
    match ratio {
        r if r > 0.85 => " l4",
        r if r > 0.6 => " l3",
        r if r > 0.35 => " l2",
        _ => " l1",
    }
}

fn html_grid(out: &mut String, device: &MapDevice, now: u64) {
    let max = device
        .activity
        .iter()
        .flat_map(|d| &d.cells)
        .map(|c| c.packets)
        .max()
        .unwrap_or(0);
    let current_hour = activity::local_time(now).hour;
    out.push_str("<table class=\"grid\" aria-label=\"activity by hour of day and day of week\"><thead><tr><th></th>");
    for hour in 0..24 {
        if hour % 6 == 0 {
            let _ = write!(out, "<th colspan=\"6\">{hour:02}h</th>");
        }
    }
    out.push_str("</tr></thead><tbody>");
    let rows = device.activity.len();
    for (row, day) in device.activity.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th title=\"{}\">{}</th>",
            esc(&day.date),
            esc(&day.weekday)
        );
        for cell in &day.cells {
            // Today is the last row; its hours after the current one are last week's.
            let lastweek = if row + 1 == rows && cell.hour > current_hour {
                " lastweek"
            } else {
                ""
            };
            let when = if cell.hour_start == 0 {
                "no such hour".to_string()
            } else {
                format_local(cell.hour_start)
            };
            let _ = write!(
                out,
                "<td class=\"c{}{}\" data-hour-start=\"{}\" data-packets=\"{}\" title=\"{} {} {:02}:00: {} packets, {} bytes\"></td>",
                level(cell.packets, max),
                lastweek,
                cell.hour_start,
                cell.packets,
                esc(&day.weekday),
                esc(&when),
                cell.hour,
                cell.packets,
                cell.bytes
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

fn html_device(out: &mut String, d: &MapDevice, now: u64) {
    let flagged = d.flags.iter().any(|f| f != "never-seen");
    let _ = write!(
        out,
        "<article class=\"card{}\" id=\"dev-{}\" data-device=\"{}\" data-protection=\"{}\">",
        if flagged { " flagged" } else { "" },
        slug(&d.name),
        esc(&d.name),
        d.protection.label()
    );
    let _ = write!(
        out,
        "<h3>{} <span class=\"badge p-{}\">{}</span> <span class=\"badge c-{}\">{}</span>",
        esc(&d.name),
        d.protection.label(),
        d.protection.label(),
        esc(&d.criticality),
        esc(&d.criticality)
    );
    for flag in &d.flags {
        let text = match flag.as_str() {
            "no-location" => "no location",
            "learning-too-long" => "learning too long",
            "violations" => "violations",
            "never-seen" => continue,
            other => other,
        };
        let _ = write!(out, " <span class=\"badge flag\">{text}</span>");
    }
    out.push_str("</h3><dl class=\"kv\">");
    let mut kv = |k: &str, v: String| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), v);
    };
    kv("kind", esc(&d.kind));
    kv(
        "vendor",
        match (&d.vendor, &d.vendor_note) {
            (Some(v), _) => format!("<span class=\"vendor\">{}</span>", esc(v)),
            (None, Some(note)) => format!("<span class=\"muted\">none: {}</span>", esc(note)),
            (None, None) => "<span class=\"muted\">none</span>".into(),
        },
    );
    kv(
        "address",
        format!(
            "{}{}",
            esc(&d
                .addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")),
            d.mac.as_ref().map_or_else(String::new, |m| format!(
                " <span class=\"muted\">MAC {}</span>",
                esc(m)
            ))
        ),
    );
    kv(
        "location",
        if d.has_location {
            esc(&d.location)
        } else {
            "<span class=\"viol\">unknown: add a location to the inventory</span>".into()
        },
    );
    kv(
        "protection",
        format!(
            "<b>{}</b>: {} <span class=\"muted\">(mode {})</span>",
            d.protection.label(),
            esc(&d.protection_detail),
            esc(&d.mode)
        ),
    );
    kv(
        "traffic",
        format!(
            "{} pkts out / {} in, {} / {} bytes; last seen {}",
            d.traffic.packets_sent,
            d.traffic.packets_received,
            d.traffic.bytes_sent,
            d.traffic.bytes_received,
            esc(&ago(now, d.traffic.last_seen))
        ),
    );
    let b = &d.baseline;
    let mut baseline = format!(
        "{} {} ({} learned)",
        b.entries,
        if b.entries == 1 { "entry" } else { "entries" },
        b.learned
    );
    if let Some(age) = b.age_seconds {
        let _ = write!(baseline, ", {} old", duration(age));
    }
    if let Some(stable) = b.stable_since {
        let _ = write!(baseline, "; stable since {}", esc(&format_local(stable)));
    }
    let grown: u64 = b.new_entries_per_hour.iter().sum();
    let _ = write!(baseline, "; {grown} new in the last 24 h");
    kv("baseline", baseline);
    kv(
        "violations",
        if d.violations.dropped_packets + d.violations.would_drop_packets == 0
            && d.violations.flows == 0
        {
            "none".into()
        } else {
            format!(
                "<span class=\"viol\">{} dropped, {} would-drop packets; {} flows outside the baseline</span>",
                d.violations.dropped_packets, d.violations.would_drop_packets, d.violations.flows
            )
        },
    );
    if let Some(owner) = &d.owner {
        kv("owner", esc(owner));
    }
    if let Some(notes) = &d.notes {
        kv("notes", esc(notes));
    }
    out.push_str("</dl>");

    for group in &d.peers {
        let title = match group.role.as_str() {
            "server" => "Servers it uses",
            "client" => "Clients it serves",
            _ => "Peers",
        };
        let _ = write!(
            out,
            "<h4>{title}</h4><table class=\"peers\" data-role=\"{}\"><tr><th>peer</th><th>services</th><th>packets</th><th>last seen</th></tr>",
            esc(&group.role)
        );
        for p in &group.peers {
            let _ = write!(
                out,
                "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                p.kind.as_ref().map_or_else(
                    || " <span class=\"muted\">(not enrolled)</span>".into(),
                    |k| format!(" <span class=\"muted\">({})</span>", esc(k))
                ),
                esc(&p.services.join(", ")),
                p.packets,
                esc(&ago(now, p.last_seen))
            );
        }
        out.push_str("</table>");
    }
    if !d.violations.top.is_empty() {
        let _ = write!(
            out,
            "<h4 class=\"viol\">Outside the baseline{}</h4><table class=\"peers violations\"><tr><th>peer</th><th>service</th><th>packets</th><th>dropped</th></tr>",
            if d.violations.flows > d.violations.top.len() {
                format!(
                    " (busiest {} of {})",
                    d.violations.top.len(),
                    d.violations.flows
                )
            } else {
                String::new()
            }
        );
        for v in &d.violations.top {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&v.peer),
                esc(&v.service),
                v.packets,
                v.dropped_packets
            );
        }
        out.push_str("</table>");
    }
    let _ = write!(
        out,
        "<h4>When it is used <span class=\"muted\">({} of the last 168 hours)</span></h4>",
        d.active_hours
    );
    html_grid(out, d, now);
    out.push_str("</article>");
}

fn html(map: &DeviceMap) -> String {
    let now = map.generated_at;
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(
        out,
        "<title>Device map — {} devices</title><style>{CSS}</style></head><body>",
        map.summary.devices
    );
    let interfaces: Vec<String> = map
        .interfaces
        .iter()
        .map(|i| format!("{} ({})", i.name, i.xdp_mode))
        .collect();
    let _ = write!(
        out,
        "<header><h1>Device map</h1><div class=\"sub\">generated {} · router mode <b>{}</b>{}</div><div class=\"chips\">",
        esc(&map.generated_at_local),
        esc(&map.mode),
        if interfaces.is_empty() {
            String::new()
        } else {
            format!(" · on {}", esc(&interfaces.join(", ")))
        }
    );
    let s = &map.summary;
    for (label, value) in [
        ("devices", s.devices),
        ("wards", s.wards),
        ("enforced", s.enforced),
        ("audited", s.audited),
        ("learning", s.learning),
        ("break-glass", s.break_glass),
        ("with violations", s.with_violations),
    ] {
        let _ = write!(out, "<span class=\"chip\">{value} {label}</span>");
    }
    out.push_str("</div></header><main>");
    if !map.attention.is_empty() {
        let _ = write!(
            out,
            "<section class=\"attention\" id=\"attention\"><h2>Needs attention ({})</h2><ul>",
            map.attention.len()
        );
        for a in &map.attention {
            let _ = write!(
                out,
                "<li><a href=\"#dev-{}\"><b>{}</b></a> <span class=\"muted\">{}</span>: {}</li>",
                slug(&a.device),
                esc(&a.device),
                esc(&if a.ward.starts_with('(') {
                    a.ward.clone()
                } else {
                    format!("({})", a.ward)
                }),
                esc(&a.reasons.join("; "))
            );
        }
        out.push_str("</ul></section>");
    }
    for ward in &map.wards {
        let _ = write!(
            out,
            "<section class=\"ward\" data-ward=\"{}\"><h2>{} <small>{} device{}</small></h2><div class=\"cards\">",
            esc(&ward.name),
            esc(&ward.name),
            ward.devices.len(),
            if ward.devices.len() == 1 { "" } else { "s" }
        );
        for device in &ward.devices {
            html_device(&mut out, device, now);
        }
        out.push_str("</div></section>");
    }
    out.push_str("</main><footer>Protections: <b>enforced</b> drops what is outside the baseline; <b>audited</b> counts it; <b>learning</b> adds it to the baseline; <b>break-glass</b> lifts enforcement for an emergency. Activity: packets per hour, local time; today is the last row, its later hours are last week's. Vendors from the IEEE registry.</footer>");
    let _ = writeln!(out, "<script>{SCRIPT}</script></body></html>");
    out
}

fn dot_id(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn dot(map: &DeviceMap) -> String {
    let mut out = String::from(
        "digraph device_map {\n  graph [rankdir=LR, fontname=\"Helvetica\", label=\"Device map\"];\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=9];\n",
    );
    let enrolled: BTreeSet<&str> = map
        .wards
        .iter()
        .flat_map(|w| &w.devices)
        .map(|d| d.name.as_str())
        .collect();
    for (i, ward) in map.wards.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label={};",
            dot_id(&ward.name)
        );
        for d in &ward.devices {
            let fill = match d.protection {
                Protection::Enforced => "#d5efdb",
                Protection::Audited => "#fbe7c6",
                Protection::Learning => "#d6e4f7",
                Protection::BreakGlass => "#ead9f7",
            };
            let label = format!(
                "{}\\n{}\\n{} · {}{}",
                d.name,
                d.kind,
                d.criticality,
                d.protection.label(),
                d.vendor
                    .as_ref()
                    .map_or_else(String::new, |v| format!("\\n{v}"))
            );
            let _ = writeln!(
                out,
                "    {} [label=\"{}\", fillcolor=\"{fill}\"{}];",
                dot_id(&d.name),
                label.replace('"', "\\\""),
                if d.flags.iter().any(|f| f == "violations") {
                    ", color=\"#c62828\", penwidth=2"
                } else {
                    ""
                }
            );
        }
        out.push_str("  }\n");
    }
    let mut others: BTreeSet<String> = BTreeSet::new();
    let mut edges: BTreeSet<(String, String, String, bool)> = BTreeSet::new();
    for d in map.wards.iter().flat_map(|w| &w.devices) {
        for group in &d.peers {
            for p in &group.peers {
                if !enrolled.contains(p.name.as_str()) {
                    others.insert(p.name.clone());
                }
                let (from, to) = match group.role.as_str() {
                    "client" => (p.name.clone(), d.name.clone()),
                    _ => (d.name.clone(), p.name.clone()),
                };
                edges.insert((from, to, p.services.join(", "), false));
            }
        }
        for v in &d.violations.top {
            if !enrolled.contains(v.peer.as_str()) {
                others.insert(v.peer.clone());
            }
            let (from, to) = match v.role.as_str() {
                "client" => (v.peer.clone(), d.name.clone()),
                _ => (d.name.clone(), v.peer.clone()),
            };
            edges.insert((from, to, v.service.clone(), true));
        }
    }
    for other in &others {
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, style=\"dashed\", label=\"{}\\n(not enrolled)\"];",
            dot_id(other),
            other.replace('"', "\\\"")
        );
    }
    for (from, to, label, violation) in &edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}{}];",
            dot_id(from),
            dot_id(to),
            dot_id(label),
            if *violation {
                ", color=\"#c62828\", style=dashed, fontcolor=\"#c62828\""
            } else {
                ""
            }
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Criticality, Location};
    use monitor_common::maps::DeviceStats;

    fn spec(name: &str, ip: [u8; 4], mac: Option<&str>, ward: Option<&str>) -> DeviceSpec {
        DeviceSpec {
            name: name.into(),
            kind: "modality".into(),
            addresses: vec![IpAddr::from(ip)],
            mac: mac.map(str::to_string),
            location: Location {
                ward: ward.map(str::to_string),
                ..Location::default()
            },
            criticality: Criticality::High,
            mode: None,
            confirm_enforce: false,
            owner: None,
            notes: None,
        }
    }

    fn key(device: [u8; 4], peer: [u8; 4], port: u16, direction: Direction) -> FlowKey {
        FlowKey {
            device: crate::datapath::addr_key(IpAddr::from(device)),
            peer: crate::datapath::addr_key(IpAddr::from(peer)),
            service_port: port,
            protocol: 6,
            direction: direction as u8,
        }
    }

    fn inputs(oui: Option<&OuiDb>) -> Inputs<'_> {
        let specs = vec![
            spec(
                "ct",
                [10, 0, 0, 1],
                Some("00:09:fb:00:00:01"),
                Some("radiology"),
            ),
            spec(
                "pacs",
                [10, 0, 0, 2],
                Some("02:00:00:00:00:01"),
                Some("datacenter"),
            ),
            spec("lost", [10, 0, 0, 3], None, None),
        ];
        let inventory = Inventory {
            version: 1,
            devices: specs
                .into_iter()
                .enumerate()
                .map(|(i, spec)| serde_json::from_value(serde_json::json!({"slot": i, "name": spec.name, "kind": spec.kind, "addresses": spec.addresses, "mac": spec.mac, "location": spec.location, "criticality": "high"})).unwrap_or_else(|e| panic!("{e}")))
                .collect(),
            ..Inventory::default()
        };
        let mono = 10_000 * 1_000_000_000;
        let stats = vec![
            DeviceStats {
                packets_sent: 10,
                packets_received: 10,
                dropped_packets: 2,
                last_seen_ns: mono - 5_000_000_000,
                first_seen_ns: mono - 50_000_000_000,
                ..DeviceStats::default()
            },
            DeviceStats::default(),
            DeviceStats::default(),
        ];
        let learned = BaselineEntry {
            learned_ns: mono - 3_600_000_000_000,
            origin: 1,
            _pad1: 0,
            _pad2: 0,
            window: 0,
        };
        let allowed = key([10, 0, 0, 1], [10, 0, 0, 2], 104, Direction::Outbound);
        let scan = key([10, 0, 0, 1], [10, 9, 9, 9], 22, Direction::Outbound);
        let flow = |p: u64, d: u64| FlowStats {
            packets_sent: p,
            dropped_packets: d,
            last_seen_ns: mono - 5_000_000_000,
            ..FlowStats::default()
        };
        Inputs {
            inventory,
            activity: Activity::new(),
            daemon: None,
            global_mode: Mode::Enforce,
            stats,
            baseline: vec![(allowed, learned)],
            flows: vec![(allowed, flow(8, 0)), (scan, flow(2, 2))],
            oui,
            now_unix: 1_780_000_000,
            now_mono_ns: mono,
            max_learning_days: 7,
        }
    }

    #[test]
    fn model_groups_peers_violations_vendors_and_flags() {
        let mut db = OuiDb::default();
        db.add_csv(24, "Registry,Assignment,Organization Name,Organization Address\nMA-L,0009FB,Philips Patient Monitoring,x\n");
        let map = build(&inputs(Some(&db)));
        assert_eq!(map.summary.devices, 3);
        assert_eq!(
            map.wards
                .iter()
                .map(|w| w.name.as_str())
                .collect::<Vec<_>>(),
            ["datacenter", "radiology", NO_LOCATION]
        );
        let ct = &map.wards[1].devices[0];
        assert_eq!(ct.vendor.as_deref(), Some("Philips Patient Monitoring"));
        assert_eq!(ct.protection, Protection::Enforced);
        assert_eq!(ct.peers.len(), 1);
        assert_eq!(ct.peers[0].role, "server");
        assert_eq!(ct.peers[0].peers[0].name, "pacs");
        assert_eq!(ct.peers[0].peers[0].services, ["tcp/104 (dicom)"]);
        assert_eq!(ct.peers[0].peers[0].packets, 8);
        assert_eq!(ct.violations.flows, 1);
        assert_eq!(ct.violations.top[0].service, "tcp/22 (ssh)");
        assert_eq!(ct.violations.dropped_packets, 2);
        assert_eq!(ct.baseline.entries, 1);
        assert_eq!(ct.baseline.age_seconds, Some(3600));
        assert_eq!(ct.traffic.last_seen, Some(1_780_000_000 - 5));
        let pacs = &map.wards[0].devices[0];
        assert_eq!(pacs.vendor, None);
        assert_eq!(
            pacs.vendor_note.as_deref(),
            Some("locally administered (random) MAC")
        );
        let lost = &map.wards[2].devices[0];
        assert!(lost.flags.contains(&"no-location".to_string()));
        let attention: Vec<&str> = map.attention.iter().map(|a| a.device.as_str()).collect();
        assert_eq!(attention, ["ct", "lost"]);
    }

    #[test]
    fn learning_too_long_stands_out() {
        let mut input = inputs(None);
        input.global_mode = Mode::Learn;
        let now = input.now_unix;
        input
            .activity
            .devices
            .entry("pacs".into())
            .or_default()
            .learning_since = Some(now - 8 * 86_400);
        input
            .activity
            .devices
            .entry("ct".into())
            .or_default()
            .learning_since = Some(now - 86_400);
        let map = build(&input);
        let pacs = &map.wards[0].devices[0];
        assert!(
            pacs.flags.contains(&"learning-too-long".to_string()),
            "{:?}",
            pacs.flags
        );
        let ct = &map.wards[1].devices[0];
        assert!(!ct.flags.contains(&"learning-too-long".to_string()));
        assert_eq!(ct.protection, Protection::Learning);
        assert!(ct.baseline.stable_since.is_some());
        assert!(
            map.attention
                .iter()
                .any(|a| a.device == "pacs" && a.reasons[0].contains("more than 7 days"))
        );
    }

    #[test]
    fn break_glass_is_the_protection_while_in_force() {
        let mut input = inputs(None);
        let now = input.now_unix;
        let glass = |until_unix| crate::state::inventory::BreakGlass {
            until_monotonic_ns: 0,
            until_unix,
            reason: "code blue, room 12".into(),
            who: "dr-house".into(),
            packets_at_start: 0,
        };
        input.inventory.devices[0].break_glass = Some(glass(now + 600));
        input.inventory.devices[1].break_glass = Some(glass(now - 1));
        let map = build(&input);
        let ct = &map.wards[1].devices[0];
        assert_eq!(ct.protection, Protection::BreakGlass);
        assert!(
            ct.protection_detail.contains("dr-house: code blue"),
            "{}",
            ct.protection_detail
        );
        assert_eq!(map.summary.break_glass, 1);
        // Expired: enforced again.
        assert_eq!(map.wards[0].devices[0].protection, Protection::Enforced);
    }

    #[test]
    fn renderers_are_self_contained_and_escape() {
        let mut input = inputs(None);
        input.inventory.devices[2].spec.notes = Some("<script>alert(1)</script>".into());
        let map = build(&input);
        let page = render(&map, Format::Html).unwrap_or_default();
        assert!(page.contains("&lt;script&gt;alert(1)"));
        assert!(!page.contains("<script>alert"));
        for forbidden in ["src=\"http", "href=\"http", "url(http", "@import"] {
            assert!(!page.contains(forbidden), "{forbidden}");
        }
        assert_eq!(page.matches("<article class=\"card").count(), 3);
        let dot = render(&map, Format::Dot).unwrap_or_default();
        assert!(dot.starts_with("digraph device_map {"));
        assert!(
            dot.contains("\"ct\" -> \"pacs\" [label=\"tcp/104 (dicom)\"]"),
            "{dot}"
        );
        assert!(
            dot.contains("\"ct\" -> \"10.9.9.9\" [label=\"tcp/22 (ssh)\", color="),
            "{dot}"
        );
        assert_eq!(dot.matches('{').count(), dot.matches('}').count());
        let json: serde_json::Value =
            serde_json::from_str(&render(&map, Format::Json).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(json["summary"]["devices"], 3);
        let text = render(&map, Format::Table).unwrap_or_default();
        assert!(text.contains("Needs attention:"));
    }
}

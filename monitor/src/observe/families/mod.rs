//! Every metric family the daemon exposes, defined once: name, type, help and label
//! names. The exposition writes its HELP and TYPE lines and its sample names from here;
//! [`check`] holds an exposition, the README's metric tables and the Grafana dashboard's
//! queries against this table.
//!
//! Every name starts with [`PREFIX`], counters end in `_total`, units are base units. A
//! medical device is labelled with [`DEVICE_LABELS`] (values from the inventory only);
//! `device` is a network interface, as node_exporter names it. Prometheus adds the
//! [`TARGET_LABELS`] (the router is `instance`).

pub mod check;

use Kind::{Counter, Gauge};

/// The metric name prefix.
pub const PREFIX: &str = "hospmon_";

/// Prometheus' metric types, as the exposition's TYPE lines name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        match name {
            "counter" => Some(Kind::Counter),
            "gauge" => Some(Kind::Gauge),
            _ => None,
        }
    }
}

/// One metric family.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// The HELP text: no backslash, no newline.
    pub help: &'static str,
    /// The label names of every sample, in the order the exposition writes them.
    pub labels: &'static [&'static str],
}

/// The label names of a medical device's series, then `extra`.
macro_rules! device_labels {
    ($($extra:literal),*) => {
        &["medical_device", "kind", "ward", "criticality" $(, $extra)*]
    };
}

/// The labels every per-device family starts with, in this order: the device's name,
/// kind, ward and criticality, from the inventory.
pub const DEVICE_LABELS: &[&str] = device_labels!();

/// The labels Prometheus gives every series of a scrape target: which router (its
/// metrics address, or the name a relabelling gives it) and which scrape job. No family
/// writes them; queries and alert rules may use them on any family.
pub const TARGET_LABELS: &[&str] = &["instance", "job"];

/// The label of the router a series comes from: the dashboard's Router variable filters
/// every query by it.
pub const ROUTER_LABEL: &str = "instance";

/// Prometheus' own series of each target that alert rules may read (`up`: whether the
/// last scrape of the router's monitor worked), with the target labels only.
pub const TARGET_SERIES: &[&str] = &["up"];

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

pub const DEVICE_PACKETS: Family = family(
    "hospmon_device_packets_total",
    Counter,
    device_labels!("direction"),
    "Packets of an enrolled medical device, by direction (sent by it, received by it).",
);
pub const DEVICE_BYTES: Family = family(
    "hospmon_device_bytes_total",
    Counter,
    device_labels!("direction"),
    "Bytes (whole frames) of an enrolled medical device, by direction.",
);
pub const DEVICE_DROPPED_PACKETS: Family = family(
    "hospmon_device_dropped_packets_total",
    Counter,
    device_labels!(),
    "Packets dropped because of the device's policy (enforce mode).",
);
pub const DEVICE_WOULD_DROP_PACKETS: Family = family(
    "hospmon_device_would_drop_packets_total",
    Counter,
    device_labels!(),
    "Packets enforcement would have dropped but passed (audit mode, or a life-critical device spared).",
);
pub const DEVICE_LEARNED_FLOWS: Family = family(
    "hospmon_device_learned_flows_total",
    Counter,
    device_labels!(),
    "Flows learned into the device's baseline.",
);
pub const DEVICE_ENFORCEMENT_HELD_BACK: Family = family(
    "hospmon_device_enforcement_held_back",
    Gauge,
    device_labels!(),
    "1 when enforce mode applies but the device stays audited: life-critical and not confirmed for enforcement.",
);
pub const DEVICE_BASELINE_ENTRIES: Family = family(
    "hospmon_device_baseline_entries",
    Gauge,
    device_labels!(),
    "Flows in the device's baseline (learned, imported or from policy), as counted at hospmon_map_entries_age_seconds ago.",
);
pub const DEVICE_LAST_SEEN: Family = family(
    "hospmon_device_last_seen_timestamp_seconds",
    Gauge,
    device_labels!(),
    "When the device's last packet was seen, Unix time (absent if never seen).",
);
pub const DEVICE_BREAK_GLASS: Family = family(
    "hospmon_device_break_glass",
    Gauge,
    device_labels!(),
    "1 while break-glass lifts enforcement for the device, else 0.",
);
pub const DEVICE_BREAK_GLASS_PACKETS: Family = family(
    "hospmon_device_break_glass_packets_total",
    Counter,
    device_labels!(),
    "Packets passed because break-glass lifted enforcement for the device.",
);
pub const DEVICE_VERDICT_PACKETS: Family = family(
    "hospmon_device_verdict_packets_total",
    Counter,
    device_labels!("reason"),
    "Packets of an enrolled medical device by the reason of its own verdict (numbered in `monitor reasons`), as counted at hospmon_map_entries_age_seconds ago.",
);
pub const DEVICE_MODE: Family = family(
    "hospmon_device_mode",
    Gauge,
    device_labels!("mode"),
    "1 for the mode the device is in (learn, audit, enforce); the other modes have no series.",
);
pub const DEVICES_ENROLLED: Family = family(
    "hospmon_devices_enrolled",
    Gauge,
    &[],
    "Medical devices in the inventory.",
);
pub const UNENROLLED_PACKETS: Family = family(
    "hospmon_unenrolled_packets_total",
    Counter,
    &["direction"],
    "Packets of addresses outside the inventory, all summed, by direction (sent by them, received by them).",
);
pub const UNENROLLED_BYTES: Family = family(
    "hospmon_unenrolled_bytes_total",
    Counter,
    &["direction"],
    "Bytes of addresses outside the inventory, all summed, by direction.",
);
pub const UNENROLLED_ADDRESSES: Family = family(
    "hospmon_unenrolled_addresses",
    Gauge,
    &[],
    "Addresses outside the inventory the datapath tracks now.",
);
pub const DISCOVERED_DEVICES: Family = family(
    "hospmon_discovered_devices",
    Gauge,
    &[],
    "Source MACs on ward legs that the inventory does not name, in the discovery table now (see `monitor discovered`).",
);
pub const DISCOVERED_STATIONS: Family = family(
    "hospmon_discovered_stations",
    Gauge,
    &[],
    "(MAC, address) pairs of the discovery table now, enrolled MACs' included; it holds at most 8192, least recently seen evicted.",
);
pub const VERDICT_PACKETS: Family = family(
    "hospmon_verdict_packets_total",
    Counter,
    &["action", "reason"],
    "Packets by verdict: action (pass, drop) and reason (see `monitor reasons`), all interfaces.",
);
pub const VERDICT_BYTES: Family = family(
    "hospmon_verdict_bytes_total",
    Counter,
    &["action", "reason"],
    "Bytes by verdict action and reason, all interfaces.",
);
pub const FRAMES: Family = family(
    "hospmon_frames_total",
    Counter,
    &["class"],
    "Frames by class (ipv4, ipv6, arp, llc, lldp, other_ethertype, malformed), all interfaces.",
);
pub const FRAME_BYTES: Family = family(
    "hospmon_frame_bytes_total",
    Counter,
    &["class"],
    "Bytes of frames by class, all interfaces.",
);
pub const MODE: Family = family(
    "hospmon_mode",
    Gauge,
    &["mode"],
    "1 for the router-wide mode (learn, audit, enforce), 0 for the others.",
);
pub const POLICY_GENERATION: Family = family(
    "hospmon_policy_generation",
    Gauge,
    &[],
    "Policy generation in the datapath, bumped by every policy load.",
);
pub const EVENTS: Family = family(
    "hospmon_events_total",
    Counter,
    &["outcome"],
    "Violation events by outcome: sent to the controller, suppressed by the per-device rate limit.",
);
pub const EVENTS_LOST: Family = family(
    "hospmon_events_lost_total",
    Counter,
    &[],
    "Violation events lost because the event ring buffer was full.",
);
pub const SYSLOG_MESSAGES: Family = family(
    "hospmon_syslog_messages_total",
    Counter,
    &["outcome"],
    "Events for the SIEM (monitor run --syslog) by outcome: sent (handed to the collector's socket), dropped (its queue was full while the collector was unreachable or slow; events.jsonl still has them).",
);
pub const POLICY_RELOADS: Family = family(
    "hospmon_policy_reloads_total",
    Counter,
    &["result"],
    "Policy loads (at start and on reload) by result: ok, failed (the running policy stayed), or held_back (it would remove much of the policy in force; the running policy stayed).",
);
pub const POLICY_HELD_BACK: Family = family(
    "hospmon_policy_held_back",
    Gauge,
    &[],
    "1 while a policy load is held back as suspicious (it would remove every device, rule or the defaults, or a large share of them) and waits for `monitor reload --accept-shrink`.",
);
pub const POLICY_LAST_RELOAD_SUCCESS: Family = family(
    "hospmon_policy_last_reload_success_timestamp_seconds",
    Gauge,
    &[],
    "When a policy was last applied successfully, Unix time; 0 if never.",
);
pub const INTERFACE_XDP_MODE: Family = family(
    "hospmon_interface_xdp_mode",
    Gauge,
    &["device", "mode"],
    "1 for each interface the monitor is attached to, with its XDP mode (native, generic).",
);
pub const INTERFACE_PACKETS: Family = family(
    "hospmon_interface_packets_total",
    Counter,
    &["device", "action", "reason"],
    "Packets that arrived on an interface the monitor is attached to, by verdict action and reason.",
);
pub const INTERFACE_BYTES: Family = family(
    "hospmon_interface_bytes_total",
    Counter,
    &["device", "action", "reason"],
    "Bytes (whole frames) that arrived on an interface the monitor is attached to, by verdict action and reason.",
);
pub const MAP_ENTRIES: Family = family(
    "hospmon_map_entries",
    Gauge,
    &["map"],
    "Entries in a datapath table, as counted at hospmon_map_entries_age_seconds ago.",
);
pub const MAP_CAPACITY_ENTRIES: Family = family(
    "hospmon_map_capacity_entries",
    Gauge,
    &["map"],
    "Entries a datapath table holds at most.",
);
pub const MAP_PRESSURE_RATIO: Family = family(
    "hospmon_map_pressure_ratio",
    Gauge,
    &["map"],
    "Entries over capacity of a datapath table (1: full; LRU tables then evict).",
);
pub const MAP_ENTRIES_AGE: Family = family(
    "hospmon_map_entries_age_seconds",
    Gauge,
    &[],
    "Seconds since the tables were last walked for hospmon_map_entries and hospmon_device_baseline_entries (a walk is too slow for a scrape; it runs in the background).",
);
pub const BUILD_INFO: Family = family(
    "hospmon_build_info",
    Gauge,
    &["version", "layout_version"],
    "Always 1; labels say which monitor and map layout is running.",
);
pub const SCRAPE_DURATION: Family = family(
    "hospmon_scrape_duration_seconds",
    Gauge,
    &[],
    "How long this scrape took to read the maps.",
);
pub const SCRAPE_ERRORS: Family = family(
    "hospmon_scrape_errors_total",
    Counter,
    &[],
    "Scrapes that failed to read the maps (answered with HTTP 500).",
);

/// Every family, in the order a scrape writes them.
pub const ALL: &[&Family] = &[
    &DEVICE_PACKETS,
    &DEVICE_BYTES,
    &DEVICE_DROPPED_PACKETS,
    &DEVICE_WOULD_DROP_PACKETS,
    &DEVICE_LEARNED_FLOWS,
    &DEVICE_ENFORCEMENT_HELD_BACK,
    &DEVICE_BASELINE_ENTRIES,
    &DEVICE_LAST_SEEN,
    &DEVICE_BREAK_GLASS,
    &DEVICE_BREAK_GLASS_PACKETS,
    &DEVICE_VERDICT_PACKETS,
    &DEVICE_MODE,
    &DEVICES_ENROLLED,
    &UNENROLLED_PACKETS,
    &UNENROLLED_BYTES,
    &UNENROLLED_ADDRESSES,
    &DISCOVERED_DEVICES,
    &DISCOVERED_STATIONS,
    &VERDICT_PACKETS,
    &VERDICT_BYTES,
    &FRAMES,
    &FRAME_BYTES,
    &MODE,
    &POLICY_GENERATION,
    &EVENTS,
    &EVENTS_LOST,
    &SYSLOG_MESSAGES,
    &POLICY_RELOADS,
    &POLICY_HELD_BACK,
    &POLICY_LAST_RELOAD_SUCCESS,
    &INTERFACE_XDP_MODE,
    &INTERFACE_PACKETS,
    &INTERFACE_BYTES,
    &MAP_ENTRIES,
    &MAP_CAPACITY_ENTRIES,
    &MAP_PRESSURE_RATIO,
    &MAP_ENTRIES_AGE,
    &BUILD_INFO,
    &SCRAPE_DURATION,
    &SCRAPE_ERRORS,
];

/// The family named `name`.
pub fn find(name: &str) -> Option<&'static Family> {
    ALL.iter().copied().find(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn families_follow_the_naming_rules_and_are_defined_once() {
        let mut names = BTreeSet::new();
        for f in ALL {
            assert!(names.insert(f.name), "{} defined twice", f.name);
            assert!(f.name.starts_with(PREFIX), "{}", f.name);
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(
                !f.help.is_empty() && !f.help.contains(['\\', '\n']),
                "{}: HELP must be one plain line",
                f.name
            );
            let labels: BTreeSet<&str> = f.labels.iter().copied().collect();
            assert_eq!(labels.len(), f.labels.len(), "{}: a label twice", f.name);
            // `device` is a network interface; a medical device has all four of its labels.
            let medical = f.labels.contains(&"medical_device");
            assert_eq!(
                medical,
                f.labels.starts_with(DEVICE_LABELS),
                "{}: medical device labels come together, first",
                f.name
            );
            assert!(!(medical && labels.contains("device")), "{}", f.name);
        }
    }
}

//! The map's model and renderers on a small made-up ward.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, Direction, FlowKey, FlowStats},
};

use super::{Format, Inputs, NO_LOCATION, Protection, build, render};
use crate::{
    policy::{Criticality, DeviceSpec, Location},
    state::{activity::Activity, inventory::Inventory},
    view::oui::OuiDb,
};

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
        schedule: None,
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
    let inventory = Arc::new(Inventory {
        version: 1,
        devices: specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| serde_json::from_value(serde_json::json!({"slot": i, "name": spec.name, "kind": spec.kind, "addresses": spec.addresses, "mac": spec.mac, "location": spec.location, "criticality": "high"})).unwrap_or_else(|e| panic!("{e}")))
            .collect(),
        ..Inventory::default()
    });
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
        schedule: [0; 3],
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
        activity: Cow::Owned(Activity::new()),
        daemon: None,
        global_mode: Mode::Enforce,
        stats,
        baseline: vec![(allowed, learned)],
        flows: vec![(allowed, flow(8, 0)), (scan, flow(2, 2))],
        stations: Vec::new(),
        oui,
        now_unix: 1_780_000_000,
        now_mono_ns: mono,
        max_learning_days: 7,
        coverage: Default::default(),
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
        .to_mut()
        .devices
        .entry("pacs".into())
        .or_default()
        .learning_since = Some(now - 8 * 86_400);
    input
        .activity
        .to_mut()
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
    Arc::make_mut(&mut input.inventory).devices[0].break_glass = Some(glass(now + 600));
    Arc::make_mut(&mut input.inventory).devices[1].break_glass = Some(glass(now - 1));
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
    Arc::make_mut(&mut input.inventory).devices[2].spec.notes =
        Some("<script>alert(1)</script>".into());
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
        serde_json::from_str(&render(&map, Format::Json).unwrap_or_default()).unwrap_or_default();
    assert_eq!(json["summary"]["devices"], 3);
    let text = render(&map, Format::Table).unwrap_or_default();
    assert!(text.contains("Needs attention:"));
}

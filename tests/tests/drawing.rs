//! The map page's drawing at hospital scale: 500 generated devices in wards, rendered by
//! headless Chromium, is drawn in under 2 s with every device in it, grouped by ward and
//! kind, and its own layout check (run by the browser on what it drew) finds no
//! overlapping boxes, no label wider than its box and no link without a card. The lab
//! ward's drawing is checked on real traffic in devmap.rs.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use monitor::{
    datapath::addr_key,
    policy::{Criticality, DeviceSpec, Location},
    state::{
        activity::Activity,
        inventory::{BreakGlass, EnrolledDevice, Inventory},
    },
    view::devmap::{Format, Inputs, build, render},
};
use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, Direction, FlowKey, FlowStats},
};
use monitor_tests::harness::{TempDir, chromium, html_attr as attr};

const NOW: u64 = 1_780_000_000;
const MONO: u64 = 10_000 * 1_000_000_000;
const SERVERS: usize = 12;
const KINDS: [&str; 5] = [
    "infusion-pump",
    "patient-monitor",
    "workstation",
    "badge-reader",
    "modality",
];

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("address {text}: {e}"))
}

fn device(slot: usize, name: String, kind: &str, address: IpAddr, ward: String) -> EnrolledDevice {
    EnrolledDevice {
        slot: slot as u32,
        spec: DeviceSpec {
            name,
            kind: kind.into(),
            addresses: vec![address],
            mac: None,
            location: Location {
                ward: Some(ward),
                ..Location::default()
            },
            criticality: Criticality::High,
            mode: None,
            confirm_enforce: false,
            owner: None,
            notes: None,
            schedule: None,
        },
        operator_override: None,
        has_rules: false,
        break_glass: None,
        mac_allows: Vec::new(),
        learned_macs: Vec::new(),
        mac_only: false,
    }
}

fn key(device: IpAddr, peer: IpAddr, protocol: u8, port: u16, direction: Direction) -> FlowKey {
    FlowKey {
        device: addr_key(device),
        peer: addr_key(peer),
        service_port: port,
        protocol,
        direction: direction as u8,
    }
}

fn seen(packets: u64, dropped: u64) -> FlowStats {
    FlowStats {
        packets_sent: packets,
        dropped_packets: dropped,
        last_seen_ns: MONO - 5_000_000_000,
        ..FlowStats::default()
    }
}

const LEARNED: BaselineEntry = BaselineEntry {
    learned_ns: MONO - 3_600_000_000_000,
    origin: 1,
    _pad1: 0,
    _pad2: 0,
    window: 0,
    schedule: [0; 3],
};

fn server_ip(s: usize) -> IpAddr {
    ip(&format!("10.20.0.{}", 10 + s))
}

fn client_ip(i: usize) -> IpAddr {
    ip(&format!("10.100.{}.{}", i / 200, i % 200 + 1))
}

/// The inventory: 12 servers in the datacenter, then wards of 50 devices of five kinds;
/// wards enforced, audited or learning, a few devices audited or under break-glass alone.
fn inventory(n: usize) -> Vec<EnrolledDevice> {
    let mut devices: Vec<EnrolledDevice> = (0..SERVERS)
        .map(|s| {
            let kind = ["pacs", "hl7-engine", "pump-server"][s % 3];
            device(
                s,
                format!("{kind}-{s:02}"),
                kind,
                server_ip(s),
                "datacenter".into(),
            )
        })
        .collect();
    for i in 0..n - SERVERS {
        let kind = KINDS[i % KINDS.len()];
        let mut d = device(
            SERVERS + i,
            format!("{kind}-{i:03}"),
            kind,
            client_ip(i),
            format!("ward-{:02}", i / 50),
        );
        d.spec.mode = match ((i / 50) % 4, i % 23) {
            (_, 0) | (1, _) => Some(Mode::Audit),
            (2, _) => Some(Mode::Learn),
            _ => None,
        };
        if i % 53 == 0 {
            d.break_glass = Some(BreakGlass {
                until_monotonic_ns: 0,
                until_unix: NOW + 600,
                reason: "code blue".into(),
                who: "dr-on-call".into(),
                packets_at_start: 0,
            });
        }
        devices.push(d);
    }
    devices
}

/// A hospital of `n` devices as the datapath would report it: each kind of a ward uses
/// its own one or two servers (learned on both ends), every third device DNS outside the
/// inventory, every 17th tries SSH on an address outside it and is dropped.
fn hospital(n: usize) -> Inputs<'static> {
    let devices = inventory(n);
    let mut baseline = Vec::new();
    let mut flows = Vec::new();
    for i in 0..n - SERVERS {
        let me = client_ip(i);
        let first = 2 * (i % KINDS.len()) + (i / 50) % 3;
        let mut servers = vec![(first % SERVERS, 104, (i % 40) as u64 + 1)];
        if i % 2 == 0 {
            servers.push(((first + 1) % SERVERS, 2575, 2));
        }
        for (s, port, packets) in servers {
            for k in [
                key(me, server_ip(s), 6, port, Direction::Outbound),
                key(server_ip(s), me, 6, port, Direction::Inbound),
            ] {
                baseline.push((k, LEARNED));
                flows.push((k, seen(packets, 0)));
            }
        }
        if i % 3 == 0 {
            let dns = key(me, ip("10.20.0.53"), 17, 53, Direction::Outbound);
            baseline.push((dns, LEARNED));
            flows.push((dns, seen(4, 0)));
        }
        if i % 17 == 0 {
            let scan = ip(&format!("10.66.{}.1", i % 250));
            flows.push((key(me, scan, 6, 22, Direction::Outbound), seen(3, 3)));
        }
    }
    Inputs {
        stats: vec![DeviceStats::default(); devices.len()],
        inventory: Arc::new(Inventory {
            version: 1,
            devices,
            ..Inventory::default()
        }),
        activity: Cow::Owned(Activity::new()),
        daemon: None,
        global_mode: Mode::Enforce,
        baseline,
        flows,
        oui: None,
        now_unix: NOW,
        now_mono_ns: MONO,
        max_learning_days: 7,
        coverage: Default::default(),
        stations: Vec::new(),
    }
}

#[test]
fn five_hundred_devices_are_drawn_quickly_without_overlapping_boxes() {
    let inputs = hospital(500);
    let names: Vec<String> = inputs
        .inventory
        .devices
        .iter()
        .map(|d| d.spec.name.clone())
        .collect();
    let page = render(&build(&inputs), Format::Html).unwrap_or_else(|e| panic!("render: {e}"));
    let dir = TempDir::new(&std::env::temp_dir(), "mdrawing");
    let file = dir.0.join("map.html");
    std::fs::write(&file, &page).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let url = format!("file://{}", file.display());
    let dom = chromium(
        &["--window-size=1400,1000".into(), "--dump-dom".into()],
        &url,
    );
    let start = dom
        .find("<svg id=\"drawing\"")
        .unwrap_or_else(|| panic!("the page has no drawing"));
    let svg = &dom[start..start + dom[start..].find("</svg>").unwrap_or(0)];
    assert_eq!(
        attr(svg, "<svg", "data-layout"),
        Some("ok"),
        "the page's layout check: {:?}",
        attr(svg, "<svg", "data-layout-problems")
    );
    assert_eq!(attr(svg, "<svg", "data-links-checked"), Some("true"));
    assert_eq!(attr(svg, "<svg", "data-devices"), Some("500"));
    // Many devices: tiles grouped by ward and kind, every device still there and linked.
    assert_eq!(attr(svg, "<svg", "data-grouped"), Some("true"));
    for name in &names {
        assert!(
            svg.contains(&format!("data-device=\"{name}\"")),
            "{name} is not in the drawing"
        );
    }
    assert_eq!(svg.matches("<a href=\"#dev-").count(), 500);
    for ward in 0..10 {
        assert!(svg.contains(&format!("data-group=\"ward-{ward:02}\"")));
    }
    // The page's own clock: from the request until the drawing was laid out.
    let rendered_ms: u64 = attr(svg, "<svg", "data-rendered-ms")
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("the page did not time its drawing"));
    assert!(
        rendered_ms < 2000,
        "the drawing took {rendered_ms} ms to render"
    );
    // The drawing alone (`monitor map --format svg`), as the README shows it.
    let svg_file = dir.0.join("map.svg");
    let alone = render(&build(&inputs), Format::Svg).unwrap_or_else(|e| panic!("render: {e}"));
    assert_eq!(alone.matches("data-device=").count(), 500);
    std::fs::write(&svg_file, alone).unwrap_or_else(|e| panic!("{}: {e}", svg_file.display()));
    let shot = dir.0.join("drawing-500.png");
    chromium(
        &[
            "--window-size=1200,1000".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &format!("file://{}", svg_file.display()),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 30_000);
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let _ = std::fs::copy(&shot, artifacts.join("device-map-drawing-500.png"));
}

//! The drawing's model, layout and SVG: a small ward, identity states, and a generated
//! hospital of 500 devices.

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, Direction, FlowKey, FlowStats},
};

use super::{
    Discovered, DiscoveredFlow, Drawing, GroupRole, Identity, MAX_OUTSIDE, Shade, Side, build,
    layout::{self, Anchor, DETAIL_LIMIT, Rect, curve, fit, overlapping, problems, stroke_width},
    svg::{Target, svg},
};
use crate::{
    policy::{Criticality, DeviceSpec, Location},
    state::{
        activity::Activity,
        inventory::{BreakGlass, EnrolledDevice, Inventory},
    },
    view::devmap::{Inputs, Protection, build as build_map, model::DeviceMap},
};

const NOW: u64 = 1_780_000_000;
const MONO: u64 = 10_000 * 1_000_000_000;

fn device(slot: usize, name: &str, kind: &str, ip: IpAddr, ward: &str) -> EnrolledDevice {
    EnrolledDevice {
        slot: slot as u32,
        spec: DeviceSpec {
            name: name.into(),
            kind: kind.into(),
            addresses: vec![ip],
            mac: None,
            location: Location {
                ward: Some(ward.into()),
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
        device: crate::datapath::addr_key(device),
        peer: crate::datapath::addr_key(peer),
        service_port: port,
        protocol,
        direction: direction as u8,
    }
}

fn flow(packets: u64, dropped: u64) -> FlowStats {
    FlowStats {
        packets_sent: packets,
        dropped_packets: dropped,
        last_seen_ns: MONO - 5_000_000_000,
        ..FlowStats::default()
    }
}

fn inputs(devices: Vec<EnrolledDevice>) -> Inputs<'static> {
    let stats = vec![DeviceStats::default(); devices.len()];
    Inputs {
        inventory: Arc::new(Inventory {
            version: 1,
            devices,
            ..Inventory::default()
        }),
        activity: Cow::Owned(Activity::new()),
        daemon: None,
        global_mode: Mode::Enforce,
        stats,
        baseline: Vec::new(),
        flows: Vec::new(),
        oui: None,
        now_unix: NOW,
        now_mono_ns: MONO,
        max_learning_days: 7,
        coverage: Default::default(),
        stations: Vec::new(),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The flows of `device` to `server` on `port`: in both devices' baselines (as the
/// datapath learns them), and seen with `packets`.
fn use_server(input: &mut Inputs<'_>, device: IpAddr, server: IpAddr, port: u16, packets: u64) {
    let out = key(device, server, 6, port, Direction::Outbound);
    let back = key(server, device, 6, port, Direction::Inbound);
    let learned = BaselineEntry {
        learned_ns: MONO - 3_600_000_000_000,
        origin: 1,
        _pad1: 0,
        _pad2: 0,
        window: 0,
        schedule: [0; 3],
    };
    input.baseline.push((out, learned));
    input.baseline.push((back, learned));
    input.flows.push((out, flow(packets, 0)));
    input.flows.push((back, flow(packets, 0)));
}

/// A flow outside the baseline, dropped.
fn violate(input: &mut Inputs<'_>, device: IpAddr, peer: IpAddr, port: u16) {
    input
        .flows
        .push((key(device, peer, 6, port, Direction::Outbound), flow(3, 3)));
}

/// A ward like the lab's: a CT scanner and a badge reader using PACS, the badge reader
/// also DNS outside the inventory and SSH on PACS (a violation), a workstation alone.
fn small_ward() -> DeviceMap {
    let mut input = inputs(vec![
        device(
            0,
            "ct-scanner-01",
            "modality",
            ip("10.10.1.13"),
            "radiology",
        ),
        device(1, "badge-reader", "badge-reader", ip("10.10.1.14"), "icu-3"),
        device(2, "ws-nurses", "workstation", ip("10.10.1.15"), "icu-3"),
        device(3, "pacs", "pacs", ip("10.20.0.30"), "datacenter"),
    ]);
    use_server(&mut input, ip("10.10.1.13"), ip("10.20.0.30"), 104, 300);
    use_server(&mut input, ip("10.10.1.14"), ip("10.20.0.30"), 443, 4);
    let dns = key(
        ip("10.10.1.14"),
        ip("10.20.0.53"),
        17,
        53,
        Direction::Outbound,
    );
    let learned = input.baseline[0].1;
    input.baseline.push((dns, learned));
    input.flows.push((dns, flow(10, 0)));
    violate(&mut input, ip("10.10.1.14"), ip("10.20.0.30"), 22);
    build_map(&input)
}

/// A hospital of `n` devices: 12 servers in the datacenter and wards of 50 devices of
/// five kinds, each kind using its own one or two servers, every third device DNS outside
/// the inventory,
/// every 17th trying SSH somewhere else; wards enforced, audited or learning, a few
/// devices audited or under break-glass on their own.
pub(super) fn hospital(n: usize) -> DeviceMap {
    const KINDS: [&str; 5] = [
        "infusion-pump",
        "patient-monitor",
        "workstation",
        "badge-reader",
        "modality",
    ];
    const SERVERS: usize = 12;
    let server_ip = |s: usize| ip(&format!("10.20.0.{}", 10 + s));
    let client_ip = |i: usize| ip(&format!("10.100.{}.{}", i / 200, i % 200 + 1));
    let mut devices: Vec<EnrolledDevice> = (0..SERVERS)
        .map(|s| {
            let kind = ["pacs", "hl7-engine", "pump-server"][s % 3];
            device(
                s,
                &format!("{kind}-{s:02}"),
                kind,
                server_ip(s),
                "datacenter",
            )
        })
        .collect();
    for i in 0..n - SERVERS {
        let kind = KINDS[i % 5];
        let ward = format!("ward-{:02}", i / 50);
        let mut d = device(
            SERVERS + i,
            &format!("{kind}-{i:03}"),
            kind,
            client_ip(i),
            &ward,
        );
        // Wards in different phases, a few devices on their own.
        d.spec.mode = match ((i / 50) % 4, i % 23) {
            (_, 0) => Some(Mode::Audit),
            (1, _) => Some(Mode::Audit),
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
    let mut input = inputs(devices);
    for i in 0..n - SERVERS {
        let me = client_ip(i);
        // Each kind of a ward uses its own two servers, as a hospital's do.
        let first = 2 * (i % 5) + (i / 50) % 3;
        use_server(
            &mut input,
            me,
            server_ip(first % SERVERS),
            104,
            (i % 40) as u64 + 1,
        );
        if i % 2 == 0 {
            use_server(&mut input, me, server_ip((first + 1) % SERVERS), 2575, 2);
        }
        if i % 3 == 0 {
            let dns = key(me, ip("10.20.0.53"), 17, 53, Direction::Outbound);
            let learned = input.baseline[0].1;
            input.baseline.push((dns, learned));
            input.flows.push((dns, flow(4, 0)));
        }
        if i % 17 == 0 {
            violate(&mut input, me, ip(&format!("10.66.{}.1", i % 250)), 22);
        }
    }
    build_map(&input)
}

fn node<'d>(drawing: &'d Drawing, id: &str) -> &'d super::Node {
    drawing
        .nodes
        .iter()
        .find(|n| n.id == id)
        .unwrap_or_else(|| panic!("{id} is not drawn"))
}

fn index(drawing: &Drawing, id: &str) -> usize {
    drawing
        .nodes
        .iter()
        .position(|n| n.id == id)
        .unwrap_or_else(|| panic!("{id} is not drawn"))
}

fn side_of(drawing: &Drawing, id: &str) -> (Side, String) {
    let n = index(drawing, id);
    let group = drawing
        .groups
        .iter()
        .find(|g| g.nodes.contains(&n))
        .unwrap_or_else(|| panic!("{id} is in no group"));
    (group.side, group.title.clone())
}

#[test]
fn devices_left_servers_right_edges_by_flow() {
    let map = small_ward();
    let drawing = build(&map, &Identity::default());
    assert_eq!(drawing.nodes.len(), 5, "{:?}", drawing.nodes);
    assert_eq!(
        side_of(&drawing, "ct-scanner-01"),
        (Side::Left, "radiology".into())
    );
    assert_eq!(side_of(&drawing, "ws-nurses"), (Side::Left, "icu-3".into()));
    assert_eq!(
        side_of(&drawing, "pacs"),
        (Side::Right, "datacenter".into())
    );
    assert_eq!(
        side_of(&drawing, "10.20.0.53"),
        (Side::Right, "outside the inventory".into())
    );
    let ct = index(&drawing, "ct-scanner-01");
    let pacs = index(&drawing, "pacs");
    let badge = index(&drawing, "badge-reader");
    let edge = |from, to, violation| {
        drawing
            .edges
            .iter()
            .find(|e| e.from == from && e.to == to && e.violation == violation)
    };
    let ct_pacs = edge(ct, pacs, false).unwrap_or_else(|| panic!("{:?}", drawing.edges));
    assert_eq!(ct_pacs.packets, 300);
    assert_eq!(
        ct_pacs.services.iter().collect::<Vec<_>>(),
        ["tcp/104 (dicom)"]
    );
    assert_eq!(ct_pacs.shade, Shade::Protected(Protection::Enforced));
    let ssh = edge(badge, pacs, true).unwrap_or_else(|| panic!("{:?}", drawing.edges));
    assert_eq!(ssh.services.iter().collect::<Vec<_>>(), ["tcp/22 (ssh)"]);
    assert!(edge(badge, pacs, false).is_some());
    // PACS's clients are enrolled: their edges come once, from them.
    assert_eq!(drawing.edges.len(), 4, "{:?}", drawing.edges);
    assert_eq!(node(&drawing, "badge-reader").marks.violations, 1);
    assert_eq!(node(&drawing, "ct-scanner-01").marks.violations, 0);
    assert_eq!(
        node(&drawing, "ct-scanner-01").card.as_deref(),
        Some("dev-ct-scanner-01")
    );
    assert_eq!(node(&drawing, "10.20.0.53").shade, Shade::Unenrolled);
    assert_eq!(node(&drawing, "10.20.0.53").card, None);
}

#[test]
fn identity_marks_spoofed_devices_and_groups_discovered_ones() {
    let map = small_ward();
    let plain = build(&map, &super::identity_of(&map));
    assert!(plain.nodes.iter().all(|n| !n.marks.spoofed));
    assert!(plain.groups.iter().all(|g| g.role != GroupRole::Discovered));
    let identity = Identity {
        spoofed: ["ct-scanner-01".to_string()].into(),
        discovered: vec![Discovered {
            address: "10.10.1.99".into(),
            kind: "unknown".into(),
            card: None,
            flows: vec![DiscoveredFlow {
                peer: "pacs".into(),
                service: "tcp/104 (dicom)".into(),
                packets: 7,
            }],
        }],
    };
    let drawing = build(&map, &identity);
    assert!(node(&drawing, "ct-scanner-01").marks.spoofed);
    assert!(!node(&drawing, "badge-reader").marks.spoofed);
    let (side, title) = side_of(&drawing, "10.10.1.99");
    assert_eq!(
        (side, title.as_str()),
        (Side::Left, "discovered (not enrolled)")
    );
    let found = index(&drawing, "10.10.1.99");
    let pacs = index(&drawing, "pacs");
    assert!(
        drawing
            .edges
            .iter()
            .any(|e| e.from == found && e.to == pacs && e.packets == 7)
    );
    let page = svg(&drawing, Target::Page);
    assert!(page.contains("data-spoofed=\"true\""));
    assert!(page.contains("data-role=\"discovered\""));
}

#[test]
fn a_small_ward_is_drawn_box_by_box_without_overlaps() {
    let drawing = build(&small_ward(), &Identity::default());
    let placed = layout::layout(&drawing);
    assert!(placed.groups.iter().all(|g| !g.compact));
    assert_eq!(problems(&drawing, &placed), Vec::<String>::new());
    let ct = index(&drawing, "ct-scanner-01");
    let pacs = index(&drawing, "pacs");
    assert!(placed.boxes[ct].right() < placed.boxes[pacs].x);
    assert_eq!(placed.anchors[ct], Anchor::Node(ct));
    assert!(placed.boxes.iter().all(|b| b.y >= layout::TOP));
    let routes = layout::routes(&drawing, &placed);
    assert_eq!(routes.len(), drawing.edges.len());
}

#[test]
fn five_hundred_devices_are_tiles_by_ward_and_kind_without_overlaps() {
    let map = hospital(500);
    assert_eq!(map.summary.devices, 500);
    let drawing = build(&map, &Identity::default());
    assert_eq!(
        drawing.nodes.iter().filter(|n| n.card.is_some()).count(),
        500
    );
    let placed = layout::layout(&drawing);
    assert_eq!(problems(&drawing, &placed), Vec::<String>::new());
    // Every ward is tiles by kind: five kinds, one block each.
    for (group, p) in drawing.groups.iter().zip(&placed.groups) {
        if group.title.starts_with("ward-") {
            assert!(p.compact, "{}", group.title);
            assert_eq!(p.blocks.len(), 5, "{}", group.title);
            assert!(group.nodes.len() > DETAIL_LIMIT);
        }
    }
    // The servers keep their names.
    let servers = drawing
        .groups
        .iter()
        .position(|g| g.title == "datacenter")
        .unwrap_or_else(|| panic!("no datacenter"));
    assert_eq!(drawing.groups[servers].side, Side::Right);
    assert!(!placed.groups[servers].compact);
    assert_eq!(drawing.groups[servers].nodes.len(), 12);
    // Edges bundled per block and server: far fewer than flows.
    let routes = layout::routes(&drawing, &placed);
    assert!(drawing.edges.len() > 800, "{}", drawing.edges.len());
    // Per block: at most its two servers, DNS and its scans.
    assert!(routes.len() <= 50 * 3 + 29, "{} routes", routes.len());
    // DNS and the 29 scanned addresses are outside the inventory: the 23 busiest, and
    // one box for the other 7.
    let outside: Vec<_> = drawing
        .groups
        .iter()
        .filter(|g| g.role == GroupRole::Outside)
        .collect();
    assert_eq!(outside.len(), 1);
    assert_eq!(outside[0].nodes.len(), MAX_OUTSIDE);
    let merged: Vec<&str> = outside[0]
        .nodes
        .iter()
        .map(|n| drawing.nodes[*n].label.as_str())
        .filter(|l| l.ends_with("more addresses"))
        .collect();
    assert_eq!(merged, ["7 more addresses"]);
    let page = svg(&drawing, Target::Page);
    assert_eq!(page.matches("data-device=").count(), 500);
    assert!(page.contains("data-grouped=\"true\""));
    for protection in ["enforced", "audited", "learning", "break-glass"] {
        assert!(
            page.contains(&format!("data-protection=\"{protection}\"")),
            "{protection}"
        );
    }
}

#[test]
fn overlapping_finds_pairs_that_share_area_only() {
    let r = |x, y, w, h| Rect { x, y, w, h };
    let rects = [
        r(0, 0, 10, 10),
        r(10, 0, 10, 10), // touches the first: fine
        r(5, 5, 10, 10),  // overlaps both
        r(0, 10, 10, 10), // touches the first from below
        r(100, 100, 1, 1),
    ];
    assert_eq!(overlapping(&rects), [(0, 2), (1, 2), (2, 3)]);
    assert_eq!(overlapping(&[]), []);
}

#[test]
fn curves_leave_and_enter_the_facing_sides() {
    let a = Rect {
        x: 48,
        y: 100,
        w: 380,
        h: 40,
    };
    let b = Rect {
        x: 772,
        y: 300,
        w: 380,
        h: 40,
    };
    let c = curve(a, Side::Left, b, Side::Right);
    assert_eq!((c.start, c.end), ((428, 120), (772, 320)));
    assert_eq!(c.path, "M428,120 C600,120 600,320 772,320");
    let back = curve(b, Side::Right, a, Side::Left);
    assert_eq!((back.start, back.end), ((772, 320), (428, 120)));
    let right = curve(b, Side::Right, Rect { y: 400, ..b }, Side::Right);
    assert_eq!((right.start, right.end), ((1152, 320), (1152, 420)));
    assert!(right.path.contains("1192,320"), "{}", right.path);
    let left = curve(a, Side::Left, Rect { y: 200, ..a }, Side::Left);
    assert_eq!((left.start, left.end), ((48, 120), (48, 220)));
    assert!(left.path.contains(" 8,220"), "{}", left.path);
}

#[test]
fn stroke_width_grows_with_traffic_within_bounds() {
    assert_eq!(stroke_width(0, 1000), 1.0);
    assert_eq!(stroke_width(5, 0), 1.0);
    assert_eq!(stroke_width(1000, 1000), 6.0);
    let widths: Vec<f64> = [1, 10, 100, 1000]
        .iter()
        .map(|p| stroke_width(*p, 1000))
        .collect();
    assert!(widths.windows(2).all(|w| w[0] < w[1]), "{widths:?}");
    assert!(widths[0] > 1.0);
}

#[test]
fn fit_cuts_long_labels_with_an_ellipsis() {
    assert_eq!(fit("pacs", 100, 13, true), "pacs");
    let cut = fit("a-very-long-device-name-indeed", 100, 13, true);
    assert!(cut.ends_with('…'), "{cut}");
    assert_eq!(cut.chars().count(), 11, "{cut}");
    assert!(fit("x", 1, 13, false) == "x" || fit("x", 1, 13, false) == "…");
}

#[test]
fn the_svg_file_is_standalone_and_the_page_links_cards() {
    let drawing = build(&small_ward(), &Identity::default());
    let file = svg(&drawing, Target::File);
    assert!(file.starts_with("<?xml"));
    assert!(file.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(!file.contains("href="));
    let page = svg(&drawing, Target::Page);
    assert!(!page.contains("://"));
    assert!(page.contains("<a href=\"#dev-ct-scanner-01\">"));
    for name in ["ct-scanner-01", "badge-reader", "ws-nurses", "pacs"] {
        assert!(page.contains(&format!("data-device=\"{name}\"")), "{name}");
    }
    assert!(page.contains("data-from=\"badge-reader\" data-to=\"pacs\" data-violation=\"true\""));
    assert!(page.contains("data-from=\"ct-scanner-01\" data-to=\"pacs\" data-violation=\"false\""));
    // The busiest flow is the thickest.
    assert!(page.contains("stroke-width=\"6\" data-from=\"ct-scanner-01\""));
}

#[test]
fn servers_are_ordered_by_where_their_clients_are() {
    let mut input = inputs(vec![
        device(0, "a-top", "modality", ip("10.10.1.1"), "icu"),
        device(1, "b-bottom", "modality", ip("10.10.1.2"), "icu"),
        device(2, "s1", "pacs", ip("10.20.0.1"), "datacenter"),
        device(3, "s2", "pacs", ip("10.20.0.2"), "datacenter"),
        device(4, "s3-idle-clients", "pacs", ip("10.20.0.3"), "datacenter"),
    ]);
    use_server(&mut input, ip("10.10.1.1"), ip("10.20.0.2"), 104, 1);
    use_server(&mut input, ip("10.10.1.2"), ip("10.20.0.1"), 104, 1);
    let mut learned_only = input.baseline[0];
    learned_only.0 = key(ip("10.20.0.3"), ip("10.99.0.1"), 6, 104, Direction::Inbound);
    input.baseline.push(learned_only);
    let drawing = build(&build_map(&input), &Identity::default());
    let right = drawing
        .groups
        .iter()
        .find(|g| g.side == Side::Right && g.title == "datacenter")
        .unwrap_or_else(|| panic!("no servers"));
    let names: Vec<&str> = right
        .nodes
        .iter()
        .map(|n| drawing.nodes[*n].id.as_str())
        .collect();
    // s2 serves the top device, s1 the bottom one; s3's only client is on the left but
    // outside the inventory, below the wards.
    assert_eq!(names, ["s2", "s1", "s3-idle-clients"]);
}

#[test]
fn an_empty_map_is_a_legend_and_nothing_else() {
    let map = build_map(&inputs(Vec::new()));
    let drawing = build(&map, &Identity::default());
    assert!(drawing.nodes.is_empty() && drawing.groups.is_empty());
    let placed = layout::layout(&drawing);
    assert!(placed.height > layout::TOP / 2 && placed.height < 2 * layout::TOP);
    let page = svg(&drawing, Target::Page);
    assert!(page.contains("data-devices=\"0\""));
    assert!(!page.contains("data-device="));
}

#[test]
fn a_scan_from_outside_comes_from_the_left() {
    let mut input = inputs(vec![device(
        0,
        "pump-01",
        "infusion-pump",
        ip("10.10.1.11"),
        "icu-3",
    )]);
    input.flows.push((
        key(ip("10.10.1.11"), ip("10.66.0.9"), 6, 22, Direction::Inbound),
        flow(5, 5),
    ));
    let drawing = build(&build_map(&input), &Identity::default());
    assert_eq!(
        side_of(&drawing, "10.66.0.9"),
        (Side::Left, "outside the inventory".into())
    );
    let (scanner, pump) = (index(&drawing, "10.66.0.9"), index(&drawing, "pump-01"));
    assert!(
        drawing
            .edges
            .iter()
            .any(|e| e.from == scanner && e.to == pump && e.violation),
        "{:?}",
        drawing.edges
    );
    let placed = layout::layout(&drawing);
    assert_eq!(problems(&drawing, &placed), Vec::<String>::new());
    // Both on the left: the edge bulges into the left margin.
    let c = curve(
        placed.boxes[scanner],
        Side::Left,
        placed.boxes[pump],
        Side::Left,
    );
    assert_eq!(c.start.0, layout::column_x(Side::Left) + layout::PAD);
}

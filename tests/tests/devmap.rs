//! The device map after known traffic through a lab ward: its JSON matches the traffic
//! (peers by role, violations, vendors from the IEEE registry, the hours traffic was
//! sent in), the CLI agrees, the DOT is a graph of the same, and the HTML page renders in
//! headless Chromium with the content a person needs (screenshot in tests/artifacts).

mod obs;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use monitor::{
    MapSet,
    lab::{DICOM, DNS, Outcome},
    state::StateDir,
    state::inventory::Inventory,
};
use monitor_tests::harness::{chromium, html_attr as attr, service};
use obs::{ObsLab, WARD_POLICY, artifacts_dir, get_ok, wait_for};
use serde_json::Value;

/// A spare pump nobody placed yet, with a locally administered (random) MAC.
const SPARE: &str = r#"
devices:
  - name: pump-spare-07
    kind: infusion-pump
    addresses: [10.10.1.16]
    mac: "02:1b:44:11:3a:b7"
    criticality: high
"#;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn device<'a>(map: &'a Value, name: &str) -> &'a Value {
    map["wards"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["devices"].as_array().into_iter().flatten())
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not on the map"))
}

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

/// Packets of the device's activity grid, and the hours (their start) that have any.
fn activity(d: &Value) -> (u64, BTreeSet<u64>) {
    let mut total = 0;
    let mut hours = BTreeSet::new();
    for day in d["activity"].as_array().into_iter().flatten() {
        for cell in day["cells"].as_array().into_iter().flatten() {
            let packets = u(&cell["packets"]);
            total += packets;
            if packets > 0 {
                hours.insert(u(&cell["hour_start"]));
            }
        }
    }
    (total, hours)
}

fn traffic_total(d: &Value) -> u64 {
    u(&d["traffic"]["packets_sent"]) + u(&d["traffic"]["packets_received"])
}

#[test]
fn the_device_map_shows_the_traffic_sent() {
    let lab = ObsLab::start(WARD_POLICY, &[("spare.yaml", SPARE)]);
    let t = Duration::from_millis(800);
    let sent_from = unix_now();
    // Learn: the CT scanner stores to PACS three times; the badge reader asks DNS five.
    for _ in 0..3 {
        assert_eq!(
            lab.lab.tcp("ct-scanner-01", service("pacs", DICOM), t),
            Outcome::Answered
        );
    }
    for _ in 0..5 {
        assert_eq!(
            lab.lab.udp("badge-reader-icu3", service("dns", DNS), t),
            Outcome::Answered
        );
    }
    // Enforce: the badge reader tries SSH and SMB on PACS, and is dropped.
    lab.lab.cli_ok(&["mode", "enforce"]);
    let short = Duration::from_millis(300);
    assert_eq!(
        lab.lab.tcp("badge-reader-icu3", service("pacs", 22), short),
        Outcome::TimedOut
    );
    assert_eq!(
        lab.lab
            .tcp("badge-reader-icu3", service("pacs", 445), short),
        Outcome::TimedOut
    );
    let sent_until = unix_now();
    let sent_hours: BTreeSet<u64> = (sent_from / 3600..=sent_until / 3600)
        .map(|h| h * 3600)
        .collect();

    // The activity sampler runs every few seconds: wait until the grid holds it all.
    let map = wait_for(
        "the activity grid to hold the traffic",
        Duration::from_secs(30),
        || {
            let map = lab.map_json();
            let done = ["ct-scanner-01", "badge-reader-icu3"].iter().all(|name| {
                let d = device(&map, name);
                traffic_total(d) > 0 && activity(d).0 == traffic_total(d)
            });
            done.then_some(map)
        },
    );
    std::fs::write(artifacts_dir().join("device-map.json"), map.to_string())
        .unwrap_or_else(|e| panic!("{e}"));

    // Grouped by ward; the device without a location last and standing out.
    let wards: Vec<&str> = map["wards"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(wards, ["datacenter", "icu-3", "radiology", "(no location)"]);
    let attention: Vec<&str> = map["attention"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["device"].as_str())
        .collect();
    assert!(attention.contains(&"pump-spare-07"), "{attention:?}");
    assert!(attention.contains(&"badge-reader-icu3"), "{attention:?}");
    assert!(!attention.contains(&"ct-scanner-01"), "{attention:?}");

    // Vendors from the IEEE registry; none for a locally administered MAC.
    let pump = device(&map, "pump-icu3-01");
    assert_eq!(pump["vendor"], "Philips Patient Monitoring");
    let spare = device(&map, "pump-spare-07");
    assert_eq!(spare["vendor"], Value::Null);
    assert!(
        spare["vendor_note"]
            .as_str()
            .unwrap_or_default()
            .contains("locally administered")
    );
    assert!(
        spare["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f == "no-location")
    );
    assert_eq!(
        device(&map, "ct-scanner-01")["vendor_note"],
        "no MAC in the inventory"
    );

    // Protections in force under a router-wide enforce.
    assert_eq!(device(&map, "ct-scanner-01")["protection"], "enforced");
    assert_eq!(pump["protection"], "audited");
    assert!(
        pump["mode"]
            .as_str()
            .unwrap_or_default()
            .contains("life-critical")
    );

    // The CT scanner: one server (PACS, DICOM), all its packets on that flow, in the
    // baseline, no violations; the counters are the datapath's.
    let ct = device(&map, "ct-scanner-01");
    let groups = ct["peers"].as_array().cloned().unwrap_or_default();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["role"], "server");
    let pacs_peer = &groups[0]["peers"][0];
    assert_eq!(pacs_peer["name"], "pacs");
    assert_eq!(pacs_peer["kind"], "pacs");
    assert_eq!(
        pacs_peer["services"],
        serde_json::json!(["tcp/104 (dicom)"])
    );
    assert_eq!(u(&pacs_peer["packets"]), traffic_total(ct));
    assert_eq!(u(&ct["violations"]["flows"]), 0);
    assert_eq!(u(&ct["baseline"]["entries"]), 1);
    let state = StateDir::new(lab.lab.state_dir.0.clone());
    let inventory = Inventory::load(&state).unwrap_or_else(|e| panic!("{e}"));
    let maps = MapSet::open_pinned(&lab.lab.pin_dir.0).unwrap_or_else(|e| panic!("{e}"));
    let slot = inventory
        .find("ct-scanner-01")
        .unwrap_or_else(|e| panic!("{e}"))
        .slot;
    let stats = maps.device_stats(slot).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(u(&ct["traffic"]["packets_sent"]), stats.packets_sent);
    assert_eq!(u(&ct["traffic"]["bytes_received"]), stats.bytes_received);
    // PACS sees the CT scanner as its client.
    let pacs = device(&map, "pacs");
    let clients = pacs["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["role"] == "client")
        .unwrap_or_else(|| panic!("pacs has no clients: {pacs}"));
    assert!(
        clients["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "ct-scanner-01")
    );

    // The badge reader: DNS (not enrolled) as its server, 5 queries and 5 answers; the
    // two blocked services as violations, their drops counted.
    let badge = device(&map, "badge-reader-icu3");
    let dns = &badge["peers"][0]["peers"][0];
    assert_eq!(badge["peers"][0]["role"], "server");
    assert_eq!(dns["name"], "10.20.0.53");
    assert_eq!(dns["enrolled"], false);
    assert_eq!(dns["services"], serde_json::json!(["udp/53 (dns)"]));
    assert_eq!(u(&dns["packets"]), 10);
    let violations = &badge["violations"];
    assert_eq!(u(&violations["flows"]), 2);
    let services: BTreeSet<&str> = violations["top"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["service"].as_str())
        .collect();
    assert_eq!(services, BTreeSet::from(["tcp/22 (ssh)", "tcp/445 (smb)"]));
    let dropped: u64 = violations["top"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| u(&v["dropped_packets"]))
        .sum();
    assert!(dropped >= 2, "{violations}");
    assert_eq!(u(&violations["dropped_packets"]), dropped);

    // When it is used: exactly the hours in which traffic was sent, and nothing for a
    // device that sent nothing.
    for name in ["ct-scanner-01", "badge-reader-icu3"] {
        let d = device(&map, name);
        let (total, hours) = activity(d);
        assert_eq!(total, traffic_total(d), "{name}");
        assert!(
            !hours.is_empty() && hours.is_subset(&sent_hours),
            "{name}: {hours:?} not in {sent_hours:?}"
        );
        assert_eq!(u(&d["active_hours"]), hours.len() as u64);
    }
    let quiet = device(&map, "monitor-icu3-01");
    assert_eq!(activity(quiet), (0, BTreeSet::new()));
    let today = &ct["activity"][6];
    let current = sent_until / 3600 * 3600;
    assert!(
        today["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| u(&c["hour_start"]) == current),
        "today is the last row"
    );

    // The CLI shows the same map.
    let cli: Value =
        serde_json::from_str(&lab.lab.cli_ok(&["map", "--json"])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        traffic_total(device(&cli, "ct-scanner-01")),
        traffic_total(ct)
    );
    assert_eq!(activity(device(&cli, "ct-scanner-01")), activity(ct));
    let table = lab.lab.cli_ok(&["map"]);
    assert!(
        table.contains("Needs attention:") && table.contains("pump-spare-07"),
        "{table}"
    );
    assert!(table.contains("Philips Patient Monitoring"), "{table}");
    let dot = lab.lab.cli_ok(&["map", "--format", "dot"]);
    assert!(dot.starts_with("digraph device_map {"), "{dot}");
    assert!(
        dot.contains(r#""ct-scanner-01" -> "pacs" [label="tcp/104 (dicom)"];"#),
        "{dot}"
    );
    assert!(
        dot.contains(r##""badge-reader-icu3" -> "pacs" [label="tcp/22 (ssh)", color="#c62828""##),
        "{dot}"
    );
    assert!(dot.contains(r#"label="radiology";"#), "{dot}");
    assert_eq!(dot.matches('{').count(), dot.matches('}').count());

    // The page: self-contained, and rendered by a browser with everything on it.
    let url = format!("http://{}/map", lab.metrics);
    let page = get_ok(lab.metrics, "/map");
    for outside in ["://", "<link", "<img", "@import", "url("] {
        assert!(
            !page.contains(outside),
            "the page refers outside itself: {outside}"
        );
    }
    let dom = chromium(
        &["--window-size=1400,1000".into(), "--dump-dom".into()],
        &url,
    );
    assert!(
        dom.contains(r#"data-layout="ok""#),
        "layout problems: {}",
        dom.lines().next().unwrap_or_default()
    );
    assert!(dom.contains(r#"data-cards="9""#));
    for text in [
        "Device map",
        "Needs attention",
        "(no location)",
        "pump-spare-07",
        "Philips Patient Monitoring",
        "locally administered",
        "Servers it uses",
        "Clients it serves",
        "Outside the baseline",
        "tcp/104 (dicom)",
        "When it is used",
    ] {
        assert!(dom.contains(text), "the rendered page lacks {text:?}");
    }
    let card_start = dom
        .find(r#"id="dev-ct-scanner-01""#)
        .unwrap_or_else(|| panic!("no ct card"));
    let card = &dom[card_start..card_start + dom[card_start..].find("</article>").unwrap_or(0)];
    let active_cells: Vec<(u64, u64)> = ct["activity"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|day| day["cells"].as_array().into_iter().flatten())
        .map(|c| (u(&c["hour_start"]), u(&c["packets"])))
        .filter(|(_, packets)| *packets > 0)
        .collect();
    assert!(!active_cells.is_empty());
    for (hour, packets) in active_cells {
        assert!(
            card.contains(&format!(
                r#"data-hour-start="{hour}" data-packets="{packets}""#
            )),
            "the ct card's grid lacks hour {hour} with {packets} packets"
        );
    }
    assert!(
        card.contains("class=\"c l4"),
        "the ct card's busiest hour is not shaded"
    );
    drawing_shows_the_ward(&lab, &map, &dom);

    let shot = artifacts_dir().join("device-map.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            "--window-size=1400,2200".into(),
            format!("--screenshot={}", shot.display()),
        ],
        &url,
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 30_000,
        "screenshot of {} bytes",
        png.len()
    );
}

/// The drawing on the rendered page (`dom`): every device of the lab ward, the CT scanner's
/// and the badge reader's servers, the badge reader's violation, no overlapping boxes; and
/// the same drawing alone from `monitor map --format svg` and `/map.svg`.
fn drawing_shows_the_ward(lab: &ObsLab, map: &Value, dom: &str) {
    let start = dom
        .find("<svg id=\"drawing\"")
        .unwrap_or_else(|| panic!("the page has no drawing"));
    let svg = &dom[start..start + dom[start..].find("</svg>").unwrap_or(0)];
    assert_eq!(
        attr(svg, "<svg", "data-layout"),
        Some("ok"),
        "the drawing's own layout check: {:?}",
        attr(svg, "<svg", "data-layout-problems")
    );
    assert_eq!(attr(svg, "<svg", "data-links-checked"), Some("true"));
    let names: Vec<&str> = map["wards"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["devices"].as_array().into_iter().flatten())
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names.len(), 9);
    assert_eq!(attr(svg, "<svg", "data-devices"), Some("9"));
    for name in &names {
        let box_tag = format!("data-device=\"{name}\"");
        assert!(svg.contains(&box_tag), "{name} is not in the drawing");
        // Clickable through to its card.
        assert!(
            svg.contains(&format!("<a href=\"#dev-{name}\">")),
            "{name}'s box does not link to its card"
        );
    }
    for (from, to) in [
        ("ct-scanner-01", "pacs"),
        ("badge-reader-icu3", "10.20.0.53"),
    ] {
        let edge = format!("data-from=\"{from}\" data-to=\"{to}\" data-violation=\"false\"");
        assert!(svg.contains(&edge), "no baseline edge {from} -> {to}");
    }
    let violation = "data-from=\"badge-reader-icu3\" data-to=\"pacs\" data-violation=\"true\"";
    assert!(svg.contains(violation), "the SSH/SMB attempt is not drawn");
    assert!(
        attr(svg, violation, "class").is_some_and(|c| c.contains("dw-e-viol")),
        "the violation is not drawn as one"
    );
    let badge = "data-device=\"badge-reader-icu3\"";
    assert_eq!(attr(svg, badge, "data-violations"), Some("2"));
    assert!(
        attr(svg, badge, "class").is_some_and(|c| c.contains("dw-viol")),
        "the badge reader is not marked"
    );
    assert_eq!(attr(svg, badge, "data-protection"), Some("enforced"));
    assert_eq!(
        attr(svg, "data-device=\"pump-icu3-01\"", "data-protection"),
        Some("audited")
    );

    // The drawing alone, from the CLI and the daemon.
    let file = lab.lab.cli_ok(&["map", "--format", "svg"]);
    assert!(file.starts_with("<?xml"), "{file}");
    assert!(file.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    for name in &names {
        assert!(file.contains(&format!("data-device=\"{name}\"")), "{name}");
    }
    assert!(file.contains(violation));
    let served = get_ok(lab.metrics, "/map.svg");
    assert!(served.starts_with("<?xml") && served.contains(violation));
    let width = attr(&served, "<svg", "width").unwrap_or("1200");
    let height = attr(&served, "<svg", "height").unwrap_or("800");
    let shot = artifacts_dir().join("device-map-drawing.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &[
            format!("--window-size={width},{height}"),
            format!("--screenshot={}", shot.display()),
        ],
        &format!("http://{}/map.svg", lab.metrics),
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
}

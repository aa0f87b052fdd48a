//! Device identity on real traffic: an impostor on the ward that takes an enrolled
//! device's address with its own MAC.
//!
//! The lab ward's devices share one interface; the test gives it the MAC the policy binds
//! the pump and the workstation to, and puts an impostor (a macvlan with another MAC, in
//! its own namespace, on the same ward link) on their addresses once the real devices
//! have taken them away, so that only the impostor answers for them. Before the MAC
//! binding existed every exchange of the impostor below was answered (the pump's baseline
//! and its life-critical protection let it through).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use monitor::{
    datapath::{MapSet, addr_key},
    lab::{DICOM, HTTPS, MLLP, NTP, NetNs, Outcome, tcp_exchange, udp_exchange, unique_name},
};
use monitor_tests::harness::{Lab, example_policy, host, service};

const QUICK: Duration = Duration::from_millis(600);
const PUMP: &str = "pump-icu3-01";
const WS: &str = "ws-icu3-nurses";
/// The MAC the ward's devices send from (the policy binds the pump, the monitor and the
/// workstation to it).
const WARD_MAC: &str = "00:09:fb:12:34:01";
/// The impostor's: registered to VMware.
const IMPOSTOR_MAC: &str = "00:0c:29:66:66:66";

/// The example ward with the pump, the patient monitor and the workstation bound to the
/// ward interface's MAC.
fn bound_policy() -> String {
    let policy = example_policy();
    let monitor_mac = "mac: \"00:80:25:aa:10:01\"";
    assert!(policy.contains(monitor_mac), "policies/ward.yaml changed");
    let ws = "    addresses: [10.10.1.15]\n";
    assert!(policy.contains(ws), "policies/ward.yaml changed");
    policy
        .replace(monitor_mac, &format!("mac: \"{WARD_MAC}\""))
        .replace(ws, &format!("{ws}    mac: \"{WARD_MAC}\"\n"))
}

/// The ward namespace's interface (its only veth).
fn ward_interface(lab: &Lab) -> String {
    let out = lab
        .ward
        .ward
        .ip(&["-o", "link", "show", "type", "veth"])
        .unwrap_or_else(|e| panic!("{e}"));
    let line = out
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no veth in the ward: {out}"));
    line.split(": ")
        .nth(1)
        .and_then(|name| name.split('@').next())
        .unwrap_or_else(|| panic!("unexpected `ip link` line: {line}"))
        .to_string()
}

/// A station on the ward link with its own MAC, in its own namespace (removed on drop).
struct Impostor {
    ns: NetNs,
}

impl Impostor {
    fn new(lab: &Lab, ward_if: &str) -> Impostor {
        Impostor::station(lab, ward_if, IMPOSTOR_MAC, "10.10.1.99")
    }

    /// A station with `mac` and `address` on the ward link.
    fn station(lab: &Lab, ward_if: &str, mac: &str, address: &str) -> Impostor {
        let ns = NetNs::new("mimp").unwrap_or_else(|e| panic!("{e}"));
        let name = unique_name("im");
        lab.ward
            .ward
            .ip(&[
                "link", "add", &name, "link", ward_if, "address", mac, "type", "macvlan", "mode",
                "bridge",
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        lab.ward
            .ward
            .ip(&["link", "set", &name, "netns", ns.name()])
            .unwrap_or_else(|e| panic!("{e}"));
        ns.ip(&["link", "set", &name, "up"])
            .unwrap_or_else(|e| panic!("{e}"));
        ns.ip(&["addr", "add", &format!("{address}/24"), "dev", &name])
            .unwrap_or_else(|e| panic!("{e}"));
        ns.ip(&["route", "add", "default", "via", "10.10.1.1"])
            .unwrap_or_else(|e| panic!("{e}"));
        Impostor { ns }
    }

    /// Takes `address` over from the ward's devices: only the impostor has it now.
    fn take(&self, lab: &Lab, address: IpAddr) {
        let cidr = format!("{address}/24");
        lab.ward
            .ward
            .ip(&["addr", "del", &cidr, "dev", &ward_interface(lab)])
            .unwrap_or_else(|e| panic!("{e}"));
        let dev = self
            .ns
            .ip(&["-o", "link", "show", "type", "macvlan"])
            .unwrap_or_else(|e| panic!("{e}"));
        let dev = dev
            .split(": ")
            .nth(1)
            .and_then(|n| n.split('@').next())
            .unwrap_or_else(|| panic!("no macvlan: {dev}"))
            .to_string();
        self.ns
            .ip(&["addr", "add", &cidr, "dev", &dev])
            .unwrap_or_else(|e| panic!("{e}"));
        lab.ward
            .router
            .ip(&["neigh", "flush", "all"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn tcp(&self, from: &str, to: std::net::SocketAddr) -> Outcome {
        self.tcp_from(host(from), to)
    }

    fn tcp_from(&self, src: IpAddr, to: std::net::SocketAddr) -> Outcome {
        self.ns
            .run(move || tcp_exchange(src, to, b"GET / HTTP/1.0", QUICK))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn udp(&self, from: &str, to: std::net::SocketAddr) -> Outcome {
        let src = host(from);
        self.ns
            .run(move || udp_exchange(src, 0, to, b"query", QUICK))
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Lines of the events file with reason `spoofed_source`.
fn spoof_events(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.state_dir.0.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["reason"] == "spoofed_source")
        .collect()
}

/// Waits until the events file holds more than `count` spoof events; returns them.
fn more_spoof_events(lab: &Lab, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let events = spoof_events(lab);
        if events.len() > count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "no new spoofed_source event after {count}: {events:?}\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_impostor_on_an_enrolled_address_is_dropped_evented_and_never_learned() {
    let mut lab = Lab::new(&bound_policy());
    let impostor = ward_with_impostor(&lab);
    lab.start_with_roles(&["--mode", "learn"]);

    // Learn: the real devices (right MAC) are learned as ever.
    lab.assert_normal_traffic(Outcome::Answered);
    impostor.take(&lab, host(PUMP));
    impostor.take(&lab, host(WS));

    // Learn: the impostor's frames pass, but nothing of them is learned: the pump never
    // spoke DICOM to the PACS.
    assert_eq!(
        impostor.tcp(PUMP, service("pacs", DICOM)),
        Outcome::Answered,
        "learn mode drops nothing"
    );
    let events = more_spoof_events(&lab, 0);
    assert_eq!(events[0]["verdict"], "would-drop", "{events:?}");
    let maps = MapSet::open_pinned(&lab.pin_dir.0).unwrap_or_else(|e| panic!("{e}"));
    let baseline = maps.baseline().unwrap_or_else(|e| panic!("{e}"));
    let pump = addr_key(host(PUMP));
    let pacs = addr_key(host("pacs"));
    assert!(
        baseline.iter().any(|(k, _)| k.device == pump),
        "the real pump's traffic was learned"
    );
    let learned_from_impostor: Vec<_> = baseline
        .iter()
        .filter(|(k, _)| {
            (k.device == pump && k.peer == pacs) || (k.device == pacs && k.peer == pump)
        })
        .collect();
    assert!(
        learned_from_impostor.is_empty(),
        "the impostor's flow was learned: {learned_from_impostor:?}"
    );

    // Audit: passed, counted as a would-drop.
    lab.cli_ok(&["mode", "audit"]);
    let before = spoof_events(&lab).len();
    assert_eq!(
        impostor.tcp(PUMP, service("pacs", DICOM)),
        Outcome::Answered,
        "audit drops nothing"
    );
    let events = more_spoof_events(&lab, before);
    assert_eq!(events[before]["verdict"], "would-drop", "{events:?}");

    // Enforce: the impostor reaches nothing with the life-critical pump's address (its
    // own server, another server, another port) nor with the workstation's.
    lab.cli_ok(&["mode", "enforce"]);
    let before = spoof_events(&lab).len();
    for (what, outcome) in [
        (
            "pump's address → pump-server https (in the pump's baseline)",
            impostor.tcp(PUMP, service("pump-server", HTTPS)),
        ),
        (
            "pump's address → pacs dicom",
            impostor.tcp(PUMP, service("pacs", DICOM)),
        ),
        (
            "pump's address → pump-server port 22",
            impostor.tcp(PUMP, service("pump-server", 22)),
        ),
        (
            "workstation's address → ntp (in its baseline)",
            impostor.udp(WS, service("ntp", NTP)),
        ),
    ] {
        assert_eq!(outcome, Outcome::TimedOut, "impostor with the {what}");
    }
    let events = more_spoof_events(&lab, before);
    let dropped: Vec<&serde_json::Value> = events[before..]
        .iter()
        .filter(|e| e["verdict"] == "drop")
        .collect();
    let pump_event = dropped
        .iter()
        .find(|e| e["device"] == PUMP)
        .unwrap_or_else(|| panic!("no dropped spoof event for the pump: {events:?}"));
    assert_eq!(pump_event["source_mac"], IMPOSTOR_MAC, "{pump_event}");
    assert_eq!(pump_event["expected_mac"], WARD_MAC, "{pump_event}");
    let vendor = pump_event["source_vendor"].as_str().unwrap_or_default();
    assert!(
        vendor.contains("VMware"),
        "the impostor's vendor: {pump_event}"
    );
    assert!(
        dropped.iter().any(|e| e["device"] == WS),
        "no dropped spoof event for the workstation: {events:?}"
    );

    // The pump's NIC was replaced: the operator accepts the new MAC for a while.
    lab.cli_ok(&[
        "allow",
        "--device",
        PUMP,
        "--mac",
        IMPOSTOR_MAC,
        "--for",
        "4s",
        "--reason",
        "NIC replaced by biomed",
    ]);
    let accepted_at = Instant::now();
    assert_eq!(
        impostor.tcp(PUMP, service("pump-server", HTTPS)),
        Outcome::Answered,
        "the accepted MAC reaches the pump's server"
    );
    let audit = std::fs::read_to_string(lab.state_dir.0.join("audit.jsonl"))
        .unwrap_or_else(|e| panic!("audit.jsonl: {e}"));
    assert!(
        audit.contains("mac-allow-start") && audit.contains(IMPOSTOR_MAC),
        "the acceptance is in the audit trail: {audit}"
    );
    // The workstation's MAC binding is untouched.
    assert_eq!(impostor.udp(WS, service("ntp", NTP)), Outcome::TimedOut);
    while accepted_at.elapsed() < Duration::from_millis(4500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        impostor.tcp(PUMP, service("pump-server", HTTPS)),
        Outcome::TimedOut,
        "the acceptance expired in the datapath"
    );
}

/// The controller's events of kind `event`.
fn controller_events(lab: &Lab, event: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.state_dir.0.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == event)
        .collect()
}

fn discovered(lab: &Lab) -> Vec<serde_json::Value> {
    let out = lab.cli_ok(&["discovered", "--json"]);
    serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .unwrap_or_else(|e| panic!("discovered --json: {e}: {out}"))
}

#[test]
fn a_device_nobody_enrolled_is_discovered_with_its_vendor_and_an_entry_to_enroll_it() {
    const NEW_MAC: &str = "00:0c:29:aa:bb:cc";
    const OTHER_MAC: &str = "00:0c:29:dd:ee:ff";
    let mut lab = Lab::new(&example_policy());
    let ward_if = ward_interface(&lab);
    lab.start_with_roles(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    assert!(discovered(&lab).iter().all(|d| d["mac"] != NEW_MAC));

    let new_device = Impostor::station(&lab, &ward_if, NEW_MAC, "10.10.1.50");
    let address: IpAddr = "10.10.1.50".parse().unwrap_or_else(|e| panic!("{e}"));
    let first_frame = Instant::now();
    assert_eq!(
        new_device.tcp_from(address, service("pump-server", HTTPS)),
        Outcome::Answered
    );
    let row = loop {
        if let Some(row) = discovered(&lab).into_iter().find(|d| d["mac"] == NEW_MAC) {
            break row;
        }
        assert!(
            first_frame.elapsed() < Duration::from_secs(5),
            "the new device is not listed 5 s after its first frame"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        row["vendor"]
            .as_str()
            .unwrap_or_default()
            .contains("VMware"),
        "{row}"
    );
    assert_eq!(row["addresses"][0], "10.10.1.50", "{row}");
    assert!(row["packets"].as_u64().unwrap_or(0) >= 2, "{row}");
    assert!(
        row["services"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "pump-server tcp/443")),
        "the enrolled service it used: {row}"
    );
    let table = lab.cli_ok(&["discovered"]);
    assert!(
        table.contains(NEW_MAC) && table.contains("VMware"),
        "{table}"
    );
    // The device map shows it under its own heading (table, JSON, HTML).
    let map = lab.cli_ok(&["map"]);
    let heading = map
        .find("Discovered, not in the inventory")
        .unwrap_or_else(|| panic!("no discovered heading in the map:\n{map}"));
    assert!(map[heading..].contains(NEW_MAC), "{map}");
    let json: serde_json::Value = serde_json::from_str(&lab.cli_ok(&["map", "--json"]))
        .unwrap_or_else(|e| panic!("map --json: {e}"));
    assert!(
        json["discovered"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d["mac"] == NEW_MAC && d["vendor"] == row["vendor"])),
        "{}",
        json["discovered"]
    );
    let html = lab.cli_ok(&["map", "--format", "html"]);
    assert!(html.contains("id=\"discovered\"") && html.contains(NEW_MAC));

    // Announced once.
    let deadline = Instant::now() + Duration::from_secs(5);
    while controller_events(&lab, "device-discovered")
        .iter()
        .all(|e| e["mac"] != NEW_MAC)
    {
        assert!(Instant::now() < deadline, "no device-discovered event");
        std::thread::sleep(Duration::from_millis(200));
    }
    new_device.tcp_from(address, service("pump-server", HTTPS));
    std::thread::sleep(Duration::from_millis(1500));
    let announced = controller_events(&lab, "device-discovered")
        .into_iter()
        .filter(|e| e["mac"] == NEW_MAC)
        .count();
    assert_eq!(announced, 1, "the new device is announced once");

    // Its inventory entry, given a name and a kind, passes the policy check.
    let yaml = lab.cli_ok(&["discovered", "--yaml"]);
    let start = yaml
        .find(&format!(
            "  - name: discovered-{}",
            NEW_MAC.replace(':', "")
        ))
        .unwrap_or_else(|| panic!("no stub for {NEW_MAC}: {yaml}"));
    let end = yaml[start + 4..]
        .find("  - name:")
        .map_or(yaml.len(), |i| start + 4 + i);
    let stub = yaml[start..end]
        .replace("discovered-000c29aabbcc", "infusion-pump-new-07")
        .replace("kind: unknown", "kind: infusion-pump");
    assert!(stub.contains(NEW_MAC) && stub.contains("VMware"), "{stub}");
    let dir = monitor_tests::harness::TempDir::new(&std::env::temp_dir(), "mdisc");
    std::fs::write(dir.0.join("ward.yaml"), example_policy()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.0.join("new.yaml"), format!("devices:\n{stub}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let dir_arg = dir.0.to_string_lossy().into_owned();
    let check = lab.cli(&["policy", "check", &dir_arg]);
    assert!(
        check.status.success(),
        "the stub does not pass the policy check:\n{stub}\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Another MAC takes its address: a flip-flop.
    drop(new_device);
    let other = Impostor::station(&lab, &ward_if, OTHER_MAC, "10.10.1.50");
    lab.ward
        .router
        .ip(&["neigh", "flush", "all"])
        .unwrap_or_else(|e| panic!("{e}"));
    other.tcp_from(address, service("pump-server", HTTPS));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let flips = controller_events(&lab, "ip-flip-flop");
        if let Some(flip) = flips.iter().find(|e| e["mac"] == OTHER_MAC) {
            let message = flip["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(NEW_MAC) && message.contains("10.10.1.50"),
                "{flip}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no ip-flip-flop event: {flips:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A DHCP server (dnsmasq) on the router's ward leg, handing `address` to `mac`; stopped
/// on drop.
struct DhcpServer {
    child: std::process::Child,
    _dir: monitor_tests::harness::TempDir,
}

impl DhcpServer {
    fn start(lab: &Lab, mac: &str, address: &str) -> DhcpServer {
        let dir = monitor_tests::harness::TempDir::new(&std::env::temp_dir(), "mdhcp");
        let leases = dir.0.join("leases");
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", lab.ward.router.name(), "dnsmasq"])
            .args(["--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            .arg(format!("--interface={}", lab.ward.ward_leg))
            .args(["--bind-interfaces", "--except-interface=lo"])
            .arg("--dhcp-range=10.10.1.100,10.10.1.120,255.255.255.0,2m")
            .arg(format!("--dhcp-host={mac},{address}"))
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--pid-file={}", dir.0.join("pid").display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting dnsmasq: {e}"));
        // Until it listens.
        std::thread::sleep(Duration::from_millis(500));
        DhcpServer { child, _dir: dir }
    }
}

impl Drop for DhcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// busybox udhcpc on the station's interface: asks for a lease and configures it (the
/// script gets the lease in its environment), then exits.
fn dhcp_lease(station: &Impostor, script: &std::path::Path) -> String {
    let dev = station
        .ns
        .ip(&["-o", "link", "show", "type", "macvlan"])
        .unwrap_or_else(|e| panic!("{e}"));
    let dev = dev
        .split(": ")
        .nth(1)
        .and_then(|n| n.split('@').next())
        .unwrap_or_else(|| panic!("no macvlan: {dev}"))
        .to_string();
    station
        .ns
        .ip(&["addr", "flush", "dev", &dev])
        .unwrap_or_else(|e| panic!("{e}"));
    let script = script.to_string_lossy().into_owned();
    let out = station
        .ns
        .exec(&[
            "busybox", "udhcpc", "-i", &dev, "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", &script,
        ])
        .unwrap_or_else(|e| panic!("udhcpc: {e}"));
    let address = station
        .ns
        .ip(&["-4", "-o", "addr", "show", "dev", &dev])
        .unwrap_or_else(|e| panic!("{e}"));
    address
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no leased address: {out}"))
        .to_string()
}

/// The device's addresses in the daemon's inventory.
fn inventory_addresses(lab: &Lab, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(lab.state_dir.0.join("inventory.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .and_then(|d| d["addresses"].as_array())
        .map(|a| {
            a.iter()
                .filter_map(|a| a.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_addresses(lab: &Lab, name: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let got = inventory_addresses(lab, name);
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}'s addresses are {got:?}, not {want:?}\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the MAC-only pump's traffic gets, enforced: its baseline (the pump server), the
/// allow rule (the PACS), the deny rule (the HL7 engine, which it talked to while it
/// learned) and what neither names (the pump server's MLLP port).
fn assert_enforced_at(station: &Impostor, at: IpAddr, when: &str) {
    let got = [
        station.tcp_from(at, service("pump-server", HTTPS)),
        station.tcp_from(at, service("pacs", DICOM)),
        station.tcp_from(at, service("hl7-engine", MLLP)),
        station.tcp_from(at, service("pump-server", MLLP)),
    ];
    assert_eq!(
        got,
        [
            Outcome::Answered,
            Outcome::Answered,
            Outcome::TimedOut,
            Outcome::TimedOut
        ],
        "{when} at {at}: [pump server in its baseline, PACS by its allow rule, HL7 engine \
         denied by its rule, pump server's MLLP in neither]"
    );
}

/// A device given by its MAC alone gets its address from a real DHCP server, is enforced
/// by its baseline and by the policy's rules about it (its own allow and deny rules, the
/// allow rule's mirror on the PACS), renews to another address and is still enforced by
/// the same baseline and rules, and after a restart too. Before the rules followed the
/// device, they were compiled for no address: the PACS was dropped and the HL7 engine,
/// learned, answered.
#[test]
fn a_device_given_by_its_mac_follows_its_dhcp_lease_with_its_baseline_and_rules() {
    const DHCP_MAC: &str = "00:0c:29:11:22:33";
    const NAME: &str = "pump-dhcp-01";
    let mut lab = Lab::new(&example_policy());
    std::fs::write(
        lab.policy_dir.0.join("dhcp.yaml"),
        format!(
            "devices:\n  - name: {NAME}\n    kind: infusion-pump\n    mac: \"{DHCP_MAC}\"\n    \
             location: {{ site: main-campus, ward: icu-3 }}\n\
             rules:\n  - description: the DHCP pump may query the PACS\n    \
             devices: {{ device: {NAME} }}\n    peer: {{ device: pacs }}\n    \
             protocol: tcp\n    ports: {DICOM}\n    direction: out\n    action: allow\n  \
             - description: the DHCP pump never talks HL7, learned or not\n    \
             devices: {{ device: {NAME} }}\n    peer: {{ device: hl7-engine }}\n    \
             protocol: tcp\n    ports: {MLLP}\n    action: deny\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let script_dir = monitor_tests::harness::TempDir::new(&std::env::temp_dir(), "mudh");
    let script = script_dir.0.join("lease.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$1\" in bound|renew)\n  ip addr add \"$ip/24\" dev \"$interface\"\n  \
         ip route replace default via \"$router\" dev \"$interface\"\n;;\nesac\nexit 0\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap_or_else(|e| panic!("{e}"));
    let ward_if = ward_interface(&lab);
    lab.start_with_roles(&["--mode", "learn"]);
    let station = Impostor::station(&lab, &ward_if, DHCP_MAC, "10.10.1.98");
    station.ns.ip(&["addr", "flush", "dev", "all"]).ok();
    let first = {
        let _dhcp = DhcpServer::start(&lab, DHCP_MAC, "10.10.1.101");
        dhcp_lease(&station, &script)
    };
    assert_eq!(first, "10.10.1.101");
    let first_ip: IpAddr = first.parse().unwrap_or_else(|e| panic!("{e}"));
    // Its first frames make it known; then its traffic is learned as its own (the HL7
    // engine's too, were it not for the deny rule).
    station.tcp_from(first_ip, service("pump-server", HTTPS));
    wait_addresses(&lab, NAME, &["10.10.1.101"]);
    assert_eq!(
        station.tcp_from(first_ip, service("pump-server", HTTPS)),
        Outcome::Answered
    );
    assert_eq!(
        station.tcp_from(first_ip, service("hl7-engine", MLLP)),
        Outcome::Answered,
        "learn mode drops nothing"
    );
    lab.cli_ok(&["mode", "enforce"]);
    assert_enforced_at(&station, first_ip, "at its first lease");
    let packets_before = lab.device_row(NAME)["packets_sent"].as_u64().unwrap_or(0);
    assert!(packets_before > 0, "{}", lab.device_row(NAME));

    // A new lease: another address.
    let second = {
        let _dhcp = DhcpServer::start(&lab, DHCP_MAC, "10.10.1.102");
        dhcp_lease(&station, &script)
    };
    assert_eq!(second, "10.10.1.102");
    let second_ip: IpAddr = second.parse().unwrap_or_else(|e| panic!("{e}"));
    station.tcp_from(second_ip, service("pump-server", HTTPS));
    wait_addresses(&lab, NAME, &["10.10.1.102"]);
    assert_enforced_at(&station, second_ip, "after its new lease");
    let row = lab.device_row(NAME);
    assert!(
        row["packets_sent"].as_u64().unwrap_or(0) > packets_before,
        "its counters were kept: {row}"
    );
    let moved = controller_events(&lab, "device-moved");
    assert!(
        moved.iter().any(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            m.contains("10.10.1.101") && m.contains("10.10.1.102") && e["device"] == NAME
        }),
        "{moved:?}"
    );

    // A restart compiles the rules at the address inventory.json learned, from the start
    // (nothing moves: the device is where the inventory says).
    lab.stop(libc::SIGTERM);
    lab.start_with_roles(&[]);
    assert_enforced_at(&station, second_ip, "after a restart");
}

/// The ward's devices sent from WARD_MAC (the MAC the policy binds them to), and an
/// impostor beside them on the ward's link. The ward's interface keeps its other addresses
/// when the impostor takes the primary one (the pump's) from it.
fn ward_with_impostor(lab: &Lab) -> Impostor {
    let ward_if = ward_interface(lab);
    lab.ward
        .ward
        .ip(&["link", "set", &ward_if, "address", WARD_MAC])
        .unwrap_or_else(|e| panic!("{e}"));
    lab.ward
        .ward
        .exec(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.conf.{ward_if}.promote_secondaries=1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    Impostor::new(lab, &ward_if)
}

/// The inventory's entry of `name` in `STATE/inventory.json`.
fn inventory_entry(lab: &Lab, name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(lab.state_dir.0.join("inventory.json"))
        .unwrap_or_else(|e| panic!("inventory.json: {e}"));
    let inventory: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("inventory.json: {e}"));
    inventory["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in inventory.json: {text}"))
}

/// The workstation has no `mac:` in the inventory: while it learns it is seen on the ward
/// leg from the ward interface's MAC, and when it leaves learn mode it is bound to that
/// MAC. From then on an impostor with its address and another MAC is dropped as
/// `spoofed_source`, while the workstation itself goes on as before.
#[test]
fn a_device_without_a_mac_is_bound_to_the_mac_it_learned_with() {
    let policy = example_policy();
    let monitor_mac = "mac: \"00:80:25:aa:10:01\"";
    assert!(policy.contains(monitor_mac), "policies/ward.yaml changed");
    let policy = policy.replace(monitor_mac, &format!("mac: \"{WARD_MAC}\""));
    let mut lab = Lab::new(&policy);
    let impostor = ward_with_impostor(&lab);
    lab.start_with_roles(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    let row = lab.device_row(WS);
    assert_eq!(
        row["macs"],
        serde_json::json!([]),
        "not bound while it learns: {row}"
    );

    lab.cli_ok(&["mode", "enforce"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let event = loop {
        if let Some(e) = controller_events(&lab, "mac-learned")
            .into_iter()
            .find(|e| e["device"] == WS)
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no mac-learned event for {WS} 5 s after enforce:\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(event["mac"], WARD_MAC, "{event}");
    let row = lab.device_row(WS);
    assert_eq!(row["macs"], serde_json::json!([WARD_MAC]), "{row}");
    assert_eq!(row["mac_learned"], true, "{row}");
    assert!(
        lab.cli_ok(&["devices"])
            .contains(&format!("{WARD_MAC} (learned)")),
        "the table shows the learned MAC"
    );
    let map: serde_json::Value = serde_json::from_str(&lab.cli_ok(&["map", "--json"]))
        .unwrap_or_else(|e| panic!("map --json: {e}"));
    let on_map = map["wards"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["devices"].as_array().into_iter().flatten())
        .find(|d| d["name"] == WS)
        .unwrap_or_else(|| panic!("{WS} not on the map: {map}"));
    assert_eq!(
        on_map["mac"],
        format!("{WARD_MAC} (learned)"),
        "the map shows the learned MAC: {on_map}"
    );
    assert_eq!(
        inventory_entry(&lab, WS)["learned-macs"],
        serde_json::json!([WARD_MAC]),
        "kept across restarts"
    );
    // The other ward devices without `mac:` are bound likewise, each once; those the
    // inventory binds (the pump) are not bound again.
    let learned = controller_events(&lab, "mac-learned");
    let names: Vec<&str> = learned
        .iter()
        .filter_map(|e| e["device"].as_str())
        .collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "each bound once: {learned:?}");
    assert!(
        !unique.contains(PUMP) && learned.iter().all(|e| e["mac"] == WARD_MAC),
        "{learned:?}"
    );

    // The workstation, from its MAC, goes on as it learned.
    lab.assert_normal_traffic(Outcome::Answered);
    // Another MAC with its address is an impostor.
    let before = spoof_events(&lab).len();
    impostor.take(&lab, host(WS));
    assert_eq!(
        impostor.udp(WS, service("ntp", NTP)),
        Outcome::TimedOut,
        "the impostor with the workstation's address reaches its NTP server"
    );
    let events = more_spoof_events(&lab, before);
    let dropped = events[before..]
        .iter()
        .find(|e| e["device"] == WS && e["verdict"] == "drop")
        .unwrap_or_else(|| panic!("no dropped spoof event for {WS}: {events:?}"));
    assert_eq!(dropped["source_mac"], IMPOSTOR_MAC, "{dropped}");
    assert_eq!(dropped["expected_mac"], WARD_MAC, "{dropped}");
}

/// A device that only ARPs (its connection attempts never resolve, so no IP frame of it
/// leaves) is still discovered, with the address its ARP requests give.
#[test]
fn a_device_seen_only_in_arp_is_discovered() {
    const ARP_MAC: &str = "00:0c:29:12:12:12";
    const ARP_ADDRESS: &str = "10.10.1.60";
    let mut lab = Lab::new(&example_policy());
    let ward_if = ward_interface(&lab);
    lab.start_with_roles(&["--mode", "learn"]);
    let station = Impostor::station(&lab, &ward_if, ARP_MAC, ARP_ADDRESS);
    let address: IpAddr = ARP_ADDRESS.parse().unwrap_or_else(|e| panic!("{e}"));
    // Nobody has 10.10.1.222: the kernel asks for it by ARP, and sends nothing else.
    let nobody: std::net::SocketAddr = "10.10.1.222:443".parse().unwrap_or_else(|e| panic!("{e}"));
    let first_arp = Instant::now();
    assert_ne!(station.tcp_from(address, nobody), Outcome::Answered);
    let row = loop {
        if let Some(row) = discovered(&lab).into_iter().find(|d| d["mac"] == ARP_MAC) {
            break row;
        }
        assert!(
            first_arp.elapsed() < Duration::from_secs(5),
            "the ARP-only device is not listed 5 s after its first ARP:\n{}",
            lab.cli_ok(&["discovered"])
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        row["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a == ARP_ADDRESS)),
        "its address, from ARP alone: {row}"
    );
    let services = row["services"].as_array().map_or(0, Vec::len);
    assert_eq!(services, 0, "it reached no service: {row}");
}

/// A device given by its MAC alone that only ARPs gets its address from its ARP requests.
#[test]
fn a_mac_only_device_seen_only_in_arp_gets_its_address() {
    const ARP_MAC: &str = "00:0c:29:34:34:34";
    const NAME: &str = "pump-arp-01";
    let mut lab = Lab::new(&example_policy());
    std::fs::write(
        lab.policy_dir.0.join("arp.yaml"),
        format!(
            "devices:\n  - name: {NAME}\n    kind: infusion-pump\n    mac: \"{ARP_MAC}\"\n    \
             location: {{ site: main-campus, ward: icu-3 }}\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ward_if = ward_interface(&lab);
    lab.start_with_roles(&["--mode", "learn"]);
    let station = Impostor::station(&lab, &ward_if, ARP_MAC, "10.10.1.61");
    let address: IpAddr = "10.10.1.61".parse().unwrap_or_else(|e| panic!("{e}"));
    let nobody: std::net::SocketAddr = "10.10.1.223:443".parse().unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(station.tcp_from(address, nobody), Outcome::Answered);
    wait_addresses(&lab, NAME, &["10.10.1.61"]);
}

//! Real TCP and UDP traffic through the router namespace of a lab ward, with the XDP
//! program attached in native mode on both legs.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    path::Path,
    time::Duration,
};

use aya::programs::xdp::XdpMode;
use monitor::{
    Datapath, Maps,
    lab::{
        CORE_SERVERS, DICOM, DNS, HTTPS, MLLP, NTP, Outcome, Servers, WARD_DEVICES, Ward,
        tcp_exchange, udp_exchange,
    },
    policy::Policy,
    state::inventory::Inventory,
};
use monitor_common::{Action, Mode, Reason, maps::DeviceStats};

const TIMEOUT: Duration = Duration::from_millis(800);

fn host(name: &str) -> IpAddr {
    WARD_DEVICES
        .iter()
        .chain(CORE_SERVERS.iter())
        .find(|h| h.name == name)
        .unwrap_or_else(|| panic!("no lab host {name}"))
        .address
}

fn service(name: &str, port: u16) -> SocketAddr {
    SocketAddr::new(host(name), port)
}

/// A lab ward with servers running and the monitor attached to both router legs, with
/// the example ward policy enrolled.
struct Bed {
    datapath: Datapath,
    inventory: Inventory,
    // Field order is drop order: servers stop before their namespaces go.
    servers: Option<Servers>,
    ward: Ward,
}

impl Bed {
    fn new() -> Bed {
        let ward = Ward::build().unwrap_or_else(|e| panic!("building the lab: {e}"));
        let servers = Servers::start(
            &ward.core,
            &[
                service("pump-server", HTTPS),
                service("hl7-engine", MLLP),
                service("pacs", DICOM),
            ],
            &[service("dns", DNS), service("ntp", NTP)],
        )
        .unwrap_or_else(|e| panic!("starting servers: {e}"));
        let mut datapath = Datapath::load(&Maps::Private)
            .unwrap_or_else(|e| panic!("loading the datapath: {e:?}"));
        let policy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let policy =
            Policy::load_dir(&policy_dir).unwrap_or_else(|e| panic!("example policy: {e}"));
        let rules =
            monitor::daemon::compiled_rules(&policy).unwrap_or_else(|e| panic!("rules: {e}"));
        let (inventory, fresh) = Inventory::from_policy(&policy, &Inventory::default(), &rules);
        inventory
            .apply(datapath.maps_mut(), &fresh, &rules)
            .unwrap_or_else(|e| panic!("enrolling: {e}"));
        {
            let _inside = ward.router.enter().unwrap_or_else(|e| panic!("{e}"));
            for leg in [&ward.ward_leg, &ward.core_leg] {
                let mode = datapath
                    .attach(leg, XdpMode::Driver)
                    .unwrap_or_else(|e| panic!("attaching to {leg}: {e:?}"));
                assert_eq!(mode, XdpMode::Driver);
            }
        }
        Bed {
            datapath,
            inventory,
            servers: Some(servers),
            ward,
        }
    }

    /// Stops the core's servers (their ports become free for a test's own sockets).
    fn stop_servers(&mut self) {
        self.servers.take();
    }

    /// One datagram from `from` (in the core) to `to` (in the ward), sent once a socket
    /// on `to` is listening; with `request_first` that socket first sends a request to
    /// `from`. Returns whether the datagram arrived.
    fn core_datagram_arrives(&self, from: SocketAddr, to: SocketAddr, request_first: bool) -> bool {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let receiver = self
            .ward
            .ward
            .spawn(move || {
                let socket = UdpSocket::bind(to).unwrap_or_else(|e| panic!("bind {to}: {e}"));
                socket
                    .set_read_timeout(Some(TIMEOUT))
                    .unwrap_or_else(|e| panic!("{e}"));
                if request_first {
                    socket
                        .send_to(b"query", from)
                        .unwrap_or_else(|e| panic!("request to {from}: {e}"));
                }
                let _ = ready_tx.send(());
                let mut buf = [0u8; 64];
                loop {
                    match socket.recv_from(&mut buf) {
                        Ok((n, peer)) if peer == from && &buf[..n] == b"answer" => return true,
                        Ok(_) => {}
                        Err(_) => return false,
                    }
                }
            })
            .unwrap_or_else(|e| panic!("{e}"));
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("the ward socket did not start: {e}"));
        // The request, if any, crosses the router first.
        std::thread::sleep(Duration::from_millis(100));
        self.ward
            .core
            .run(move || {
                let socket = UdpSocket::bind(from).unwrap_or_else(|e| panic!("bind {from}: {e}"));
                socket
                    .send_to(b"answer", to)
                    .unwrap_or_else(|e| panic!("send to {to}: {e}"));
            })
            .unwrap_or_else(|e| panic!("{e}"));
        receiver
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    fn set_mode(&mut self, mode: Mode) {
        self.datapath
            .maps_mut()
            .set_mode(mode)
            .unwrap_or_else(|e| panic!("setting mode: {e}"));
    }

    fn override_mode(&mut self, device: &str, mode: Option<Mode>, confirmed: bool) {
        let device = self
            .inventory
            .set_override(device, mode, confirmed)
            .unwrap_or_else(|e| panic!("override {device}: {e}"))
            .clone();
        for addr in &device.spec.addresses {
            self.datapath
                .maps_mut()
                .enroll(*addr, device.entry())
                .unwrap_or_else(|e| panic!("enroll: {e}"));
        }
    }

    fn stats(&self, device: &str) -> DeviceStats {
        let slot = self
            .inventory
            .find(device)
            .unwrap_or_else(|e| panic!("{e}"))
            .slot;
        self.datapath
            .maps()
            .device_stats(slot)
            .unwrap_or_else(|e| panic!("stats: {e}"))
    }

    fn verdict(&self, action: Action, reason: Reason) -> u64 {
        self.datapath
            .maps()
            .verdicts()
            .unwrap_or_else(|e| panic!("verdicts: {e}"))
            .into_iter()
            .find(|(a, r, _)| *a == action && *r == reason)
            .map_or(0, |(_, _, c)| c.packets)
    }

    fn tcp(&self, from: &str, to: SocketAddr) -> Outcome {
        let src = host(from);
        self.ward
            .ward
            .run(move || tcp_exchange(src, to, b"MSH|^~\\&|ward|icu3|", TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn udp(&self, from: &str, to: SocketAddr, payload: &'static [u8]) -> Outcome {
        let src = host(from);
        self.ward
            .ward
            .run(move || udp_exchange(src, 0, to, payload, TIMEOUT))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The normal traffic of the ward: every device uses its services once.
    fn normal_traffic(&self) -> Vec<(&'static str, Outcome)> {
        vec![
            (
                "pump → pump-server https",
                self.tcp("pump-icu3-01", service("pump-server", HTTPS)),
            ),
            (
                "monitor → hl7-engine mllp",
                self.tcp("monitor-icu3-01", service("hl7-engine", MLLP)),
            ),
            (
                "ct → pacs dicom",
                self.tcp("ct-scanner-01", service("pacs", DICOM)),
            ),
            (
                "badge → dns",
                self.udp("badge-reader-icu3", service("dns", DNS), b"dns?"),
            ),
            (
                "workstation → ntp",
                self.udp("ws-icu3-nurses", service("ntp", NTP), b"ntp?"),
            ),
            (
                "workstation → dns",
                self.udp("ws-icu3-nurses", service("dns", DNS), b"dns?"),
            ),
        ]
    }
}

fn assert_all(outcomes: Vec<(&str, Outcome)>, expected: Outcome) {
    for (what, outcome) in outcomes {
        assert_eq!(outcome, expected, "{what}");
    }
}

#[test]
fn per_device_counters_equal_what_was_sent() {
    let bed = Bed::new();
    const DATAGRAMS: u64 = 25;
    const PAYLOAD: &[u8] = b"query for the lab dns server";
    for _ in 0..DATAGRAMS {
        assert_eq!(
            bed.udp("ct-scanner-01", service("dns", DNS), PAYLOAD),
            Outcome::Answered
        );
    }
    // Ethernet 14 + IPv4 20 + UDP 8 + payload, both ways.
    let frame = 14 + 20 + 8 + PAYLOAD.len() as u64;
    let ct = bed.stats("ct-scanner-01");
    assert_eq!(ct.packets_sent, DATAGRAMS, "{ct:?}");
    assert_eq!(ct.bytes_sent, DATAGRAMS * frame, "{ct:?}");
    assert_eq!(ct.packets_received, DATAGRAMS, "{ct:?}");
    assert_eq!(ct.bytes_received, DATAGRAMS * frame, "{ct:?}");
    assert!(
        ct.first_seen_ns > 0 && ct.last_seen_ns >= ct.first_seen_ns,
        "{ct:?}"
    );
    assert_eq!(ct.dropped_packets, 0);
    // The DNS server is not enrolled: it is counted as the scanner's peer, in its flow,
    // not as an unenrolled address of its own.
    let unenrolled = bed
        .datapath
        .maps()
        .unenrolled_stats()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!unenrolled.contains_key(&host("dns")), "{unenrolled:?}");
    let flows = bed
        .datapath
        .maps()
        .flows(true)
        .unwrap_or_else(|e| panic!("{e}"));
    let dns_flow = flows
        .iter()
        .find(|(k, _)| monitor::datapath::addr_of(&k.peer) == host("dns"))
        .unwrap_or_else(|| panic!("no flow to the dns server: {flows:?}"));
    assert_eq!(
        (dns_flow.1.packets_sent, dns_flow.1.packets_received),
        (DATAGRAMS, DATAGRAMS)
    );
    assert_eq!(dns_flow.1.bytes_sent, DATAGRAMS * frame);
    assert_eq!(dns_flow.0.service_port, DNS);
    // Learn mode: the flow entered the baseline once, with the service port 53, not the
    // client's ephemeral port.
    let baseline = bed
        .datapath
        .maps()
        .baseline()
        .unwrap_or_else(|e| panic!("{e}"));
    let ct_entries: Vec<_> = baseline
        .iter()
        .filter(|(k, _)| monitor::datapath::addr_of(&k.device) == host("ct-scanner-01"))
        .collect();
    assert_eq!(ct_entries.len(), 1, "{ct_entries:?}");
    assert_eq!(ct_entries[0].0.service_port, DNS);
    assert_eq!(ct.learned_flows, 1);
    // Other devices saw nothing.
    assert_eq!(bed.stats("pump-icu3-01").packets_sent, 0);
}

#[test]
fn learn_then_enforce_keeps_the_baseline_and_drops_the_rest() {
    let mut bed = Bed::new();
    assert_all(bed.normal_traffic(), Outcome::Answered);
    bed.set_mode(Mode::Enforce);

    // Baseline flows and their replies keep working.
    assert_all(bed.normal_traffic(), Outcome::Answered);
    assert_all(bed.normal_traffic(), Outcome::Answered);

    // A new port and a new peer are dropped.
    let dropped_before = bed.stats("ct-scanner-01").dropped_packets;
    assert_eq!(
        bed.tcp("ct-scanner-01", service("pump-server", HTTPS)),
        Outcome::TimedOut
    );
    assert_eq!(
        bed.udp("badge-reader-icu3", service("ntp", NTP), b"ntp?"),
        Outcome::TimedOut
    );
    assert!(bed.stats("ct-scanner-01").dropped_packets > dropped_before);
    assert!(bed.stats("badge-reader-icu3").dropped_packets >= 1);
    assert!(bed.verdict(Action::Drop, Reason::NotInBaseline) >= 2);

    // The life-critical pump is never enforced by the global mode: a new flow passes and
    // is counted as would-drop.
    let pump_before = bed.stats("pump-icu3-01");
    assert_eq!(
        bed.tcp("pump-icu3-01", service("pacs", DICOM)),
        Outcome::Answered
    );
    let pump = bed.stats("pump-icu3-01");
    assert_eq!(pump.dropped_packets, pump_before.dropped_packets);
    assert!(
        pump.would_drop_packets > pump_before.would_drop_packets,
        "{pump:?}"
    );
    assert!(bed.verdict(Action::Pass, Reason::LifeCriticalSpared) > 0);

    // Only its own confirmed entry enforces it.
    bed.override_mode("pump-icu3-01", Some(Mode::Enforce), true);
    assert_eq!(
        bed.tcp("pump-icu3-01", service("hl7-engine", MLLP)),
        Outcome::TimedOut
    );
    assert_eq!(
        bed.tcp("pump-icu3-01", service("pump-server", HTTPS)),
        Outcome::Answered
    );
}

#[test]
fn audit_counts_without_dropping_and_device_overrides_win() {
    let mut bed = Bed::new();
    assert_all(bed.normal_traffic(), Outcome::Answered);
    bed.set_mode(Mode::Audit);

    let before = bed.stats("ct-scanner-01");
    let audit_before = bed.verdict(Action::Pass, Reason::NotInBaseline);
    assert_eq!(
        bed.tcp("ct-scanner-01", service("hl7-engine", MLLP)),
        Outcome::Answered
    );
    let after = bed.stats("ct-scanner-01");
    assert_eq!(after.dropped_packets, before.dropped_packets);
    assert!(
        after.would_drop_packets > before.would_drop_packets,
        "{after:?}"
    );
    assert!(bed.verdict(Action::Pass, Reason::NotInBaseline) > audit_before);
    assert_eq!(bed.verdict(Action::Drop, Reason::NotInBaseline), 0);

    // One device enforced while the router audits.
    bed.override_mode("ws-icu3-nurses", Some(Mode::Enforce), false);
    assert_eq!(
        bed.udp("ws-icu3-nurses", service("ntp", NTP), b"ntp?"),
        Outcome::Answered
    );
    assert_eq!(
        bed.tcp("ws-icu3-nurses", service("pacs", DICOM)),
        Outcome::TimedOut
    );
    assert_eq!(
        bed.tcp("ct-scanner-01", service("pacs", DICOM)),
        Outcome::Answered
    );
    assert_eq!(
        bed.tcp("badge-reader-icu3", service("pacs", DICOM)),
        Outcome::Answered
    );

    // And one device learning while the router enforces: its new flow is learned, then
    // kept once it is enforced again.
    bed.set_mode(Mode::Enforce);
    bed.override_mode("ct-scanner-01", Some(Mode::Learn), false);
    assert_eq!(
        bed.udp("ct-scanner-01", service("ntp", NTP), b"ntp?"),
        Outcome::Answered
    );
    bed.override_mode("ct-scanner-01", None, false);
    assert_eq!(
        bed.udp("ct-scanner-01", service("ntp", NTP), b"ntp?"),
        Outcome::Answered
    );
    assert_eq!(
        bed.udp("ct-scanner-01", service("dns", DNS), b"dns?"),
        Outcome::TimedOut
    );
}

/// UDP from a learned server's service port reaches a device only as the reply to a
/// request the device sent: from DNS's port 53 to a high port of an enforced ward device
/// without a request it is dropped, while the device's own DNS exchanges keep working.
#[test]
fn udp_from_a_service_port_reaches_an_enforced_device_only_as_a_reply() {
    let mut bed = Bed::new();
    assert_all(bed.normal_traffic(), Outcome::Answered);
    bed.set_mode(Mode::Enforce);
    // The workstation asks the DNS server, the server answers: learned, and still passes.
    for _ in 0..3 {
        assert_eq!(
            bed.udp("ws-icu3-nurses", service("dns", DNS), b"dns?"),
            Outcome::Answered
        );
    }
    bed.stop_servers();
    let dns = service("dns", DNS);
    let ws_port = SocketAddr::new(host("ws-icu3-nurses"), 40_053);
    let dropped_before = bed.stats("ws-icu3-nurses").dropped_packets;
    assert!(
        !bed.core_datagram_arrives(dns, ws_port, false),
        "a datagram from the DNS server's port 53 reached the workstation's port 40053 without a request"
    );
    assert_eq!(
        bed.stats("ws-icu3-nurses").dropped_packets,
        dropped_before + 1,
        "the workstation's policy dropped it"
    );
    // The same datagram right after the workstation's request from that port is its reply.
    assert!(
        bed.core_datagram_arrives(dns, ws_port, true),
        "the reply to the workstation's request was dropped"
    );
    // Another device that learned DNS too, but did not ask from that port: not reached.
    let badge_port = SocketAddr::new(host("badge-reader-icu3"), 40_053);
    assert!(!bed.core_datagram_arrives(dns, badge_port, false));
}

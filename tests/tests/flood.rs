//! A spoofed-source flood through the maps of an enforcing monitor while enrolled devices
//! keep talking: the flood fills the unenrolled table to its capacity and nothing else.
//!
//! The monitor program is attached in native mode to both router legs of a lab ward (as in
//! traffic.rs) and learned, then enforces. While a thread in the ward namespace runs
//! baseline exchanges (counted), a second thread pushes a million frames, each from its own
//! unknown source address, through the same program and maps with BPF_PROG_TEST_RUN, and
//! the test thread keeps reading the maps the way the CLI does. The datapath itself counts
//! the flood's frames (by the interface test runs arrive on), so the test knows that all
//! million went through.

use std::{
    collections::{BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::programs::xdp::XdpMode;
use monitor::{
    Datapath, Maps,
    datapath::addr_of,
    lab::{
        CORE_SERVERS, DICOM, DNS, HTTPS, MLLP, NTP, Outcome, Servers, WARD_DEVICES, Ward,
        tcp_exchange, udp_exchange,
    },
    policy::Policy,
    state::inventory::Inventory,
};
use monitor_common::{Action, Mode, Reason, maps::MAX_UNENROLLED};

/// Distinct spoofed sources, one frame each.
const FLOOD_SOURCES: u32 = 1_000_000;
const PAYLOAD: &[u8] = b"flood-test dns query";
/// BPF_PROG_TEST_RUN runs an XDP program as if the frame arrived on the loopback device
/// of the calling thread's namespace, which has this index in every namespace.
const TEST_RUN_IFINDEX: u32 = 1;
/// Where the datapath counts the verdicts of test-run frames apart (no attached leg has one
/// in this test).
const TEST_RUN_SLOT: u32 = 0;

/// The `i`th spoofed source: 100.64.0.0 + i, in the shared address space (no lab host).
fn flood_source(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i)
}

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

/// Ethernet + IPv4 + UDP from `src` to `dst` (checksums are not checked by the program).
fn spoofed_frame(src: Ipv4Addr, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let udp_len = 8 + 16u16;
    let total = 20 + udp_len;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&53u16.to_be_bytes());
    f.extend_from_slice(&udp_len.to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&[0x66; 16]);
    f
}

#[test]
fn a_million_spoofed_sources_leave_enrolled_devices_untouched() {
    let sources: HashSet<Ipv4Addr> = (0..FLOOD_SOURCES).map(flood_source).collect();
    assert_eq!(
        sources.len(),
        FLOOD_SOURCES as usize,
        "the flood repeats source addresses"
    );
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
    let mut datapath =
        Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("loading the datapath: {e:?}"));
    let policy_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let policy = Policy::load_dir(&policy_dir).unwrap_or_else(|e| panic!("example policy: {e}"));
    let rules = monitor::daemon::compiled_rules(&policy).unwrap_or_else(|e| panic!("rules: {e}"));
    let (inventory, fresh) = Inventory::from_policy(&policy, &Inventory::default(), &rules);
    inventory
        .apply(datapath.maps_mut(), &fresh, &rules)
        .unwrap_or_else(|e| panic!("enrolling: {e}"));
    datapath
        .maps_mut()
        .set_mode(Mode::Learn)
        .unwrap_or_else(|e| panic!("mode: {e}"));
    datapath
        .maps_mut()
        .set_interface_slot(TEST_RUN_IFINDEX, Some(TEST_RUN_SLOT), false)
        .unwrap_or_else(|e| panic!("counting test runs apart: {e}"));
    {
        let _inside = ward.router.enter().unwrap_or_else(|e| panic!("{e}"));
        for leg in [&ward.ward_leg, &ward.core_leg] {
            datapath
                .attach(leg, XdpMode::Driver)
                .unwrap_or_else(|e| panic!("attaching to {leg}: {e:?}"));
        }
    }
    let timeout = Duration::from_millis(800);
    let (ct, pump, badge) = (
        host("ct-scanner-01"),
        host("pump-icu3-01"),
        host("badge-reader-icu3"),
    );
    let udp = |src: IpAddr, to: SocketAddr| {
        ward.ward
            .run(move || udp_exchange(src, 0, to, PAYLOAD, timeout))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    // Learn: ct → dns, pump → pump-server; then enforce.
    assert_eq!(udp(ct, service("dns", DNS)), Outcome::Answered);
    let to = service("pump-server", HTTPS);
    assert_eq!(
        ward.ward
            .run(move || tcp_exchange(pump, to, b"hl7", timeout))
            .unwrap_or_else(|e| panic!("{e}")),
        Outcome::Answered
    );
    datapath
        .maps_mut()
        .set_mode(Mode::Enforce)
        .unwrap_or_else(|e| panic!("mode: {e}"));
    assert_eq!(
        udp(badge, service("ntp", NTP)),
        Outcome::TimedOut,
        "badge → ntp is forbidden"
    );

    let enrolled: BTreeSet<IpAddr> = WARD_DEVICES.iter().map(|d| d.address).collect();
    let enrolled_baseline = |dp: &Datapath| {
        let mut entries: Vec<_> = dp
            .maps()
            .baseline()
            .unwrap_or_else(|e| panic!("baseline: {e}"))
            .into_iter()
            .filter(|(k, _)| enrolled.contains(&addr_of(&k.device)))
            .map(|(k, e)| format!("{k:?} {e:?}"))
            .collect();
        entries.sort();
        entries
    };
    let baseline_before = enrolled_baseline(&datapath);
    assert!(baseline_before.len() >= 2, "learned: {baseline_before:?}");
    let slot = |name: &str| inventory.find(name).unwrap_or_else(|e| panic!("{e}")).slot;
    let (ct_slot, badge_slot) = (slot("ct-scanner-01"), slot("badge-reader-icu3"));
    let ct_before = datapath
        .maps()
        .device_stats(ct_slot)
        .unwrap_or_else(|e| panic!("{e}"));
    let badge_dropped_before = datapath
        .maps()
        .device_stats(badge_slot)
        .unwrap_or_else(|e| panic!("{e}"))
        .dropped_packets;
    let devices_before = datapath.maps().devices().unwrap_or_else(|e| panic!("{e}"));

    // The talking thread: ct → dns exchanges (counted), and badge → ntp probes that must
    // stay dropped.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failures, forbidden_passed, probes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let talker = {
        let (stop, sent, failures, forbidden_passed, probes) = (
            stop.clone(),
            sent.clone(),
            failures.clone(),
            forbidden_passed.clone(),
            probes.clone(),
        );
        ward.ward
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    if udp_exchange(ct, 0, service("dns", DNS), PAYLOAD, Duration::from_secs(2))
                        != Outcome::Answered
                    {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    probes.fetch_add(1, Ordering::Relaxed);
                    if udp_exchange(
                        badge,
                        0,
                        service("ntp", NTP),
                        b"scan",
                        Duration::from_millis(50),
                    ) == Outcome::Answered
                    {
                        forbidden_passed.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .unwrap_or_else(|e| panic!("{e}"))
    };

    let flood_done = AtomicBool::new(false);
    let flooded = AtomicU64::new(0);
    let mut slowest_read = Duration::ZERO;
    let mut reads = 0u32;
    std::thread::scope(|scope| {
        let flooder = scope.spawn(|| {
            let start = Instant::now();
            // The destination is no lab host either, so every frame is unenrolled traffic.
            let dst = Ipv4Addr::new(198, 51, 100, 7);
            let mut passed = 0u64;
            for i in 0..FLOOD_SOURCES {
                let src = flood_source(i);
                let verdict = datapath
                    .test_run(&spoofed_frame(src, dst, 1024 + (i % 60000) as u16))
                    .unwrap_or_else(|e| panic!("test run {i}: {e:?}"));
                if verdict.action == Action::Pass {
                    passed += 1;
                }
                flooded.fetch_add(1, Ordering::Relaxed);
            }
            flood_done.store(true, Ordering::Relaxed);
            (passed, start.elapsed())
        });
        // The controller's reads while the flood runs: they must complete (generously
        // bounded: this is not a benchmark).
        while !flood_done.load(Ordering::Relaxed) {
            let t = Instant::now();
            let devices = datapath
                .maps()
                .devices()
                .unwrap_or_else(|e| panic!("devices during the flood: {e}"));
            let stats = datapath
                .maps()
                .device_stats(ct_slot)
                .unwrap_or_else(|e| panic!("stats during the flood: {e}"));
            let _ = datapath
                .maps()
                .config()
                .unwrap_or_else(|e| panic!("config during the flood: {e}"));
            let took = t.elapsed();
            assert_eq!(
                devices, devices_before,
                "the device map changed during the flood"
            );
            assert!(stats.packets_sent >= ct_before.packets_sent);
            assert!(
                took < Duration::from_secs(3),
                "controller reads took {took:?} during the flood"
            );
            slowest_read = slowest_read.max(took);
            reads += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        let (passed, took) = flooder
            .join()
            .unwrap_or_else(|_| panic!("the flood thread panicked"));
        eprintln!(
            "flood: {} frames in {took:?} ({passed} passed); {reads} controller reads, slowest {slowest_read:?}",
            flooded.load(Ordering::Relaxed)
        );
    });
    stop.store(true, Ordering::Relaxed);
    talker
        .join()
        .unwrap_or_else(|_| panic!("the talking thread panicked"));

    let flooded = flooded.load(Ordering::Relaxed);
    assert_eq!(flooded, u64::from(FLOOD_SOURCES), "flood frames sent");
    assert!(
        flooded >= u64::from(MAX_UNENROLLED) * 4,
        "{flooded} sources cannot fill the unenrolled table several times over"
    );
    assert!(reads >= 1, "no controller read ran during the flood");
    // Every flood frame went through the datapath once, as unenrolled traffic, and nothing
    // else arrived that way.
    let flood_frame = spoofed_frame(flood_source(0), Ipv4Addr::new(198, 51, 100, 7), 1024).len();
    let test_run_verdicts: Vec<_> = datapath
        .maps()
        .interface_verdicts(TEST_RUN_SLOT)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .filter(|(_, _, c)| c.packets > 0)
        .map(|(action, reason, c)| (action, reason, c.packets, c.bytes))
        .collect();
    assert_eq!(
        test_run_verdicts,
        vec![(
            Action::Pass,
            Reason::Unenrolled,
            flooded,
            flooded * flood_frame as u64
        )],
        "the datapath's count of the flood's frames"
    );

    // Enrolled traffic went on, exactly counted.
    let (sent, failures) = (
        sent.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    assert!(sent >= 5, "the talking thread ran only {sent} exchanges");
    assert_eq!(
        failures, 0,
        "{failures} of {sent} baseline exchanges failed during the flood"
    );
    let ct_after = datapath
        .maps()
        .device_stats(ct_slot)
        .unwrap_or_else(|e| panic!("{e}"));
    let frame = (14 + 20 + 8 + PAYLOAD.len()) as u64;
    assert_eq!(
        ct_after.packets_sent - ct_before.packets_sent,
        sent,
        "{ct_after:?}"
    );
    assert_eq!(
        ct_after.packets_received - ct_before.packets_received,
        sent,
        "{ct_after:?}"
    );
    assert_eq!(ct_after.bytes_sent - ct_before.bytes_sent, sent * frame);
    assert_eq!(
        ct_after.bytes_received - ct_before.bytes_received,
        sent * frame
    );
    assert_eq!(ct_after.dropped_packets, ct_before.dropped_packets);

    // Verdicts and baseline untouched; the forbidden flow still dropped.
    let probes = probes.load(Ordering::Relaxed);
    assert_eq!(
        forbidden_passed.load(Ordering::Relaxed),
        0,
        "a forbidden probe passed during the flood"
    );
    let badge_dropped = datapath
        .maps()
        .device_stats(badge_slot)
        .unwrap_or_else(|e| panic!("{e}"))
        .dropped_packets;
    assert_eq!(
        badge_dropped - badge_dropped_before,
        probes,
        "every forbidden probe dropped"
    );
    assert_eq!(
        enrolled_baseline(&datapath),
        baseline_before,
        "enrolled baselines changed"
    );
    assert_eq!(
        datapath.maps().devices().unwrap_or_else(|e| panic!("{e}")),
        devices_before
    );
    assert_eq!(udp(badge, service("ntp", NTP)), Outcome::TimedOut);
    assert_eq!(udp(ct, service("dns", DNS)), Outcome::Answered);

    // The pressure is visible: the unenrolled table is full. It is an LRU map, which the
    // kernel keeps just below max_entries (it evicts in batches from per-CPU free lists),
    // so "full" means within 1% of MAX_UNENROLLED, the oldest sources evicted and the
    // newest present.
    let unenrolled = datapath
        .maps()
        .unenrolled_stats()
        .unwrap_or_else(|e| panic!("{e}"));
    let capacity = MAX_UNENROLLED as usize;
    assert!(
        unenrolled.len() <= capacity && unenrolled.len() >= capacity - capacity / 100,
        "the unenrolled table should be at its capacity {capacity} after {flooded} spoofed sources, holds {}",
        unenrolled.len()
    );
    let source = |i: u64| IpAddr::V4(flood_source(i as u32));
    assert!(
        !unenrolled.contains_key(&source(0)),
        "the first spoofed source was never evicted"
    );
    assert!(
        unenrolled.contains_key(&source(flooded - 1)),
        "the newest spoofed source is missing"
    );
    assert!(
        unenrolled.keys().all(|a| !enrolled.contains(a)),
        "an enrolled device among the unenrolled"
    );
    // What the table holds of the flood: sources of it, each seen once, never as a
    // destination.
    let flood_entries: Vec<_> = unenrolled
        .iter()
        .filter(|(a, _)| matches!(a, IpAddr::V4(v4) if sources.contains(v4)))
        .collect();
    assert!(
        flood_entries.len() >= capacity - capacity / 100 - 1,
        "only {} of the table's {} entries are flood sources",
        flood_entries.len(),
        unenrolled.len()
    );
    for (address, stats) in flood_entries {
        assert_eq!(
            (stats.packets_sent, stats.packets_received),
            (1, 0),
            "spoofed source {address}: {stats:?}"
        );
    }
    drop(datapath);
    drop(servers);
}

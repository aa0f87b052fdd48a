use monitor::{Datapath, Maps};
use monitor_common::{maps::defs, memory};

#[test]
fn the_verifier_accepts_both_programs() {
    let datapath = Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("load failed: {e:?}"));
    let mut frame = vec![0u8; 60];
    frame[12] = 0x08;
    frame[13] = 0x06; // ARP
    let verdict = datapath.test_run(&frame).expect("test run");
    assert_eq!(verdict.action, monitor_common::Action::Pass);
}

/// The benchmark's programs pass the verifier too, and `scan_xdp` makes each run of one
/// frame a new flow (here: learned, each under its own port).
#[test]
fn the_benchmarks_programs_load_and_scan_counts_its_frame_up() {
    use monitor_common::maps::programs;
    let mut datapath =
        Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("load failed: {e:?}"));
    for program in [
        programs::DROP,
        programs::SCAN,
        programs::TX_SCAN,
        programs::TX_FLOOD,
    ] {
        datapath
            .load_program(program)
            .unwrap_or_else(|e| panic!("{program}: {e:?}"));
    }
    let frame = monitor_tests::adversarial::udp(
        monitor_tests::adversarial::cast::WS,
        40000,
        monitor_tests::adversarial::cast::SRV,
        1000,
    );
    let verdict = datapath
        .test_run_program(programs::SCAN, &frame, 5)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verdict.action, monitor_common::Action::Pass);
    let mut ports: Vec<u16> = datapath
        .maps()
        .flows(false)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|(key, _)| key.service_port)
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(
        ports,
        vec![1001, 1002, 1003, 1004, 1005],
        "each run a new flow between two unenrolled addresses, one port up"
    );
}

/// The memory the map table says each map takes (the benchmark's table for 2, 16 and 64
/// CPUs comes from the same computation) is what the kernel reports for it on this
/// machine: a map whose definition or the model of its kind is wrong shows here.
#[test]
fn the_kernel_reports_the_memory_the_map_table_computes() {
    let mut datapath =
        Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("load failed: {e:?}"));
    // An entry in a table that grows with them: the baseline learns a flow.
    let learned = monitor_tests::adversarial::udp(
        monitor_tests::adversarial::cast::WS,
        40000,
        monitor_tests::adversarial::cast::SRV,
        443,
    );
    datapath
        .maps_mut()
        .enroll(
            monitor_tests::adversarial::cast::WS.into(),
            monitor_common::maps::DeviceEntry::new(3, monitor_common::maps::MODE_INHERIT, 0),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    datapath
        .test_run(&learned)
        .unwrap_or_else(|e| panic!("{e}"));
    let cpus = aya::util::nr_cpus().unwrap_or_else(|(what, e)| panic!("{what}: {e}")) as u32;
    let reported = datapath
        .map_memory()
        .unwrap_or_else(|e| panic!("reading the kernel's figures: {e}"));
    assert_eq!(reported.len(), defs::ALL.len(), "one figure per map");
    let mut wrong = Vec::new();
    for def in &defs::ALL {
        let (_, kernel, entries) = reported
            .iter()
            .find(|(name, ..)| *name == def.name)
            .copied()
            .unwrap_or_else(|| panic!("no figure for {}", def.name));
        let computed = memory::kernel_bytes(def, cpus, memory::grows(def).then_some(entries));
        if computed != kernel {
            wrong.push(format!(
                "{}: computed {computed} B, the kernel reports {kernel} B",
                def.name
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let baseline = reported
        .iter()
        .find(|(name, ..)| *name == defs::BASELINE.name)
        .map(|(_, _, entries)| *entries);
    assert_eq!(
        baseline,
        Some(1),
        "the learned flow is the baseline's one entry"
    );
}

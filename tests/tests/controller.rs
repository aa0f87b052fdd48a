//! The controller on real traffic: restarts and reloads without a gap, the baseline on
//! disk, break-glass, policy rules, events, bad policies, interfaces that come back.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use monitor::{
    datapath::MapSet,
    lab::{DNS, HTTPS, MLLP, NTP, Outcome, Servers},
    state::StateDir,
    state::inventory::Inventory,
};
use monitor_tests::harness::{Lab, TempDir, example_policy, service};

const QUICK: Duration = Duration::from_millis(300);

/// Runs baseline exchanges and a forbidden probe in a loop until stopped; counts what
/// went wrong.
struct Traffic {
    stop: Arc<AtomicBool>,
    exchanges: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    forbidden_passed: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(lab: &Lab) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let exchanges = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(AtomicU64::new(0));
        let forbidden_passed = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        let badge = monitor_tests::harness::host("badge-reader-icu3");
        let pump = monitor_tests::harness::host("pump-icu3-01");
        {
            let (stop, exchanges, failures) = (stop.clone(), exchanges.clone(), failures.clone());
            threads.push(
                lab.ward
                    .ward
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let udp = monitor::lab::udp_exchange(
                                badge,
                                0,
                                service("dns", DNS),
                                b"q",
                                Duration::from_millis(500),
                            );
                            let tcp = monitor::lab::tcp_exchange(
                                pump,
                                service("pump-server", HTTPS),
                                b"hl7",
                                Duration::from_millis(500),
                            );
                            exchanges.fetch_add(2, Ordering::Relaxed);
                            if udp != Outcome::Answered {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                            if tcp != Outcome::Answered {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    })
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        {
            let (stop, passed) = (stop.clone(), forbidden_passed.clone());
            threads.push(
                lab.ward
                    .ward
                    .spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            if monitor::lab::udp_exchange(
                                badge,
                                0,
                                service("ntp", NTP),
                                b"scan",
                                Duration::from_millis(100),
                            ) == Outcome::Answered
                            {
                                passed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
        Traffic {
            stop,
            exchanges,
            failures,
            forbidden_passed,
            threads,
        }
    }

    /// Stops the loops; returns (exchanges, failures, forbidden that passed).
    fn finish(mut self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        (
            self.exchanges.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.forbidden_passed.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Learns the normal traffic, then enforces.
fn learned_and_enforcing(lab: &mut Lab) {
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "enforce"]);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
}

/// The generation of the policy in the datapath: how many policies were installed into
/// these (freshly pinned) maps, each load at start and each reload.
fn policy_generation(lab: &Lab) -> u32 {
    MapSet::open_pinned(&lab.pin_dir.0)
        .and_then(|maps| maps.config())
        .unwrap_or_else(|e| panic!("reading CONFIG: {e}"))
        .generation
}

/// Replaces `path` with `text` in one rename from a temporary file in `scratch`, so that
/// the daemon never reads a half-written (or empty, and so valid) file.
fn replace_file(scratch: &Path, path: &Path, text: &str) {
    let partial = scratch.join(".partial.yaml");
    std::fs::write(&partial, text).unwrap_or_else(|e| panic!("writing {}: {e}", partial.display()));
    std::fs::rename(&partial, path)
        .unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

/// One spare device, a different one in every round: the edit of round `round`.
fn spare_device(round: u8) -> (String, IpAddr, String) {
    let name = format!("spare-{round:02}");
    let address = IpAddr::from([10, 10, 1, 200 + round]);
    let text =
        format!("devices:\n  - name: {name}\n    kind: workstation\n    addresses: [{address}]\n");
    (name, address, text)
}

#[test]
fn restarts_and_reloads_never_drop_baseline_traffic() {
    let mut lab = Lab::new(&example_policy());
    // Two more policy files that the rounds below edit, each in its own way. The directory
    // watcher sees `spare-watched.yaml` change. `spare-reloaded.yaml` is a symlink to a file
    // outside the directory, replaced there: the watcher (which looks at the directory's
    // entries) does not see that, so only `monitor reload` can bring such an edit in.
    let outside = TempDir::new(&std::env::temp_dir(), "mpout");
    let watched = lab.policy_dir.0.join("spare-watched.yaml");
    let target = outside.0.join("spare-reloaded.yaml");
    std::fs::write(&watched, "devices: []\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&target, "devices: []\n").unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&target, lab.policy_dir.0.join("spare-reloaded.yaml"))
        .unwrap_or_else(|e| panic!("{e}"));
    learned_and_enforcing(&mut lab);
    // Fresh maps: the policy loaded at the start is the first one installed.
    assert_eq!(policy_generation(&lab), 1, "{}", lab.daemon_log());
    let traffic = Traffic::start(&lab);
    std::thread::sleep(Duration::from_millis(300));
    let policy = lab.policy_dir.0.join("ward.yaml");
    let rounds = 20u8;
    let mut previous_spare: [Option<(String, IpAddr)>; 2] = [None, None];
    for round in 0..rounds {
        // Alternate: a change the daemon notices on its own, and an explicit reload.
        let (name, address, text) = spare_device(round);
        let by_watcher = round % 2 == 0;
        if by_watcher {
            replace_file(&outside.0, &watched, &text);
        } else {
            replace_file(&outside.0, &target, &text);
            lab.cli_ok(&["reload"]);
        }
        let expected = 1 + u32::from(round) + 1;
        let state = StateDir::new(&lab.state_dir.0);
        // The daemon installs a policy in the datapath, then saves the inventory.
        let deadline = Instant::now() + Duration::from_secs(10);
        let inventory = loop {
            let inventory = Inventory::load(&state).unwrap_or_else(|e| panic!("{e}"));
            if policy_generation(&lab) >= expected && inventory.find(&name).is_ok() {
                break inventory;
            }
            assert!(
                Instant::now() < deadline,
                "round {round} ({}): the edit was not applied within 10 s\n{}",
                if by_watcher {
                    "watcher"
                } else {
                    "monitor reload"
                },
                lab.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            policy_generation(&lab),
            expected,
            "round {round}: one edit, more than one reload\n{}",
            lab.daemon_log()
        );
        // The edit is in force: the round's device is enrolled in the datapath and in the
        // inventory, and the one it replaced is gone from both.
        let devices = MapSet::open_pinned(&lab.pin_dir.0)
            .and_then(|maps| maps.devices())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            devices.contains_key(&address),
            "round {round}: {name} ({address}) is not enrolled in the datapath after the edit"
        );
        if let Some((old_name, old_address)) = previous_spare[usize::from(round % 2)].take() {
            assert!(
                !devices.contains_key(&old_address) && inventory.find(&old_name).is_err(),
                "round {round}: {old_name} ({old_address}) is still enrolled after the edit replaced it"
            );
        }
        previous_spare[usize::from(round % 2)] = Some((name, address));
    }
    // Longer than the watcher's tick: no reload comes late.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        policy_generation(&lab),
        1 + u32::from(rounds),
        "exactly {rounds} reloads after the start's load\n{}",
        lab.daemon_log()
    );
    assert!(
        !lab.daemon_log().contains("not applied"),
        "a reload failed:\n{}",
        lab.daemon_log()
    );
    lab.stop(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    lab.start(&[]);
    std::thread::sleep(Duration::from_millis(300));
    lab.stop(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    lab.start(&[]);
    // SIGKILL in the middle of a reload.
    replace_file(
        &outside.0,
        &policy,
        &format!("{}\n# killed mid-reload\n", example_policy()),
    );
    lab.cli_ok(&["reload"]);
    std::thread::sleep(Duration::from_millis(2));
    lab.stop(libc::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    lab.start(&[]);
    std::thread::sleep(Duration::from_millis(500));
    let (exchanges, failures, forbidden) = traffic.finish();
    assert!(
        exchanges >= 40,
        "too little traffic to say anything: {exchanges} exchanges"
    );
    assert_eq!(
        failures,
        0,
        "baseline exchanges failed during reloads and restarts\n{}",
        lab.daemon_log()
    );
    assert_eq!(forbidden, 0, "the forbidden flow got through");
    // Still enforcing, counters continued across restarts.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    let devices = lab.cli_ok(&["devices", "--json"]);
    let json: serde_json::Value =
        serde_json::from_str(&devices).unwrap_or_else(|e| panic!("{e}: {devices}"));
    let badge = json["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "badge-reader-icu3"))
        .unwrap_or_else(|| panic!("no badge reader in {devices}"));
    assert!(
        badge["packets_sent"].as_u64().unwrap_or(0) >= exchanges / 2,
        "counters did not continue across restarts: {badge}"
    );
    assert!(badge["dropped_packets"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn the_baseline_survives_sigkill_and_detach() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    // Saved within BASELINE_SAVE_INTERVAL.
    std::thread::sleep(monitor::daemon::BASELINE_SAVE_INTERVAL + Duration::from_millis(1500));
    lab.stop(libc::SIGKILL);
    let saved =
        monitor::state::baseline::BaselineFile::read(&lab.state_dir.0.join("baseline.json"))
            .unwrap_or_else(|e| panic!("baseline file after SIGKILL: {e}"));
    assert!(saved.entries.len() >= 5, "{saved:?}");
    // Everything pinned goes; the next start has fresh maps and restores from disk.
    lab.cli_ok(&["detach"]);
    assert!(!lab.pin_dir.0.exists());
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::Answered,
        "detached: nothing filters"
    );
    lab.start(&["--mode", "enforce"]);
    assert!(
        lab.daemon_log().contains("restored"),
        "{}",
        lab.daemon_log()
    );
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
}

#[test]
fn export_then_import_gives_the_same_behaviour() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    let export = lab.state_dir.0.join("export.json");
    lab.cli_ok(&[
        "baseline",
        "export",
        "--output",
        export.to_str().unwrap_or_default(),
    ]);
    let yaml = lab.cli_ok(&[
        "baseline",
        "export",
        "--format",
        "yaml",
        "--device",
        "badge-reader-icu3",
    ]);
    assert!(
        yaml.contains("badge-reader-icu3") && yaml.contains("action: allow"),
        "{yaml}"
    );
    lab.stop(libc::SIGTERM);
    lab.cli_ok(&["detach"]);
    std::fs::remove_file(lab.state_dir.0.join("baseline.json")).unwrap_or_else(|e| panic!("{e}"));
    lab.start(&["--mode", "enforce"]);
    // Fresh maps, nothing learned: the ward's traffic is dropped...
    assert_eq!(
        lab.udp("badge-reader-icu3", service("dns", DNS), QUICK),
        Outcome::TimedOut
    );
    // ...until the export is imported (with the daemon stopped: an import beside it is
    // refused).
    let refused = lab.cli(&["baseline", "import", export.to_str().unwrap_or_default()]);
    assert!(!refused.status.success(), "an import ran beside the daemon");
    lab.stop(libc::SIGTERM);
    let out = lab.cli_ok(&["baseline", "import", export.to_str().unwrap_or_default()]);
    assert!(out.contains("imported"), "{out}");
    lab.start(&[]);
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    let diff = lab.cli_ok(&["baseline", "diff", export.to_str().unwrap_or_default()]);
    assert!(diff.contains("0 new since the snapshot, 0 gone"), "{diff}");
}

#[test]
fn break_glass_lets_traffic_through_and_expires_on_time() {
    let mut lab = Lab::new(&example_policy());
    learned_and_enforcing(&mut lab);
    let out = lab.cli_ok(&[
        "allow",
        "--device",
        "badge-reader-icu3",
        "--for",
        "3s",
        "--reason",
        "INC-4711 badge server migration",
    ]);
    assert!(out.contains("break-glass"), "{out}");
    let started = Instant::now();
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::Answered
    );
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::Answered
    );
    // Other devices stay enforced.
    assert_eq!(
        lab.udp("ct-scanner-01", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(300),
    );
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut,
        "break-glass did not expire"
    );
    // The daemon closes the record within its save interval.
    std::thread::sleep(monitor::daemon::BASELINE_SAVE_INTERVAL + Duration::from_millis(500));
    let audit = std::fs::read_to_string(lab.state_dir.0.join("audit.jsonl"))
        .unwrap_or_else(|e| panic!("audit: {e}"));
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{audit}");
    assert_eq!(lines[0]["event"], "break-glass-start");
    assert_eq!(lines[0]["reason"], "INC-4711 badge server migration");
    assert_eq!(lines[0]["devices"][0], "badge-reader-icu3");
    assert!(lines[0]["who"].as_str().is_some_and(|w| !w.is_empty()));
    assert_eq!(lines[1]["event"], "break-glass-end");
    let let_through = lines[1]["let_through"]["badge-reader-icu3"]
        .as_u64()
        .unwrap_or(0);
    assert!(let_through >= 2, "{audit}");
}

/// Break-glass on a ward device lifts enforcement for its traffic on both sides: an
/// enrolled, enforced server whose baseline lacks the flow lets it through as well, with
/// the device as the client and as the server, until the break-glass expires.
#[test]
fn break_glass_lifts_the_enforced_peers_baseline_both_ways_until_it_expires() {
    let mut lab = Lab::new(&example_policy());
    learned_and_enforcing(&mut lab);
    // The scanner serves too (a DICOM storage SCP on its own address), for the other way.
    let scanner_scp = SocketAddr::new(monitor_tests::harness::host("ct-scanner-01"), 11112);
    let _ward_server = Servers::start(&lab.ward.ward, &[scanner_scp], &[])
        .unwrap_or_else(|e| panic!("starting the scanner's server: {e}"));
    // Outside both baselines: the scanner learned only PACS, the HL7 engine only the
    // patient monitor, PACS only the scanner's stores to it; all three are enforced.
    let to_hl7 = || lab.tcp("ct-scanner-01", service("hl7-engine", MLLP), QUICK);
    let from_pacs = || lab.core_tcp("pacs", scanner_scp, QUICK);
    assert_eq!(to_hl7(), Outcome::TimedOut, "enforced before break-glass");
    assert_eq!(
        from_pacs(),
        Outcome::TimedOut,
        "enforced before break-glass"
    );
    let hl7_before = lab.device_row("hl7-engine");
    let pacs_before = lab.device_row("pacs");

    lab.cli_ok(&[
        "allow",
        "--device",
        "ct-scanner-01",
        "--for",
        "4s",
        "--reason",
        "INC-4712 scanner reinstall",
    ]);
    let started = Instant::now();
    assert_eq!(
        to_hl7(),
        Outcome::Answered,
        "break-glass device as the client"
    );
    assert_eq!(
        from_pacs(),
        Outcome::Answered,
        "break-glass device as the server"
    );
    // The peers' violations are still counted, as would-drops, not drops.
    for (name, before) in [("hl7-engine", &hl7_before), ("pacs", &pacs_before)] {
        let after = lab.device_row(name);
        let count = |row: &serde_json::Value, field: &str| row[field].as_u64().unwrap_or(0);
        assert_eq!(
            count(&after, "dropped_packets"),
            count(before, "dropped_packets"),
            "{name}: {after}"
        );
        assert!(
            count(&after, "would_drop_packets") > count(before, "would_drop_packets"),
            "{name}: {after}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the exchanges took longer than the break-glass"
    );

    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_millis(300),
    );
    assert_eq!(to_hl7(), Outcome::TimedOut, "break-glass expired (client)");
    assert_eq!(
        from_pacs(),
        Outcome::TimedOut,
        "break-glass expired (server)"
    );
}

#[test]
fn allow_and_deny_rules_apply_in_enforce_mode() {
    let policy = format!(
        "{}\n{}",
        example_policy(),
        r#"
groups:
  - name: icu3-devices
    kinds: [infusion-pump, patient-monitor, badge-reader, workstation]

rules:
  - description: every ICU device may ask the time server
    devices: { group: icu3-devices }
    peer: { cidr: 10.20.0.123/32 }
    protocol: udp
    ports: 123
    action: allow
  - description: the workstation must not use the lab DNS directly
    devices: { device: ws-icu3-nurses }
    peer: { cidr: 10.20.0.53 }
    protocol: udp
    ports: 53
    action: deny
  - description: the CT scanner stores to PACS
    devices: { device: ct-scanner-01 }
    peer: { device: pacs }
    protocol: tcp
    ports: "100-110"
    action: allow
"#
    );
    let mut lab = Lab::new(&policy);
    lab.start(&["--mode", "learn"]);
    // Learning the workstation's DNS use does not beat the deny rule.
    assert_eq!(
        lab.udp("ws-icu3-nurses", service("dns", DNS), QUICK),
        Outcome::Answered
    );
    lab.cli_ok(&["mode", "enforce"]);
    // Nothing else was learned: the allow rules carry these.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::Answered
    );
    assert_eq!(
        lab.udp("pump-icu3-01", service("ntp", NTP), QUICK),
        Outcome::Answered
    );
    assert_eq!(
        lab.tcp("ct-scanner-01", service("pacs", monitor::lab::DICOM), QUICK),
        Outcome::Answered
    );
    // The CT scanner is not in the group; a deny beats the learned baseline.
    assert_eq!(
        lab.udp("ct-scanner-01", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    assert_eq!(
        lab.udp("ws-icu3-nurses", service("dns", DNS), QUICK),
        Outcome::TimedOut
    );
    let status = lab.cli_ok(&["status"]);
    assert!(
        status.contains("policy_allow") && status.contains("policy_deny"),
        "{status}"
    );
    // Violations reach the event log with the device's name, kind and location.
    std::thread::sleep(Duration::from_millis(500));
    let events = lab.cli_ok(&["events", "--json"]);
    let deny = events
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["reason"] == "policy_deny" && e["verdict"] == "drop")
        .unwrap_or_else(|| panic!("no dropped policy_deny event in\n{events}"));
    // In learn mode the same flow was reported as would-drop.
    assert!(
        events
            .lines()
            .any(|l| l.contains("policy_deny") && l.contains("would-drop")),
        "{events}"
    );
    assert_eq!(deny["device"], "ws-icu3-nurses");
    assert_eq!(deny["kind"], "workstation");
    assert_eq!(deny["verdict"], "drop");
    assert_eq!(deny["port"], 53);
    assert!(
        deny["location"]
            .as_str()
            .is_some_and(|l| l.contains("icu-3")),
        "{deny}"
    );
}

#[test]
fn an_interface_that_comes_back_is_attached_again() {
    let mut lab = Lab::new(&example_policy());
    learned_and_enforcing(&mut lab);
    let ward_if = lab
        .ward
        .ward
        .ip(&["-o", "link", "show", "type", "veth"])
        .unwrap_or_else(|e| panic!("{e}"));
    let ward_if = ward_if
        .split(':')
        .nth(1)
        .and_then(|n| n.trim().split('@').next())
        .unwrap_or_else(|| panic!("no veth in the ward: {ward_if}"))
        .to_string();
    // The router's ward leg goes away with its peer, then comes back.
    lab.ward
        .router
        .ip(&["link", "del", &lab.ward.ward_leg])
        .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(1500));
    monitor::lab::veth(
        &lab.ward.router,
        &lab.ward.ward_leg,
        &lab.ward.ward,
        &ward_if,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for address in ["10.10.1.1/24", "fd00:10::1/64"] {
        lab.ward
            .router
            .ip(&["addr", "add", address, "dev", &lab.ward.ward_leg, "nodad"])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    monitor::lab::host_side(
        &lab.ward.ward,
        &ward_if,
        &monitor::lab::WARD_DEVICES,
        "fd00:10::11/64",
        "10.10.1.1",
        "fd00:10::1",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(lab.daemon_log().contains("is back"), "{}", lab.daemon_log());
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
}

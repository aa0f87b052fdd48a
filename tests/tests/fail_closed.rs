//! Fail closed, on real traffic: no operator mistake, second process or reload may switch
//! enforcement off. A compromised badge reader scans the core while the router enforces;
//! every step below must leave it with 0 open ports, the mode in force unchanged and
//! nothing learned.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use monitor::lab::{DICOM, DNS, HTTPS, MLLP, NTP, Outcome};
use monitor_tests::harness::{Lab, TempDir, example_policy, host, monitor_bin, service};

const QUICK: Duration = Duration::from_millis(300);
/// Longer than the daemon's settle time plus a poll: a change of the policy directory has
/// been acted on (or deliberately not) by then.
const SETTLED: Duration = Duration::from_millis(3_000);

/// The badge reader probing the core's services (listening and closed ports) in a loop:
/// counts the probes that reached a server (answered, or refused by its TCP stack).
struct Scan {
    stop: Arc<AtomicBool>,
    probes: Arc<AtomicU64>,
    reached: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Scan {
    fn start(lab: &Lab) -> Scan {
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU64::new(0));
        let reached = Arc::new(AtomicU64::new(0));
        let badge = host("badge-reader-icu3");
        let targets: Vec<SocketAddr> = [
            ("pump-server", HTTPS),
            ("hl7-engine", MLLP),
            ("pacs", DICOM),
            ("pacs", 22),
            ("hl7-engine", 445),
            ("pump-server", 3389),
        ]
        .iter()
        .map(|(name, port)| service(name, *port))
        .collect();
        let thread = {
            let (stop, probes, reached) = (stop.clone(), probes.clone(), reached.clone());
            lab.ward
                .ward
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for target in &targets {
                            let outcome = monitor::lab::tcp_exchange(
                                badge,
                                *target,
                                b"scan",
                                Duration::from_millis(150),
                            );
                            probes.fetch_add(1, Ordering::Relaxed);
                            if outcome != Outcome::TimedOut {
                                reached.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
                .unwrap_or_else(|e| panic!("{e}"))
        };
        Scan {
            stop,
            probes,
            reached,
            thread: Some(thread),
        }
    }

    /// (probes so far, probes that reached a server)
    fn counts(&self) -> (u64, u64) {
        (
            self.probes.load(Ordering::Relaxed),
            self.reached.load(Ordering::Relaxed),
        )
    }

    fn assert_closed(&self, when: &str, lab: &Lab) {
        let (probes, reached) = self.counts();
        assert!(probes > 0, "{when}: the scan sent nothing");
        assert_eq!(
            reached,
            0,
            "{when}: {reached} of {probes} scan probes reached the core\n{}",
            lab.daemon_log()
        );
    }
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn status(lab: &Lab) -> serde_json::Value {
    let text = lab.cli_ok(&["status", "--json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status --json: {e}: {text}"))
}

/// Mode, devices enrolled in the datapath (addresses), baseline entries.
fn enforcement(lab: &Lab) -> (String, u64, u64) {
    let s = status(lab);
    (
        s["status"]["mode"].as_str().unwrap_or("?").to_owned(),
        s["status"]["enrolled_addresses"].as_u64().unwrap_or(0),
        s["status"]["baseline_entries"].as_u64().unwrap_or(0),
    )
}

fn events(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.state_dir.0.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn count_events(lab: &Lab, event: &str) -> usize {
    events(lab).iter().filter(|e| e["event"] == event).count()
}

/// Policies the daemon applied so far (start included).
fn applied(lab: &Lab) -> usize {
    lab.daemon_log().matches(" applied: ").count()
}

/// Waits (up to 20 s: the machine may be busy) until `done` holds.
fn wait_until(lab: &Lab, what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ward learned its normal traffic and is enforced; the badge reader's scan runs.
fn enforcing_with_scan(lab: &mut Lab) -> Scan {
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "enforce"]);
    let scan = Scan::start(lab);
    std::thread::sleep(Duration::from_millis(500));
    scan.assert_closed("enforcing", lab);
    scan
}

#[test]
fn policy_files_removed_half_written_or_restored_never_loosen_enforcement() {
    let mut lab = Lab::new(&example_policy());
    let scan = enforcing_with_scan(&mut lab);
    let before = enforcement(&lab);
    assert_eq!(before.0, "enforce");
    assert!(before.1 >= 8 && before.2 >= 5, "{before:?}");
    let policy = lab.policy_dir.0.join("ward.yaml");
    let text = example_policy();

    // 1. The policy file is deleted: an empty directory is never a policy.
    std::fs::remove_file(&policy).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the deletion to be refused", || {
        count_events(&lab, "policy-failed") >= 1
    });
    assert_eq!(enforcement(&lab), before, "after the file was deleted");
    assert!(
        lab.daemon_log().contains("holds no policy files"),
        "{}",
        lab.daemon_log()
    );
    assert_eq!(count_events(&lab, "policy-failed"), 1, "{:?}", events(&lab));
    scan.assert_closed("after the file was deleted", &lab);

    // 2. It comes back the way `cp` writes it: a part, a pause, the rest. The part parses
    // (it ends between two devices) and enrolls only the first three devices.
    let cut = text
        .find("  - name: badge-reader-icu3")
        .unwrap_or_else(|| panic!("badge reader in the example policy"));
    let loads = applied(&lab);
    std::fs::write(&policy, &text[..cut]).unwrap_or_else(|e| panic!("{e}"));
    std::thread::sleep(Duration::from_millis(600));
    std::fs::write(&policy, &text).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the whole file to be applied", || {
        applied(&lab) > loads
    });
    std::thread::sleep(SETTLED);
    assert_eq!(applied(&lab), loads + 1, "one load, of the whole file");
    assert_eq!(
        count_events(&lab, "policy-held-back"),
        0,
        "the part was read"
    );
    assert_eq!(enforcement(&lab), before, "after a non-atomic replace");
    assert!(
        !lab.daemon_log().contains("3 devices"),
        "the half-written file was applied:\n{}",
        lab.daemon_log()
    );
    scan.assert_closed("after a non-atomic replace", &lab);

    // 3. The part stays (a checkout interrupted half-way): five of eight devices would go,
    // so it is held back, loudly, and the running policy stays.
    std::fs::write(&policy, &text[..cut]).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the truncated file to be held back", || {
        count_events(&lab, "policy-held-back") >= 1
    });
    assert_eq!(enforcement(&lab), before, "after a truncated file");
    assert!(
        lab.daemon_log().contains("removes 5 of 8 devices"),
        "{}",
        lab.daemon_log()
    );
    scan.assert_closed("after a truncated file", &lab);

    // 4. Restored: the same policy, the same mode, nothing learned.
    let loads = applied(&lab);
    std::fs::write(&policy, &text).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the restored file to be applied", || {
        applied(&lab) > loads
    });
    assert_eq!(enforcement(&lab), before, "after the file was restored");
    scan.assert_closed("after the file was restored", &lab);
    // The ward still works.
    lab.assert_normal_traffic(Outcome::Answered);
}

#[test]
fn a_held_back_policy_is_applied_on_purpose_with_accept_shrink() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "enforce"]);
    let policy = lab.policy_dir.0.join("ward.yaml");
    let text = example_policy();
    let cut = text
        .find("  - name: badge-reader-icu3")
        .unwrap_or_else(|| panic!("badge reader in the example policy"));
    std::fs::write(&policy, &text[..cut]).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the policy to be held back", || {
        count_events(&lab, "policy-held-back") == 1
    });
    assert_eq!(enforcement(&lab).1, 8, "held back");
    // `monitor reload` alone holds it back again.
    lab.cli_ok(&["reload"]);
    wait_until(&lab, "the reload to be held back", || {
        count_events(&lab, "policy-held-back") == 2
    });
    assert_eq!(enforcement(&lab).1, 8, "held back on a plain reload");
    let out = lab.cli_ok(&["reload", "--accept-shrink"]);
    assert!(
        out.contains("removes 5 of 8 devices (badge-reader-icu3, hl7-engine, pacs, pump-server, ws-icu3-nurses)"),
        "{out}"
    );
    wait_until(&lab, "the accepted policy", || {
        count_events(&lab, "policy-shrink-accepted") == 1
    });
    assert_eq!(enforcement(&lab).1, 3, "applied on purpose");
    // A missing directory is refused even with --accept-shrink.
    std::fs::remove_file(&policy).unwrap_or_else(|e| panic!("{e}"));
    let out = lab.cli(&["reload", "--accept-shrink"]);
    assert!(
        !out.status.success(),
        "--accept-shrink took an empty directory"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no policy files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the daemon refuses it too, when asked directly.
    let pid = lab.daemon.as_ref().map_or(0, std::process::Child::id);
    // SAFETY: kill(2) on our own child; SIGUSR1 is `reload --accept-shrink`.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    wait_until(&lab, "the empty directory to be refused", || {
        count_events(&lab, "policy-failed") >= 1
    });
    assert_eq!(
        enforcement(&lab).1,
        3,
        "an empty directory is never applied"
    );
}

#[test]
fn a_reload_never_changes_the_mode_in_force() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "audit", "--device", "ws-icu3-nurses"]);
    lab.cli_ok(&["mode", "enforce"]);
    let policy = lab.policy_dir.0.join("ward.yaml");
    // The policy now asks for learn, router-wide and for the badge reader, and a device
    // override of the workstation's mode: none of it changes the mode in force.
    let text = example_policy().replace(
        "    criticality: normal\n    owner: facilities\n",
        "    criticality: normal\n    owner: facilities\n    mode: learn\n",
    );
    assert_ne!(text, example_policy(), "the edit changed nothing");
    std::fs::write(&policy, &text).unwrap_or_else(|e| panic!("{e}"));
    wait_until(&lab, "the edited policy", || {
        count_events(&lab, "mode-kept") >= 1
    });
    let (mode, _, entries) = enforcement(&lab);
    assert_eq!(mode, "enforce");
    assert!(
        lab.daemon_log()
            .contains("device `badge-reader-icu3`: the policy now says mode learn"),
        "{}",
        lab.daemon_log()
    );
    assert_eq!(count_events(&lab, "mode-kept"), 1, "{:?}", events(&lab));
    // The badge reader is still enforced: its scan-like probe is dropped, not learned.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    assert_eq!(enforcement(&lab).2, entries, "nothing learned");
    let devices = lab.cli_ok(&["devices", "--json"]);
    assert!(
        devices.contains("\"mode\": \"audit\""),
        "the operator's override of the workstation stays: {devices}"
    );
    // A restart that asks for learn keeps enforcing.
    lab.stop(libc::SIGTERM);
    lab.start(&["--mode", "learn"]);
    assert_eq!(enforcement(&lab).0, "enforce");
    assert!(
        lab.daemon_log().contains("--mode learn ignored"),
        "{}",
        lab.daemon_log()
    );
    // A reboot takes the pins (and the attachment) away; the state directory knows the
    // mode in force, so the next start enforces again rather than learning.
    lab.stop(libc::SIGTERM);
    std::fs::remove_dir_all(&lab.pin_dir.0).unwrap_or_else(|e| panic!("{e}"));
    lab.start(&["--mode", "learn"]);
    assert_eq!(enforcement(&lab).0, "enforce", "{}", lab.daemon_log());
    assert!(
        lab.daemon_log()
            .contains("restored the enforce mode in force"),
        "{}",
        lab.daemon_log()
    );
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::TimedOut
    );
    lab.assert_normal_traffic(Outcome::Answered);
}

#[test]
fn a_second_daemon_is_refused_and_the_first_runs_on() {
    let mut lab = Lab::new(&example_policy());
    let scan = enforcing_with_scan(&mut lab);
    let first = lab
        .daemon
        .as_ref()
        .map(std::process::Child::id)
        .unwrap_or_else(|| panic!("no daemon"));
    let other_state = TempDir::new(&std::env::temp_dir(), "mstate2");
    let other_pins = TempDir(Path::new("/sys/fs/bpf").join(monitor::lab::unique_name("mtest2")));
    let second = |pin_dir: &Path, state_dir: &Path| {
        Command::new(monitor_bin())
            .arg("--pin-dir")
            .arg(pin_dir)
            .arg("--state-dir")
            .arg(state_dir)
            .args(["run", "--netns", lab.ward.router.name()])
            .args(["--iface", &lab.ward.ward_leg, "--iface", &lab.ward.core_leg])
            .args(["--mode", "learn", "--metrics-addr", "off"])
            .arg("--policies")
            .arg(&lab.policy_dir.0)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("second monitor run: {e}"))
    };
    for (what, pins, state) in [
        (
            "same pins, another state directory",
            &lab.pin_dir.0,
            &other_state.0,
        ),
        (
            "same pins, same state directory",
            &lab.pin_dir.0,
            &lab.state_dir.0,
        ),
        (
            "other pins, same state directory",
            &other_pins.0,
            &lab.state_dir.0,
        ),
    ] {
        let out = second(pins, state);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the second run started");
        assert!(
            stderr.contains(&format!("pid {first}")) && stderr.contains("refused"),
            "{what}: {stderr}"
        );
        assert_eq!(enforcement(&lab).0, "enforce", "{what}");
        scan.assert_closed(what, &lab);
    }
    assert!(!other_pins.0.exists(), "the refused run pinned nothing");
    // The first daemon is still the one `status` reports, and it still works.
    let s = status(&lab);
    assert_eq!(s["daemon"]["pid"].as_u64(), Some(u64::from(first)), "{s}");
    let text = lab.cli_ok(&["status"]);
    assert!(text.contains(&format!("daemon: pid {first}")), "{text}");
    // Neither detach nor a baseline import runs beside it.
    for args in [
        vec!["detach"],
        vec!["baseline", "import", "/nonexistent.json"],
    ] {
        let out = lab.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran beside the daemon");
        assert!(
            stderr.contains(&format!("pid {first}")),
            "{args:?}: {stderr}"
        );
    }
    assert!(lab.pin_dir.0.join("CONFIG").exists(), "detach removed pins");
    scan.assert_closed("after detach and import were refused", &lab);
    lab.assert_normal_traffic(Outcome::Answered);
    // Stopped, it is reported as stopped (exit 3, as LSB says); detach then works.
    lab.stop(libc::SIGTERM);
    let out = lab.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("daemon: not running"), "{text}");
    lab.cli_ok(&["detach"]);
}

#[test]
fn a_start_that_fails_leaves_nothing_behind() {
    let lab = Lab::new(&example_policy());
    let run = |policies: &Path, iface: &str| {
        Command::new(monitor_bin())
            .arg("--pin-dir")
            .arg(&lab.pin_dir.0)
            .arg("--state-dir")
            .arg(&lab.state_dir.0)
            .args(["run", "--netns", lab.ward.router.name()])
            .args(["--iface", iface, "--metrics-addr", "off"])
            .arg("--policies")
            .arg(policies)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("monitor run: {e}"))
    };
    let empty = TempDir::new(&std::env::temp_dir(), "mempty");
    let broken = TempDir::new(&std::env::temp_dir(), "mbroken");
    std::fs::write(
        broken.0.join("ward.yaml"),
        "devices:\n  - name: [unclosed\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ward_leg = lab.ward.ward_leg.clone();
    for (what, policies, iface, expected) in [
        (
            "a missing policy directory",
            Path::new("/nonexistent-policies"),
            ward_leg.as_str(),
            "/nonexistent-policies",
        ),
        (
            "an empty policy directory",
            empty.0.as_path(),
            ward_leg.as_str(),
            "holds no policy files",
        ),
        (
            "a policy that does not parse",
            broken.0.as_path(),
            ward_leg.as_str(),
            "ward.yaml:2",
        ),
        (
            "an interface that does not exist",
            lab.policy_dir.0.as_path(),
            "no-such-if0",
            "no-such-if0",
        ),
    ] {
        let out = run(policies, iface);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: started");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(
            !stderr.contains("the running policy stays"),
            "{what}: claims a running policy: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&lab.pin_dir.0)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{what}: left pinned {left:?}");
    }
    // Nothing was attached: the ward's traffic is not filtered.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("ntp", NTP), QUICK),
        Outcome::Answered
    );
    // `policy check` says the same of an empty directory.
    let out = lab.cli(&["policy", "check", empty.0.to_str().unwrap_or_default()]);
    assert!(
        !out.status.success(),
        "policy check passed an empty directory"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no policy files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn learning_windows_say_what_each_mode_command_added() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--mode", "enforce"]);
    // Nothing learned yet: the badge reader's DNS is dropped.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("dns", DNS), QUICK),
        Outcome::TimedOut
    );
    let out = lab.cli_ok(&["mode", "learn", "--device", "badge-reader-icu3"]);
    assert!(out.contains("learning window 1 opened"), "{out}");
    assert_eq!(
        lab.udp("badge-reader-icu3", service("dns", DNS), QUICK),
        Outcome::Answered
    );
    lab.cli_ok(&["mode", "inherit", "--device", "badge-reader-icu3"]);
    let out = lab.cli_ok(&["mode", "learn"]);
    assert!(out.contains("learning window 2 opened"), "{out}");
    assert_eq!(
        lab.tcp("pump-icu3-01", service("pump-server", HTTPS), QUICK),
        Outcome::Answered
    );
    lab.cli_ok(&["mode", "enforce"]);
    let windows = lab.cli_ok(&["baseline", "windows", "--json"]);
    let windows: serde_json::Value =
        serde_json::from_str(&windows).unwrap_or_else(|e| panic!("{e}: {windows}"));
    let row = |n: u64| {
        windows
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["window"] == n))
            .cloned()
            .unwrap_or_else(|| panic!("no window {n} in {windows}"))
    };
    assert_eq!(
        row(1)["command"],
        "monitor mode learn --device badge-reader-icu3"
    );
    // One flow each, seen from both of its enrolled ends for the pump (it and its server).
    assert_eq!(row(1)["entries"], 1, "{windows}");
    assert!(row(2)["entries"].as_u64() >= Some(2), "{windows}");
    let diff = lab.cli_ok(&["baseline", "diff", "--window", "1"]);
    assert!(
        diff.contains(&format!("+ badge-reader-icu3 out {} udp/53", host("dns")))
            && diff.contains("1 entries learned in window 1"),
        "{diff}"
    );
    let diff = lab.cli_ok(&["baseline", "diff", "--window", "2"]);
    assert!(
        diff.contains("+ pump-icu3-01 out pump-server tcp/443") && !diff.contains("badge-reader"),
        "{diff}"
    );
    // The windows survive the baseline's trip to disk and back (restart from fresh maps).
    lab.stop(libc::SIGTERM);
    lab.cli_ok(&["detach"]);
    lab.start(&["--mode", "enforce"]);
    let diff = lab.cli_ok(&["baseline", "diff", "--window", "1"]);
    assert!(diff.contains("1 entries learned in window 1"), "{diff}");
}

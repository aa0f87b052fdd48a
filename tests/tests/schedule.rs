//! The baseline's schedule on real traffic: the ward learns on a Monday morning, then the
//! site's clock (written by the controller, set here as a drill would with `monitor
//! clock set`) moves on to Wednesday night, and the same baseline flows are off their
//! schedule: reported with the device's name, dropped only where the policy says
//! `schedule: enforce`, never for a kind whose schedule is ignored.

use std::time::Duration;

use monitor::lab::{DNS, HTTPS, MLLP, NTP, Outcome};
use monitor_tests::harness::{Lab, example_policy, service};

const QUICK: Duration = Duration::from_millis(800);

/// The example ward with a site time zone and tolerance, patient monitors' schedules
/// ignored (they run round the clock), and the nurses' workstation's enforced.
fn policy() -> String {
    let policy = example_policy()
        .replacen(
            "  unenrolled: pass\n",
            "  unenrolled: pass\n  time-zone: Europe/Berlin\n  schedule-tolerance: 1\n  \
             schedule-by-kind:\n    patient-monitor: ignore\n",
            1,
        )
        .replacen(
            "    owner: clinical-it\n\n  # Servers",
            "    owner: clinical-it\n    schedule: enforce\n\n  # Servers",
            1,
        );
    assert!(
        policy.contains("time-zone") && policy.contains("schedule: enforce"),
        "the example policy changed shape:\n{policy}"
    );
    policy
}

fn events(lab: &Lab) -> Vec<serde_json::Value> {
    lab.cli_ok(&["events", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits for the daemon to write `what` down (events are pumped asynchronously).
fn off_schedule_events(lab: &Lab, device: &str, verdict: &str) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<_> = events(lab)
            .into_iter()
            .filter(|e| e["reason"] == "off_schedule" && e["device"] == device)
            .filter(|e| e["verdict"] == verdict)
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_baseline_flow_off_its_schedule_is_reported_and_dropped_only_where_asked() {
    let mut lab = Lab::new(&policy());
    lab.start(&[]);
    // Monday 10:00 at the site: the ward's normal day, learned.
    let set = lab.cli_ok(&["clock", "set", "mon 10"]);
    assert!(set.contains("mon 10:00"), "{set}");
    // The daemon takes in the clock at once (and records the learning coverage).
    std::thread::sleep(Duration::from_millis(600));
    lab.assert_normal_traffic(Outcome::Answered);
    lab.assert_normal_traffic(Outcome::Answered);

    // The schedule is in the live baseline, in `monitor flows` and in the export.
    let flows: serde_json::Value =
        serde_json::from_str(&lab.cli_ok(&["flows", "--device", "badge-reader-icu3", "--json"]))
            .unwrap_or_else(|e| panic!("flows --json: {e}"));
    let dns_flow = flows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["service_port"] == DNS))
        .unwrap_or_else(|| panic!("no DNS flow of the badge reader in {flows}"));
    assert_eq!(dns_flow["in_baseline"], true, "{dns_flow}");
    assert_eq!(dns_flow["schedule"], "mon 10-11", "{dns_flow}");
    let export = lab.cli_ok(&["baseline", "export", "--device", "badge-reader-icu3"]);
    assert!(export.contains(r#""schedule": "mon 10-11""#), "{export}");
    // The badge reader learned (at least) Monday 10:00; far from a whole week.
    let coverage = lab.device_row("badge-reader-icu3")["learning_coverage_hours"].clone();
    assert!(
        coverage.as_u64().is_some_and(|h| (1..168).contains(&h)),
        "coverage {coverage}"
    );

    // Enforcing a baseline learned over less than a week is warned about.
    let output = lab.cli(&["mode", "enforce"]);
    assert!(output.status.success(), "{output:?}");
    let warning = String::from_utf8_lossy(&output.stderr);
    assert!(
        warning.contains("device badge-reader-icu3 learned over only")
            && warning.contains("of the 168 hours of the week"),
        "{warning}"
    );
    // Within the learned hours, everything the ward learned passes.
    lab.assert_normal_traffic(Outcome::Answered);
    let before = events(&lab).len();

    // Wednesday 03:00 at the site: the same flows, off their schedule.
    lab.cli_ok(&["clock", "set", "wed 03"]);
    let t = QUICK;
    // The policy asks no drop of the badge reader: reported, let through.
    assert_eq!(
        lab.udp("badge-reader-icu3", service("dns", DNS), t),
        Outcome::Answered
    );
    // Nor of the life-critical pump (never dropped without its confirmation anyway).
    assert_eq!(
        lab.tcp("pump-icu3-01", service("pump-server", HTTPS), t),
        Outcome::Answered
    );
    // Patient monitors' schedules are ignored.
    assert_eq!(
        lab.tcp("monitor-icu3-01", service("hl7-engine", MLLP), t),
        Outcome::Answered
    );
    // The nurses' workstation says `schedule: enforce`: dropped.
    assert_eq!(
        lab.udp("ws-icu3-nurses", service("ntp", NTP), t),
        Outcome::TimedOut
    );

    let badge = off_schedule_events(&lab, "badge-reader-icu3", "would-drop");
    assert!(
        !badge.is_empty(),
        "no would-drop off_schedule event of the badge reader in\n{:#?}",
        &events(&lab)[before..]
    );
    assert_eq!(badge[0]["port"], DNS, "{}", badge[0]);
    assert_eq!(badge[0]["kind"], "badge-reader", "{}", badge[0]);
    let ws = off_schedule_events(&lab, "ws-icu3-nurses", "drop");
    assert!(
        !ws.is_empty(),
        "no dropped off_schedule event of the workstation in\n{:#?}",
        &events(&lab)[before..]
    );
    let pump = off_schedule_events(&lab, "pump-icu3-01", "would-drop");
    assert!(!pump.is_empty(), "no off_schedule event of the pump");
    let unwanted: Vec<serde_json::Value> = events(&lab)
        .into_iter()
        .filter(|e| e["reason"] == "off_schedule")
        .filter(|e| {
            let ignored = e["device"] == "monitor-icu3-01";
            let dropped_unasked = e["verdict"] == "drop" && e["device"] != "ws-icu3-nurses";
            ignored || dropped_unasked
        })
        .collect();
    assert!(
        unwanted.is_empty(),
        "off_schedule events of an ignored schedule, or drops nobody asked for: {unwanted:#?}"
    );

    // Back within the learned hours (tolerance 1: Monday 11:00 counts), it passes again.
    lab.cli_ok(&["clock", "set", "mon 11"]);
    assert_eq!(
        lab.udp("ws-icu3-nurses", service("ntp", NTP), t),
        Outcome::Answered
    );
    let shown = lab.cli_ok(&["clock"]);
    assert!(
        shown.contains("mon 11:00") && shown.contains("fixed"),
        "{shown}"
    );
}

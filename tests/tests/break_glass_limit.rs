//! Break-glass has a maximum duration: 4 hours unless the policy in force sets
//! `defaults: break-glass-max`. `monitor allow --for` beyond it is refused, naming the limit
//! and where it is set, and changes nothing: no audit record, no inventory change, no
//! device entry in the datapath touched, enforcement still on.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use monitor::{
    datapath::MapSet,
    lab::{NTP, Outcome},
};
use monitor_common::maps::DeviceEntry;
use monitor_tests::harness::{Lab, TempDir, example_policy, monitor_bin, service};

const QUICK: Duration = Duration::from_millis(300);
const AUDIT_FILE: &str = "audit.jsonl";
const BADGE: &str = "badge-reader-icu3";

/// The example ward with `break-glass-max: MAX` in its defaults (none: as it is).
fn policy_with_max(max: Option<&str>) -> String {
    let policy = example_policy();
    let Some(max) = max else {
        return policy;
    };
    let line = "  unenrolled: pass\n";
    assert!(
        policy.contains(line),
        "policies/ward.yaml has no `{line}` to add to"
    );
    policy.replacen(line, &format!("{line}  break-glass-max: {max}\n"), 1)
}

/// Learns the ward's normal traffic, then enforces: the badge reader's NTP is dropped.
fn enforcing(policy: &str) -> Lab {
    let mut lab = Lab::new(policy);
    lab.start(&["--mode", "learn"]);
    lab.assert_normal_traffic(Outcome::Answered);
    lab.cli_ok(&["mode", "enforce"]);
    assert_eq!(
        lab.udp(BADGE, service("ntp", NTP), QUICK),
        Outcome::TimedOut,
        "badge → ntp is not in the baseline"
    );
    lab
}

/// What a break-glass changes: the inventory file, the audit log, the datapath's devices.
#[derive(Debug, PartialEq)]
struct Trace {
    inventory: Vec<u8>,
    audit: Option<String>,
    devices: BTreeMap<IpAddr, DeviceEntry>,
}

fn trace(lab: &Lab) -> Trace {
    let state = &lab.state_dir.0;
    let maps = MapSet::open_pinned(&lab.pin_dir.0).unwrap_or_else(|e| panic!("pinned maps: {e}"));
    Trace {
        inventory: std::fs::read(state.join("inventory.json"))
            .unwrap_or_else(|e| panic!("inventory.json: {e}")),
        audit: std::fs::read_to_string(state.join(AUDIT_FILE)).ok(),
        devices: maps.devices().unwrap_or_else(|e| panic!("DEVICES: {e}")),
    }
}

/// `monitor allow --device BADGE --for DURATION`: its output, and whether it succeeded.
fn allow(lab: &Lab, duration: &str) -> (bool, String) {
    let output = lab.cli(&[
        "allow",
        "--device",
        BADGE,
        "--for",
        duration,
        "--reason",
        "INC-0815 vendor remote session",
    ]);
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn assert_refused(lab: &Lab, duration: &str, says: &[&str]) {
    let before = trace(lab);
    let (ok, text) = allow(lab, duration);
    assert!(!ok, "`allow --for {duration}` was granted:\n{text}");
    for part in says {
        assert!(
            text.contains(part),
            "`allow --for {duration}` refused without saying `{part}`:\n{text}"
        );
    }
    assert_eq!(
        trace(lab),
        before,
        "the refused `allow --for {duration}` changed the state or the datapath"
    );
    assert_eq!(
        lab.udp(BADGE, service("ntp", NTP), QUICK),
        Outcome::TimedOut,
        "the refused `allow --for {duration}` lifted enforcement"
    );
}

fn audit_records(lab: &Lab) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.state_dir.0.join(AUDIT_FILE))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Waits until the daemon's inventory holds a break-glass limit of `seconds` (it has applied
/// the policy that sets it).
fn wait_for_limit(lab: &Lab, seconds: u64) {
    let path = lab.state_dir.0.join("inventory.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let inventory: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let limit = &inventory["break-glass-limit"];
        if limit["max-seconds"].as_u64() == Some(seconds) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not apply a limit of {seconds} s (inventory has {limit}):\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn break_glass_beyond_the_default_limit_is_refused_and_changes_nothing() {
    let lab = enforcing(&policy_with_max(None));
    assert!(
        !lab.state_dir.0.join(AUDIT_FILE).exists(),
        "an audit log before any break-glass"
    );
    // The report's case: until the year 2300.
    assert_refused(
        &lab,
        "100000d",
        &[
            "longer than the 4h allowed",
            "the built-in default",
            "break-glass-max",
            "nothing was changed",
        ],
    );
    assert_refused(&lab, "4h 1s", &["longer than the 4h allowed"]);
    assert!(
        !lab.state_dir.0.join(AUDIT_FILE).exists(),
        "refusals wrote an audit log"
    );
    // The limit itself is allowed.
    let (ok, text) = allow(&lab, "4h");
    assert!(ok, "`allow --for 4h` refused:\n{text}");
    assert_eq!(
        lab.udp(BADGE, service("ntp", NTP), QUICK),
        Outcome::Answered,
        "break-glass for 4h did not lift enforcement"
    );
    let records = audit_records(&lab);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["event"], "break-glass-start");
}

#[test]
fn the_policy_in_force_sets_the_limit_and_a_bad_one_keeps_the_last() {
    let lab = enforcing(&policy_with_max(Some("8h")));
    let file = lab.policy_dir.0.join("ward.yaml");
    wait_for_limit(&lab, 8 * 3600);
    let set_in = format!("`defaults: break-glass-max` in {}", file.display());
    assert_refused(&lab, "9h", &["longer than the 8h allowed", &set_in]);
    // Beyond the default, within the policy's limit.
    let (ok, text) = allow(&lab, "6h");
    assert!(ok, "`allow --for 6h` under an 8h limit refused:\n{text}");
    assert_eq!(audit_records(&lab).len(), 1);
    assert_eq!(
        lab.udp(BADGE, service("ntp", NTP), QUICK),
        Outcome::Answered
    );

    // A lower limit takes effect with the reload...
    std::fs::write(&file, policy_with_max(Some("2h"))).unwrap_or_else(|e| panic!("{e}"));
    lab.cli_ok(&["reload"]);
    wait_for_limit(&lab, 2 * 3600);
    let before = trace(&lab);
    let (ok, text) = allow(&lab, "3h");
    assert!(
        !ok,
        "`allow --for 3h` under a 2h limit was granted:\n{text}"
    );
    assert!(text.contains("longer than the 2h allowed"), "{text}");
    assert_eq!(trace(&lab), before);

    // ...and a policy with a bad limit is not applied: the 2h limit stays in force.
    std::fs::write(&file, policy_with_max(Some("30d"))).unwrap_or_else(|e| panic!("{e}"));
    lab.cli_ok(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .daemon_log()
        .contains("is longer than the 7days a policy may allow")
    {
        assert!(
            Instant::now() < deadline,
            "the daemon did not refuse `break-glass-max: 30d`:\n{}",
            lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, text) = allow(&lab, "3h");
    assert!(
        !ok,
        "`allow --for 3h` granted after a policy with a bad limit:\n{text}"
    );
    assert!(text.contains("longer than the 2h allowed"), "{text}");
    assert_eq!(audit_records(&lab).len(), 1);
}

#[test]
fn policy_check_refuses_a_bad_break_glass_max_with_file_line_and_column() {
    for (value, reason) in [
        ("0s", "is shorter than 1m"),
        ("30d", "is longer than the 7days a policy may allow"),
        ("a while", "is not a duration such as 8h or 90m"),
    ] {
        let dir = TempDir::new(&std::env::temp_dir(), "mbgmax");
        let file = dir.0.join("ward.yaml");
        let policy = policy_with_max(Some(value));
        std::fs::write(&file, &policy).unwrap_or_else(|e| panic!("{e}"));
        let line = policy
            .lines()
            .position(|l| l.contains("break-glass-max"))
            .unwrap_or_else(|| panic!("no break-glass-max line"))
            + 1;
        let output = Command::new(monitor_bin())
            .args(["policy", "check"])
            .arg(&dir.0)
            .output()
            .unwrap_or_else(|e| panic!("running monitor policy check: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !output.status.success(),
            "`break-glass-max: {value}` passed the check:\n{text}"
        );
        // The value's column: after `  break-glass-max: `.
        let place = format!("{}:{line}:20: ", Path::new(&file).display());
        assert!(
            text.lines()
                .any(|l| l.contains(&place) && l.contains(reason)),
            "`monitor policy check` does not say `{place}... {reason}` for `{value}`:\n{text}"
        );
    }
}

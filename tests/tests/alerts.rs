//! The Prometheus alert rules shipped in `prometheus/alerts.yml`: `promtool check rules`
//! accepts them, their unit tests (`prometheus/alerts.test.yml`, two routers of a fleet)
//! pass under `promtool test rules`, every alert the issue asks for is there and is tested
//! firing, and the tests notice a changed threshold, `for` or lost router label.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use monitor_tests::harness::TempDir;

fn prometheus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../prometheus")
}

fn read(name: &str) -> String {
    let path = prometheus_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool(args: &[&str], dir: &Path) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("running promtool (Debian package `prometheus`; `cargo xtask setup` installs it): {e}")
        })
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The alerts the rules define, in order.
fn alerts(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|a| a.trim().to_owned())
        .collect()
}

#[test]
fn promtool_accepts_the_rules_and_their_tests_pass() {
    let dir = prometheus_dir();
    let check = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(
        check.status.success(),
        "promtool check rules:\n{}",
        text(&check)
    );
    let test = promtool(&["test", "rules", "alerts.test.yml"], &dir);
    assert!(
        test.status.success() && text(&test).contains("SUCCESS"),
        "promtool test rules:\n{}",
        text(&test)
    );
}

#[test]
fn every_alert_asked_for_is_there_and_tested_firing() {
    let rules = alerts(&read("alerts.yml"));
    for asked in [
        // Violations in enforce: traffic dropped.
        "MonitorViolationsDropped",
        // Enforcement held back: life-critical, enforce applies, not confirmed.
        "MonitorEnforcementHeldBack",
        // A datapath table at least 90% full.
        "MonitorTableNearlyFull",
        // The controller down, or no controller scraped at all.
        "MonitorControllerDown",
        "MonitorControllerAbsent",
        // A policy reload failed or held back.
        "MonitorPolicyReloadFailed",
        "MonitorPolicyHeldBack",
        // Break-glass in force.
        "MonitorBreakGlassActive",
    ] {
        assert!(rules.iter().any(|r| r == asked), "alerts.yml lacks {asked}");
    }
    // Each alert has a test where it fires (an `alertname:` whose `exp_alerts` lists one).
    let tests = read("alerts.test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let fired: Vec<&str> = lines
        .windows(2)
        .filter_map(|pair| {
            let name = pair[0].strip_prefix("alertname: ")?;
            (pair[1] == "exp_alerts:").then_some(name)
        })
        .collect();
    for alert in &rules {
        assert!(
            fired.contains(&alert.as_str()),
            "alerts.test.yml has no test where {alert} fires"
        );
    }
}

#[test]
fn the_tests_notice_a_changed_threshold_delay_or_lost_router_label() {
    let rules = read("alerts.yml");
    let tests = read("alerts.test.yml");
    for (from, to, alert) in [
        (
            "hospmon_map_pressure_ratio >= 0.9",
            "hospmon_map_pressure_ratio >= 0.95",
            "MonitorTableNearlyFull",
        ),
        (
            "expr: up{job=\"hospital-monitor\"} == 0\n        for: 2m",
            "expr: up{job=\"hospital-monitor\"} == 0\n        for: 1m",
            "MonitorControllerDown",
        ),
        (
            "sum by (instance, medical_device, kind, ward)",
            "sum by (medical_device, kind, ward)",
            "MonitorViolationsDropped",
        ),
        (
            "hospmon_device_break_glass == 1",
            "hospmon_device_break_glass >= 0",
            "MonitorBreakGlassActive",
        ),
        (
            "hospmon_device_enforcement_held_back == 1\n        for: 15m",
            "hospmon_device_enforcement_held_back == 1\n        for: 5m",
            "MonitorEnforcementHeldBack",
        ),
    ] {
        assert!(rules.contains(from), "alerts.yml has `{from}`");
        let dir = TempDir::new(&std::env::temp_dir(), "malerts");
        std::fs::write(dir.0.join("alerts.yml"), rules.replacen(from, to, 1))
            .unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.0.join("alerts.test.yml"), &tests).unwrap_or_else(|e| panic!("{e}"));
        let output = promtool(&["test", "rules", "alerts.test.yml"], &dir.0);
        assert!(
            !output.status.success() && text(&output).contains(alert),
            "with `{to}` instead of `{from}`, promtool test rules should fail on {alert}:\n{}",
            text(&output)
        );
    }
}

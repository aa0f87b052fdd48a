//! The demo lab, the project's main job: it runs end to end, and Ctrl-C in the middle
//! still removes every namespace, pin and state file it made.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::harness::monitor_bin;

/// The namespace names the demo printed ("router X (legs ...), ward Y, core Z").
fn namespaces_in(output: &str) -> Vec<String> {
    let line = output
        .lines()
        .find(|l| l.trim_start().starts_with("router "))
        .unwrap_or_else(|| panic!("the demo did not name its namespaces:\n{output}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |word: &str| {
        words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .and_then(|i| words.get(i + 1))
            .map(|w| w.trim_end_matches(',').to_string())
            .unwrap_or_else(|| panic!("no `{word}` in {line}"))
    };
    vec![after("router"), after("ward"), after("core")]
}

fn netns_list() -> String {
    monitor::lab::run("ip", &["netns", "list"]).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn ctrl_c_in_the_middle_still_removes_everything() {
    let mut child = Command::new(monitor_bin())
        .arg("demo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting the demo: {e}"));
    // Interrupt once the ward is up and the monitor is being started.
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut output);
    }
    assert!(
        !status.success(),
        "an interrupted demo must not report success:\n{output}"
    );
    assert!(
        !output.contains("Result: normal traffic intact"),
        "the demo ran to its end despite Ctrl-C:\n{output}"
    );
    let left = netns_list();
    for ns in namespaces_in(&output) {
        assert!(
            !left.contains(&ns),
            "namespace {ns} left behind after Ctrl-C: {left}"
        );
    }
    let pins: Vec<_> = std::fs::read_dir("/sys/fs/bpf")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    // Its pin directory is named after its pid (lab::unique_name).
    let own = format!("monitor-demo{}x", child.id() % 100_000);
    assert!(
        !pins.iter().any(|p| p.starts_with(&own)),
        "pins left behind: {pins:?}"
    );
}

#[test]
fn the_demo_runs_end_to_end_and_leaves_nothing_behind() {
    let output = Command::new(monitor_bin())
        .arg("demo")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running the demo: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "Result: normal traffic intact, the scan was dropped, the impostor was dropped, \
             the new device was discovered."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("impostor: 2/2 exchanges dropped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("address of pump-icu3-01 seen from unknown MAC 00:0c:29:66:66:66"),
        "the event names the impostor's MAC: {stdout}"
    );
    assert!(
        stdout.contains("discovered: 00:0c:29:aa:bb:cc")
            && stdout.contains("name: discovered-000c29aabbcc"),
        "the new device is listed with its entry: {stdout}"
    );
    assert!(
        stdout.contains("0 got a reply, 50 were dropped at the router"),
        "{stdout}"
    );
    let left = netns_list();
    for ns in namespaces_in(&stdout) {
        assert!(!left.contains(&ns), "namespace {ns} left behind: {left}");
    }
}

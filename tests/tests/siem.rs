//! Events reach a SIEM: a real rsyslog (Debian's `rsyslogd`, started here with a
//! configuration of its own on a free loopback port, writing what it parsed to a file of
//! its own in a temporary directory; never the machine's rsyslog) receives the monitor's
//! events as RFC 5424 messages and parses their structured data: a violation with the
//! device's name, kind and location, a break-glass (started by the CLI, ended by the
//! daemon), policy loads (applied, failed, held back) and mode changes; over UDP, and over
//! TCP with a collector that starts late and one that restarts, neither losing an event.

mod obs;

use std::{
    net::UdpSocket,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor::lab::{DNS, NTP, Outcome};
use monitor_tests::harness::{TempDir, host, service};
use obs::{ObsLab, WARD_POLICY, free_port, sample, wait_for};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_millis(800);
/// The structured data element of the monitor's events.
const SD_ID: &str = "hospmon@32473";
/// local0 (16) times 8, plus the severity.
const PRI_ERROR: &str = "131";
const PRI_WARNING: &str = "132";
const PRI_NOTICE: &str = "133";

/// A loopback port free for both UDP and TCP.
fn free_udp_tcp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// rsyslogd listening on 127.0.0.1:`port` (UDP and TCP), writing each message it gets as
/// one JSON line to `DIR/received.jsonl`: its parse of the header (protocol version, PRI,
/// host, app, MSGID, MSG), the input it came by, and the structured data as
/// `rfc5424-sd.SD-ID.NAME` (mmpstrucdata). Stopped on drop.
struct Rsyslog {
    child: Child,
}

impl Rsyslog {
    fn start(dir: &Path, port: u16) -> Rsyslog {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap_or_else(|e| panic!("{e}"));
        let output = dir.join("received.jsonl");
        let config = dir.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                r#"global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
module(load="mmpstrucdata")
input(type="imudp" address="127.0.0.1" port="{port}")
input(type="imtcp" address="127.0.0.1" port="{port}")
template(name="event" type="list") {{ property(name="$!all-json") constant(value="\n") }}
action(type="mmpstrucdata")
set $!protocol = $protocol-version;
set $!pri = $pri;
set $!hostname = $hostname;
set $!app = $app-name;
set $!msgid = $msgid;
set $!msg = $msg;
set $!input = $inputname;
action(type="omfile" file="{output}" template="event")
"#,
                work = work.display(),
                output = output.display()
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("rsyslogd.log"))
            .unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap_or_else(|e| panic!("{e}")))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting rsyslogd (Debian package `rsyslog`; `cargo xtask setup` installs it): {e}")
            });
        let rsyslog = Rsyslog { child };
        // Ready when a probe sent over UDP is written out and TCP takes connections.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let nonce = format!("probe-{}", std::process::id());
        wait_for("rsyslogd to take messages", Duration::from_secs(20), || {
            let _ = probe.send_to(
                format!("<14>1 - - probe - {nonce} -").as_bytes(),
                ("127.0.0.1", port),
            );
            let got = received(dir).iter().any(|m| m["msgid"] == nonce.as_str())
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            got.then_some(())
        });
        rsyslog
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every message rsyslog wrote out so far.
fn received(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("received.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A structured data parameter of a received message.
fn sd<'a>(message: &'a Value, name: &str) -> &'a str {
    message["rfc5424-sd"][SD_ID][name].as_str().unwrap_or("")
}

/// Waits (up to `limit`) for a message from the monitor with MSGID `event` for which
/// `matches` holds; panics with what rsyslog and the daemon said.
fn wait_event(
    dir: &Path,
    lab: &ObsLab,
    event: &str,
    limit: Duration,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = received(dir)
            .into_iter()
            .find(|m| m["app"] == "monitor" && m["msgid"] == event && matches(m))
        {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog got no matching `{event}` within {limit:?}; it got:\n{}\n\nthe daemon's log:\n{}",
            std::fs::read_to_string(dir.join("received.jsonl")).unwrap_or_default(),
            lab.lab.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// This machine's host name: the HOSTNAME of every message.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_else(|e| panic!("{e}"))
        .trim()
        .to_owned()
}

/// The lines of the daemon's events file.
fn events_file(lab: &ObsLab) -> Vec<Value> {
    std::fs::read_to_string(lab.lab.state_dir.0.join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The policy of the lab with one more device.
fn with_spare_pump() -> String {
    format!(
        "{WARD_POLICY}  - name: pump-spare-07\n    kind: infusion-pump\n    addresses: [10.10.1.16]\n"
    )
}

/// Learns the CT scanner's DNS, enforces (a mode change), and lets the badge reader's
/// NTP, never learned, be dropped (a violation).
fn learn_then_enforce(lab: &ObsLab) {
    assert_eq!(
        lab.lab.udp("ct-scanner-01", service("dns", DNS), TIMEOUT),
        Outcome::Answered
    );
    lab.lab.cli_ok(&["mode", "enforce"]);
}

fn badge_reader_violation(lab: &ObsLab) {
    assert_eq!(
        lab.lab
            .udp("badge-reader-icu3", service("ntp", NTP), TIMEOUT),
        Outcome::TimedOut
    );
}

/// The violation of [`badge_reader_violation`] as rsyslog parsed it.
fn assert_violation(message: &Value) {
    assert_eq!(
        message["pri"], PRI_WARNING,
        "a drop is a warning: {message}"
    );
    assert_eq!(sd(message, "kind"), "badge-reader", "{message}");
    assert!(sd(message, "location").contains("icu-3"), "{message}");
    assert_eq!(sd(message, "reason"), "not_in_baseline", "{message}");
    assert_eq!(sd(message, "protocol"), "udp", "{message}");
    assert_eq!(sd(message, "port"), NTP.to_string(), "{message}");
    assert_eq!(sd(message, "peer"), host("ntp").to_string(), "{message}");
    assert_eq!(sd(message, "direction"), "out", "{message}");
    assert!(
        message["msg"]
            .as_str()
            .is_some_and(|m| m.contains("drop badge-reader-icu3")),
        "{message}"
    );
}

#[test]
fn a_udp_collector_gets_violations_break_glass_policy_loads_and_mode_changes() {
    let dir = TempDir::new(&std::env::temp_dir(), "msiem");
    let port = free_udp_tcp_port();
    let rsyslog = Rsyslog::start(&dir.0, port);
    let target = format!("udp://127.0.0.1:{port}");
    let lab = ObsLab::start_with(WARD_POLICY, &[], &["--syslog", &target]);
    let long = Duration::from_secs(20);

    // The policy applied at start, as an RFC 5424 message from this host.
    let applied = wait_event(&dir.0, &lab, "policy-applied", long, |_| true);
    assert_eq!(applied["protocol"], "1", "{applied}");
    assert_eq!(applied["input"], "imudp", "{applied}");
    assert_eq!(applied["hostname"], hostname().as_str(), "{applied}");
    assert_eq!(applied["pri"], PRI_NOTICE, "{applied}");
    assert!(
        applied["msg"]
            .as_str()
            .is_some_and(|m| m.contains("applied: 8 devices")),
        "{applied}"
    );

    // A mode change given by the CLI, then a violation, with the device's name.
    learn_then_enforce(&lab);
    let mode = wait_event(&dir.0, &lab, "mode-change", long, |m| {
        sd(m, "mode") == "enforce"
    });
    assert!(!sd(&mode, "who").is_empty(), "{mode}");
    assert!(
        mode["msg"]
            .as_str()
            .is_some_and(|m| m.contains("monitor mode enforce")),
        "{mode}"
    );
    badge_reader_violation(&lab);
    let violation = wait_event(&dir.0, &lab, "violation", long, |m| {
        sd(m, "device") == "badge-reader-icu3" && sd(m, "verdict") == "drop"
    });
    assert_violation(&violation);

    // Break-glass: started by the CLI, ended by the daemon when it expires.
    lab.lab.cli_ok(&[
        "allow",
        "--device",
        "ct-scanner-01",
        "--for",
        "2s",
        "--reason",
        "vendor repair visit",
    ]);
    let start = wait_event(&dir.0, &lab, "break-glass-start", long, |m| {
        sd(m, "device") == "ct-scanner-01"
    });
    assert_eq!(start["pri"], PRI_WARNING, "{start}");
    assert_eq!(sd(&start, "reason"), "vendor repair visit", "{start}");
    assert_eq!(sd(&start, "kind"), "modality", "{start}");
    assert!(sd(&start, "location").contains("radiology"), "{start}");
    assert!(!sd(&start, "until").is_empty(), "{start}");
    let end = wait_event(&dir.0, &lab, "break-glass-end", long, |m| {
        sd(m, "device") == "ct-scanner-01"
    });
    assert_eq!(sd(&end, "let_through"), "0", "{end}");

    // Policy reloads: one applied (a device more), one failed (a file that does not parse).
    let policy = lab.lab.policy_dir.0.join("ward.yaml");
    std::fs::write(&policy, with_spare_pump()).unwrap_or_else(|e| panic!("{e}"));
    wait_event(&dir.0, &lab, "policy-applied", long, |m| {
        m["msg"].as_str().is_some_and(|m| m.contains("9 devices"))
    });
    std::fs::write(&policy, "devices: [\n").unwrap_or_else(|e| panic!("{e}"));
    let failed = wait_event(&dir.0, &lab, "policy-failed", long, |_| true);
    assert_eq!(failed["pri"], PRI_ERROR, "{failed}");
    assert!(
        failed["msg"]
            .as_str()
            .is_some_and(|m| m.contains("ward.yaml")),
        "{failed}"
    );

    // And one held back: a policy of one device would retire the eight others at once.
    std::fs::write(
        &policy,
        "defaults:\n  mode: learn\ndevices:\n  - name: pump-icu3-01\n    kind: infusion-pump\n    \
         addresses: [10.10.1.11]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let held = wait_event(&dir.0, &lab, "policy-held-back", long, |_| true);
    assert_eq!(held["pri"], PRI_ERROR, "{held}");
    assert!(
        held["msg"]
            .as_str()
            .is_some_and(|m| m.contains("--accept-shrink")),
        "{held}"
    );

    // events.jsonl has the same events.
    let events = events_file(&lab);
    for event in [
        "policy-applied",
        "mode-change",
        "break-glass-start",
        "break-glass-end",
        "policy-failed",
        "policy-held-back",
    ] {
        assert!(
            events.iter().any(|e| e["event"] == event),
            "events.jsonl lacks {event}: {events:#?}"
        );
    }
    assert!(
        events
            .iter()
            .any(|e| e["device"] == "badge-reader-icu3" && e["verdict"] == "drop"),
        "{events:#?}"
    );

    // Counted as sent, none dropped.
    let exposition = lab.scrape();
    let sent = sample(
        &exposition,
        r#"hospmon_syslog_messages_total{outcome="sent"}"#,
    )
    .unwrap_or(0.0);
    assert!(sent >= 7.0, "sent {sent}");
    assert_eq!(
        sample(
            &exposition,
            r#"hospmon_syslog_messages_total{outcome="dropped"}"#
        ),
        Some(0.0)
    );
    drop(lab);
    drop(rsyslog);
}

#[test]
fn a_tcp_collector_that_starts_late_or_restarts_gets_every_event() {
    let dir = TempDir::new(&std::env::temp_dir(), "msiem");
    let port = free_udp_tcp_port();
    let target = format!("tcp://127.0.0.1:{port}");
    let lab = ObsLab::start_with(WARD_POLICY, &[], &["--syslog", &target]);

    // Nobody listens yet: the log says so, and events wait.
    wait_for(
        "the log to say the collector is unreachable",
        Duration::from_secs(20),
        || {
            lab.lab
                .daemon_log()
                .contains(&format!("syslog collector {target} unreachable"))
                .then_some(())
        },
    );
    learn_then_enforce(&lab);

    // The collector comes up: what waited arrives, octet-counted over TCP, once the
    // sender's backoff (at most 30 s) has passed.
    let rsyslog = Rsyslog::start(&dir.0, port);
    let late = Duration::from_secs(60);
    let applied = wait_event(&dir.0, &lab, "policy-applied", late, |_| true);
    assert_eq!(applied["input"], "imtcp", "{applied}");
    assert_eq!(applied["protocol"], "1", "{applied}");
    wait_event(&dir.0, &lab, "mode-change", late, |m| {
        sd(m, "mode") == "enforce"
    });
    wait_for(
        "the log to say the collector is back",
        Duration::from_secs(20),
        || {
            lab.lab
                .daemon_log()
                .contains(&format!("syslog collector {target} reachable again"))
                .then_some(())
        },
    );

    // The collector restarts: the next events come over a new connection.
    drop(rsyslog);
    let _rsyslog = Rsyslog::start(&dir.0, port);
    let long = Duration::from_secs(20);
    badge_reader_violation(&lab);
    let violation = wait_event(&dir.0, &lab, "violation", long, |m| {
        sd(m, "device") == "badge-reader-icu3" && sd(m, "verdict") == "drop"
    });
    assert_eq!(violation["input"], "imtcp", "{violation}");
    assert_violation(&violation);
    lab.lab.cli_ok(&[
        "allow",
        "--device",
        "ct-scanner-01",
        "--for",
        "10m",
        "--reason",
        "imaging outage",
    ]);
    let start = wait_event(&dir.0, &lab, "break-glass-start", long, |m| {
        sd(m, "device") == "ct-scanner-01"
    });
    assert_eq!(sd(&start, "reason"), "imaging outage", "{start}");
    assert_eq!(
        sample(
            &lab.scrape(),
            r#"hospmon_syslog_messages_total{outcome="dropped"}"#
        ),
        Some(0.0),
        "nothing dropped"
    );
}

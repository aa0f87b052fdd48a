//! `monitor run` as a service, on a lab ward: what systemd is told over a real
//! NOTIFY_SOCKET (READY=1 only once the datapath is attached, STOPPING=1, WATCHDOG=1 only
//! while the control thread answers), `monitor status`'s LSB exit codes, the log as JSON
//! and as journal entries of the native protocol, the configuration file, and the
//! capabilities the unit keeps (each proven necessary, together sufficient).

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::unix::{fs::MetadataExt as _, net::UnixDatagram},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use monitor::{lab::Outcome, state::lock::WriteLock};
use monitor_tests::harness::{Lab, TempDir, example_policy, monitor_bin};

/// A unix datagram socket the test binds, as systemd's notify socket or journald's.
struct Socket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl Socket {
    fn bind(prefix: &str) -> Socket {
        let dir = TempDir::new(&std::env::temp_dir(), prefix);
        let path = dir.0.join("socket");
        let socket = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("bind: {e}"));
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap_or_else(|e| panic!("{e}"));
        Socket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next datagram, waiting at most `timeout`.
    fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 1 << 16];
        while Instant::now() < deadline {
            if let Ok(n) = self.socket.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    /// Datagrams (as text) until one contains `needle`, within `timeout`; panics naming
    /// what came instead.
    fn wait_for(&self, needle: &str, timeout: Duration, lab: &Lab) -> (String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Some(bytes) = self.recv(Duration::from_millis(100)) {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if text.lines().any(|l| l == needle) {
                    return (text, seen);
                }
                seen.push(text);
            }
        }
        panic!(
            "no {needle} within {timeout:?}; got {seen:?}\n{}",
            lab.daemon_log()
        );
    }

    /// How many datagrams with the line `line` arrive within `window`.
    fn count(&self, line: &str, window: Duration) -> usize {
        let deadline = Instant::now() + window;
        let mut count = 0;
        while Instant::now() < deadline {
            if let Some(bytes) = self.recv(Duration::from_millis(50))
                && String::from_utf8_lossy(&bytes).lines().any(|l| l == line)
            {
                count += 1;
            }
        }
        count
    }
}

/// Whether `iface` in the router namespace has an XDP program (`ip link` shows
/// `prog/xdp`).
fn xdp_attached(lab: &Lab, iface: &str) -> bool {
    lab.ward
        .router
        .ip(&["link", "show", "dev", iface])
        .unwrap_or_else(|e| panic!("{e}"))
        .contains("prog/xdp")
}

fn wait_exit(mut child: Child, timeout: Duration) -> Output {
    let deadline = Instant::now() + timeout;
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting: {e}"))
}

#[test]
fn systemd_is_told_ready_after_attach_fed_while_the_control_thread_answers_and_told_stopping() {
    let mut lab = Lab::new(&example_policy());
    let notify = Socket::bind("mnotify");
    let with_notify = |command: &mut Command| {
        command
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "400000")
            .env_remove("WATCHDOG_PID");
    };

    // A start that fails (an empty policy directory) never says READY=1.
    let policy = lab.policy_dir.0.join("ward.yaml");
    std::fs::remove_file(&policy).unwrap_or_else(|e| panic!("{e}"));
    let mut failing = lab.run_command(&["--metrics-addr", "off"]);
    with_notify(&mut failing);
    let output = wait_exit(
        failing
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
        Duration::from_secs(20),
    );
    assert!(!output.status.success(), "a start without policy succeeded");
    while let Some(bytes) = notify.recv(Duration::from_millis(300)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(!text.contains("READY=1"), "a failed start said {text:?}");
    }
    std::fs::write(&policy, example_policy()).unwrap_or_else(|e| panic!("{e}"));

    // READY=1 arrives with both legs carrying the program, and says so.
    let mut command = lab.run_command(&["--metrics-addr", "off"]);
    with_notify(&mut command);
    lab.start_command(command);
    let (ready, before) = notify.wait_for("READY=1", Duration::from_secs(20), &lab);
    for leg in [&lab.ward.ward_leg, &lab.ward.core_leg] {
        assert!(
            xdp_attached(&lab, leg),
            "READY=1 before {leg} had the program"
        );
        assert!(
            ready.contains(&format!("{leg} (native)")),
            "READY=1 without {leg}: {ready:?}"
        );
    }
    assert!(
        !before.iter().any(|m| m.contains("WATCHDOG=1")),
        "fed before ready: {before:?}"
    );
    lab.assert_normal_traffic(Outcome::Answered);

    // WATCHDOG_USEC=400000: a ping every 200 ms while the control thread answers.
    let fed = notify.count("WATCHDOG=1", Duration::from_millis(1500));
    assert!(
        fed >= 4,
        "{fed} watchdog pings in 1.5 s\n{}",
        lab.daemon_log()
    );

    // The state's write lock held elsewhere: the control thread blocks at its next save
    // (within 2 s) and the watchdog goes hungry, although the process lives on.
    let write = WriteLock::take(&lab.state_dir.0).unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(8);
    while notify.count("WATCHDOG=1", Duration::from_millis(800)) > 0 {
        assert!(
            Instant::now() < deadline,
            "the watchdog is still fed with the control thread blocked\n{}",
            lab.daemon_log()
        );
    }
    assert_eq!(
        notify.count("WATCHDOG=1", Duration::from_millis(1500)),
        0,
        "fed while blocked"
    );
    assert!(
        lab.daemon_log()
            .contains("the control thread has not answered"),
        "{}",
        lab.daemon_log()
    );
    drop(write);
    assert!(
        notify.count("WATCHDOG=1", Duration::from_secs(2)) >= 2,
        "the watchdog is not fed again once the control thread answers\n{}",
        lab.daemon_log()
    );

    // SIGTERM: STOPPING=1, a clean exit, and the program still attached.
    let status = lab.stop(libc::SIGTERM);
    assert!(status.success(), "exit after SIGTERM: {status}");
    notify.wait_for("STOPPING=1", Duration::from_secs(2), &lab);
    assert!(xdp_attached(&lab, &lab.ward.ward_leg));
}

#[test]
fn status_exits_0_while_a_daemon_runs_and_3_when_none_does() {
    let mut lab = Lab::new(&example_policy());
    let code = |lab: &Lab, args: &[&str]| lab.cli(args).status.code();
    assert_eq!(code(&lab, &["status"]), Some(3), "nothing ever ran");
    assert_eq!(code(&lab, &["status", "--json"]), Some(3));
    lab.start(&["--metrics-addr", "off"]);
    let running = lab.cli(&["status"]);
    assert_eq!(running.status.code(), Some(0), "{running:?}");
    assert!(String::from_utf8_lossy(&running.stdout).contains("daemon: pid"));
    assert_eq!(code(&lab, &["status", "--json"]), Some(0));
    lab.stop(libc::SIGTERM);
    // The datapath stays attached and pinned; the daemon is gone.
    let stopped = lab.cli(&["status"]);
    let text = String::from_utf8_lossy(&stopped.stdout);
    assert_eq!(stopped.status.code(), Some(3), "{stopped:?}");
    assert!(
        text.contains("daemon: not running") && text.contains("mode: learn"),
        "{text}"
    );
    assert_eq!(code(&lab, &["status", "--json"]), Some(3));
}

#[test]
fn json_log_lines_carry_level_message_and_fields() {
    let mut lab = Lab::new(&example_policy());
    lab.start(&["--metrics-addr", "off", "--log-format", "json"]);
    lab.stop(libc::SIGTERM);
    let log = lab.daemon_log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 4, "{log}");
    for line in &lines {
        for key in ["timestamp", "level", "priority", "target", "message"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let leg = &lab.ward.core_leg;
    let attached = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("attached to {leg} ")))
        })
        .unwrap_or_else(|| panic!("no attach line for {leg}:\n{log}"));
    assert_eq!(attached["interface"], leg.as_str());
    assert_eq!(attached["level"], "info");
    assert_eq!(attached["priority"], 6);
}

/// One journal entry of the native protocol: `NAME=value` lines, or `NAME`, a 64-bit
/// little-endian length and the value for a value with a newline.
fn journal_fields(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.insert(
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            );
            rest = rest.get(end + 1..).unwrap_or_default();
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let len_at = end + 1;
            let mut len = [0u8; 8];
            len.copy_from_slice(&rest[len_at..len_at + 8]);
            let len = u64::from_le_bytes(len) as usize;
            let value = &rest[len_at + 8..len_at + 8 + len];
            fields.insert(name, String::from_utf8_lossy(value).into_owned());
            rest = rest.get(len_at + 8 + len + 1..).unwrap_or_default();
        }
    }
    fields
}

/// Journal entries until one satisfies `wanted`.
fn journal_entry(
    journal: &Socket,
    lab: &Lab,
    what: &str,
    wanted: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Some(bytes) = journal.recv(Duration::from_millis(100)) {
            let fields = journal_fields(&bytes);
            if wanted(&fields) {
                return fields;
            }
            seen.push(fields.get("MESSAGE").cloned().unwrap_or_default());
        }
    }
    panic!(
        "no journal entry {what}; got {seen:#?}\nstderr:\n{}",
        lab.daemon_log()
    );
}

#[test]
fn under_systemd_the_log_goes_to_the_journal_with_priority_and_fields() {
    let mut lab = Lab::new(&example_policy());
    let journal = Socket::bind("mjournal");
    // systemd's JOURNAL_STREAM names the file standard error is: auto picks the journal.
    let log = lab.daemon_log_file();
    let meta = log.metadata().unwrap_or_else(|e| panic!("{e}"));
    let mut command = lab.run_command(&["--metrics-addr", "off"]);
    command
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .env("MONITOR_JOURNAL_SOCKET", &journal.path);
    lab.start_command(command);
    let leg = lab.ward.ward_leg.clone();
    let attached = journal_entry(&journal, &lab, "for the attach", |f| {
        f.get("MESSAGE")
            .is_some_and(|m| m.starts_with(&format!("attached to {leg} ")))
    });
    assert_eq!(attached.get("PRIORITY").map(String::as_str), Some("6"));
    assert_eq!(attached.get("INTERFACE"), Some(&leg));
    assert_eq!(
        attached.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("monitor")
    );
    assert!(attached.contains_key("CODE_FILE"), "{attached:?}");

    // A medical device's message names it.
    lab.cli_ok(&[
        "allow",
        "--device",
        "badge-reader-icu3",
        "--for",
        "2s",
        "--reason",
        "journal test",
    ]);
    let expired = journal_entry(&journal, &lab, "for the break-glass expiry", |f| {
        f.get("MESSAGE")
            .is_some_and(|m| m.starts_with("break-glass expired"))
    });
    assert_eq!(
        expired.get("DEVICE").map(String::as_str),
        Some("badge-reader-icu3")
    );

    // An error is priority 3 (`journalctl -p err`), with its reason.
    std::fs::write(lab.policy_dir.0.join("ward.yaml"), "devices: [\n")
        .unwrap_or_else(|e| panic!("{e}"));
    lab.cli_ok(&["reload"]);
    let failed = journal_entry(&journal, &lab, "for the failed reload", |f| {
        f.get("REASON").map(String::as_str) == Some("policy-failed")
    });
    assert_eq!(
        failed.get("PRIORITY").map(String::as_str),
        Some("3"),
        "{failed:?}"
    );
    lab.stop(libc::SIGTERM);
    assert!(
        !lab.daemon_log().contains("attached to"),
        "the log went to standard error too:\n{}",
        lab.daemon_log()
    );
}

/// A free TCP port on loopback (bound and let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn metrics_at(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

struct Config {
    file: PathBuf,
    _dir: TempDir,
}

/// A configuration file for the lab's daemon: everything `monitor run` needs.
fn config_file(lab: &Lab, run_dir: &Path, port: u16, extra: &str) -> Config {
    let dir = TempDir::new(&std::env::temp_dir(), "mconfig");
    let file = dir.0.join("monitor.toml");
    let text = format!(
        "# the lab router\n\
         interfaces = [\"{}\", \"{}\"]\n\
         netns = \"{}\"\n\
         policies = \"{}\"\n\
         pin-dir = \"{}\"\n\
         state-dir = \"{}\"\n\
         run-dir = \"{}\"\n\
         metrics-addr = \"127.0.0.1:{port}\"\n\
         log-format = \"json\"\n\
         {extra}",
        lab.ward.ward_leg,
        lab.ward.core_leg,
        lab.ward.router.name(),
        lab.policy_dir.0.display(),
        lab.pin_dir.0.display(),
        lab.state_dir.0.display(),
        run_dir.display(),
    );
    std::fs::write(&file, text).unwrap_or_else(|e| panic!("{e}"));
    Config { file, _dir: dir }
}

fn with_config(config: &Config, args: &[&str]) -> Command {
    let mut command = Command::new(monitor_bin());
    command
        .arg("--config")
        .arg(&config.file)
        .args(args)
        .stdin(Stdio::null());
    command
}

fn status_json(config: &Config) -> serde_json::Value {
    let out = with_config(config, &["status", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn attached_interfaces(status: &serde_json::Value) -> Vec<String> {
    status["daemon"]["interfaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_configuration_file_runs_the_daemon_flags_win_and_mistakes_name_file_line_and_key() {
    let mut lab = Lab::new(&example_policy());
    let run_dir = TempDir::new(&std::env::temp_dir(), "mrun");
    let port = free_port();
    let config = config_file(&lab, &run_dir.0, port, "");

    // Configured by the file alone: `monitor --config F run`, and `status` finds it.
    let mut run = with_config(&config, &["run"]);
    run.stdout(Stdio::null()).stderr(lab.daemon_log_file());
    lab.start_command(run);
    let status = status_json(&config);
    assert_eq!(
        attached_interfaces(&status),
        [lab.ward.ward_leg.clone(), lab.ward.core_leg.clone()]
    );
    assert!(
        metrics_at(port).is_some_and(|m| m.contains("hospmon_build_info")),
        "no metrics on the file's port {port}\n{}",
        lab.daemon_log()
    );
    assert!(
        lab.daemon_log()
            .lines()
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with('{')),
        "the file's log-format is json:\n{}",
        lab.daemon_log()
    );
    lab.assert_normal_traffic(Outcome::Answered);
    lab.stop(libc::SIGTERM);

    // Flags win over the file: another port, one interface, text logs.
    let flag_port = free_port();
    let _ = std::fs::remove_file(lab.state_dir.0.join("daemon.log"));
    let mut run = with_config(
        &config,
        &[
            "run",
            "--iface",
            &lab.ward.ward_leg,
            "--metrics-addr",
            &format!("127.0.0.1:{flag_port}"),
            "--log-format",
            "text",
        ],
    );
    run.stdout(Stdio::null()).stderr(lab.daemon_log_file());
    lab.start_command(run);
    assert_eq!(
        attached_interfaces(&status_json(&config)),
        [lab.ward.ward_leg.clone()]
    );
    assert!(
        metrics_at(flag_port).is_some(),
        "no metrics on the flag's port"
    );
    assert!(metrics_at(port).is_none(), "metrics on the file's port");
    assert!(
        lab.daemon_log().starts_with('['),
        "text log expected:\n{}",
        lab.daemon_log()
    );
    lab.stop(libc::SIGTERM);

    // A key that is no option: the file, the line and the key, and nothing started.
    let fresh = Lab::new(&example_policy());
    let bad = config_file(&fresh, &run_dir.0, free_port(), "interface = [\"ward0\"]\n");
    let out = with_config(&bad, &["run"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:10: key `interface`", bad.file.display())),
        "{stderr}"
    );
    assert!(
        std::fs::read_dir(&fresh.pin_dir.0).map_or(true, |mut d| d.next().is_none()),
        "a refused configuration pinned something"
    );
    assert!(!fresh.state_dir.0.join("daemon.json").exists());
}

/// `CapabilityBoundingSet=` of the shipped unit, as setpriv writes it: `-all,+bpf,...`.
fn unit_capabilities() -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/monitor.service"
    ))
    .unwrap_or_else(|e| panic!("packaging/monitor.service: {e}"));
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap_or_else(|| panic!("the unit has no CapabilityBoundingSet="));
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_ascii_lowercase())
        .collect()
}

/// `setpriv` running the monitor with exactly `caps` (bounding, permitted and effective;
/// nothing inherited or ambient), as root under the unit would be.
fn with_capabilities(caps: &[String]) -> Command {
    let set: String = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new("setpriv");
    command
        .args([
            "--bounding-set",
            &set,
            "--inh-caps",
            "-all",
            "--ambient-caps",
            "-all",
            "--",
        ])
        .arg(monitor_bin())
        .stdin(Stdio::null());
    command
}

fn without(caps: &[String], dropped: &str) -> Vec<String> {
    caps.iter().filter(|c| *c != dropped).cloned().collect()
}

#[test]
fn the_units_capabilities_are_each_needed_and_together_enough() {
    let caps = unit_capabilities();
    assert_eq!(
        caps,
        ["bpf", "net_admin", "perfmon"],
        "the unit's set changed"
    );
    // Loading the datapath (replay: private maps, no start-up checks): each one needed.
    let capture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/corpus/tcpdump-ethernet/3560_CDP.pcap"
    );
    let replay = |caps: &[String]| {
        with_capabilities(caps)
            .args(["replay", capture])
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let all = replay(&caps);
    assert!(all.status.success(), "replay with the unit's set: {all:?}");
    for cap in &caps {
        let out = replay(&without(&caps, cap));
        assert!(
            !out.status.success(),
            "the datapath loads without CAP_{}: it need not be kept",
            cap.to_ascii_uppercase()
        );
    }

    // The daemon with exactly the unit's set, started inside the router namespace (no
    // --netns): it attaches, learns and serves.
    let mut lab = Lab::new(&example_policy());
    let daemon = |lab: &Lab, caps: &[String], netns: bool| {
        let mut command = with_capabilities(caps);
        command
            .arg("--pin-dir")
            .arg(&lab.pin_dir.0)
            .arg("--state-dir")
            .arg(&lab.state_dir.0)
            .args(["run", "--metrics-addr", "off", "--policies"])
            .arg(&lab.policy_dir.0)
            .args(["--iface", &lab.ward.ward_leg, "--iface", &lab.ward.core_leg]);
        if netns {
            command.args(["--netns", lab.ward.router.name()]);
        }
        command.stdout(Stdio::null()).stderr(lab.daemon_log_file());
        command
    };
    lab.clear_daemon_file();
    let mut command = daemon(&lab, &caps, false);
    let child = lab
        .ward
        .router
        .run(move || command.spawn())
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("setpriv: {e}"));
    lab.wait_started(child);
    lab.assert_normal_traffic(Outcome::Answered);
    assert_eq!(lab.cli(&["status"]).status.code(), Some(0));
    assert!(lab.stop(libc::SIGTERM).success(), "{}", lab.daemon_log());
    lab.cli_ok(&["detach"]);

    // Each one missing: the start fails naming it, and leaves nothing pinned.
    for cap in &caps {
        let mut command = daemon(&lab, &without(&caps, cap), false);
        command.stderr(Stdio::piped());
        let child = lab
            .ward
            .router
            .run(move || command.spawn())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("setpriv: {e}"));
        let out = wait_exit(child, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started without CAP_{cap}");
        assert!(
            stderr.contains(&format!("lacks CAP_{}", cap.to_ascii_uppercase())),
            "{stderr}"
        );
        assert!(
            std::fs::read_dir(&lab.pin_dir.0).map_or(true, |mut d| d.next().is_none()),
            "a start without CAP_{cap} left pins"
        );
    }

    // --netns needs CAP_SYS_ADMIN as well (setns), which the unit leaves out: said so.
    let out = daemon(&lab, &caps, true)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--netns needs CAP_SYS_ADMIN"), "{stderr}");
}

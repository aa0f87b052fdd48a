//! The metrics of `monitor run --metrics-addr`, as a real Prometheus sees them: known
//! traffic through a lab ward, then PromQL through Prometheus' HTTP API must give exactly
//! what was sent and dropped. Also: `promtool check metrics` on the exposition, exactly
//! the families of `observe::families` in it, every query of the shipped Grafana
//! dashboard, no series per address for 1,000 unknown
//! sources, and a removed device's series gone after a reload.

mod obs;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use monitor::lab::{DNS, NTP, Outcome};
use monitor_tests::harness::{host, service};
use obs::{
    ObsLab, Prometheus, WARD_POLICY, artifacts_dir, dashboard_queries, sample, substitute, wait_for,
};

const TIMEOUT: Duration = Duration::from_millis(800);
/// Ethernet + IPv4 + UDP headers.
const UDP_FRAME_OVERHEAD: u64 = 14 + 20 + 8;
/// The payload of the harness' UDP exchanges (`b"query"`).
const QUERY_LEN: u64 = 5;

/// Sends `count` datagrams from `from` to `to` without waiting for replies.
fn udp_burst(lab: &ObsLab, from: &str, to: SocketAddr, payload: &'static [u8], count: usize) {
    let src = host(from);
    lab.lab
        .ward
        .ward
        .run(move || {
            let socket =
                UdpSocket::bind(SocketAddr::new(src, 0)).unwrap_or_else(|e| panic!("bind: {e}"));
            for _ in 0..count {
                socket
                    .send_to(payload, to)
                    .unwrap_or_else(|e| panic!("send: {e}"));
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// One UDP datagram (to port 9, discard) from each of `count` addresses that are in no
/// inventory and on no interface: raw IPv4 with the source written by hand, sent into
/// the ward so that the router's XDP program sees each as a new unenrolled address.
fn spoofed_sources(lab: &ObsLab, count: usize, to: Ipv4Addr) -> Vec<Ipv4Addr> {
    let sources: Vec<Ipv4Addr> = (0..count)
        .map(|i| Ipv4Addr::new(10, 30, (i / 250) as u8, (i % 250 + 1) as u8))
        .collect();
    let list = sources.clone();
    lab.lab
        .ward
        .ward
        .run(move || {
            // SAFETY: plain socket(2); the fd is closed below.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW) };
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            for src in &list {
                const LEN: usize = 20 + 8 + 4;
                let mut packet = [0u8; LEN];
                packet[0] = 0x45;
                packet[2..4].copy_from_slice(&(LEN as u16).to_be_bytes());
                packet[8] = 64;
                packet[9] = 17;
                packet[12..16].copy_from_slice(&src.octets());
                packet[16..20].copy_from_slice(&to.octets());
                packet[20..22].copy_from_slice(&40_000u16.to_be_bytes());
                packet[22..24].copy_from_slice(&9u16.to_be_bytes());
                packet[24..26].copy_from_slice(&12u16.to_be_bytes());
                packet[28..32].copy_from_slice(b"spof");
                // The kernel fills in the IPv4 checksum (IP_HDRINCL); UDP checksum 0 is "none".
                // SAFETY: sockaddr_in we own; the packet buffer outlives the call.
                let rc = unsafe {
                    let mut addr: libc::sockaddr_in = std::mem::zeroed();
                    addr.sin_family = libc::AF_INET as libc::sa_family_t;
                    addr.sin_addr.s_addr = u32::from_ne_bytes(to.octets());
                    libc::sendto(
                        fd,
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&addr as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    )
                };
                assert_eq!(
                    rc,
                    packet.len() as isize,
                    "sendto: {}",
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: our fd.
            unsafe { libc::close(fd) };
        })
        .unwrap_or_else(|e| panic!("{e}"));
    sources
}

#[test]
fn prometheus_sees_exactly_what_was_sent_and_dropped() {
    let lab = ObsLab::start(WARD_POLICY, &[]);
    let prom = Prometheus::start(lab.metrics);
    let ward_leg = lab.lab.ward.ward_leg.clone();

    // Learn: the CT scanner asks DNS 20 times, all answered.
    const QUERIES: u64 = 20;
    for _ in 0..QUERIES {
        assert_eq!(
            lab.lab.udp("ct-scanner-01", service("dns", DNS), TIMEOUT),
            Outcome::Answered
        );
    }
    // Enforce: the badge reader's NTP was never learned; its 7 datagrams are dropped.
    lab.lab.cli_ok(&["mode", "enforce"]);
    const BLOCKED: u64 = 7;
    udp_burst(
        &lab,
        "badge-reader-icu3",
        service("ntp", NTP),
        b"ntp?",
        BLOCKED as usize,
    );

    let frame = UDP_FRAME_OVERHEAD + QUERY_LEN;
    let ct = r#"medical_device="ct-scanner-01""#;
    for (promql, expected) in [
        (
            format!(r#"hospmon_device_packets_total{{{ct},direction="sent"}}"#),
            QUERIES as f64,
        ),
        (
            format!(r#"hospmon_device_packets_total{{{ct},direction="received"}}"#),
            QUERIES as f64,
        ),
        (
            format!(r#"hospmon_device_bytes_total{{{ct},direction="sent"}}"#),
            (QUERIES * frame) as f64,
        ),
        (
            format!(r#"hospmon_device_bytes_total{{{ct},direction="received"}}"#),
            (QUERIES * frame) as f64,
        ),
        (
            format!(r#"hospmon_device_dropped_packets_total{{{ct}}}"#),
            0.0,
        ),
        (format!(r#"hospmon_device_baseline_entries{{{ct}}}"#), 1.0),
        (
            format!(r#"hospmon_device_learned_flows_total{{{ct}}}"#),
            1.0,
        ),
        (
            r#"hospmon_device_dropped_packets_total{medical_device="badge-reader-icu3"}"#.into(),
            BLOCKED as f64,
        ),
        (
            r#"hospmon_device_packets_total{medical_device="badge-reader-icu3",direction="sent"}"#
                .into(),
            BLOCKED as f64,
        ),
        (
            r#"sum(hospmon_verdict_packets_total{action="drop"})"#.into(),
            BLOCKED as f64,
        ),
        (
            r#"hospmon_verdict_packets_total{action="drop",reason="not_in_baseline"}"#.into(),
            BLOCKED as f64,
        ),
        (
            r#"hospmon_verdict_bytes_total{action="drop",reason="not_in_baseline"}"#.into(),
            (BLOCKED * (UDP_FRAME_OVERHEAD + 4)) as f64,
        ),
        (
            r#"hospmon_verdict_packets_total{action="pass",reason="learned"}"#.into(),
            (2 * QUERIES) as f64,
        ),
        (r#"hospmon_map_entries{map="BASELINE"}"#.into(), 1.0),
        (r#"hospmon_mode{mode="enforce"}"#.into(), 1.0),
        (
            r#"hospmon_device_mode{medical_device="badge-reader-icu3",mode="enforce"}"#.into(),
            1.0,
        ),
        // Life-critical and not confirmed: audited under a router-wide enforce.
        (
            r#"hospmon_device_mode{medical_device="pump-icu3-01",mode="audit"}"#.into(),
            1.0,
        ),
        (
            r#"hospmon_device_enforcement_held_back{medical_device="pump-icu3-01"}"#.into(),
            1.0,
        ),
        (r#"hospmon_devices_enrolled"#.into(), 8.0),
        (
            format!(r#"hospmon_interface_xdp_mode{{device="{ward_leg}",mode="native"}}"#),
            1.0,
        ),
        (
            r#"hospmon_device_verdict_packets_total{medical_device="badge-reader-icu3",reason="not_in_baseline"}"#
                .into(),
            BLOCKED as f64,
        ),
        // The blocked requests arrived on the ward leg and were dropped there.
        (
            format!(
                r#"hospmon_interface_packets_total{{device="{ward_leg}",action="drop",reason="not_in_baseline"}}"#
            ),
            BLOCKED as f64,
        ),
        (r#"hospmon_build_info"#.into(), 1.0),
        (r#"hospmon_policy_reloads_total{result="ok"}"#.into(), 1.0),
        (
            r#"hospmon_policy_reloads_total{result="failed"}"#.into(),
            0.0,
        ),
        (r#"hospmon_events_lost_total"#.into(), 0.0),
        (r#"sum(hospmon_events_total)"#.into(), BLOCKED as f64),
        (r#"up{job="monitor"}"#.into(), 1.0),
    ] {
        prom.wait_value(&promql, expected);
    }
    // Series are labelled only from the inventory: name, kind, ward, criticality.
    let labels = prom.query(&format!(
        r#"hospmon_device_packets_total{{{ct},direction="sent"}}"#
    ));
    let metric = labels[0]["metric"].as_object().cloned().unwrap_or_default();
    let mut names: Vec<&str> = metric.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "__name__",
            "criticality",
            "direction",
            "instance",
            "job",
            "kind",
            "medical_device",
            "ward"
        ]
    );
    assert_eq!(metric["ward"], "radiology");
    let age = prom
        .value(&format!(
            "time() - hospmon_device_last_seen_timestamp_seconds{{{ct}}}"
        ))
        .unwrap_or(f64::MAX);
    assert!((0.0..120.0).contains(&age), "ct last seen {age} s ago");
    let last_good = prom
        .value("hospmon_policy_last_reload_success_timestamp_seconds")
        .unwrap_or(0.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64;
    assert!(
        now - last_good < 300.0,
        "last good policy at {last_good}, now {now}"
    );

    // The exposition passes promtool's checks (names, units, HELP, _total).
    let exposition = lab.scrape();
    std::fs::write(artifacts_dir().join("metrics.txt"), &exposition)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool (Debian package `prometheus`): {e}"));
    std::io::Write::write_all(
        &mut promtool
            .stdin
            .take()
            .unwrap_or_else(|| panic!("promtool stdin")),
        exposition.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let out = promtool
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Exactly the families of the table, with its types, HELP texts and label names.
    let problems = monitor::observe::families::check::exposition(&exposition);
    assert!(
        problems.is_empty(),
        "the exposition disagrees with observe::families:\n{}",
        problems.join("\n")
    );
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            line.starts_with("hospmon_"),
            "metric without the prefix: {line}"
        );
    }
    for family in exposition.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split_whitespace().next().unwrap_or_default();
        assert!(
            exposition.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }

    // A scrape costs little: time and size for this lab.
    let started = Instant::now();
    const SCRAPES: u32 = 20;
    for _ in 0..SCRAPES {
        lab.scrape();
    }
    let per_scrape = started.elapsed() / SCRAPES;
    println!(
        "scrape: {per_scrape:?} over HTTP, {} bytes, {} samples; map reads {:?}",
        exposition.len(),
        exposition.lines().filter(|l| !l.starts_with('#')).count(),
        sample(&exposition, "hospmon_scrape_duration_seconds")
    );
    assert!(
        per_scrape < Duration::from_millis(500),
        "a scrape took {per_scrape:?}"
    );

    // Every query of the dashboard returns data.
    prom.wait_scrapes(3.0);
    let (exprs, variables) = dashboard_queries();
    assert!(exprs.len() >= 15, "{} dashboard queries", exprs.len());
    for (panel, expr) in &exprs {
        let promql = substitute(expr, ".*");
        let result = prom.query(&promql);
        assert!(
            !result.is_empty(),
            "dashboard panel `{panel}`: `{promql}` returned no data"
        );
    }
    assert_eq!(variables.len(), 3, "{variables:?}");
    for variable in &variables {
        // label_values(SELECTOR, LABEL)
        let inner = variable
            .trim_start_matches("label_values(")
            .trim_end_matches(')');
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("{variable}"));
        let body = obs::get_ok(
            prom.addr,
            &format!(
                "/api/v1/label/{}/values?match[]={}",
                label.trim(),
                obs::encode(&substitute(selector.trim(), ".*"))
            ),
        );
        let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}"));
        let values = json["data"].as_array().cloned().unwrap_or_default();
        assert!(
            !values.is_empty(),
            "dashboard variable `{variable}` has no values: {body}"
        );
    }

    // Cardinality: 1,000 unknown source addresses add no series. A few spoofed frames
    // first, so that the series their verdicts bring once (by reason, per interface) are
    // there before counting: what must not grow is a series per address.
    let series = |prom: &Prometheus| prom.value(r#"count({job="monitor"})"#).unwrap_or(0.0);
    let dns = match host("dns") {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => panic!("the lab's dns server is IPv4"),
    };
    let _ = spoofed_sources(&lab, 5, dns);
    prom.wait_scrapes(2.0);
    let before = series(&prom);
    let sources = spoofed_sources(&lab, 1000, dns);
    wait_for(
        "Prometheus to see 1,000 more unenrolled addresses",
        Duration::from_secs(20),
        || {
            prom.value("hospmon_unenrolled_addresses")
                .filter(|n| *n >= 1000.0)
        },
    );
    prom.wait_scrapes(2.0);
    assert_eq!(
        series(&prom),
        before,
        "series from the monitor changed with 1,000 new addresses"
    );
    let exposition = lab.scrape();
    let unenrolled = sample(
        &exposition,
        r#"hospmon_unenrolled_packets_total{direction="sent"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        unenrolled >= 1000.0,
        "unenrolled packets sent: {unenrolled}"
    );
    for source in &sources {
        assert!(
            !exposition.contains(&format!("\"{source}\"")),
            "the address {source} became a label value"
        );
    }
    assert!(
        prom.log().lines().all(|l| !l.contains("level=error")),
        "prometheus: {}",
        prom.log()
    );
}

#[test]
fn a_removed_device_loses_its_series_and_reloads_are_counted() {
    let lab = ObsLab::start(WARD_POLICY, &[]);
    let prom = Prometheus::start(lab.metrics);
    for _ in 0..3 {
        assert_eq!(
            lab.lab.udp("ws-icu3-nurses", service("ntp", NTP), TIMEOUT),
            Outcome::Answered
        );
    }
    let ws_sent =
        r#"hospmon_device_packets_total{medical_device="ws-icu3-nurses",direction="sent"}"#;
    prom.wait_value(ws_sent, 3.0);

    // A broken policy is refused; the running one (and its series) stay.
    let policy_file = lab.lab.policy_dir.0.join("ward.yaml");
    std::fs::write(&policy_file, "devices:\n  - name: [unclosed\n")
        .unwrap_or_else(|e| panic!("{e}"));
    prom.wait_value(r#"hospmon_policy_reloads_total{result="failed"}"#, 1.0);
    prom.wait_value(ws_sent, 3.0);
    prom.wait_value(r#"hospmon_policy_reloads_total{result="ok"}"#, 1.0);

    // The workstation leaves the inventory: its series are gone after the reload.
    let start = WARD_POLICY
        .find("  - name: ws-icu3-nurses")
        .unwrap_or_else(|| panic!("ws in the policy"));
    let end = WARD_POLICY[start..]
        .find("  - name: pump-server")
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("pump-server after ws"));
    let without = format!("{}{}", &WARD_POLICY[..start], &WARD_POLICY[end..]);
    let before_reload = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as f64;
    std::fs::write(&policy_file, without).unwrap_or_else(|e| panic!("{e}"));
    prom.wait_value(r#"hospmon_policy_reloads_total{result="ok"}"#, 2.0);
    prom.wait_value("hospmon_devices_enrolled", 7.0);
    wait_for(
        "the workstation's series to go",
        Duration::from_secs(20),
        || {
            prom.query(r#"{medical_device="ws-icu3-nurses"}"#)
                .is_empty()
                .then_some(())
        },
    );
    assert!(!lab.scrape().contains("ws-icu3-nurses"));
    // The others stay.
    assert_eq!(
        prom.query(r#"hospmon_device_packets_total{medical_device="ct-scanner-01"}"#)
            .len(),
        2
    );
    let last_good = prom
        .value("hospmon_policy_last_reload_success_timestamp_seconds")
        .unwrap_or(0.0);
    assert!(
        last_good >= before_reload,
        "last good reload {last_good} before {before_reload}"
    );
}

/// Packets of a device on the map, and the packets its activity grid holds.
fn map_traffic(lab: &ObsLab, name: &str) -> (u64, u64) {
    let map = lab.map_json();
    let device = map["wards"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|w| w["devices"].as_array().into_iter().flatten())
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not on the map"))
        .clone();
    let traffic = device["traffic"]["packets_sent"].as_u64().unwrap_or(0)
        + device["traffic"]["packets_received"].as_u64().unwrap_or(0);
    let grid = device["activity"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|day| day["cells"].as_array().into_iter().flatten())
        .map(|cell| cell["packets"].as_u64().unwrap_or(0))
        .sum();
    (traffic, grid)
}

#[test]
fn the_daemon_serves_from_memory_not_from_the_files_it_wrote() {
    let lab = ObsLab::start(WARD_POLICY, &[]);
    let ask = |times: usize| {
        for _ in 0..times {
            assert_eq!(
                lab.lab.udp("ct-scanner-01", service("dns", DNS), TIMEOUT),
                Outcome::Answered
            );
        }
    };
    ask(3);
    wait_for(
        "the map's activity to hold the traffic",
        Duration::from_secs(30),
        || (map_traffic(&lab, "ct-scanner-01") == (6, 6)).then_some(()),
    );

    // The state files the daemon wrote, for other processes and restarts, are damaged:
    // a daemon that read them back would fail its scrapes, its map and its sampling.
    for file in ["inventory.json", "daemon.json", "activity.json"] {
        std::fs::write(lab.lab.state_dir.0.join(file), "{ damaged")
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    ask(2);
    let ct =
        r#"medical_device="ct-scanner-01",kind="modality",ward="radiology",criticality="high""#;
    wait_for(
        "the scrape to count the new traffic",
        Duration::from_secs(20),
        || {
            let (status, text) = obs::http_get(lab.metrics, "/metrics").ok()?;
            assert_eq!(status, 200, "/metrics with damaged state files: {text}");
            (sample(
                &text,
                &format!(r#"hospmon_device_packets_total{{{ct},direction="sent"}}"#),
            ) == Some(5.0))
            .then_some(text)
        },
    );
    let text = lab.scrape();
    assert_eq!(sample(&text, "hospmon_devices_enrolled"), Some(8.0));
    assert!(
        text.contains(&format!(
            r#"hospmon_interface_xdp_mode{{device="{}",mode="native"}} 1"#,
            lab.lab.ward.ward_leg
        )),
        "{text}"
    );
    // The sampler goes on from the history it holds: the map has all ten packets.
    wait_for(
        "the map's activity to hold the new traffic",
        Duration::from_secs(30),
        || (map_traffic(&lab, "ct-scanner-01") == (10, 10)).then_some(()),
    );
    let map = lab.map_json();
    assert_eq!(map["summary"]["devices"], 8);
    assert_eq!(
        map["interfaces"][0]["name"].as_str(),
        Some(lab.lab.ward.ward_leg.as_str())
    );
}

#[test]
fn operator_commands_reach_the_metrics_and_the_map_at_once() {
    // The daemon keeps the inventory in memory; a `monitor mode --device` or `monitor
    // allow` from another process changes the file, which the daemon takes in.
    let lab = ObsLab::start(WARD_POLICY, &[]);
    let mode = |mode: &str| {
        format!(
            r#"hospmon_device_mode{{medical_device="ct-scanner-01",kind="modality",ward="radiology",criticality="high",mode="{mode}"}}"#
        )
    };
    assert_eq!(
        sample(&lab.scrape(), &mode("learn")),
        Some(1.0),
        "{}",
        lab.scrape()
    );
    lab.lab
        .cli_ok(&["mode", "audit", "--device", "ct-scanner-01"]);
    wait_for(
        "the new mode in the metrics",
        Duration::from_secs(5),
        || (sample(&lab.scrape(), &mode("audit")) == Some(1.0)).then_some(()),
    );
    lab.lab.cli_ok(&[
        "allow",
        "--device",
        "ct-scanner-01",
        "--for",
        "10m",
        "--reason",
        "test",
    ]);
    let glass = r#"hospmon_device_break_glass{medical_device="ct-scanner-01",kind="modality",ward="radiology",criticality="high"}"#;
    wait_for("break-glass in the metrics", Duration::from_secs(5), || {
        (sample(&lab.scrape(), glass) == Some(1.0)).then_some(())
    });
    wait_for("break-glass on the map", Duration::from_secs(5), || {
        (lab.map_json()["summary"]["break_glass"] == 1).then_some(())
    });
}

//! Shared by the observability tests (metrics.rs, devmap.rs, fleet.rs, siem.rs): a lab
//! daemon serving `--metrics-addr` on a free loopback port, a tiny HTTP client, a real
//! Prometheus, and the shipped dashboard's queries.

#![allow(dead_code)] // each test binary uses its own part

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use monitor_tests::harness::{Lab, TempDir};

/// The lab ward's policy for these tests (the lab's addresses; kept here rather than
/// read from policies/ward.yaml so that editing the example does not change the tests).
pub const WARD_POLICY: &str = r#"
defaults:
  mode: learn
  unenrolled: pass
devices:
  - name: pump-icu3-01
    kind: infusion-pump
    addresses: [10.10.1.11]
    mac: "00:09:fb:12:34:01"
    location: { site: main-campus, building: B, floor: "3", ward: icu-3, room: "12" }
    criticality: life-critical
  - name: monitor-icu3-01
    kind: patient-monitor
    addresses: [10.10.1.12]
    mac: "00:80:25:aa:10:01"
    location: { site: main-campus, building: B, floor: "3", ward: icu-3, room: "12" }
    criticality: life-critical
  - name: ct-scanner-01
    kind: modality
    addresses: [10.10.1.13]
    location: { site: main-campus, building: B, floor: "1", ward: radiology, room: CT-1 }
    criticality: high
  - name: badge-reader-icu3
    kind: badge-reader
    addresses: [10.10.1.14]
    location: { site: main-campus, building: B, floor: "3", ward: icu-3, room: entrance }
  - name: ws-icu3-nurses
    kind: workstation
    addresses: [10.10.1.15]
    location: { site: main-campus, building: B, floor: "3", ward: icu-3, room: nurses-station }
  - name: pump-server
    kind: server
    addresses: [10.20.0.10]
    location: { site: main-campus, building: DC, ward: datacenter }
    criticality: high
  - name: hl7-engine
    kind: interface-engine
    addresses: [10.20.0.20]
    location: { site: main-campus, building: DC, ward: datacenter }
    criticality: high
  - name: pacs
    kind: pacs
    addresses: [10.20.0.30]
    location: { site: main-campus, building: DC, ward: datacenter }
    criticality: high
"#;

/// A loopback port nobody listens on now (the kernel picks it; released right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("finding a free port: {e}"))
}

/// `GET path` over HTTP/1.0: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// Like [`http_get`], panicking unless the answer is 200.
pub fn get_ok(addr: SocketAddr, path: &str) -> String {
    let (status, body) =
        http_get(addr, path).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// Percent-encodes a query parameter.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` every 250 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A lab ward whose daemon serves metrics and the map on a free loopback port.
pub struct ObsLab {
    pub lab: Lab,
    pub metrics: SocketAddr,
}

impl ObsLab {
    /// Builds the lab with `policy` (plus `extra` policy files) and starts the daemon in
    /// learn mode with `--metrics-addr`.
    pub fn start(policy: &str, extra: &[(&str, &str)]) -> ObsLab {
        ObsLab::start_with(policy, extra, &[])
    }

    /// Like [`ObsLab::start`], with more options for `monitor run`.
    pub fn start_with(policy: &str, extra: &[(&str, &str)], args: &[&str]) -> ObsLab {
        let mut lab = Lab::new(policy);
        for (name, text) in extra {
            std::fs::write(lab.policy_dir.0.join(name), text)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let metrics_addr = metrics.to_string();
        let mut run = vec!["--mode", "learn", "--metrics-addr", &metrics_addr];
        run.extend_from_slice(args);
        lab.start(&run);
        wait_for("the metrics server", Duration::from_secs(20), || {
            http_get(metrics, "/metrics")
                .ok()
                .filter(|(s, _)| *s == 200)
        });
        ObsLab { lab, metrics }
    }

    pub fn scrape(&self) -> String {
        get_ok(self.metrics, "/metrics")
    }

    pub fn map_json(&self) -> serde_json::Value {
        serde_json::from_str(&get_ok(self.metrics, "/map.json"))
            .unwrap_or_else(|e| panic!("/map.json: {e}"))
    }
}

/// The value of the sample `name{labels}` in an exposition (labels as written, sorted).
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A real Prometheus server (Debian's `prometheus`) on a free loopback port, with its own
/// configuration and data directory, scraping its targets every second. Stopped on drop.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
}

impl Prometheus {
    pub fn start(target: SocketAddr) -> Prometheus {
        Prometheus::scraping(&[target])
    }

    /// One Prometheus scraping every one of `targets` (job `monitor`; each its own
    /// `instance`, its address).
    pub fn scraping(targets: &[SocketAddr]) -> Prometheus {
        let dir = TempDir::new(&std::env::temp_dir(), "mprom");
        let config = dir.0.join("prometheus.yml");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let targets = targets.join(", ");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: monitor\n    static_configs:\n      - targets: [{targets}]\n"
            ),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log =
            std::fs::File::create(dir.0.join("prometheus.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting prometheus (Debian package `prometheus`; `cargo xtask setup` installs it): {e}"));
        let prometheus = Prometheus { child, addr, dir };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            http_get(addr, "/-/ready").ok().filter(|(s, _)| *s == 200)
        });
        prometheus
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query: the `data.result` array.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let body = get_ok(
            self.addr,
            &format!("/api/v1/query?query={}", encode(promql)),
        );
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("query {promql}: {e}: {body}"));
        assert_eq!(json["status"], "success", "query {promql}: {body}");
        json["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of a query, `None` when it has no result.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        assert!(
            result.len() <= 1,
            "{promql} has {} series: {result:?}",
            result.len()
        );
        result
            .first()
            .and_then(|r| r["value"][1].as_str().and_then(|v| v.parse().ok()))
    }

    /// How many times Prometheus has scraped the monitor (the last 10 minutes; with
    /// several targets, the one scraped least).
    pub fn scrapes(&self) -> f64 {
        self.value(r#"min(count_over_time(up{job="monitor"}[10m]))"#)
            .unwrap_or(0.0)
    }

    /// Waits for `more` scrapes after now: then the newest exposition is in, and rates
    /// have samples to work with. (Prometheus scrapes first only about 5 s after it
    /// starts: target discovery is throttled.)
    pub fn wait_scrapes(&self, more: f64) {
        let target = self.scrapes() + more;
        wait_for(
            &format!("{more} more scrapes"),
            Duration::from_secs(30),
            || (self.scrapes() >= target).then_some(()),
        );
    }

    /// Waits until `promql` has the value `expected`; panics with the last value seen.
    pub fn wait_value(&self, promql: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.value(promql);
            if value == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{promql}: expected {expected}, Prometheus has {value:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child: SIGTERM first so it closes its database.
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

/// Every PromQL expression of the dashboard (panels, nested panels), and the template
/// variables' `label_values` queries.
pub fn dashboard_queries() -> (Vec<(String, String)>, Vec<String>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboards/monitor.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    out.push((
                        panel["title"].as_str().unwrap_or("?").to_string(),
                        expr.to_string(),
                    ));
                }
            }
            walk(&panel["panels"], out);
        }
    }
    let mut exprs = Vec::new();
    walk(&dashboard["panels"], &mut exprs);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["query"]["query"].as_str().or(v["definition"].as_str()))
        .filter(|q| q.starts_with("label_values("))
        .map(str::to_string)
        .collect();
    (exprs, variables)
}

/// A dashboard query as Grafana sends it: the ward and device variables at "All"
/// (allValue `.*`), the Router variable as `router` (a regex: `.*` for all, or one
/// router's address with its dots escaped), and the interval macros as they are for a 1 s
/// scrape interval.
pub fn substitute(expr: &str, router: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "5m")
        .replace("$ward", ".*")
        .replace("$medical_device", ".*")
        .replace("$instance", router)
}

/// tests/artifacts (gitignored): screenshots and expositions a person can look at.
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

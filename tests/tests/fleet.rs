//! A fleet of routers in one Prometheus: two lab wards, each with its own router namespace
//! and its own monitor (`--metrics-addr` of its own), scraped by one real Prometheus. With
//! the dashboard's Router variable set to one router, every query of the shipped dashboard
//! returns that router's series and none of the other's (their devices, wards, modes and
//! sizes differ), a router that does not exist gets nothing, and the Router variable lists
//! both.

mod obs;

use std::{
    collections::BTreeSet,
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use monitor::lab::{DNS, NTP, Outcome};
use monitor_tests::harness::{host, service};
use obs::{ObsLab, Prometheus, WARD_POLICY, dashboard_queries, substitute};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_millis(800);

/// The second router's ward: the same lab hosts under other names, in other wards, and one
/// device more.
fn maternity_policy() -> String {
    let renamed = WARD_POLICY
        .replace("icu3", "mat2")
        .replace("icu-3", "maternity")
        .replace("ct-scanner-01", "us-scanner-02")
        .replace("radiology", "sonography")
        .replace("datacenter", "datacenter-east")
        .replace("name: pump-server", "name: pump-server-east")
        .replace("name: hl7-engine", "name: hl7-engine-east")
        .replace("name: pacs", "name: pacs-east");
    format!(
        "{renamed}  - name: pump-spare-mat2\n    kind: infusion-pump\n    addresses: [10.10.1.16]\n    \
         location: {{ site: main-campus, ward: maternity }}\n"
    )
}

/// What one router is, as its policy says, and where Prometheus finds it.
struct Router {
    lab: ObsLab,
    devices: BTreeSet<String>,
    wards: BTreeSet<String>,
    /// The router-wide mode it is left in.
    mode: &'static str,
}

impl Router {
    /// Its `instance` label.
    fn instance(&self) -> String {
        self.lab.metrics.to_string()
    }

    /// The Router variable set to it, as Grafana writes a regex matcher's value: the dots
    /// escaped (inside a PromQL string, so with a doubled backslash).
    fn variable(&self) -> String {
        self.instance().replace('.', "\\\\.")
    }
}

/// Names in a policy text: `  - name: X` lines (devices), `ward: X` values.
fn names_in(policy: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let devices = policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .map(|n| n.trim().to_owned())
        .collect();
    let wards = policy
        .split("ward: ")
        .skip(1)
        .filter_map(|rest| rest.split([',', ' ', '}']).next())
        .map(str::to_owned)
        .collect();
    (devices, wards)
}

/// Learns the CT (or ultrasound) scanner's DNS, enforces, lets the badge reader's NTP be
/// dropped, then leaves the router in `mode`.
fn traffic(lab: &ObsLab, mode: &str) {
    for _ in 0..3 {
        assert_eq!(
            lab.lab.udp("ct-scanner-01", service("dns", DNS), TIMEOUT),
            Outcome::Answered
        );
    }
    lab.lab.cli_ok(&["mode", "enforce"]);
    let src = host("badge-reader-icu3");
    let to = service("ntp", NTP);
    lab.lab
        .ward
        .ward
        .run(move || {
            let socket =
                UdpSocket::bind(SocketAddr::new(src, 0)).unwrap_or_else(|e| panic!("bind: {e}"));
            for _ in 0..5 {
                socket
                    .send_to(b"ntp?", to)
                    .unwrap_or_else(|e| panic!("send: {e}"));
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    if mode != "enforce" {
        lab.lab.cli_ok(&["mode", mode]);
    }
}

fn start(policy: &str, mode: &'static str) -> Router {
    let lab = ObsLab::start(policy, &[]);
    traffic(&lab, mode);
    let (devices, wards) = names_in(policy);
    Router {
        lab,
        devices,
        wards,
        mode,
    }
}

/// Every series of `result` belongs to `router` and none to `other`, as far as its labels
/// tell: its instance, its device, its ward.
fn assert_only(result: &[Value], router: &Router, other: &Router, what: &str) {
    for series in result {
        let labels = &series["metric"];
        if let Some(instance) = labels["instance"].as_str() {
            assert_eq!(instance, router.instance(), "{what}: {series}");
        }
        if let Some(device) = labels["medical_device"].as_str() {
            assert!(
                router.devices.contains(device),
                "{what}: {device} is not {}'s: {series}",
                router.instance()
            );
        }
        if let Some(ward) = labels["ward"].as_str() {
            assert!(
                router.wards.contains(ward) && !other.wards.contains(ward),
                "{what}: ward {ward} is not {}'s alone: {series}",
                router.instance()
            );
        }
    }
}

/// `label_values(SELECTOR, LABEL)` through Prometheus' API, with the Router variable set.
fn label_values(prom: &Prometheus, variable: &str, router: &str) -> BTreeSet<String> {
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
            obs::encode(&substitute(selector.trim(), router))
        ),
    );
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_dashboards_router_variable_shows_each_routers_series_apart() {
    let icu = start(WARD_POLICY, "enforce");
    let maternity = start(&maternity_policy(), "audit");
    assert_eq!(icu.devices.len(), 8);
    assert_eq!(maternity.devices.len(), 9);
    assert!(icu.devices.is_disjoint(&maternity.devices));
    let prom = Prometheus::scraping(&[icu.lab.metrics, maternity.lab.metrics]);
    prom.wait_scrapes(3.0);

    let (exprs, variables) = dashboard_queries();
    assert!(exprs.len() >= 15, "{} dashboard queries", exprs.len());
    for (router, other) in [(&icu, &maternity), (&maternity, &icu)] {
        for (panel, expr) in &exprs {
            let promql = substitute(expr, &router.variable());
            let what = format!("panel `{panel}`, router {}: `{promql}`", router.instance());
            let result = prom.query(&promql);
            assert!(!result.is_empty(), "{what} returned no data");
            assert_only(&result, router, other, &what);
        }
        // What tells the routers apart, as the dashboard shows it.
        let devices = prom.query(&substitute(
            "hospmon_devices_enrolled{instance=~\"$instance\"}",
            &router.variable(),
        ));
        assert_eq!(
            devices.len(),
            1,
            "enrolled devices of {}: {devices:?}",
            router.instance()
        );
        assert_eq!(
            devices[0]["value"][1].as_str(),
            Some(router.devices.len().to_string().as_str()),
            "{devices:?}"
        );
        let (_, mode_query) = exprs
            .iter()
            .find(|(panel, _)| panel == "Router mode")
            .unwrap_or_else(|| panic!("the dashboard has a Router mode panel"));
        let modes: Vec<String> = prom
            .query(&substitute(mode_query, &router.variable()))
            .iter()
            .filter_map(|s| s["metric"]["mode"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(modes, [router.mode], "{}", router.instance());
        // The ward and device variables offer this router's own.
        for variable in &variables {
            let values = label_values(&prom, variable, &router.variable());
            if variable.ends_with(", ward)") {
                assert!(
                    !values.is_empty() && values.is_subset(&router.wards),
                    "{variable} for {}: {values:?}",
                    router.instance()
                );
            } else if variable.ends_with(", medical_device)") {
                assert_eq!(values, router.devices, "{variable}");
            }
        }
    }

    // Every query filters every series it reads: a router that is not there gets nothing.
    for (panel, expr) in &exprs {
        let promql = substitute(expr, "no-such-router");
        assert!(
            prom.query(&promql).is_empty(),
            "panel `{panel}`: `{promql}` returns data for a router that does not exist"
        );
    }

    // The Router variable lists both routers, and the whole fleet sums them.
    let router_variable = variables
        .iter()
        .find(|v| v.ends_with(", instance)"))
        .unwrap_or_else(|| panic!("the dashboard has a Router variable: {variables:?}"));
    assert_eq!(
        label_values(&prom, router_variable, ".*"),
        BTreeSet::from([icu.instance(), maternity.instance()])
    );
    let fleet = prom.query(&substitute(
        "sum(hospmon_devices_enrolled{instance=~\"$instance\"})",
        ".*",
    ));
    assert_eq!(fleet[0]["value"][1].as_str(), Some("17"), "{fleet:?}");
}

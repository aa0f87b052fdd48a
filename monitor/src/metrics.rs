//! Prometheus metrics and the observability HTTP server (`--metrics-addr`): `/metrics`,
//! and the device map at `/map` (HTML), `/map.json` and `/map.dot`.
//!
//! Every name starts with `hospmon_`. A scrape opens nothing: the pinned maps are opened
//! once when the server starts, and each scrape reads each map once (the per-device
//! counters one lookup per device, the baseline once, hash maps' sizes by walking their
//! keys) and builds the map-derived metrics afresh. Series of a device removed from the
//! inventory are therefore gone from the next scrape, and nothing per flow, address or
//! port ever becomes a label: addresses outside the inventory are summed into one set of
//! series. The medical device is the `medical_device` label; `device` is the network
//! interface, as node_exporter names it.
//!
//! Counters come from the datapath's per-CPU counters, which only grow (a slot handed to a
//! new device is zeroed, and its series has that device's labels), so they are counters
//! in Prometheus' sense while traffic flows. The one exception, the table of unenrolled
//! addresses (least recently seen evicted), is turned into counters here (see
//! [`UnenrolledTotals`]).

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    os::fd::{AsFd as _, AsRawFd as _},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, atomic::Ordering},
    time::Instant,
};

use aya::maps::{MapData, MapType};
use monitor_common::{Mode, maps::names};
use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
    proto::MetricFamily,
};

use crate::{
    activity::{Sampler, unix_now, unix_of_monotonic},
    daemon::{ControllerStats, DAEMON_FILE, DaemonInfo, Paths},
    datapath::{DatapathError, MapSet, addr_of},
    devmap,
    inventory::{Inventory, StateDir, StateError},
    oui::OuiDb,
    report::monotonic_now_ns,
};

/// The metric name prefix.
pub const PREFIX: &str = "hospmon_";
/// Default port of `--metrics-addr` (on 127.0.0.1). Not one of the ports Prometheus'
/// exporter list reserves for well-known exporters as of writing.
pub const DEFAULT_PORT: u16 = 9479;

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading the datapath maps")]
    Datapath(#[from] DatapathError),
    #[error("reading the state directory")]
    State(#[from] StateError),
    #[error("opening the pinned map {0}")]
    Pin(PathBuf, #[source] aya::maps::MapError),
    #[error("building the metric {0}")]
    Prometheus(String, #[source] prometheus::Error),
    #[error("listening on {0} for metrics")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("the device map")]
    DevMap(#[source] Box<devmap::DevMapError>),
    #[error("counting the entries of map {0}")]
    Count(&'static str, #[source] std::io::Error),
}

impl From<devmap::DevMapError> for MetricsError {
    fn from(e: devmap::DevMapError) -> Self {
        MetricsError::DevMap(Box::new(e))
    }
}

type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Binds the metrics listener. `monitor run` does this before it enters `--netns`, so that
/// the metrics are served on the host's (management) network, not inside the router VRF.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| MetricsError::Bind(addr, e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| MetricsError::Bind(addr, e))?;
    Ok(listener)
}

/// Metrics of the exporter itself, kept across scrapes.
struct ProcessMetrics {
    registry: Registry,
    scrape_duration: Gauge,
    scrape_errors: IntCounter,
}

fn process() -> &'static ProcessMetrics {
    static PROCESS: OnceLock<ProcessMetrics> = OnceLock::new();
    PROCESS.get_or_init(|| {
        // The names and help texts are constants; `new_process_metrics` is tested.
        new_process_metrics(Registry::new()).unwrap_or_else(|e| panic!("process metrics: {e}"))
    })
}

fn new_process_metrics(registry: Registry) -> Result<ProcessMetrics, prometheus::Error> {
    let build = IntGaugeVec::new(
        Opts::new(
            "hospmon_build_info",
            "Always 1; labels say which monitor and map layout is running.",
        ),
        &["version", "layout_version"],
    )?;
    build
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            &monitor_common::maps::LAYOUT_VERSION.to_string(),
        ])
        .set(1);
    registry.register(Box::new(build))?;
    let scrape_duration = Gauge::new(
        "hospmon_scrape_duration_seconds",
        "How long this scrape took to read the maps and the state directory.",
    )?;
    registry.register(Box::new(scrape_duration.clone()))?;
    let scrape_errors = IntCounter::new(
        "hospmon_scrape_errors_total",
        "Scrapes that failed to read the maps or the state directory (answered with HTTP 500).",
    )?;
    registry.register(Box::new(scrape_errors.clone()))?;
    Ok(ProcessMetrics {
        registry,
        scrape_duration,
        scrape_errors,
    })
}

/// Sums over the table of addresses outside the inventory, as counters.
///
/// The table evicts the least recently seen address when full, and an evicted address
/// that comes back starts from zero, so its plain sum can go down. Here each address's
/// growth since the previous scrape is added to running totals: the totals only grow.
/// What an address did between the previous scrape and its eviction is not counted.
/// This keeps one small record per address in memory (the table holds at most
/// `MAX_UNENROLLED`), never a series.
#[derive(Debug, Default)]
pub struct UnenrolledTotals {
    last: HashMap<IpAddr, [u64; 4]>,
    /// packets sent, bytes sent, packets received, bytes received.
    pub totals: [u64; 4],
}

impl UnenrolledTotals {
    /// Adds the growth of every address in `table` (packets/bytes sent, packets/bytes
    /// received) since the previous call.
    pub fn update(&mut self, table: impl IntoIterator<Item = (IpAddr, [u64; 4])>) {
        let mut next = HashMap::with_capacity(self.last.len());
        for (addr, now) in table {
            let before = self.last.get(&addr).copied().unwrap_or_default();
            for i in 0..4 {
                // Lower than before: evicted and back from zero in between.
                self.totals[i] += if now[i] >= before[i] {
                    now[i] - before[i]
                } else {
                    now[i]
                };
            }
            next.insert(addr, now);
        }
        self.last = next;
    }

    /// Addresses in the table at the last update.
    pub fn addresses(&self) -> usize {
        self.last.len()
    }
}

/// A hash map whose fill level is reported (`hospmon_map_entries`).
struct SizedMap {
    name: &'static str,
    data: MapData,
    capacity: u32,
    key_size: u32,
}

/// Number of keys in a BPF hash map or LPM trie, walking them with BPF_MAP_GET_NEXT_KEY
/// (the kernel keeps no count it would tell). Stops at `capacity`: a key evicted while
/// it is walked restarts the walk from the first key.
fn count_keys(map: &SizedMap) -> Result<u64, std::io::Error> {
    #[repr(C)]
    struct GetNextKey {
        map_fd: u32,
        _pad: u32,
        key: u64,
        next_key: u64,
        flags: u64,
    }
    const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
    let fd = map.data.fd().as_fd().as_raw_fd() as u32;
    let mut key = vec![0u8; map.key_size as usize];
    let mut next = vec![0u8; map.key_size as usize];
    let mut count = 0u64;
    let mut first = true;
    while count < u64::from(map.capacity) {
        let attr = GetNextKey {
            map_fd: fd,
            _pad: 0,
            key: if first { 0 } else { key.as_ptr() as u64 },
            next_key: next.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the attr points at two buffers of the map's key size that we own and
        // that outlive the call; the kernel reads `key` and writes `next_key` only.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_GET_NEXT_KEY,
                &attr as *const GetNextKey,
                std::mem::size_of::<GetNextKey>(),
            )
        };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENOENT) {
                break;
            }
            return Err(err);
        }
        count += 1;
        first = false;
        std::mem::swap(&mut key, &mut next);
    }
    Ok(count)
}

/// Reads the pinned maps and the state directory into metric families.
pub struct Scraper {
    maps: MapSet,
    sized: Vec<SizedMap>,
    state: StateDir,
    unenrolled: UnenrolledTotals,
    controller: Arc<ControllerStats>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").finish_non_exhaustive()
    }
}

/// Builds metric vectors into one registry, naming the metric in errors.
struct Families {
    registry: Registry,
}

impl Families {
    fn counter(&self, name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec> {
        let err = |e| MetricsError::Prometheus(name.to_string(), e);
        let vec = IntCounterVec::new(Opts::new(name, help), labels).map_err(err)?;
        self.registry.register(Box::new(vec.clone())).map_err(err)?;
        Ok(vec)
    }

    fn gauge(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec> {
        let err = |e| MetricsError::Prometheus(name.to_string(), e);
        let vec = GaugeVec::new(Opts::new(name, help), labels).map_err(err)?;
        self.registry.register(Box::new(vec.clone())).map_err(err)?;
        Ok(vec)
    }
}

const DEVICE_LABELS: [&str; 4] = ["medical_device", "kind", "ward", "criticality"];

impl Scraper {
    /// Opens the maps pinned under `pin_dir` once, for every scrape to come.
    pub fn open(
        pin_dir: &Path,
        state: StateDir,
        controller: Arc<ControllerStats>,
    ) -> Result<Scraper> {
        let maps = MapSet::open_pinned(pin_dir)?;
        let mut sized = Vec::new();
        for name in names::ALL {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| MetricsError::Pin(path.clone(), e))?;
            let info = data
                .info()
                .map_err(|e| MetricsError::Pin(path.clone(), e))?;
            // Arrays are full by construction and a ring buffer has no entries: only
            // hash maps and tries fill up.
            let fills = matches!(
                info.map_type(),
                Ok(MapType::Hash
                    | MapType::PerCpuHash
                    | MapType::LruHash
                    | MapType::LruPerCpuHash
                    | MapType::LpmTrie)
            );
            if fills {
                sized.push(SizedMap {
                    name,
                    capacity: info.max_entries(),
                    key_size: info.key_size(),
                    data,
                });
            }
        }
        Ok(Scraper {
            maps,
            sized,
            state,
            unenrolled: UnenrolledTotals::default(),
            controller,
        })
    }

    /// The maps, for the device map served next to the metrics.
    pub fn maps(&self) -> &MapSet {
        &self.maps
    }

    /// One scrape: the exposition text.
    pub fn scrape(&mut self) -> Result<String> {
        let started = Instant::now();
        let families = match self.collect() {
            Ok(families) => families,
            Err(e) => {
                process().scrape_errors.inc();
                return Err(e);
            }
        };
        process()
            .scrape_duration
            .set(started.elapsed().as_secs_f64());
        let mut all = process().registry.gather();
        all.extend(families);
        all.sort_by(|a, b| a.name().cmp(b.name()));
        TextEncoder::new()
            .encode_to_string(&all)
            .map_err(|e| MetricsError::Prometheus("(encoding)".into(), e))
    }

    fn collect(&mut self) -> Result<Vec<MetricFamily>> {
        let inventory = Inventory::load(&self.state)?;
        let daemon: Option<DaemonInfo> = self.state.read_json(DAEMON_FILE)?;
        let config = self.maps.config()?;
        let global = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
        let now_mono = monotonic_now_ns();
        let now = unix_now();
        let f = Families {
            registry: Registry::new(),
        };

        // Per device. The baseline is read once and counted per address.
        let mut baseline_per_addr: HashMap<IpAddr, u64> = HashMap::new();
        for (key, _) in self.maps.baseline()? {
            *baseline_per_addr.entry(addr_of(&key.device)).or_default() += 1;
        }
        let packets = f.counter(
            "hospmon_device_packets_total",
            "Packets of an enrolled medical device, by direction (sent by it, received by it).",
            &[&DEVICE_LABELS[..], &["direction"]].concat(),
        )?;
        let bytes = f.counter(
            "hospmon_device_bytes_total",
            "Bytes (whole frames) of an enrolled medical device, by direction.",
            &[&DEVICE_LABELS[..], &["direction"]].concat(),
        )?;
        let dropped = f.counter(
            "hospmon_device_dropped_packets_total",
            "Packets dropped because of the device's policy (enforce mode).",
            &DEVICE_LABELS,
        )?;
        let would_drop = f.counter(
            "hospmon_device_would_drop_packets_total",
            "Packets enforcement would have dropped but passed (audit mode, or a life-critical device spared).",
            &DEVICE_LABELS,
        )?;
        let learned = f.counter(
            "hospmon_device_learned_flows_total",
            "Flows learned into the device's baseline.",
            &DEVICE_LABELS,
        )?;
        let mode = f.gauge(
            "hospmon_device_mode",
            "1 for the mode the device is in (learn, audit, enforce), 0 for the others.",
            &[&DEVICE_LABELS[..], &["mode"]].concat(),
        )?;
        let held = f.gauge(
            "hospmon_device_enforcement_held_back",
            "1 when enforce mode applies but the device stays audited: life-critical and not confirmed for enforcement.",
            &DEVICE_LABELS,
        )?;
        let baseline = f.gauge(
            "hospmon_device_baseline_entries",
            "Flows in the device's baseline (learned, imported or from policy).",
            &DEVICE_LABELS,
        )?;
        let last_seen = f.gauge(
            "hospmon_device_last_seen_timestamp_seconds",
            "When the device's last packet was seen, Unix time (absent if never seen).",
            &DEVICE_LABELS,
        )?;
        let glass = f.gauge(
            "hospmon_device_break_glass",
            "1 while break-glass lifts enforcement for the device, else 0.",
            &DEVICE_LABELS,
        )?;
        let glass_packets = f.counter(
            "hospmon_device_break_glass_packets_total",
            "Packets passed because break-glass lifted enforcement for the device.",
            &DEVICE_LABELS,
        )?;
        for device in &inventory.devices {
            let spec = &device.spec;
            let ward = devmap::ward_of(spec);
            let labels = [
                spec.name.as_str(),
                spec.kind.as_str(),
                ward.as_str(),
                spec.criticality.name(),
            ];
            let with = |extra: &'static str| -> [&str; 5] {
                [labels[0], labels[1], labels[2], labels[3], extra]
            };
            let stats = self.maps.device_stats(device.slot)?;
            packets
                .with_label_values(&with("sent"))
                .inc_by(stats.packets_sent);
            packets
                .with_label_values(&with("received"))
                .inc_by(stats.packets_received);
            bytes
                .with_label_values(&with("sent"))
                .inc_by(stats.bytes_sent);
            bytes
                .with_label_values(&with("received"))
                .inc_by(stats.bytes_received);
            dropped
                .with_label_values(&labels)
                .inc_by(stats.dropped_packets);
            would_drop
                .with_label_values(&labels)
                .inc_by(stats.would_drop_packets);
            learned
                .with_label_values(&labels)
                .inc_by(stats.learned_flows);
            let effective = device.effective_mode(global);
            let current = Mode::ALL
                .into_iter()
                .find(|m| effective.starts_with(m.name()))
                .unwrap_or(global);
            for m in Mode::ALL {
                mode.with_label_values(&with(m.name()))
                    .set(if m == current { 1.0 } else { 0.0 });
            }
            held.with_label_values(&labels)
                .set(if effective.contains("life-critical") {
                    1.0
                } else {
                    0.0
                });
            let entries: u64 = spec
                .addresses
                .iter()
                .map(|a| baseline_per_addr.get(a).copied().unwrap_or(0))
                .sum();
            baseline.with_label_values(&labels).set(entries as f64);
            let in_force = device
                .break_glass
                .as_ref()
                .is_some_and(|g| g.until_unix > now);
            glass
                .with_label_values(&labels)
                .set(if in_force { 1.0 } else { 0.0 });
            glass_packets
                .with_label_values(&labels)
                .inc_by(stats.break_glass_packets);
            if let Some(t) = unix_of_monotonic(stats.last_seen_ns, now_mono, now) {
                last_seen.with_label_values(&labels).set(t as f64);
            }
        }
        f.gauge(
            "hospmon_devices_enrolled",
            "Medical devices in the inventory.",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(inventory.devices.len() as f64);

        // Everything outside the inventory, summed.
        let table = self.maps.unenrolled_stats()?;
        self.unenrolled.update(table.into_iter().map(|(addr, s)| {
            (
                addr,
                [
                    s.packets_sent,
                    s.bytes_sent,
                    s.packets_received,
                    s.bytes_received,
                ],
            )
        }));
        let totals = self.unenrolled.totals;
        let u_packets = f.counter(
            "hospmon_unenrolled_packets_total",
            "Packets of addresses outside the inventory, all summed, by direction (sent by them, received by them).",
            &["direction"],
        )?;
        let u_bytes = f.counter(
            "hospmon_unenrolled_bytes_total",
            "Bytes of addresses outside the inventory, all summed, by direction.",
            &["direction"],
        )?;
        u_packets.with_label_values(&["sent"]).inc_by(totals[0]);
        u_bytes.with_label_values(&["sent"]).inc_by(totals[1]);
        u_packets.with_label_values(&["received"]).inc_by(totals[2]);
        u_bytes.with_label_values(&["received"]).inc_by(totals[3]);
        f.gauge(
            "hospmon_unenrolled_addresses",
            "Addresses outside the inventory the datapath tracks now.",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(self.unenrolled.addresses() as f64);

        // Verdicts and frame classes of the whole router.
        let v_packets = f.counter(
            "hospmon_verdict_packets_total",
            "Packets by verdict: action (pass, drop) and reason (see `monitor reasons`), all interfaces.",
            &["action", "reason"],
        )?;
        let v_bytes = f.counter(
            "hospmon_verdict_bytes_total",
            "Bytes by verdict action and reason, all interfaces.",
            &["action", "reason"],
        )?;
        for (action, reason, counter) in self.maps.verdicts()? {
            let labels = [action.name(), reason.label()];
            v_packets.with_label_values(&labels).inc_by(counter.packets);
            v_bytes.with_label_values(&labels).inc_by(counter.bytes);
        }
        let c_frames = f.counter(
            "hospmon_frames_total",
            "Frames by class (ipv4, ipv6, arp, llc, lldp, other_ethertype, malformed), all interfaces.",
            &["class"],
        )?;
        let c_bytes = f.counter(
            "hospmon_frame_bytes_total",
            "Bytes of frames by class, all interfaces.",
            &["class"],
        )?;
        for (class, counter) in self.maps.classes()? {
            c_frames
                .with_label_values(&[class.label()])
                .inc_by(counter.packets);
            c_bytes
                .with_label_values(&[class.label()])
                .inc_by(counter.bytes);
        }
        let g_mode = f.gauge(
            "hospmon_mode",
            "1 for the router-wide mode (learn, audit, enforce), 0 for the others.",
            &["mode"],
        )?;
        for m in Mode::ALL {
            g_mode
                .with_label_values(&[m.name()])
                .set(if m == global { 1.0 } else { 0.0 });
        }
        f.gauge(
            "hospmon_policy_generation",
            "Policy generation in the datapath, bumped by every policy load.",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(f64::from(config.generation));

        // Violation events (datapath → controller) and policy loads (the daemon's counts).
        let (sent, suppressed, lost) = self.maps.event_stats()?;
        let events = f.counter(
            "hospmon_events_total",
            "Violation events by outcome: sent to the controller, suppressed by the per-device rate limit.",
            &["outcome"],
        )?;
        events.with_label_values(&["sent"]).inc_by(sent);
        events.with_label_values(&["suppressed"]).inc_by(suppressed);
        f.counter(
            "hospmon_events_lost_total",
            "Violation events lost because the event ring buffer was full.",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .inc_by(lost);
        let reloads = f.counter(
            "hospmon_policy_reloads_total",
            "Policy loads (at start and on reload) by result: ok, or failed (the running policy stayed).",
            &["result"],
        )?;
        reloads
            .with_label_values(&["ok"])
            .inc_by(self.controller.reloads_ok.load(Ordering::Relaxed));
        reloads
            .with_label_values(&["failed"])
            .inc_by(self.controller.reloads_failed.load(Ordering::Relaxed));
        f.gauge(
            "hospmon_policy_last_reload_success_timestamp_seconds",
            "When a policy was last applied successfully, Unix time; 0 if never.",
            &[],
        )?
        .with_label_values(&[] as &[&str])
        .set(
            self.controller
                .last_good_reload_unix
                .load(Ordering::Relaxed) as f64,
        );

        // Interfaces, as the daemon attached them.
        let xdp = f.gauge(
            "hospmon_interface_xdp_mode",
            "1 for each interface the monitor is attached to, with its XDP mode (native, generic).",
            &["device", "mode"],
        )?;
        for iface in daemon.iter().flat_map(|d| &d.interfaces) {
            xdp.with_label_values(&[iface.name.as_str(), iface.xdp_mode.as_str()])
                .set(1.0);
        }

        // How full the tables are.
        let entries = f.gauge(
            "hospmon_map_entries",
            "Entries in a datapath table now.",
            &["map"],
        )?;
        let capacity = f.gauge(
            "hospmon_map_capacity_entries",
            "Entries a datapath table holds at most.",
            &["map"],
        )?;
        let pressure = f.gauge(
            "hospmon_map_pressure_ratio",
            "Entries over capacity of a datapath table (1: full; LRU tables then evict).",
            &["map"],
        )?;
        for map in &self.sized {
            let count = count_keys(map).map_err(|e| MetricsError::Count(map.name, e))?;
            entries.with_label_values(&[map.name]).set(count as f64);
            capacity
                .with_label_values(&[map.name])
                .set(f64::from(map.capacity));
            pressure
                .with_label_values(&[map.name])
                .set(count as f64 / f64::from(map.capacity.max(1)));
        }
        Ok(f.registry.gather())
    }
}

/// What the HTTP handlers share: the opened maps (one scrape or map at a time) and the
/// vendor registry, loaded once.
struct Shared {
    scraper: Mutex<Scraper>,
    paths: Paths,
    /// The IEEE registry, read at the first map request (46,000 lines).
    oui: OnceLock<Option<OuiDb>>,
}

impl Shared {
    fn oui(&self) -> Option<&OuiDb> {
        self.oui
            .get_or_init(|| match OuiDb::load_default() {
                Ok(db) => Some(db),
                Err(e) => {
                    log::warn!("{e}: the device map shows no vendors");
                    None
                }
            })
            .as_ref()
    }
}

/// The daemon's observability: the activity sampler and, with `--metrics-addr`, the HTTP
/// server. Both stop when this is dropped (the sampler after a last sample).
#[derive(Debug)]
pub struct Observability {
    _sampler: Option<Sampler>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Observability {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Starts the activity sampler and, when given a listener, the HTTP server on the current
/// tokio runtime. `controller`: the daemon's own counters (policy loads). Problems are
/// logged: observability must never stop the monitor.
pub fn start(
    paths: &Paths,
    listener: Option<std::net::TcpListener>,
    controller: Arc<ControllerStats>,
) -> Observability {
    let sampler = match Sampler::start(paths.pin_dir.clone(), paths.state.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("activity sampling not started: {}", error_chain(&e));
            None
        }
    };
    let server = listener.and_then(|listener| match serve(paths, listener, controller) {
        Ok(handle) => Some(handle),
        Err(e) => {
            log::error!("metrics server not started: {}", error_chain(&e));
            None
        }
    });
    Observability {
        _sampler: sampler,
        server,
    }
}

/// An error with its causes, for logs and HTTP error bodies.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn serve(
    paths: &Paths,
    listener: std::net::TcpListener,
    controller: Arc<ControllerStats>,
) -> Result<tokio::task::JoinHandle<()>> {
    use axum::{Router, routing::get};
    let addr = listener
        .local_addr()
        .map_err(|e| MetricsError::Bind(([0, 0, 0, 0], 0).into(), e))?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|e| MetricsError::Bind(addr, e))?;
    let paths = paths.clone();
    // Everything slow (opening the maps) happens in the task: the daemon's start is not
    // held up; requests wait in the listen queue until it is ready.
    Ok(tokio::spawn(async move {
        let opened = {
            let paths = paths.clone();
            tokio::task::spawn_blocking(move || {
                Scraper::open(&paths.pin_dir, paths.state.clone(), controller)
            })
            .await
        };
        let scraper = match opened {
            Ok(Ok(scraper)) => scraper,
            Ok(Err(e)) => {
                log::error!("metrics server not started: {}", error_chain(&e));
                return;
            }
            Err(e) => {
                log::error!("metrics server not started: {e}");
                return;
            }
        };
        let shared = Arc::new(Shared {
            scraper: Mutex::new(scraper),
            paths,
            oui: OnceLock::new(),
        });
        let app = Router::new()
            .route("/", get(index))
            .route("/metrics", get(metrics_handler))
            .route(
                "/map",
                get(|s: SharedState| map_handler(s, devmap::Format::Html)),
            )
            .route(
                "/map.json",
                get(|s: SharedState| map_handler(s, devmap::Format::Json)),
            )
            .route(
                "/map.dot",
                get(|s: SharedState| map_handler(s, devmap::Format::Dot)),
            )
            .with_state(shared);
        log::info!("metrics on http://{addr}/metrics, device map on http://{addr}/map");
        if let Err(e) = axum::serve(listener, app).await {
            log::error!("metrics server stopped: {e}");
        }
    }))
}

type SharedState = axum::extract::State<Arc<Shared>>;

type Reply = (
    axum::http::StatusCode,
    [(axum::http::header::HeaderName, &'static str); 1],
    String,
);

fn reply(status: axum::http::StatusCode, content_type: &'static str, body: String) -> Reply {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        body,
    )
}

async fn index() -> Reply {
    reply(
        axum::http::StatusCode::OK,
        "text/html; charset=utf-8",
        "<!doctype html><title>hospital flow monitor</title><h1>hospital flow monitor</h1>\
         <ul><li><a href=\"/metrics\">/metrics</a> (Prometheus)</li>\
         <li><a href=\"/map\">/map</a> (device map; also <a href=\"/map.json\">JSON</a>, \
         <a href=\"/map.dot\">Graphviz</a>)</li></ul>"
            .into(),
    )
}

/// Runs blocking map reads off the async workers (a large table walk takes a while).
async fn blocking<T: Send + 'static>(
    shared: Arc<Shared>,
    f: impl FnOnce(&Shared) -> Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(move || f(&shared)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(e) => Err(e.to_string()),
    }
}

async fn metrics_handler(axum::extract::State(shared): SharedState) -> Reply {
    let result = blocking(shared, |s| {
        let mut scraper = s
            .scraper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        scraper.scrape()
    })
    .await;
    match result {
        Ok(text) => reply(
            axum::http::StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text,
        ),
        Err(e) => {
            log::warn!("scrape failed: {e}");
            reply(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                e,
            )
        }
    }
}

async fn map_handler(axum::extract::State(shared): SharedState, format: devmap::Format) -> Reply {
    let result = blocking(shared, move |s| {
        let scraper = s
            .scraper
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let model = devmap::build(&devmap::Inputs::read(
            scraper.maps(),
            &s.paths.state,
            s.oui(),
        )?);
        Ok(devmap::render(&model, format)?)
    })
    .await;
    match result {
        Ok(body) => reply(axum::http::StatusCode::OK, format.content_type(), body),
        Err(e) => reply(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            e,
        ),
    }
}

/// The names of every metric a scrape can expose, for docs and tests.
pub fn metric_names() -> BTreeMap<&'static str, &'static str> {
    [
        ("hospmon_build_info", "gauge"),
        ("hospmon_device_packets_total", "counter"),
        ("hospmon_device_bytes_total", "counter"),
        ("hospmon_device_dropped_packets_total", "counter"),
        ("hospmon_device_would_drop_packets_total", "counter"),
        ("hospmon_device_learned_flows_total", "counter"),
        ("hospmon_device_mode", "gauge"),
        ("hospmon_device_enforcement_held_back", "gauge"),
        ("hospmon_device_baseline_entries", "gauge"),
        ("hospmon_device_last_seen_timestamp_seconds", "gauge"),
        ("hospmon_device_break_glass", "gauge"),
        ("hospmon_device_break_glass_packets_total", "counter"),
        ("hospmon_devices_enrolled", "gauge"),
        ("hospmon_unenrolled_packets_total", "counter"),
        ("hospmon_unenrolled_bytes_total", "counter"),
        ("hospmon_unenrolled_addresses", "gauge"),
        ("hospmon_verdict_packets_total", "counter"),
        ("hospmon_verdict_bytes_total", "counter"),
        ("hospmon_frames_total", "counter"),
        ("hospmon_frame_bytes_total", "counter"),
        ("hospmon_mode", "gauge"),
        ("hospmon_policy_generation", "gauge"),
        ("hospmon_interface_xdp_mode", "gauge"),
        ("hospmon_map_entries", "gauge"),
        ("hospmon_map_capacity_entries", "gauge"),
        ("hospmon_map_pressure_ratio", "gauge"),
        ("hospmon_policy_reloads_total", "counter"),
        (
            "hospmon_policy_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("hospmon_events_total", "counter"),
        ("hospmon_events_lost_total", "counter"),
        ("hospmon_scrape_duration_seconds", "gauge"),
        ("hospmon_scrape_errors_total", "counter"),
    ]
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unenrolled_totals_only_grow_through_eviction() {
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let mut t = UnenrolledTotals::default();
        t.update([(a, [5, 500, 1, 100]), (b, [2, 200, 0, 0])]);
        assert_eq!(t.totals, [7, 700, 1, 100]);
        // a grows; b is evicted.
        t.update([(a, [6, 600, 1, 100])]);
        assert_eq!(t.totals, [8, 800, 1, 100]);
        assert_eq!(t.addresses(), 1);
        // b is back from zero.
        t.update([(a, [6, 600, 1, 100]), (b, [1, 100, 0, 0])]);
        assert_eq!(t.totals, [9, 900, 1, 100]);
    }

    #[test]
    fn process_metrics_build_and_follow_the_naming_rules() {
        let p = new_process_metrics(Registry::new()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = p
            .registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        let known = metric_names();
        for name in &names {
            assert!(name.starts_with(PREFIX), "{name}");
            assert!(
                known.contains_key(name.as_str()),
                "{name} missing from metric_names()"
            );
        }
        for (name, kind) in known {
            assert!(name.starts_with(PREFIX), "{name}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name}");
        }
    }
}

//! Prometheus metrics and the observability HTTP server (`--metrics-addr`): `/metrics`,
//! and the device map at `/map` (HTML), `/map.json` and `/map.dot`.
//!
//! Every name starts with `hospmon_`. A scrape opens nothing: the pinned maps are opened
//! once when the server starts. A scrape reads the per-device counters in batches and the
//! small tables, and writes the exposition text directly (no prometheus objects per
//! series: at 10,000 devices those cost seconds and hundreds of MB). It walks no large
//! table: the baseline (entries per device) and the hash maps' fill levels are counted by
//! a background thread every [`COUNT_EVERY`] or less often, and exposed with their age.
//! The inventory is parsed again only when its file changed. Series of a device removed
//! from the inventory are gone from the next scrape, and nothing per flow, address or
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
use monitor_common::{
    Mode,
    maps::{BaselineEntry, DeviceStats, FlowKey, names},
};
use prometheus::{Gauge, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::{
    daemon::ControllerStats,
    datapath::{DatapathError, MapSet, addr_of},
    state::activity::Sampler,
    state::inventory::Inventory,
    state::{StateDir, StateError},
    state::{
        daemon::{DaemonInfo, Paths},
        files,
    },
    support::{
        clock::{monotonic_now_ns, unix_now, unix_of_monotonic},
        error_chain,
    },
    view::devmap,
    view::oui::OuiDb,
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
    /// A flow table: an array the XDP program fills, counted by its taken slots.
    flow_table: bool,
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

/// How often, at most, the background counter walks the hash tables: the baseline (per
/// device) and the fill level of every hash map. A walk is one syscall per entry (about a
/// second at 100,000 baseline entries), far too slow for a scrape; the counts are served
/// from here with their age (`hospmon_map_entries_age_seconds`).
const COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// The background walks take at most 1/COUNT_DUTY of one core: a walk that took `t` is
/// followed by at least `t * COUNT_DUTY` of rest.
const COUNT_DUTY: u32 = 20;

/// What the background counter found in the tables.
#[derive(Debug)]
struct TableCounts {
    /// Baseline entries per device address.
    baseline_per_addr: HashMap<IpAddr, u64>,
    /// Entries and capacity of each hash map, in `names::ALL` order.
    entries: Vec<(&'static str, u64, u32)>,
    /// DEVICE_REASONS summed over CPUs (slot × reason), empty if the read failed: half a
    /// million counters at full size, too many to read in every scrape.
    device_reasons: Vec<u64>,
    at: Instant,
}

/// The tables the counter walks: its own handles, so that a walk never holds the
/// scraper's lock.
struct Counter {
    /// The baseline, walked key by key: no copy of the table is made (at 1,000,000
    /// entries a copy would be tens of MB), and values are not read.
    baseline: aya::maps::Map,
    baseline_pin: PathBuf,
    sized: Vec<SizedMap>,
    reasons: BatchArray<u64>,
}

impl Counter {
    fn open(pin_dir: &Path) -> Result<Counter> {
        let baseline_pin = pin_dir.join(names::BASELINE);
        let baseline = MapData::from_pin(&baseline_pin)
            .and_then(aya::maps::Map::from_map_data)
            .map_err(|e| MetricsError::Pin(baseline_pin.clone(), e))?;
        let mut sized = Vec::new();
        for name in names::ALL {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| MetricsError::Pin(path.clone(), e))?;
            let info = data
                .info()
                .map_err(|e| MetricsError::Pin(path.clone(), e))?;
            // Arrays are full by construction and a ring buffer has no entries: only
            // hash maps, tries and the flow tables (arrays the XDP program fills) fill up.
            let flow_table = crate::datapath::is_flow_table(name);
            let fills = flow_table
                || matches!(
                    info.map_type(),
                    Ok(MapType::Hash
                        | MapType::PerCpuHash
                        | MapType::LruHash
                        | MapType::LruPerCpuHash
                        | MapType::LpmTrie)
                );
            if fills {
                // A flow table's entries are sets of FLOW_WAYS flows.
                let ways = if flow_table {
                    monitor_common::maps::FLOW_WAYS
                } else {
                    1
                };
                sized.push(SizedMap {
                    name,
                    capacity: info.max_entries() * ways,
                    key_size: info.key_size(),
                    data,
                    flow_table,
                });
            }
        }
        Ok(Counter {
            baseline,
            baseline_pin,
            sized,
            reasons: BatchArray::open_named(pin_dir, names::DEVICE_REASONS)?,
        })
    }

    fn count(&self) -> Result<TableCounts> {
        let mut baseline_per_addr: HashMap<IpAddr, u64> = HashMap::new();
        let err = |e| MetricsError::Pin(self.baseline_pin.clone(), e);
        let baseline: aya::maps::HashMap<&MapData, FlowKey, BaselineEntry> =
            aya::maps::HashMap::try_from(&self.baseline).map_err(err)?;
        for key in baseline.keys() {
            let key = key.map_err(err)?;
            *baseline_per_addr.entry(addr_of(&key.device)).or_default() += 1;
        }
        let mut entries = Vec::with_capacity(self.sized.len());
        for map in &self.sized {
            let count = if map.flow_table {
                crate::datapath::taken_flow_slots(
                    &map.data,
                    map.capacity / monitor_common::maps::FLOW_WAYS,
                )
            } else {
                count_keys(map)
            }
            .map_err(|e| MetricsError::Count(map.name, e))?;
            entries.push((map.name, count, map.capacity));
        }
        let all = (monitor_common::maps::MAX_DEVICES * monitor_common::maps::DEVICE_REASON_SLOTS)
            as usize;
        let device_reasons = self.reasons.read(all).unwrap_or_else(|e| {
            log::warn!("reading {}: {e}", names::DEVICE_REASONS);
            Vec::new()
        });
        Ok(TableCounts {
            baseline_per_addr,
            entries,
            device_reasons,
            at: Instant::now(),
        })
    }

    /// Recounts in a thread of its own until the scraper (the only strong owner of
    /// `cache`) is gone. A failed walk is logged and the old counts stay, ageing.
    fn run(self, cache: std::sync::Weak<Mutex<Arc<TableCounts>>>, first_took: std::time::Duration) {
        let mut took = first_took;
        loop {
            std::thread::sleep(COUNT_EVERY.max(took * COUNT_DUTY));
            let Some(cache) = cache.upgrade() else {
                return;
            };
            let started = Instant::now();
            match self.count() {
                Ok(counts) => {
                    *cache.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(counts);
                }
                Err(e) => log::warn!("counting table entries: {}", error_chain(&e)),
            }
            took = started.elapsed();
        }
    }
}

/// A per-CPU array of counters read in batches (BPF_MAP_LOOKUP_BATCH): one syscall per
/// `STATS_BATCH` entries instead of one per entry (10,000 syscalls were the largest part
/// of a scrape's own work at 10,000 devices). Used for DEVICE_STATS (by slot) and
/// DEVICE_REASONS (by slot and reason).
struct BatchArray<T> {
    data: MapData,
    cpus: usize,
    _values: std::marker::PhantomData<T>,
}

const STATS_BATCH: usize = 1024;

/// A value the kernel copies as whole u64 words, summed over CPUs by `add`.
trait Summed: Copy + Default {
    fn add(&mut self, other: &Self);
}

impl Summed for DeviceStats {
    fn add(&mut self, other: &Self) {
        self.merge(other);
    }
}

impl Summed for u64 {
    fn add(&mut self, other: &Self) {
        *self += *other;
    }
}

type StatsArray = BatchArray<DeviceStats>;

impl<T: Summed> BatchArray<T> {
    fn open_named(pin_dir: &Path, name: &'static str) -> Result<BatchArray<T>> {
        let path = pin_dir.join(name);
        let data = MapData::from_pin(&path).map_err(|e| MetricsError::Pin(path.clone(), e))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| MetricsError::Count(name, e))?;
        Ok(BatchArray {
            data,
            cpus,
            _values: std::marker::PhantomData,
        })
    }

    /// Entries `0..count`, summed over CPUs, by index.
    fn read(&self, count: usize) -> Result<Vec<T>, std::io::Error> {
        #[repr(C)]
        struct Batch {
            in_batch: u64,
            out_batch: u64,
            keys: u64,
            values: u64,
            count: u32,
            map_fd: u32,
            elem_flags: u64,
            flags: u64,
        }
        const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
        // The kernel copies each entry's value for every possible CPU, each rounded up to
        // 8 bytes: both value types are made of u64s.
        assert!(
            std::mem::size_of::<T>().is_multiple_of(8),
            "values must be whole u64 words"
        );
        let fd = self.data.fd().as_fd().as_raw_fd() as u32;
        let mut keys = vec![0u32; STATS_BATCH];
        let mut values = vec![T::default(); STATS_BATCH * self.cpus];
        let mut out = vec![T::default(); count];
        let mut read = 0usize;
        let mut token = 0u32;
        while read < count {
            let mut next = 0u32;
            let mut attr = Batch {
                in_batch: if read == 0 {
                    0
                } else {
                    &token as *const u32 as u64
                },
                out_batch: &mut next as *mut u32 as u64,
                keys: keys.as_mut_ptr() as u64,
                values: values.as_mut_ptr() as u64,
                count: (count - read).min(STATS_BATCH) as u32,
                map_fd: fd,
                elem_flags: 0,
                flags: 0,
            };
            // SAFETY: the buffers hold `count` keys and `count` values of every possible
            // CPU, and outlive the call; the kernel writes them, `next` and `count`.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut Batch,
                    std::mem::size_of::<Batch>(),
                )
            };
            // ENOENT: the end of the array, with the last entries in this batch.
            let end = rc != 0;
            if end {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::ENOENT) {
                    return Err(err);
                }
            }
            let got = (attr.count as usize).min(STATS_BATCH);
            for (key, per_cpu) in keys[..got].iter().zip(values.chunks(self.cpus)) {
                if let Some(total) = out.get_mut(*key as usize) {
                    for value in per_cpu {
                        total.add(value);
                    }
                }
            }
            read += got;
            if end || got == 0 {
                break;
            }
            token = next;
        }
        Ok(out)
    }
}

impl StatsArray {
    fn open(pin_dir: &Path) -> Result<StatsArray> {
        BatchArray::open_named(pin_dir, names::DEVICE_STATS)
    }
}

/// Reads the pinned maps and the state directory into the exposition text.
pub struct Scraper {
    maps: MapSet,
    stats: StatsArray,
    state: StateDir,
    unenrolled: UnenrolledTotals,
    controller: Arc<ControllerStats>,
    counts: Arc<Mutex<Arc<TableCounts>>>,
    /// The inventory and the identity of the file it was read from: re-parsed only when
    /// the file was replaced (10,000 devices take ~50 ms to parse).
    inventory: Option<(Option<InventoryStamp>, Arc<Inventory>)>,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").finish_non_exhaustive()
    }
}

/// Inode, length and modification time of the inventory file. The inventory is written
/// by atomic rename, so any change gives a new inode.
type InventoryStamp = (u64, u64, Option<std::time::SystemTime>);

/// The exposition text, written directly: a scrape at 10,000 devices has ~130,000
/// series, and building them as prometheus objects first cost seconds and hundreds of MB.
struct Text {
    out: String,
}

/// A sample value: counters are integers, gauges floats.
enum Value {
    Int(u64),
    Float(f64),
}

impl Text {
    /// Starts a family. HELP texts are constants without backslashes or newlines.
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = write!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    /// One sample; `labels` is already rendered (`a="x",b="y"`), or empty.
    fn sample(&mut self, name: &str, labels: &str, extra: Option<(&str, &str)>, value: Value) {
        use std::fmt::Write as _;
        self.out.push_str(name);
        if !labels.is_empty() || extra.is_some() {
            self.out.push('{');
            self.out.push_str(labels);
            if let Some((k, v)) = extra {
                if !labels.is_empty() {
                    self.out.push(',');
                }
                push_label(&mut self.out, k, v);
            }
            self.out.push('}');
        }
        let _ = match value {
            Value::Int(v) => writeln!(self.out, " {v}"),
            Value::Float(v) if v.is_finite() => writeln!(self.out, " {v}"),
            Value::Float(v) if v.is_nan() => writeln!(self.out, " NaN"),
            Value::Float(v) => writeln!(self.out, " {}Inf", if v > 0.0 { '+' } else { '-' }),
        };
    }

    /// A family of one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: Value) {
        self.family(name, kind, help);
        self.sample(name, "", None, value);
    }
}

/// Appends `key="value"` with the value escaped as the text format requires.
fn push_label(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// What a scrape exposes of one device, read before the families are written (each
/// family's samples must be contiguous).
struct DeviceRow {
    slot: u32,
    labels: String,
    stats: DeviceStats,
    mode: &'static str,
    held: bool,
    baseline: u64,
    glass: bool,
    last_seen: Option<u64>,
}

impl Scraper {
    /// Opens the maps pinned under `pin_dir` once, for every scrape to come, counts the
    /// tables once and starts the background counter.
    pub fn open(
        pin_dir: &Path,
        state: StateDir,
        controller: Arc<ControllerStats>,
    ) -> Result<Scraper> {
        let maps = MapSet::open_pinned(pin_dir)?;
        let counter = Counter::open(pin_dir)?;
        let started = Instant::now();
        let counts = Arc::new(Mutex::new(Arc::new(counter.count()?)));
        let took = started.elapsed();
        let weak = Arc::downgrade(&counts);
        std::thread::Builder::new()
            .name("table-counter".into())
            .spawn(move || counter.run(weak, took))
            .map_err(|e| MetricsError::Count("(starting the counter thread)", e))?;
        Ok(Scraper {
            maps,
            stats: StatsArray::open(pin_dir)?,
            state,
            unenrolled: UnenrolledTotals::default(),
            controller,
            counts,
            inventory: None,
        })
    }

    /// The maps, for the device map served next to the metrics.
    pub fn maps(&self) -> &MapSet {
        &self.maps
    }

    /// One scrape: the exposition text.
    pub fn scrape(&mut self) -> Result<String> {
        let started = Instant::now();
        let mut text = Text { out: String::new() };
        if let Err(e) = self.collect(&mut text) {
            process().scrape_errors.inc();
            return Err(e);
        }
        process()
            .scrape_duration
            .set(started.elapsed().as_secs_f64());
        let own = TextEncoder::new()
            .encode_to_string(&process().registry.gather())
            .map_err(|e| MetricsError::Prometheus("(encoding)".into(), e))?;
        text.out.push_str(&own);
        Ok(text.out)
    }

    /// The inventory, re-read only when its file changed.
    fn inventory(&mut self) -> Result<Arc<Inventory>> {
        use std::os::unix::fs::MetadataExt as _;
        let stamp = std::fs::metadata(self.state.path().join(files::INVENTORY))
            .ok()
            .map(|m| (m.ino(), m.len(), m.modified().ok()));
        if let Some((old, inventory)) = &self.inventory
            && stamp.is_some()
            && *old == stamp
        {
            return Ok(inventory.clone());
        }
        let inventory = Arc::new(Inventory::load(&self.state)?);
        self.inventory = Some((stamp, inventory.clone()));
        Ok(inventory)
    }

    fn collect(&mut self, t: &mut Text) -> Result<()> {
        let inventory = self.inventory()?;
        let daemon: Option<DaemonInfo> = self.state.read_json(files::DAEMON)?;
        let config = self.maps.config()?;
        let global = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
        let now_mono = monotonic_now_ns();
        let now = unix_now();
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();

        // Per device: read everything first, then write family by family.
        let slots = inventory
            .devices
            .iter()
            .map(|d| d.slot as usize + 1)
            .max()
            .unwrap_or(0);
        let all_stats = match self.stats.read(slots) {
            Ok(all) => Some(all),
            Err(e) => {
                // A kernel without batch lookups (before 5.6): one lookup per device.
                log::debug!(
                    "batch read of {}: {e}; reading per device",
                    names::DEVICE_STATS
                );
                None
            }
        };
        let mut rows = Vec::with_capacity(inventory.devices.len());
        for device in &inventory.devices {
            let spec = &device.spec;
            let mut labels = String::with_capacity(96);
            push_label(&mut labels, "medical_device", &spec.name);
            labels.push(',');
            push_label(&mut labels, "kind", &spec.kind);
            labels.push(',');
            push_label(&mut labels, "ward", &devmap::ward_of(spec));
            labels.push(',');
            push_label(&mut labels, "criticality", spec.criticality.name());
            let stats = match all_stats.as_ref().and_then(|a| a.get(device.slot as usize)) {
                Some(stats) => *stats,
                None => self.maps.device_stats(device.slot)?,
            };
            let effective = device.effective_mode(global);
            let mode = Mode::ALL
                .into_iter()
                .find(|m| effective.starts_with(m.name()))
                .unwrap_or(global)
                .name();
            rows.push(DeviceRow {
                slot: device.slot,
                labels,
                stats,
                mode,
                held: effective.contains("life-critical"),
                baseline: spec
                    .addresses
                    .iter()
                    .map(|a| counts.baseline_per_addr.get(a).copied().unwrap_or(0))
                    .sum(),
                glass: device
                    .break_glass
                    .as_ref()
                    .is_some_and(|g| g.until_unix > now),
                last_seen: unix_of_monotonic(stats.last_seen_ns, now_mono, now),
            });
        }
        // The device families are nearly all of the text (13 samples per device, each its
        // labels and ~60 bytes more): allocated once rather than grown by doubling, which
        // would briefly hold both the old and the new buffer.
        let estimate: usize = rows.iter().map(|r| (r.labels.len() + 64) * 13).sum();
        t.out.reserve(estimate + 32 * 1024);
        let bool_value = |b: bool| Value::Float(if b { 1.0 } else { 0.0 });
        {
            let name = "hospmon_device_packets_total";
            t.family(
                name,
                "counter",
                "Packets of an enrolled medical device, by direction (sent by it, received by it).",
            );
            for r in &rows {
                let v = r.stats.packets_sent;
                t.sample(name, &r.labels, Some(("direction", "sent")), Value::Int(v));
                let v = r.stats.packets_received;
                t.sample(
                    name,
                    &r.labels,
                    Some(("direction", "received")),
                    Value::Int(v),
                );
            }
            let name = "hospmon_device_bytes_total";
            t.family(
                name,
                "counter",
                "Bytes (whole frames) of an enrolled medical device, by direction.",
            );
            for r in &rows {
                let v = r.stats.bytes_sent;
                t.sample(name, &r.labels, Some(("direction", "sent")), Value::Int(v));
                let v = r.stats.bytes_received;
                t.sample(
                    name,
                    &r.labels,
                    Some(("direction", "received")),
                    Value::Int(v),
                );
            }
        }
        type Of = fn(&DeviceRow) -> Option<Value>;
        let per_device: [(&str, &str, &str, Of); 8] = [
            (
                "hospmon_device_dropped_packets_total",
                "counter",
                "Packets dropped because of the device's policy (enforce mode).",
                |r| Some(Value::Int(r.stats.dropped_packets)),
            ),
            (
                "hospmon_device_would_drop_packets_total",
                "counter",
                "Packets enforcement would have dropped but passed (audit mode, or a life-critical device spared).",
                |r| Some(Value::Int(r.stats.would_drop_packets)),
            ),
            (
                "hospmon_device_learned_flows_total",
                "counter",
                "Flows learned into the device's baseline.",
                |r| Some(Value::Int(r.stats.learned_flows)),
            ),
            (
                "hospmon_device_enforcement_held_back",
                "gauge",
                "1 when enforce mode applies but the device stays audited: life-critical and not confirmed for enforcement.",
                |r| Some(Value::Float(if r.held { 1.0 } else { 0.0 })),
            ),
            (
                "hospmon_device_baseline_entries",
                "gauge",
                "Flows in the device's baseline (learned, imported or from policy), as counted at hospmon_map_entries_age_seconds ago.",
                |r| Some(Value::Int(r.baseline)),
            ),
            (
                "hospmon_device_last_seen_timestamp_seconds",
                "gauge",
                "When the device's last packet was seen, Unix time (absent if never seen).",
                |r| r.last_seen.map(Value::Int),
            ),
            (
                "hospmon_device_break_glass",
                "gauge",
                "1 while break-glass lifts enforcement for the device, else 0.",
                |r| Some(Value::Float(if r.glass { 1.0 } else { 0.0 })),
            ),
            (
                "hospmon_device_break_glass_packets_total",
                "counter",
                "Packets passed because break-glass lifted enforcement for the device.",
                |r| Some(Value::Int(r.stats.break_glass_packets)),
            ),
        ];
        for (name, kind, help, of) in per_device {
            t.family(name, kind, help);
            for r in &rows {
                if let Some(v) = of(r) {
                    t.sample(name, &r.labels, None, v);
                }
            }
        }
        // Verdicts by reason, per device: only the reasons the device has seen.
        let name = "hospmon_device_verdict_packets_total";
        t.family(
            name,
            "counter",
            "Packets of an enrolled medical device by the reason of its own verdict (numbered in `monitor reasons`), as counted at hospmon_map_entries_age_seconds ago.",
        );
        {
            let reasons = &counts.device_reasons;
            for r in &rows {
                for &reason in monitor_common::Reason::ALL {
                    let index = monitor_common::maps::device_reason_index(r.slot, reason as u8);
                    let count = reasons.get(index as usize).copied().unwrap_or(0);
                    if count > 0 {
                        t.sample(
                            name,
                            &r.labels,
                            Some(("reason", reason.label())),
                            Value::Int(count),
                        );
                    }
                }
            }
        }
        // Only the mode a device is in: the other modes' series would always be 0 and
        // made up two thirds of this family (queries use `== 1` or count the series).
        let name = "hospmon_device_mode";
        t.family(
            name,
            "gauge",
            "1 for the mode the device is in (learn, audit, enforce); the other modes have no series.",
        );
        for r in &rows {
            t.sample(name, &r.labels, Some(("mode", r.mode)), Value::Float(1.0));
        }
        drop(rows);
        t.single(
            "hospmon_devices_enrolled",
            "gauge",
            "Medical devices in the inventory.",
            Value::Int(inventory.devices.len() as u64),
        );

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
        let name = "hospmon_unenrolled_packets_total";
        t.family(
            name,
            "counter",
            "Packets of addresses outside the inventory, all summed, by direction (sent by them, received by them).",
        );
        t.sample(name, "", Some(("direction", "sent")), Value::Int(totals[0]));
        t.sample(
            name,
            "",
            Some(("direction", "received")),
            Value::Int(totals[2]),
        );
        let name = "hospmon_unenrolled_bytes_total";
        t.family(
            name,
            "counter",
            "Bytes of addresses outside the inventory, all summed, by direction.",
        );
        t.sample(name, "", Some(("direction", "sent")), Value::Int(totals[1]));
        t.sample(
            name,
            "",
            Some(("direction", "received")),
            Value::Int(totals[3]),
        );
        t.single(
            "hospmon_unenrolled_addresses",
            "gauge",
            "Addresses outside the inventory the datapath tracks now.",
            Value::Int(self.unenrolled.addresses() as u64),
        );

        // Verdicts and frame classes of the whole router.
        let verdicts: Vec<(String, _)> = self
            .maps
            .verdicts()?
            .into_iter()
            .map(|(action, reason, counter)| {
                let mut labels = String::new();
                push_label(&mut labels, "action", action.name());
                labels.push(',');
                push_label(&mut labels, "reason", reason.label());
                (labels, counter)
            })
            .collect();
        let name = "hospmon_verdict_packets_total";
        t.family(
            name,
            "counter",
            "Packets by verdict: action (pass, drop) and reason (see `monitor reasons`), all interfaces.",
        );
        for (labels, counter) in &verdicts {
            t.sample(name, labels, None, Value::Int(counter.packets));
        }
        let name = "hospmon_verdict_bytes_total";
        t.family(
            name,
            "counter",
            "Bytes by verdict action and reason, all interfaces.",
        );
        for (labels, counter) in &verdicts {
            t.sample(name, labels, None, Value::Int(counter.bytes));
        }
        let classes = self.maps.classes()?;
        let name = "hospmon_frames_total";
        t.family(
            name,
            "counter",
            "Frames by class (ipv4, ipv6, arp, llc, lldp, other_ethertype, malformed), all interfaces.",
        );
        for (class, counter) in &classes {
            t.sample(
                name,
                "",
                Some(("class", class.label())),
                Value::Int(counter.packets),
            );
        }
        let name = "hospmon_frame_bytes_total";
        t.family(name, "counter", "Bytes of frames by class, all interfaces.");
        for (class, counter) in &classes {
            t.sample(
                name,
                "",
                Some(("class", class.label())),
                Value::Int(counter.bytes),
            );
        }
        let name = "hospmon_mode";
        t.family(
            name,
            "gauge",
            "1 for the router-wide mode (learn, audit, enforce), 0 for the others.",
        );
        for m in Mode::ALL {
            t.sample(name, "", Some(("mode", m.name())), bool_value(m == global));
        }
        t.single(
            "hospmon_policy_generation",
            "gauge",
            "Policy generation in the datapath, bumped by every policy load.",
            Value::Int(u64::from(config.generation)),
        );

        // Violation events (datapath → controller) and policy loads (the daemon's counts).
        let (sent, suppressed, lost) = self.maps.event_stats()?;
        let name = "hospmon_events_total";
        t.family(
            name,
            "counter",
            "Violation events by outcome: sent to the controller, suppressed by the per-device rate limit.",
        );
        t.sample(name, "", Some(("outcome", "sent")), Value::Int(sent));
        t.sample(
            name,
            "",
            Some(("outcome", "suppressed")),
            Value::Int(suppressed),
        );
        t.single(
            "hospmon_events_lost_total",
            "counter",
            "Violation events lost because the event ring buffer was full.",
            Value::Int(lost),
        );
        let name = "hospmon_policy_reloads_total";
        t.family(
            name,
            "counter",
            "Policy loads (at start and on reload) by result: ok, failed (the running policy stayed), or held_back (it would remove much of the policy in force; the running policy stayed).",
        );
        let ok = self.controller.reloads_ok.load(Ordering::Relaxed);
        let failed = self.controller.reloads_failed.load(Ordering::Relaxed);
        let held_back = self.controller.reloads_held_back.load(Ordering::Relaxed);
        t.sample(name, "", Some(("result", "ok")), Value::Int(ok));
        t.sample(name, "", Some(("result", "failed")), Value::Int(failed));
        t.sample(
            name,
            "",
            Some(("result", "held_back")),
            Value::Int(held_back),
        );
        t.single(
            "hospmon_policy_held_back",
            "gauge",
            "1 while a policy load is held back as suspicious (it would remove every device, rule or the defaults, or a large share of them) and waits for `monitor reload --accept-shrink`.",
            Value::Int(self.controller.policy_held_back.load(Ordering::Relaxed)),
        );
        t.single(
            "hospmon_policy_last_reload_success_timestamp_seconds",
            "gauge",
            "When a policy was last applied successfully, Unix time; 0 if never.",
            Value::Int(
                self.controller
                    .last_good_reload_unix
                    .load(Ordering::Relaxed),
            ),
        );

        // Interfaces, as the daemon attached them.
        let name = "hospmon_interface_xdp_mode";
        t.family(
            name,
            "gauge",
            "1 for each interface the monitor is attached to, with its XDP mode (native, generic).",
        );
        for iface in daemon.iter().flat_map(|d| &d.interfaces) {
            let mut labels = String::new();
            push_label(&mut labels, "device", &iface.name);
            t.sample(
                name,
                &labels,
                Some(("mode", &iface.xdp_mode)),
                Value::Float(1.0),
            );
        }

        // Verdicts per interface: the packets that arrived on it (non-zero rows only).
        let name = "hospmon_interface_packets_total";
        t.family(
            name,
            "counter",
            "Packets that arrived on an interface the monitor is attached to, by verdict action and reason.",
        );
        let mut bytes_rows = Vec::new();
        for iface in daemon.iter().flat_map(|d| &d.interfaces) {
            let Ok(rows) = self.maps.interface_verdicts(iface.slot) else {
                continue;
            };
            for (action, reason, counter) in rows.into_iter().filter(|(_, _, c)| c.packets > 0) {
                let mut labels = String::new();
                push_label(&mut labels, "device", &iface.name);
                labels.push(',');
                push_label(&mut labels, "action", action.name());
                t.sample(
                    name,
                    &labels,
                    Some(("reason", reason.label())),
                    Value::Int(counter.packets),
                );
                bytes_rows.push((labels, reason.label(), counter.bytes));
            }
        }
        let name = "hospmon_interface_bytes_total";
        t.family(
            name,
            "counter",
            "Bytes (whole frames) that arrived on an interface the monitor is attached to, by verdict action and reason.",
        );
        for (labels, reason, bytes) in &bytes_rows {
            t.sample(name, labels, Some(("reason", reason)), Value::Int(*bytes));
        }

        // How full the tables are, as the background counter last found them.
        let name = "hospmon_map_entries";
        t.family(
            name,
            "gauge",
            "Entries in a datapath table, as counted at hospmon_map_entries_age_seconds ago.",
        );
        for (map, count, _) in &counts.entries {
            t.sample(name, "", Some(("map", map)), Value::Int(*count));
        }
        let name = "hospmon_map_capacity_entries";
        t.family(name, "gauge", "Entries a datapath table holds at most.");
        for (map, _, capacity) in &counts.entries {
            t.sample(
                name,
                "",
                Some(("map", map)),
                Value::Int(u64::from(*capacity)),
            );
        }
        let name = "hospmon_map_pressure_ratio";
        t.family(
            name,
            "gauge",
            "Entries over capacity of a datapath table (1: full; LRU tables then evict).",
        );
        for (map, count, capacity) in &counts.entries {
            let ratio = *count as f64 / f64::from((*capacity).max(1));
            t.sample(name, "", Some(("map", map)), Value::Float(ratio));
        }
        t.single(
            "hospmon_map_entries_age_seconds",
            "gauge",
            "Seconds since the tables were last walked for hospmon_map_entries and hospmon_device_baseline_entries (a walk is too slow for a scrape; it runs in the background).",
            Value::Float(counts.at.elapsed().as_secs_f64()),
        );
        Ok(())
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

fn serve(
    paths: &Paths,
    listener: std::net::TcpListener,
    controller: Arc<ControllerStats>,
) -> Result<tokio::task::JoinHandle<()>> {
    use axum::{Router, routing::get};
    // An exposition at 10,000 devices is one ~15 MB buffer, freed once sent. glibc raises
    // its mmap threshold to the size of the first such buffer freed, after which they
    // come from (and stay in) the heap of whichever thread scraped: tens of MB kept
    // between scrapes. A fixed threshold keeps every large buffer mmapped, so its memory
    // goes back to the system when it is freed.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; 1 MiB is a valid threshold.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
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
        ("hospmon_device_verdict_packets_total", "counter"),
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
        ("hospmon_interface_packets_total", "counter"),
        ("hospmon_interface_bytes_total", "counter"),
        ("hospmon_map_entries", "gauge"),
        ("hospmon_map_capacity_entries", "gauge"),
        ("hospmon_map_pressure_ratio", "gauge"),
        ("hospmon_map_entries_age_seconds", "gauge"),
        ("hospmon_policy_reloads_total", "counter"),
        ("hospmon_policy_held_back", "gauge"),
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
    fn text_escapes_label_values_and_writes_values_as_the_format_wants() {
        let mut labels = String::new();
        push_label(&mut labels, "medical_device", "a\\b\"c\nd");
        assert_eq!(labels, r#"medical_device="a\\b\"c\nd""#);
        let mut t = Text { out: String::new() };
        t.family("hospmon_x", "gauge", "An example.");
        t.sample(
            "hospmon_x",
            &labels,
            Some(("mode", "learn")),
            Value::Float(1.0),
        );
        t.sample("hospmon_x", "", Some(("mode", "audit")), Value::Float(0.25));
        t.sample("hospmon_x", "", None, Value::Float(f64::INFINITY));
        t.sample("hospmon_x", "", None, Value::Int(u64::MAX));
        assert_eq!(
            t.out,
            "# HELP hospmon_x An example.\n# TYPE hospmon_x gauge\n\
             hospmon_x{medical_device=\"a\\\\b\\\"c\\nd\",mode=\"learn\"} 1\n\
             hospmon_x{mode=\"audit\"} 0.25\n\
             hospmon_x +Inf\n\
             hospmon_x 18446744073709551615\n"
        );
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

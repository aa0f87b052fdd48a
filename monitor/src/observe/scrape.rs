//! One scrape: what the daemon knows ([`Live`]: its maps, inventory and interfaces, its
//! own counters) collected into the exposition text, family by family as the table in
//! [`super::families`] defines them.
//!
//! A scrape opens nothing and reads no file: the maps are the daemon's, opened once, and
//! the inventory is the one in force in memory. It reads the per-device counters in
//! batches and the small tables; it walks no large table (the baseline per device and the
//! tables' fill levels come from the background [`counter`](super::counter), with their
//! age). Series of a device removed from the inventory are gone from the next scrape, and
//! nothing per flow, address or port ever becomes a label: addresses outside the
//! inventory are summed into one set of series.
//!
//! Counters come from the datapath's per-CPU counters, which only grow (a slot handed to a
//! new device is zeroed, and its series has that device's labels), so they are counters
//! in Prometheus' sense while traffic flows. The one exception, the table of unenrolled
//! addresses (least recently seen evicted), is turned into counters here (see
//! [`UnenrolledTotals`]).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{OnceLock, atomic::Ordering},
    time::Instant,
};

use monitor_common::{
    Mode, Reason,
    maps::{Config, DeviceStats, device_reason_index, names},
};
use prometheus::{Gauge, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder};

use super::{
    counter::{CountError, Counter, SharedCounts, TableCounts},
    exposition::{Text, Value, push_label},
    families::{self as f, DEVICE_LABELS, Family},
    live::Live,
    monotonic::DeviceFloors,
};
use crate::{
    datapath::{DatapathError, MapSet, sys::StatsArray},
    state::{daemon::DaemonInfo, inventory::Inventory},
    support::clock::{monotonic_now_ns, unix_now, unix_of_monotonic},
    view::devmap,
};

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("reading the datapath maps")]
    Datapath(#[from] DatapathError),
    #[error("counting the tables")]
    Count(#[from] CountError),
    #[error("building the metric {0}")]
    Prometheus(String, #[source] prometheus::Error),
}

type Result<T, E = ScrapeError> = std::result::Result<T, E>;

/// Metrics of the exporter itself, kept across scrapes.
struct ProcessMetrics {
    registry: Registry,
    scrape_duration: Gauge,
    scrape_errors: IntCounter,
}

fn process() -> &'static ProcessMetrics {
    static PROCESS: OnceLock<ProcessMetrics> = OnceLock::new();
    PROCESS.get_or_init(|| {
        // The names and help texts are the table's; `new_process_metrics` is tested.
        new_process_metrics(Registry::new()).unwrap_or_else(|e| panic!("process metrics: {e}"))
    })
}

fn opts(family: &Family) -> Opts {
    Opts::new(family.name, family.help)
}

fn new_process_metrics(registry: Registry) -> Result<ProcessMetrics, prometheus::Error> {
    let build = IntGaugeVec::new(opts(&f::BUILD_INFO), f::BUILD_INFO.labels)?;
    build
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            &monitor_common::maps::LAYOUT_VERSION.to_string(),
        ])
        .set(1);
    registry.register(Box::new(build))?;
    let scrape_duration = Gauge::with_opts(opts(&f::SCRAPE_DURATION))?;
    registry.register(Box::new(scrape_duration.clone()))?;
    let scrape_errors = IntCounter::with_opts(opts(&f::SCRAPE_ERRORS))?;
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

/// What a scrape exposes of one device, read before the families are written (each
/// family's samples must be contiguous).
struct DeviceRow {
    slot: u32,
    /// The [`DEVICE_LABELS`], rendered.
    labels: String,
    stats: DeviceStats,
    mode: &'static str,
    held: bool,
    baseline: u64,
    glass: bool,
    last_seen: Option<u64>,
}

/// Collects scrapes from the daemon's [`Live`] view.
pub struct Scraper {
    live: Live,
    stats: StatsArray,
    unenrolled: UnenrolledTotals,
    counts: SharedCounts,
    /// The device counters never fall between scrapes (`monotonic`).
    floors: DeviceFloors,
}

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").finish_non_exhaustive()
    }
}

impl Scraper {
    /// Takes descriptors of its own from the daemon's maps, counts the tables once and
    /// starts the background counter.
    pub fn open(live: Live) -> Result<Scraper> {
        let counts = Counter::new(&live.maps)?.start()?;
        Ok(Scraper {
            stats: live.maps.batch_array(names::DEVICE_STATS)?,
            live,
            unenrolled: UnenrolledTotals::default(),
            counts,
            floors: DeviceFloors::default(),
        })
    }

    /// One scrape: the exposition text.
    pub fn scrape(&mut self) -> Result<String> {
        let started = Instant::now();
        let mut text = Text::default();
        if let Err(e) = self.collect(&mut text) {
            process().scrape_errors.inc();
            return Err(e);
        }
        process()
            .scrape_duration
            .set(started.elapsed().as_secs_f64());
        let own = TextEncoder::new()
            .encode_to_string(&process().registry.gather())
            .map_err(|e| ScrapeError::Prometheus("(encoding)".into(), e))?;
        text.out.push_str(&own);
        Ok(text.out)
    }

    fn collect(&mut self, t: &mut Text) -> Result<()> {
        let inventory = self.live.inventory();
        let daemon = self.live.daemon();
        let maps = self.live.maps.clone();
        let config = maps.config()?;
        let global = Mode::try_from(config.mode).unwrap_or(Mode::Learn);
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();

        let rows = self.device_rows(&inventory, global, &counts)?;
        // The device families are nearly all of the text (13 samples per device, each its
        // labels and ~60 bytes more): allocated once rather than grown by doubling, which
        // would briefly hold both the old and the new buffer.
        let estimate: usize = rows.iter().map(|r| (r.labels.len() + 64) * 13).sum();
        t.out.reserve(estimate + 32 * 1024);
        write_device_traffic(t, &rows);
        write_device_state(t, &rows);
        write_device_verdicts(t, &rows, &counts);
        write_device_modes(t, &rows);
        drop(rows);
        t.single(
            &f::DEVICES_ENROLLED,
            Value::Int(inventory.devices.len() as u64),
        );
        self.write_unenrolled(t, &maps)?;
        write_discovered(t, &maps, &inventory)?;
        write_router(t, &maps, &config, global)?;
        self.write_controller(t, &maps)?;
        write_interfaces(t, &maps, &daemon);
        write_tables(t, &counts);
        Ok(())
    }

    /// Every device's counters and state, read before any family is written.
    fn device_rows(
        &mut self,
        inventory: &Inventory,
        global: Mode,
        counts: &TableCounts,
    ) -> Result<Vec<DeviceRow>> {
        let now_mono = monotonic_now_ns();
        let now = unix_now();
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
        let held = self.live.maps.held_device_charges()?;
        let mut rows = Vec::with_capacity(inventory.devices.len());
        for device in &inventory.devices {
            let spec = &device.spec;
            let mut labels = String::with_capacity(96);
            let ward = devmap::ward_of(spec);
            let values = [
                spec.name.as_str(),
                spec.kind.as_str(),
                ward.as_str(),
                spec.criticality.name(),
            ];
            for (i, (name, value)) in DEVICE_LABELS.iter().zip(values).enumerate() {
                if i > 0 {
                    labels.push(',');
                }
                push_label(&mut labels, name, value);
            }
            let table = match all_stats.as_ref().and_then(|a| a.get(device.slot as usize)) {
                Some(stats) => *stats,
                None => self.live.maps.device_table_stats(device.slot)?,
            };
            let stats = self
                .floors
                .export(device.slot, &table, &held.stats(device.slot));
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
        Ok(rows)
    }

    /// Everything outside the inventory, summed.
    fn write_unenrolled(&mut self, t: &mut Text, maps: &MapSet) -> Result<()> {
        let table = maps.unenrolled_stats()?;
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
        for (family, sent, received) in [
            (&f::UNENROLLED_PACKETS, totals[0], totals[2]),
            (&f::UNENROLLED_BYTES, totals[1], totals[3]),
        ] {
            t.family(family);
            t.sample(family, "", Some(("direction", "sent")), Value::Int(sent));
            t.sample(
                family,
                "",
                Some(("direction", "received")),
                Value::Int(received),
            );
        }
        t.single(
            &f::UNENROLLED_ADDRESSES,
            Value::Int(self.unenrolled.addresses() as u64),
        );
        Ok(())
    }

    /// Violation events (datapath → controller), events for the SIEM and policy loads (the
    /// daemon's counts).
    fn write_controller(&self, t: &mut Text, maps: &MapSet) -> Result<()> {
        let (sent, suppressed, lost) = maps.event_stats()?;
        t.family(&f::EVENTS);
        t.sample(&f::EVENTS, "", Some(("outcome", "sent")), Value::Int(sent));
        t.sample(
            &f::EVENTS,
            "",
            Some(("outcome", "suppressed")),
            Value::Int(suppressed),
        );
        t.single(&f::EVENTS_LOST, Value::Int(lost));
        let stats = &self.live.stats;
        t.family(&f::SYSLOG_MESSAGES);
        for (outcome, count) in [
            ("sent", &stats.syslog.sent),
            ("dropped", &stats.syslog.dropped),
        ] {
            t.sample(
                &f::SYSLOG_MESSAGES,
                "",
                Some(("outcome", outcome)),
                Value::Int(count.load(Ordering::Relaxed)),
            );
        }
        t.family(&f::POLICY_RELOADS);
        for (result, count) in [
            ("ok", &stats.reloads_ok),
            ("failed", &stats.reloads_failed),
            ("held_back", &stats.reloads_held_back),
        ] {
            let count = count.load(Ordering::Relaxed);
            t.sample(
                &f::POLICY_RELOADS,
                "",
                Some(("result", result)),
                Value::Int(count),
            );
        }
        t.single(
            &f::POLICY_HELD_BACK,
            Value::Int(stats.policy_held_back.load(Ordering::Relaxed)),
        );
        t.single(
            &f::POLICY_LAST_RELOAD_SUCCESS,
            Value::Int(stats.last_good_reload_unix.load(Ordering::Relaxed)),
        );
        Ok(())
    }
}

/// Packets and bytes of each device, both ways.
fn write_device_traffic(t: &mut Text, rows: &[DeviceRow]) {
    type Of = fn(&DeviceStats) -> (u64, u64);
    let families: [(&Family, Of); 2] = [
        (&f::DEVICE_PACKETS, |s| (s.packets_sent, s.packets_received)),
        (&f::DEVICE_BYTES, |s| (s.bytes_sent, s.bytes_received)),
    ];
    for (family, of) in families {
        t.family(family);
        for r in rows {
            let (sent, received) = of(&r.stats);
            let labels = &r.labels;
            t.sample(
                family,
                labels,
                Some(("direction", "sent")),
                Value::Int(sent),
            );
            t.sample(
                family,
                labels,
                Some(("direction", "received")),
                Value::Int(received),
            );
        }
    }
}

/// One sample per device (or none, for a value it does not have).
fn write_device_state(t: &mut Text, rows: &[DeviceRow]) {
    type Of = fn(&DeviceRow) -> Option<Value>;
    let families: [(&Family, Of); 8] = [
        (&f::DEVICE_DROPPED_PACKETS, |r| {
            Some(Value::Int(r.stats.dropped_packets))
        }),
        (&f::DEVICE_WOULD_DROP_PACKETS, |r| {
            Some(Value::Int(r.stats.would_drop_packets))
        }),
        (&f::DEVICE_LEARNED_FLOWS, |r| {
            Some(Value::Int(r.stats.learned_flows))
        }),
        (&f::DEVICE_ENFORCEMENT_HELD_BACK, |r| {
            Some(Value::flag(r.held))
        }),
        (&f::DEVICE_BASELINE_ENTRIES, |r| {
            Some(Value::Int(r.baseline))
        }),
        (&f::DEVICE_LAST_SEEN, |r| r.last_seen.map(Value::Int)),
        (&f::DEVICE_BREAK_GLASS, |r| Some(Value::flag(r.glass))),
        (&f::DEVICE_BREAK_GLASS_PACKETS, |r| {
            Some(Value::Int(r.stats.break_glass_packets))
        }),
    ];
    for (family, of) in families {
        t.family(family);
        for r in rows {
            if let Some(v) = of(r) {
                t.sample(family, &r.labels, None, v);
            }
        }
    }
}

/// The discovery table, counted: no MAC or address label, so a flood of random MACs
/// grows no series.
fn write_discovered(t: &mut Text, maps: &MapSet, inventory: &Inventory) -> Result<()> {
    let stations = maps.stations()?;
    let enrolled: std::collections::BTreeSet<[u8; 6]> = inventory
        .devices
        .iter()
        .flat_map(|d| d.bound_macs())
        .collect();
    let discovered: std::collections::BTreeSet<[u8; 6]> = stations
        .iter()
        .map(|(k, _)| k.mac)
        .filter(|m| !enrolled.contains(m))
        .collect();
    t.single(&f::DISCOVERED_DEVICES, Value::Int(discovered.len() as u64));
    t.single(&f::DISCOVERED_STATIONS, Value::Int(stations.len() as u64));
    Ok(())
}

/// Verdicts by reason, per device: only the reasons the device has seen.
fn write_device_verdicts(t: &mut Text, rows: &[DeviceRow], counts: &TableCounts) {
    let family = &f::DEVICE_VERDICT_PACKETS;
    t.family(family);
    for r in rows {
        for &reason in Reason::ALL {
            let index = device_reason_index(r.slot, reason as u8);
            let count = counts
                .device_reasons
                .get(index as usize)
                .copied()
                .unwrap_or(0);
            if count > 0 {
                t.sample(
                    family,
                    &r.labels,
                    Some(("reason", reason.label())),
                    Value::Int(count),
                );
            }
        }
    }
}

/// Only the mode a device is in: the other modes' series would always be 0 and made up
/// two thirds of this family (queries use `== 1` or count the series).
fn write_device_modes(t: &mut Text, rows: &[DeviceRow]) {
    t.family(&f::DEVICE_MODE);
    for r in rows {
        t.sample(
            &f::DEVICE_MODE,
            &r.labels,
            Some(("mode", r.mode)),
            Value::Float(1.0),
        );
    }
}

/// Verdicts and frame classes of the whole router, its mode and policy generation.
fn write_router(t: &mut Text, maps: &MapSet, config: &Config, global: Mode) -> Result<()> {
    let verdicts: Vec<(String, _)> = maps
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
    t.family(&f::VERDICT_PACKETS);
    for (labels, counter) in &verdicts {
        t.sample(
            &f::VERDICT_PACKETS,
            labels,
            None,
            Value::Int(counter.packets),
        );
    }
    t.family(&f::VERDICT_BYTES);
    for (labels, counter) in &verdicts {
        t.sample(&f::VERDICT_BYTES, labels, None, Value::Int(counter.bytes));
    }
    let classes = maps.classes()?;
    t.family(&f::FRAMES);
    for (class, counter) in &classes {
        let class = Some(("class", class.label()));
        t.sample(&f::FRAMES, "", class, Value::Int(counter.packets));
    }
    t.family(&f::FRAME_BYTES);
    for (class, counter) in &classes {
        let class = Some(("class", class.label()));
        t.sample(&f::FRAME_BYTES, "", class, Value::Int(counter.bytes));
    }
    t.family(&f::MODE);
    for m in Mode::ALL {
        let mode = Some(("mode", m.name()));
        t.sample(&f::MODE, "", mode, Value::flag(m == global));
    }
    t.single(
        &f::POLICY_GENERATION,
        Value::Int(u64::from(config.generation)),
    );
    Ok(())
}

/// Interfaces as the daemon attached them, and the verdicts of what arrived on each
/// (non-zero rows only).
fn write_interfaces(t: &mut Text, maps: &MapSet, daemon: &DaemonInfo) {
    t.family(&f::INTERFACE_XDP_MODE);
    for iface in &daemon.interfaces {
        let mut labels = String::new();
        push_label(&mut labels, "device", &iface.name);
        let mode = Some(("mode", iface.xdp_mode.as_str()));
        t.sample(&f::INTERFACE_XDP_MODE, &labels, mode, Value::Float(1.0));
    }
    t.family(&f::INTERFACE_PACKETS);
    let mut bytes_rows = Vec::new();
    for iface in &daemon.interfaces {
        let Ok(rows) = maps.interface_verdicts(iface.slot) else {
            continue;
        };
        for (action, reason, counter) in rows.into_iter().filter(|(_, _, c)| c.packets > 0) {
            let mut labels = String::new();
            push_label(&mut labels, "device", &iface.name);
            labels.push(',');
            push_label(&mut labels, "action", action.name());
            let reason = Some(("reason", reason.label()));
            t.sample(
                &f::INTERFACE_PACKETS,
                &labels,
                reason,
                Value::Int(counter.packets),
            );
            bytes_rows.push((labels, reason, counter.bytes));
        }
    }
    t.family(&f::INTERFACE_BYTES);
    for (labels, reason, bytes) in &bytes_rows {
        t.sample(&f::INTERFACE_BYTES, labels, *reason, Value::Int(*bytes));
    }
}

/// How full the tables are, as the background counter last found them.
fn write_tables(t: &mut Text, counts: &TableCounts) {
    t.family(&f::MAP_ENTRIES);
    for (map, count, _) in &counts.entries {
        t.sample(&f::MAP_ENTRIES, "", Some(("map", map)), Value::Int(*count));
    }
    t.family(&f::MAP_CAPACITY_ENTRIES);
    for (map, _, capacity) in &counts.entries {
        let capacity = Value::Int(u64::from(*capacity));
        t.sample(&f::MAP_CAPACITY_ENTRIES, "", Some(("map", map)), capacity);
    }
    t.family(&f::MAP_PRESSURE_RATIO);
    for (map, count, capacity) in &counts.entries {
        let ratio = *count as f64 / f64::from((*capacity).max(1));
        t.sample(
            &f::MAP_PRESSURE_RATIO,
            "",
            Some(("map", map)),
            Value::Float(ratio),
        );
    }
    t.single(
        &f::MAP_ENTRIES_AGE,
        Value::Float(counts.at.elapsed().as_secs_f64()),
    );
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

    /// Ethernet, IPv4 and UDP from `src` to `dst` port 53, with a 5-byte payload.
    fn udp_frame(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 8 + 5];
        frame[0..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut frame[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(20u16 + 8 + 5).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        let udp = &mut frame[34..42];
        udp[0..2].copy_from_slice(&40_000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&(8u16 + 5).to_be_bytes());
        frame[42..].copy_from_slice(b"query");
        frame
    }

    /// A scrape of a real datapath (private maps, one enrolled device, one frame through
    /// the XDP program) from the daemon's in-memory view alone, held to the table: every
    /// family of the table is written, nothing else is, with the table's types, HELP and
    /// labels.
    #[test]
    fn a_scrape_writes_exactly_the_families_of_the_table() {
        use crate::{
            datapath::{Datapath, Maps},
            observe::{families::check, live::Publisher},
            state::daemon::AttachedInterface,
        };
        let mut datapath = Datapath::load(&Maps::Private)
            .unwrap_or_else(|e| panic!("loading the XDP program (as root): {e}"));
        let device = serde_json::json!({"slot": 0, "name": "ct", "kind": "modality",
            "addresses": ["10.0.0.1"], "location": {"ward": "radiology"}, "criticality": "high"});
        let inventory = Inventory {
            version: 1,
            devices: vec![serde_json::from_value(device).unwrap_or_else(|e| panic!("{e}"))],
            ..Inventory::default()
        };
        for device in &inventory.devices {
            for addr in &device.spec.addresses {
                datapath
                    .maps_mut()
                    .enroll(*addr, device.entry())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        datapath
            .test_run(&udp_frame([10, 0, 0, 1], [10, 0, 0, 53]))
            .unwrap_or_else(|e| panic!("{e}"));
        let daemon = DaemonInfo {
            pid: std::process::id(),
            interfaces: vec![AttachedInterface {
                name: "ward0".into(),
                xdp_mode: "native".into(),
                slot: 0,
                role: "ward".into(),
            }],
            policies: None,
            pin_dir: Default::default(),
            state_dir: Default::default(),
            started: String::new(),
        };
        let maps = datapath.maps().share().unwrap_or_else(|e| panic!("{e}"));
        let (_publisher, live) = Publisher::new(maps, inventory, daemon, Default::default());
        let mut scraper = Scraper::open(live).unwrap_or_else(|e| panic!("{e}"));
        let text = scraper.scrape().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(check::exposition(&text), Vec::<String>::new(), "{text}");
        // The frame is in it, under the device's labels from the inventory.
        let ct = r#"medical_device="ct",kind="modality",ward="radiology",criticality="high""#;
        for sample in [
            format!("hospmon_device_packets_total{{{ct},direction=\"sent\"}} 1\n"),
            format!("hospmon_device_verdict_packets_total{{{ct},reason=\"learned\"}} 1\n"),
            format!("hospmon_device_learned_flows_total{{{ct}}} 1\n"),
            "hospmon_interface_xdp_mode{device=\"ward0\",mode=\"native\"} 1\n".to_string(),
        ] {
            assert!(text.contains(&sample), "no {sample} in\n{text}");
        }
    }

    #[test]
    fn process_metrics_are_the_tables() {
        let p = new_process_metrics(Registry::new()).unwrap_or_else(|e| panic!("{e}"));
        let text = TextEncoder::new()
            .encode_to_string(&p.registry.gather())
            .unwrap_or_else(|e| panic!("{e}"));
        for family in [&f::BUILD_INFO, &f::SCRAPE_DURATION, &f::SCRAPE_ERRORS] {
            assert!(
                text.contains(&format!("# HELP {} {}\n", family.name, family.help))
                    && text.contains(&format!("# TYPE {} {}\n", family.name, family.kind.name())),
                "{} as the table says: {text}",
                family.name
            );
        }
    }
}

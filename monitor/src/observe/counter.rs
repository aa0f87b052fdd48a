//! The background table counter: walks the tables too large for a scrape (the baseline,
//! per device, and the fill level of every hash table) on a thread of its own, and keeps
//! what it found for the scrapes, which expose it with its age.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use aya::maps::MapData;
use monitor_common::maps::{BaselineEntry, DEVICE_REASON_SLOTS, FlowKey, MAX_DEVICES, names};

use crate::{
    datapath::{
        DatapathError, HeldSources, MapSet, addr_of,
        sys::{BatchArray, KeyCounter},
    },
    observe::monotonic::Floor,
    support::error_chain,
};

/// How often, at most, the tables are walked. A walk is one syscall per entry (about a
/// second at 100,000 baseline entries), far too slow for a scrape; the counts are served
/// from here with their age (`hospmon_map_entries_age_seconds`).
pub const COUNT_EVERY: Duration = Duration::from_secs(10);
/// The walks take at most 1/COUNT_DUTY of one core: a walk that took `t` is followed by
/// at least `t * COUNT_DUTY` of rest.
const COUNT_DUTY: u32 = 20;

#[derive(Debug, thiserror::Error)]
pub enum CountError {
    #[error("opening the tables to count")]
    Datapath(#[from] DatapathError),
    #[error("walking the baseline")]
    Baseline(#[source] aya::maps::MapError),
    #[error("counting the entries of map {0}")]
    Count(&'static str, #[source] std::io::Error),
    #[error("starting the counter thread")]
    Thread(#[source] std::io::Error),
}

/// What the counter found in the tables.
#[derive(Debug)]
pub struct TableCounts {
    /// Baseline entries per device address.
    pub baseline_per_addr: HashMap<IpAddr, u64>,
    /// Entries and capacity of each hash table, in `names::ALL` order.
    pub entries: Vec<(&'static str, u64, u32)>,
    /// DEVICE_REASONS summed over CPUs with what the decision cache holds, never falling
    /// between walks (`monotonic`) (slot × reason), empty if the read failed: half a
    /// million counters at full size, too many to read in every scrape.
    pub device_reasons: Vec<u64>,
    pub at: Instant,
}

/// The latest counts, replaced whole by each walk.
pub type SharedCounts = Arc<Mutex<Arc<TableCounts>>>;

/// The tables the counter walks, on descriptors of its own (duplicated from the daemon's
/// map set), so that a walk never holds up a scrape.
pub struct Counter {
    /// The baseline, walked key by key: no copy of the table is made (at 1,000,000
    /// entries a copy would be tens of MB), and values are not read.
    baseline: aya::maps::Map,
    tables: Vec<KeyCounter>,
    reasons: BatchArray<u64>,
    /// What the decision cache and the probe memos hold for the reasons (added to
    /// DEVICE_REASONS).
    held: HeldSources,
    /// Per DEVICE_REASONS index: the reason counts never fall between walks.
    floors: Vec<Floor>,
}

impl Counter {
    pub fn new(maps: &MapSet) -> Result<Counter, CountError> {
        let baseline = aya::maps::Map::from_map_data(maps.duplicate(names::BASELINE)?)
            .map_err(CountError::Baseline)?;
        Ok(Counter {
            baseline,
            tables: maps.fillable_tables()?,
            reasons: maps.batch_array(names::DEVICE_REASONS)?,
            held: maps.held_sources()?,
            floors: Vec::new(),
        })
    }

    /// Counts once, then recounts on a thread of its own until every holder of the
    /// returned counts is gone.
    pub fn start(mut self) -> Result<SharedCounts, CountError> {
        let started = Instant::now();
        let counts = Arc::new(Mutex::new(Arc::new(self.count()?)));
        let took = started.elapsed();
        let weak = Arc::downgrade(&counts);
        std::thread::Builder::new()
            .name("table-counter".into())
            .spawn(move || self.run(weak, took))
            .map_err(CountError::Thread)?;
        Ok(counts)
    }

    fn count(&mut self) -> Result<TableCounts, CountError> {
        let mut baseline_per_addr: HashMap<IpAddr, u64> = HashMap::new();
        let baseline: aya::maps::HashMap<&MapData, FlowKey, BaselineEntry> =
            aya::maps::HashMap::try_from(&self.baseline).map_err(CountError::Baseline)?;
        for key in baseline.keys() {
            let key = key.map_err(CountError::Baseline)?;
            *baseline_per_addr.entry(addr_of(&key.device)).or_default() += 1;
        }
        let mut entries = Vec::with_capacity(self.tables.len());
        for table in &self.tables {
            let count = table
                .count()
                .map_err(|e| CountError::Count(table.name, e))?;
            entries.push((table.name, count, table.capacity));
        }
        let all = (MAX_DEVICES * DEVICE_REASON_SLOTS) as usize;
        let mut device_reasons = self.reasons.read(all).unwrap_or_else(|e| {
            log::warn!("reading {}: {e}", names::DEVICE_REASONS);
            Vec::new()
        });
        if !device_reasons.is_empty() {
            match self.held.read() {
                Ok(held) => {
                    self.floors.resize(device_reasons.len(), Floor::default());
                    for (index, (count, floor)) in
                        device_reasons.iter_mut().zip(&mut self.floors).enumerate()
                    {
                        *count = floor.next(*count, held.reason(index as u32));
                    }
                }
                Err(e) => {
                    log::warn!(
                        "reading what {} and {} hold: {}",
                        names::DECISIONS,
                        names::PROBE_MEMO,
                        error_chain(&e)
                    );
                    device_reasons.clear();
                }
            }
        }
        Ok(TableCounts {
            baseline_per_addr,
            entries,
            device_reasons,
            at: Instant::now(),
        })
    }

    /// A failed walk is logged and the old counts stay, ageing.
    fn run(mut self, cache: Weak<Mutex<Arc<TableCounts>>>, first_took: Duration) {
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

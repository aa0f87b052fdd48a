//! The learned baseline on disk: a versioned, reviewable JSON file, written atomically.
//!
//! Used by the daemon (saved every few seconds, restored at start), by `monitor replay`
//! (`--baseline-out`/`--baseline-in`) and by `monitor baseline export|diff|import`.

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use monitor_common::maps::{
    BaselineEntry, Direction, FlowKey, ORIGIN_IMPORTED, ORIGIN_LEARNED, ORIGIN_POLICY,
};
use serde::{Deserialize, Serialize};

use super::{StateDir, StateError, files};
use crate::{
    datapath::{MapSet, addr_key, addr_of},
    support::week,
};

pub const FORMAT: &str = "monitor-baseline";
/// Version 2 added each entry's `schedule`; version 1 files (without) still load.
pub const VERSION: u32 = 2;
/// The oldest version this monitor reads.
pub const OLDEST_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("reading {0}")]
    Read(String, #[source] std::io::Error),
    #[error("{0} is not a baseline file")]
    Parse(String, #[source] serde_json::Error),
    #[error(
        "{file} has format `{format}` version {version}; this monitor reads `{FORMAT}` versions {OLDEST_VERSION} to {VERSION}"
    )]
    Version {
        file: String,
        format: String,
        version: u32,
    },
    #[error("{file}: entry {index}: {what}")]
    Entry {
        file: String,
        index: usize,
        what: String,
    },
}

/// One allowed flow, as people read it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Record {
    pub device: IpAddr,
    pub peer: IpAddr,
    pub protocol: u8,
    pub service_port: u16,
    /// `out` (the device is the client), `in` (the peer is), or `both`.
    pub direction: String,
    #[serde(default = "learned")]
    pub origin: String,
    /// The learning window it was learned in (`monitor baseline windows`); 0 when it was
    /// not learned under a recorded window.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub window: u32,
    /// When it was learned (RFC 3339), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<String>,
    /// The site's hours of the week it was seen in while learning
    /// (`crate::support::week::format`: `mon-fri 07-19`); none when none were recorded
    /// (such an entry is never off schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

fn learned() -> String {
    "learned".into()
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The clocks at one moment: learned times are CLOCK_MONOTONIC in the datapath and
/// wall-clock time on disk.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub monotonic_ns: u64,
    pub unix: u64,
}

impl Clocks {
    pub fn now() -> Clocks {
        Clocks {
            monotonic_ns: crate::support::clock::monotonic_now_ns(),
            unix: crate::support::clock::unix_now(),
        }
    }

    fn rfc3339_of(self, monotonic_ns: u64) -> Option<String> {
        let unix =
            crate::support::clock::unix_of_monotonic(monotonic_ns, self.monotonic_ns, self.unix)?;
        Some(
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix),
            )
            .to_string(),
        )
    }

    /// The monotonic time of `text`, 0 when it is unreadable or before this boot.
    fn monotonic_of(self, text: &str) -> u64 {
        let Ok(time) = humantime::parse_rfc3339_weak(text) else {
            return 0;
        };
        let Ok(unix) = time.duration_since(std::time::UNIX_EPOCH) else {
            return 0;
        };
        let ago = self.unix.saturating_sub(unix.as_secs()) * 1_000_000_000;
        self.monotonic_ns.saturating_sub(ago)
    }
}

/// A baseline file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BaselineFile {
    pub format: String,
    pub version: u32,
    pub entries: Vec<Record>,
}

impl Record {
    pub fn from_map(key: &FlowKey, entry: &BaselineEntry) -> Record {
        Record::from_map_at(key, entry, Clocks::now())
    }

    /// [`Record::from_map`] with the clocks read once for many records.
    pub fn from_map_at(key: &FlowKey, entry: &BaselineEntry, clocks: Clocks) -> Record {
        Record {
            device: addr_of(&key.device),
            peer: addr_of(&key.peer),
            protocol: key.protocol,
            service_port: key.service_port,
            direction: Direction::try_from(key.direction)
                .map_or("both", Direction::name)
                .into(),
            origin: match entry.origin {
                ORIGIN_POLICY => "policy",
                ORIGIN_IMPORTED => "imported",
                _ => "learned",
            }
            .into(),
            window: entry.window,
            learned: (entry.learned_ns != 0)
                .then(|| clocks.rfc3339_of(entry.learned_ns))
                .flatten(),
            schedule: monitor_common::schedule::is_recorded(&entry.schedule)
                .then(|| week::format(&entry.schedule)),
        }
    }

    /// The schedule's slots (none recorded: all zero), or what is wrong with it.
    pub fn schedule_slots(&self) -> Result<monitor_common::schedule::Schedule, String> {
        match &self.schedule {
            Some(text) => week::parse(text).map_err(|e| format!("schedule: {e}")),
            None => Ok([0; monitor_common::schedule::SCHEDULE_WORDS]),
        }
    }

    /// The map key, or what is wrong with the record.
    pub fn key(&self) -> Result<FlowKey, String> {
        let direction = match self.direction.as_str() {
            "out" => Direction::Outbound,
            "in" => Direction::Inbound,
            "both" => Direction::Symmetric,
            other => return Err(format!("direction `{other}` is not out, in or both")),
        };
        Ok(FlowKey {
            device: addr_key(self.device),
            peer: addr_key(self.peer),
            service_port: self.service_port,
            protocol: self.protocol,
            direction: direction as u8,
        })
    }

    pub fn entry(&self) -> BaselineEntry {
        self.entry_at(Clocks::now())
    }

    /// The map value. A learned time before this boot cannot be told in CLOCK_MONOTONIC
    /// and is left 0 there; [`BaselineFile::from_map_keeping`] keeps it on disk.
    pub fn entry_at(&self, clocks: Clocks) -> BaselineEntry {
        BaselineEntry {
            learned_ns: self
                .learned
                .as_deref()
                .map_or(0, |text| clocks.monotonic_of(text)),
            origin: match self.origin.as_str() {
                "policy" => ORIGIN_POLICY,
                "imported" => ORIGIN_IMPORTED,
                _ => ORIGIN_LEARNED,
            },
            _pad1: 0,
            _pad2: 0,
            window: self.window,
            // Checked by `BaselineFile::parse`.
            schedule: self.schedule_slots().unwrap_or_default(),
        }
    }
}

/// The learned times a baseline file records that the map cannot hold: entries learned
/// before this boot (CLOCK_MONOTONIC cannot tell them; restored, they are 0 in the map).
/// What a save keeps from the file before it, without keeping that whole file: after a
/// plain restart none, after a reboot one per entry learned before it.
#[derive(Clone, Debug, Default)]
pub struct KeptTimes(std::collections::HashMap<FlowKey, Box<str>>);

impl KeptTimes {
    pub fn of(file: &BaselineFile) -> KeptTimes {
        let clocks = Clocks::now();
        KeptTimes(
            file.entries
                .iter()
                .filter_map(|r| {
                    let learned = r.learned.as_deref()?;
                    (clocks.monotonic_of(learned) == 0).then_some((r.key().ok()?, learned.into()))
                })
                .collect(),
        )
    }
}

impl BaselineFile {
    pub fn from_map(entries: &[(FlowKey, BaselineEntry)]) -> BaselineFile {
        BaselineFile::from_map_keeping(entries, None)
    }

    /// The file for the map's `entries`; where the map no longer knows when an entry was
    /// learned (it was restored after a reboot), the time `kept` recorded is kept.
    pub fn from_map_keeping(
        entries: &[(FlowKey, BaselineEntry)],
        kept: Option<&KeptTimes>,
    ) -> BaselineFile {
        let clocks = Clocks::now();
        let mut records: Vec<Record> = entries
            .iter()
            .map(|(k, e)| {
                let mut record = Record::from_map_at(k, e, clocks);
                if record.learned.is_none() {
                    record.learned = kept.and_then(|kept| kept.0.get(k)).map(|t| t.to_string());
                }
                record
            })
            .collect();
        records.sort();
        BaselineFile {
            format: FORMAT.into(),
            version: VERSION,
            entries: records,
        }
    }

    /// Parses and checks a baseline file's text; `name` names it in errors.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<BaselineFile, BaselineError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse(name.into(), e))?;
        if header.format != FORMAT || !(OLDEST_VERSION..=VERSION).contains(&header.version) {
            return Err(BaselineError::Version {
                file: name.into(),
                format: header.format,
                version: header.version,
            });
        }
        let file: BaselineFile =
            serde_json::from_slice(bytes).map_err(|e| BaselineError::Parse(name.into(), e))?;
        for (index, record) in file.entries.iter().enumerate() {
            let entry_error = |what| BaselineError::Entry {
                file: name.into(),
                index,
                what,
            };
            record.key().map_err(entry_error)?;
            record.schedule_slots().map_err(entry_error)?;
        }
        // Read as the version this monitor writes: an older file's entries have no schedule.
        Ok(BaselineFile {
            version: VERSION,
            ..file
        })
    }

    pub fn read(path: &Path) -> Result<BaselineFile, BaselineError> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| BaselineError::Read(name.clone(), e))?;
        BaselineFile::parse(&name, &bytes)
    }

    /// The map entries (checked by `parse`).
    pub fn map_entries(&self) -> Vec<(FlowKey, BaselineEntry)> {
        let clocks = Clocks::now();
        self.entries
            .iter()
            .filter_map(|r| r.key().ok().map(|k| (k, r.entry_at(clocks))))
            .collect()
    }

    /// Entries of both whose schedule differs, as (in `self`, in `older`): hours a flow
    /// was seen in since a snapshot.
    pub fn schedule_changes<'a>(
        &'a self,
        older: &'a BaselineFile,
    ) -> Vec<(&'a Record, &'a Record)> {
        let old: std::collections::HashMap<FlowKey, &Record> = older
            .entries
            .iter()
            .filter_map(|r| Some((r.key().ok()?, r)))
            .collect();
        self.entries
            .iter()
            .filter_map(|r| {
                let before = old.get(&r.key().ok()?)?;
                (r.schedule_slots() != before.schedule_slots()).then_some((r, *before))
            })
            .collect()
    }

    /// Entries of `self` not in `older` (what a device learned since a snapshot), and
    /// entries of `older` no longer in `self`.
    pub fn diff<'a>(&'a self, older: &'a BaselineFile) -> (Vec<&'a Record>, Vec<&'a Record>) {
        let strip = |r: &Record| {
            (
                r.device,
                r.peer,
                r.protocol,
                r.service_port,
                r.direction.clone(),
            )
        };
        let old: BTreeSet<_> = older.entries.iter().map(strip).collect();
        let new: BTreeSet<_> = self.entries.iter().map(strip).collect();
        (
            self.entries
                .iter()
                .filter(|r| !old.contains(&strip(r)))
                .collect(),
            older
                .entries
                .iter()
                .filter(|r| !new.contains(&strip(r)))
                .collect(),
        )
    }
}

/// Why the baseline could not be restored into, or saved from, the datapath.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the baseline file")]
    File(#[from] BaselineError),
    #[error("the baseline map")]
    Map(#[from] crate::datapath::DatapathError),
    #[error("the state directory")]
    State(#[from] StateError),
}

/// Restores the baseline saved in the state directory into the map (entries the map
/// lacks). Returns how many, and the file (whose learned times the daemon keeps).
pub fn restore(maps: &mut MapSet, state: &StateDir) -> Result<(usize, KeptTimes), RestoreError> {
    let path = state.path().join(files::BASELINE);
    if !path.exists() {
        return Ok((0, KeptTimes::default()));
    }
    let file = BaselineFile::read(&path)?;
    let present: std::collections::HashSet<_> =
        maps.baseline()?.into_iter().map(|(k, _)| k).collect();
    let missing: Vec<_> = file
        .map_entries()
        .into_iter()
        .filter(|(k, _)| !present.contains(k))
        .collect();
    maps.insert_baseline(&missing)?;
    Ok((missing.len(), KeptTimes::of(&file)))
}

/// Saves the baseline map to the state directory (atomic replace), keeping the learned
/// times `kept` knows that the map lost (entries restored after a reboot). Returns how
/// many entries it saved.
pub fn save(
    maps: &MapSet,
    state: &StateDir,
    kept: Option<&KeptTimes>,
) -> Result<usize, RestoreError> {
    let entries = maps.baseline()?;
    let file = BaselineFile::from_map_keeping(&entries, kept);
    drop(entries);
    state.write_json(files::BASELINE, &file)?;
    Ok(file.entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_map_keys() {
        let record = Record {
            device: "10.10.1.11".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: "fd00:20::10".parse().unwrap_or_else(|e| panic!("{e}")),
            protocol: 6,
            service_port: 443,
            direction: "out".into(),
            origin: "learned".into(),
            window: 3,
            learned: None,
            schedule: Some("mon-fri 07-19; sun 22-24".into()),
        };
        let key = record.key().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.direction, Direction::Outbound as u8);
        assert_eq!(
            record
                .entry()
                .schedule
                .iter()
                .map(|w| w.count_ones())
                .sum::<u32>(),
            62
        );
        assert_eq!(Record::from_map(&key, &record.entry()), record);
    }

    /// A file written before schedules (version 1) loads, its entries without one; a
    /// schedule that does not read is named with its entry.
    #[test]
    fn old_files_load_and_bad_schedules_are_named() {
        let file = BaselineFile::parse(
            "old.json",
            br#"{"format":"monitor-baseline","version":1,"entries":[{"device":"10.0.0.1","peer":"10.0.0.2","protocol":6,"service-port":80,"direction":"out"}]}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.version, VERSION);
        assert_eq!(file.entries[0].schedule, None);
        assert_eq!(file.map_entries()[0].1.schedule, [0; 3]);
        let err = BaselineFile::parse(
            "b.json",
            br#"{"format":"monitor-baseline","version":2,"entries":[{"device":"10.0.0.1","peer":"10.0.0.2","protocol":6,"service-port":80,"direction":"out","schedule":"mon 19-07"}]}"#,
        )
        .expect_err("backwards hours");
        assert!(
            err.to_string().contains("entry 0") && err.to_string().contains("schedule"),
            "{err}"
        );
    }

    #[test]
    fn learned_times_survive_the_trip_through_the_map_and_a_reboot() {
        let clocks = Clocks {
            monotonic_ns: 3_600 * 1_000_000_000,
            unix: 1_800_000_000,
        };
        let key = FlowKey {
            device: addr_key("10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))),
            peer: addr_key("10.0.0.2".parse().unwrap_or_else(|e| panic!("{e}"))),
            service_port: 53,
            protocol: 17,
            direction: Direction::Outbound as u8,
        };
        // Learned ten minutes ago, in window 2.
        let entry = BaselineEntry {
            learned_ns: clocks.monotonic_ns - 600 * 1_000_000_000,
            origin: ORIGIN_LEARNED,
            _pad1: 0,
            _pad2: 0,
            window: 2,
            schedule: [0; 3],
        };
        let record = Record::from_map_at(&key, &entry, clocks);
        assert_eq!(record.learned.as_deref(), Some("2027-01-15T07:50:00Z"));
        assert_eq!(record.entry_at(clocks), entry);
        // Learned two days ago: before this boot (an hour ago), so the map cannot hold the
        // time; the file keeps it.
        let old = Record {
            learned: Some("2027-01-13T08:00:00Z".into()),
            ..record.clone()
        };
        let restored = old.entry_at(clocks);
        assert_eq!((restored.learned_ns, restored.window), (0, 2));
        let previous = BaselineFile {
            format: FORMAT.into(),
            version: VERSION,
            entries: vec![old.clone()],
        };
        let kept = KeptTimes(
            previous
                .entries
                .iter()
                .map(|r| {
                    (
                        r.key().unwrap_or_else(|e| panic!("{e}")),
                        r.learned.clone().unwrap_or_default().into(),
                    )
                })
                .collect(),
        );
        let saved = BaselineFile::from_map_keeping(&[(key, restored)], Some(&kept));
        assert_eq!(saved.entries, vec![old]);
    }

    #[test]
    fn wrong_versions_and_bad_entries_are_named() {
        let err = BaselineFile::parse(
            "b.json",
            br#"{"format":"monitor-baseline","version":9,"entries":[]}"#,
        )
        .expect_err("version 9");
        assert!(err.to_string().contains("version 9"), "{err}");
        let err = BaselineFile::parse(
            "b.json",
            br#"{"format":"monitor-baseline","version":1,"entries":[{"device":"10.0.0.1","peer":"10.0.0.2","protocol":6,"service-port":80,"direction":"sideways"}]}"#,
        )
        .expect_err("bad direction");
        assert!(
            err.to_string().contains("entry 0") && err.to_string().contains("sideways"),
            "{err}"
        );
    }

    /// `baseline diff` keeps schedules: an entry seen at new hours since a snapshot is
    /// listed with both, and entries whose schedule did not change are not.
    #[test]
    fn schedule_changes_since_a_snapshot() {
        let record = |peer: &str, schedule: Option<&str>| Record {
            device: "10.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
            peer: peer.parse().unwrap_or_else(|e| panic!("{e}")),
            protocol: 6,
            service_port: 443,
            direction: "out".into(),
            origin: "learned".into(),
            window: 0,
            learned: None,
            schedule: schedule.map(str::to_owned),
        };
        let file = |entries| BaselineFile {
            format: FORMAT.into(),
            version: VERSION,
            entries,
        };
        let old = file(vec![
            record("10.0.0.2", Some("mon 10-11")),
            record("10.0.0.3", Some("tue 08-09")),
            record("10.0.0.4", None),
        ]);
        let new = file(vec![
            record("10.0.0.2", Some("mon 10-12")),
            record("10.0.0.3", Some("tue 08-09")),
            record("10.0.0.4", Some("wed 01-02")),
        ]);
        let changes: Vec<(&str, &str)> = new
            .schedule_changes(&old)
            .iter()
            .map(|(now, before)| {
                (
                    now.schedule.as_deref().unwrap_or(""),
                    before.schedule.as_deref().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(changes, [("mon 10-12", "mon 10-11"), ("wed 01-02", "")]);
        assert_eq!(new.diff(&old), (vec![], vec![]));
    }
}

//! When each device is active: packets and bytes per real wall-clock hour over the last
//! 7 days, and how its baseline grows while it learns.
//!
//! The XDP program keeps only running totals per device. The daemon's sampler
//! (`observe::sampler`) samples them every [`SAMPLE_INTERVAL`] and adds each difference to
//! the hour the device was last seen in; the history is kept in the state directory
//! (`activity.json`, replaced atomically) so that `monitor map` and a restarted daemon see
//! it. Hours are keyed by their start in
//! seconds since the Unix epoch, so a bin is a real hour whatever the time zone; the
//! hour-of-day by day-of-week grid people read is laid out in local time when shown.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    time::Duration,
};

use monitor_common::{Mode, maps::DeviceStats};
use serde::{Deserialize, Serialize};

use super::files;
use crate::{
    datapath::{DatapathError, MapSet},
    state::inventory::Inventory,
    state::{StateDir, StateError},
    support::clock::{monotonic_now_ns, unix_now, unix_of_monotonic},
};

const ACTIVITY_VERSION: u32 = 1;
/// How much history is kept: the 7 days of the activity grid.
pub const WINDOW_HOURS: u64 = 7 * 24;
/// How often the daemon samples the per-device counters. Short enough that a test (or an
/// operator) sees traffic in the map within seconds; each sample is one counter lookup per
/// device.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    #[error("activity history")]
    State(#[from] StateError),
    #[error("reading the device counters")]
    Datapath(#[from] DatapathError),
    #[error("activity history {0} has format version {1}; this monitor reads version {2}")]
    Version(PathBuf, u32, u32),
}

/// Counts of one hour of one device.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct HourBin {
    /// Packets sent and received.
    pub packets: u64,
    pub bytes: u64,
    /// Flows the device's baseline learned in this hour.
    pub new_baseline_entries: u64,
}

/// The device's counters at the previous sample, to take differences from.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct LastCounts {
    pub slot: u32,
    pub packets: u64,
    pub bytes: u64,
    pub learned_flows: u64,
}

/// One device's history.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct DeviceActivity {
    /// Hour index (start of the hour / 3600, Unix time) → counts; empty hours are absent.
    pub hours: BTreeMap<u64, HourBin>,
    pub last: Option<LastCounts>,
    /// Since when the sampler has seen the device in learn mode (Unix seconds); `None`
    /// while it is not learning. A device already learning when the history began counts
    /// from then.
    pub learning_since: Option<u64>,
    /// When its baseline last grew by learning (Unix seconds).
    pub baseline_grew_at: Option<u64>,
}

/// Every device's history: the content of `activity.json`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Activity {
    pub version: u32,
    /// The previous sample (Unix seconds), 0 before the first.
    pub sampled_at: u64,
    pub devices: BTreeMap<String, DeviceActivity>,
}

/// What one sample saw of one device.
#[derive(Clone, Copy, Debug)]
pub struct Observation {
    pub slot: u32,
    pub packets: u64,
    pub bytes: u64,
    pub learned_flows: u64,
    /// First and last packet, Unix seconds (`None`: never seen).
    pub first_seen: Option<u64>,
    pub last_seen: Option<u64>,
    /// The device's effective mode is learn.
    pub learning: bool,
}

impl Observation {
    /// From the datapath counters; `now_mono_ns`/`now_unix` convert their monotonic times.
    pub fn from_stats(
        slot: u32,
        stats: &DeviceStats,
        learning: bool,
        now_mono_ns: u64,
        now_unix: u64,
    ) -> Observation {
        Observation {
            slot,
            packets: stats.packets_sent + stats.packets_received,
            bytes: stats.bytes_sent + stats.bytes_received,
            learned_flows: stats.learned_flows,
            first_seen: unix_of_monotonic(stats.first_seen_ns, now_mono_ns, now_unix),
            last_seen: unix_of_monotonic(stats.last_seen_ns, now_mono_ns, now_unix),
            learning,
        }
    }
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            version: ACTIVITY_VERSION,
            ..Activity::default()
        }
    }

    /// Reads the history (empty when there is none yet).
    pub fn load(state: &StateDir) -> Result<Activity, ActivityError> {
        match state.read_json::<Activity>(files::ACTIVITY)? {
            Some(a) if a.version != ACTIVITY_VERSION => Err(ActivityError::Version(
                state.path().join(files::ACTIVITY),
                a.version,
                ACTIVITY_VERSION,
            )),
            Some(a) => Ok(a),
            None => Ok(Activity::new()),
        }
    }

    pub fn save(&self, state: &StateDir) -> Result<(), ActivityError> {
        Ok(state.write_json(files::ACTIVITY, self)?)
    }

    /// Adds what happened to `device` since the previous sample. Returns whether anything
    /// changed (the file needs writing).
    pub fn record(&mut self, device: &str, now: u64, seen: Observation) -> bool {
        let previous_sample = self.sampled_at;
        let entry = self.devices.entry(device.to_string()).or_default();
        let before = entry.clone();
        let delta = match entry.last {
            Some(last) if last.slot == seen.slot && seen.packets >= last.packets => LastCounts {
                slot: seen.slot,
                packets: seen.packets - last.packets,
                bytes: seen.bytes.saturating_sub(last.bytes),
                learned_flows: seen.learned_flows.saturating_sub(last.learned_flows),
            },
            // A counter went back (its slot was zeroed for a re-added device), or the
            // device is new to the history: the totals count only if all of the device's
            // traffic came after the previous sample; otherwise it predates the history
            // (adopted pins) and cannot be placed in an hour.
            _ if previous_sample > 0 && seen.first_seen.is_some_and(|t| t >= previous_sample) => {
                LastCounts {
                    slot: seen.slot,
                    packets: seen.packets,
                    bytes: seen.bytes,
                    learned_flows: seen.learned_flows,
                }
            }
            _ => LastCounts {
                slot: seen.slot,
                ..LastCounts::default()
            },
        };
        entry.last = Some(LastCounts {
            slot: seen.slot,
            packets: seen.packets,
            bytes: seen.bytes,
            learned_flows: seen.learned_flows,
        });
        if delta.packets > 0 || delta.learned_flows > 0 {
            // The traffic since the previous sample ended when the device was last seen;
            // placing it there rather than at the sample keeps it in the hour it was sent
            // in when a sample falls just after the hour turned.
            let at = seen
                .last_seen
                .filter(|t| *t <= now && *t + WINDOW_HOURS * 3600 > now)
                .unwrap_or(now);
            let bin = entry.hours.entry(at / 3600).or_default();
            bin.packets += delta.packets;
            bin.bytes += delta.bytes;
            bin.new_baseline_entries += delta.learned_flows;
            if delta.learned_flows > 0 {
                entry.baseline_grew_at = Some(at);
            }
        }
        match (seen.learning, entry.learning_since) {
            (true, None) => entry.learning_since = Some(now),
            (false, Some(_)) => entry.learning_since = None,
            _ => {}
        }
        *entry != before
    }

    /// Drops hours older than the window and devices no longer in `keep`.
    pub fn prune(&mut self, now: u64, keep: &BTreeSet<&str>) -> bool {
        let oldest = (now / 3600).saturating_sub(WINDOW_HOURS - 1);
        let before = (
            self.devices.len(),
            self.devices.values().map(|d| d.hours.len()).sum::<usize>(),
        );
        self.devices.retain(|name, _| keep.contains(name.as_str()));
        for device in self.devices.values_mut() {
            device.hours.retain(|hour, _| *hour >= oldest);
        }
        before
            != (
                self.devices.len(),
                self.devices.values().map(|d| d.hours.len()).sum::<usize>(),
            )
    }

    /// Takes one sample of every device of `inventory` from `maps`.
    pub fn sample(&mut self, maps: &MapSet, inventory: &Inventory) -> Result<bool, ActivityError> {
        let now = unix_now();
        let now_mono = monotonic_now_ns();
        let global = Mode::try_from(maps.config()?.mode).unwrap_or(Mode::Learn);
        let mut changed = false;
        let all_stats = maps.devices_stats(inventory.devices.iter().map(|d| d.slot))?;
        for (device, stats) in inventory.devices.iter().zip(all_stats) {
            let learning = device.effective_mode(global) == Mode::Learn.name();
            let seen = Observation::from_stats(device.slot, &stats, learning, now_mono, now);
            changed |= self.record(&device.spec.name, now, seen);
        }
        let keep: BTreeSet<&str> = inventory
            .devices
            .iter()
            .map(|d| d.spec.name.as_str())
            .collect();
        changed |= self.prune(now, &keep);
        self.sampled_at = now;
        Ok(changed)
    }

    /// New baseline entries of `device` in each of the last `hours` hours, oldest first.
    pub fn baseline_growth(&self, device: &str, now: u64, hours: u64) -> Vec<u64> {
        let current = now / 3600;
        let history = self.devices.get(device);
        (0..hours)
            .rev()
            .map(|back| {
                history
                    .and_then(|d| d.hours.get(&current.saturating_sub(back)))
                    .map_or(0, |b| b.new_baseline_entries)
            })
            .collect()
    }
}

/// Local calendar fields of a Unix time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    /// 0 = Sunday.
    pub weekday: u32,
    pub hour: u32,
    pub minute: u32,
}

/// `unix` in the local time zone (TZ, /etc/localtime), as people read the grid.
pub fn local_time(unix: u64) -> LocalTime {
    let t = unix as libc::time_t;
    // SAFETY: localtime_r writes only into the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
    if !ok {
        return LocalTime {
            year: 1970,
            month: 1,
            day: 1,
            weekday: 4,
            hour: 0,
            minute: 0,
        };
    }
    LocalTime {
        year: tm.tm_year + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        weekday: tm.tm_wday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
    }
}

pub const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// "2026-11-28 14:05" in local time.
pub fn format_local(unix: u64) -> String {
    let t = local_time(unix);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        t.year, t.month, t.day, t.hour, t.minute
    )
}

/// One cell of the activity grid: one real hour.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GridCell {
    /// Start of the hour, Unix seconds (0 for an hour a daylight saving change skipped).
    pub hour_start: u64,
    /// Local hour of day, 0-23.
    pub hour: u32,
    pub packets: u64,
    pub bytes: u64,
}

/// One row of the grid: a day of the week, 24 cells.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct GridDay {
    /// "Sat".
    pub weekday: String,
    /// The latest date with this weekday in the window, "2026-11-28". On today's row the
    /// hours after the current one are last week's.
    pub date: String,
    pub cells: Vec<GridCell>,
}

/// Hour of day by day of week over the last 7 days (168 real hours, each in one cell), in
/// local time: 7 rows, the oldest weekday first and today last.
pub fn grid(history: Option<&DeviceActivity>, now: u64) -> Vec<GridDay> {
    let current = now / 3600;
    let today = local_time(now).weekday as usize % 7;
    let mut rows: Vec<GridDay> = (0..7)
        .map(|i| {
            let weekday = (today + 1 + i) % 7;
            GridDay {
                weekday: WEEKDAYS[weekday].into(),
                date: String::new(),
                cells: (0..24)
                    .map(|hour| GridCell {
                        hour_start: 0,
                        hour,
                        packets: 0,
                        bytes: 0,
                    })
                    .collect(),
            }
        })
        .collect();
    for hour_index in current.saturating_sub(WINDOW_HOURS - 1)..=current {
        let start = hour_index * 3600;
        let local = local_time(start);
        let row = (local.weekday as usize % 7 + 6 - today) % 7;
        let day = &mut rows[row];
        day.date = format!("{:04}-{:02}-{:02}", local.year, local.month, local.day);
        let cell = &mut day.cells[local.hour as usize % 24];
        let bin = history
            .and_then(|h| h.hours.get(&hour_index))
            .copied()
            .unwrap_or_default();
        // A daylight saving change can map two real hours to one local hour: add them up.
        cell.hour_start = start;
        cell.packets += bin.packets;
        cell.bytes += bin.bytes;
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_780_000_000; // some Unix time, mid-hour

    fn seen(packets: u64, last_seen: Option<u64>) -> Observation {
        Observation {
            slot: 0,
            packets,
            bytes: packets * 100,
            learned_flows: 0,
            first_seen: last_seen.map(|t| t - 1),
            last_seen,
            learning: false,
        }
    }

    #[test]
    fn differences_go_to_the_hour_the_device_was_last_seen() {
        let mut a = Activity::new();
        // First sample: the device already had 50 packets from before the history.
        assert!(a.record("ct", T0, seen(50, Some(T0 - 7200))));
        a.sampled_at = T0;
        assert!(
            a.devices["ct"].hours.is_empty(),
            "history before the first sample is not placed"
        );
        // 10 more packets, last one 3 s before the next sample.
        a.record("ct", T0 + 5, seen(60, Some(T0 + 2)));
        a.sampled_at = T0 + 5;
        assert_eq!(a.devices["ct"].hours[&(T0 / 3600)].packets, 10);
        assert_eq!(a.devices["ct"].hours[&(T0 / 3600)].bytes, 1000);
        // Nothing new: nothing changes.
        assert!(!a.record("ct", T0 + 10, seen(60, Some(T0 + 2))));
        // An hour later, 5 packets.
        a.record("ct", T0 + 3605, seen(65, Some(T0 + 3601)));
        assert_eq!(a.devices["ct"].hours[&((T0 + 3601) / 3600)].packets, 5);
        let total: u64 = a.devices["ct"].hours.values().map(|b| b.packets).sum();
        assert_eq!(total, 15);
    }

    #[test]
    fn a_new_device_counts_whole_when_all_its_traffic_is_new() {
        let mut a = Activity::new();
        a.sampled_at = T0;
        a.record("new", T0 + 5, seen(7, Some(T0 + 3)));
        assert_eq!(a.devices["new"].hours[&(T0 / 3600)].packets, 7);
        // A zeroed (re-added) slot: counters go back, the new totals count.
        a.sampled_at = T0 + 5;
        a.record("new", T0 + 10, seen(2, Some(T0 + 8)));
        assert_eq!(a.devices["new"].hours[&(T0 / 3600)].packets, 9);
    }

    #[test]
    fn learning_progress_and_pruning() {
        let mut a = Activity::new();
        let mut obs = seen(0, None);
        obs.learning = true;
        a.record("pump", T0, obs);
        assert_eq!(a.devices["pump"].learning_since, Some(T0));
        a.sampled_at = T0;
        obs.learned_flows = 3;
        obs.packets = 6;
        obs.last_seen = Some(T0 + 1);
        obs.first_seen = Some(T0 + 1);
        a.record("pump", T0 + 5, obs);
        assert_eq!(
            a.devices["pump"].learning_since,
            Some(T0),
            "still learning since T0"
        );
        assert_eq!(a.devices["pump"].baseline_grew_at, Some(T0 + 1));
        assert_eq!(a.baseline_growth("pump", T0 + 5, 3), [0, 0, 3]);
        obs.learning = false;
        a.record("pump", T0 + 10, obs);
        assert_eq!(a.devices["pump"].learning_since, None);
        // Eight days later the hour has left the window; a removed device goes too.
        a.record("gone", T0, seen(1, Some(T0)));
        let keep: BTreeSet<&str> = ["pump"].into();
        assert!(a.prune(T0 + 8 * 86_400, &keep));
        assert!(a.devices["pump"].hours.is_empty());
        assert!(!a.devices.contains_key("gone"));
    }

    #[test]
    fn grid_has_seven_days_and_places_the_hour() {
        let mut a = Activity::new();
        a.sampled_at = T0;
        a.record("ct", T0 + 5, seen(4, Some(T0 + 1)));
        let days = grid(a.devices.get("ct"), T0 + 5);
        assert_eq!(days.len(), 7);
        let cells: Vec<&GridCell> = days.iter().flat_map(|d| &d.cells).collect();
        assert_eq!(cells.len(), WINDOW_HOURS as usize);
        let mut starts: Vec<u64> = cells.iter().map(|c| c.hour_start).collect();
        starts.sort_unstable();
        starts.dedup();
        assert_eq!(
            starts.len(),
            WINDOW_HOURS as usize,
            "every real hour has its own cell"
        );
        let active: Vec<&&GridCell> = cells.iter().filter(|c| c.packets > 0).collect();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].hour_start, (T0 / 3600) * 3600);
        assert_eq!(active[0].hour, local_time(T0).hour);
        // Today is the last row.
        let today = &days[6];
        assert_eq!(today.weekday, WEEKDAYS[local_time(T0).weekday as usize]);
        assert_eq!(
            today.cells[local_time(T0).hour as usize].hour_start,
            (T0 / 3600) * 3600
        );
    }

    #[test]
    fn history_round_trips_through_json() {
        let mut a = Activity::new();
        a.sampled_at = T0;
        a.record("ct", T0 + 5, seen(4, Some(T0 + 1)));
        let text = serde_json::to_string(&a).unwrap_or_default();
        let back: Activity = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(back, a);
    }
}

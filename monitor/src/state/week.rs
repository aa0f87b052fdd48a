//! The site's week in the state directory: the clock an operator's drill (or a test) sets
//! in place of the real one, and each device's learning coverage: the hours of the week
//! in which the daemon saw it learning. A baseline learned over less than a whole week
//! has not seen the week's every shift, and `monitor mode enforce` says so.

use std::collections::BTreeMap;

use monitor_common::schedule::{self, HOURS_PER_WEEK, SCHEDULE_WORDS, Schedule};
use serde::{Deserialize, Serialize};

use super::{StateDir, StateError, files};
use crate::support::week;

/// The site's hour of the week set by `monitor clock set` (a drill, a test): the daemon
/// writes it into CONFIG instead of the real local hour until `monitor clock real`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SiteClock {
    /// 0 = Monday 00:00 ... 167 = Sunday 23:00.
    pub hour_of_week: u8,
    pub who: String,
    /// RFC 3339.
    pub time: String,
}

impl SiteClock {
    pub fn load(state: &StateDir) -> Result<Option<SiteClock>, StateError> {
        state.read_json(files::SITE_CLOCK)
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        state.write_json(files::SITE_CLOCK, self)
    }

    /// Back to the real clock.
    pub fn clear(state: &StateDir) -> Result<(), StateError> {
        match std::fs::remove_file(state.path().join(files::SITE_CLOCK)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io(state.path().to_path_buf(), e)),
        }
    }
}

const COVERAGE_VERSION: u32 = 1;

/// Each device's learning coverage, by name: the hours of the week it was seen learning in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub devices: BTreeMap<String, Schedule>,
}

/// The file: hours as `crate::support::week` text, for people who read it.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct CoverageFile {
    version: u32,
    devices: BTreeMap<String, String>,
}

impl Coverage {
    /// The coverage saved in the state directory (none yet: empty).
    pub fn load(state: &StateDir) -> Result<Coverage, StateError> {
        let path = state.path().join(files::LEARNING_COVERAGE);
        let Some(file) = state.read_json::<CoverageFile>(files::LEARNING_COVERAGE)? else {
            return Ok(Coverage::default());
        };
        if file.version != COVERAGE_VERSION {
            return Err(StateError::Version(path, file.version, COVERAGE_VERSION));
        }
        let mut devices = BTreeMap::new();
        for (name, text) in file.devices {
            let slots = week::parse(&text).map_err(|e| {
                StateError::Json(
                    path.clone(),
                    serde::de::Error::custom(format!("device `{name}`: {e}")),
                )
            })?;
            devices.insert(name, slots);
        }
        Ok(Coverage { devices })
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        let file = CoverageFile {
            version: COVERAGE_VERSION,
            devices: self
                .devices
                .iter()
                .map(|(name, slots)| (name.clone(), week::format(slots)))
                .collect(),
        };
        state.write_json(files::LEARNING_COVERAGE, &file)
    }

    /// Records that `device` learned at `hour`; returns whether that hour is new for it.
    pub fn record(&mut self, device: &str, hour: u8) -> bool {
        let slots = self
            .devices
            .entry(device.to_owned())
            .or_insert([0; SCHEDULE_WORDS]);
        schedule::record(slots, hour)
    }

    /// Hours of the week `device` was seen learning in.
    pub fn hours(&self, device: &str) -> u32 {
        self.devices.get(device).map_or(0, schedule::hours)
    }

    /// Whether `device` learned over every hour of the week.
    pub fn is_full_week(&self, device: &str) -> bool {
        self.hours(device) == u32::from(HOURS_PER_WEEK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_is_kept_by_device_and_saved_as_text() {
        let dir = std::env::temp_dir().join(format!("monitor-coverage-{}", std::process::id()));
        let state = StateDir::new(&dir);
        let mut coverage = Coverage::default();
        assert!(coverage.record("pump-1", 10));
        assert!(!coverage.record("pump-1", 10));
        assert!(coverage.record("pump-1", 11));
        assert!(coverage.record("badge-1", 167));
        assert_eq!(coverage.hours("pump-1"), 2);
        assert_eq!(coverage.hours("unknown"), 0);
        assert!(!coverage.is_full_week("pump-1"));
        coverage.save(&state).unwrap_or_else(|e| panic!("{e}"));
        let text = std::fs::read_to_string(dir.join(files::LEARNING_COVERAGE))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(text.contains("mon 10-12"), "{text}");
        assert_eq!(
            Coverage::load(&state).unwrap_or_else(|e| panic!("{e}")),
            coverage
        );
        let mut full = Coverage::default();
        for hour in 0..HOURS_PER_WEEK {
            full.record("ws", hour);
        }
        assert!(full.is_full_week("ws"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

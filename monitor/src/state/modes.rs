//! Who changed which mode, when: the mode history of the state directory.
//!
//! The router-wide mode and the per-device modes change only by an operator's `monitor
//! mode` command or at a first start; nothing else (a reload, a restart, a second process)
//! may change the mode in force. Every change is appended here, and every change that
//! starts learning opens a numbered *learning window*: the datapath records the window in
//! force in each baseline entry it learns (`BaselineEntry::window`), so `monitor baseline
//! windows` and `baseline diff --window N` can say what a learning window added, and who
//! opened it.
//!
//! The history is also how a restart after a reboot (the pinned maps are gone, the state
//! directory is not) finds the mode that was in force: it is restored, not reset to the
//! policy's starting mode. `monitor detach` ends the history's current era: the next
//! `monitor run` is a first start again.

use std::{io::BufRead as _, time::SystemTime};

use monitor_common::Mode;
use serde::{Deserialize, Serialize};

use super::files;
use super::{StateDir, StateError};

/// What a history line records.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// `monitor run` with no pinned datapath and no mode in the history: the starting mode
    /// (from `--mode`, the policy's `defaults: mode`, or learn).
    FirstStart,
    /// `monitor mode MODE` for the whole router.
    Global,
    /// `monitor mode MODE --device NAME` (MODE may be `inherit`).
    Device,
    /// `monitor detach`: the datapath was removed; the next start is a first start.
    Detach,
}

/// One line of the history.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ModeRecord {
    /// RFC 3339, for people.
    pub time: String,
    /// Seconds since the Unix epoch, for programs.
    pub unix: u64,
    pub who: String,
    pub change: Change,
    /// The device, for [`Change::Device`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// learn, audit, enforce or inherit; none for [`Change::Detach`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The learning window this change opened (it made something learn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<u32>,
}

impl ModeRecord {
    pub fn new(change: Change, device: Option<&str>, mode: Option<&str>) -> ModeRecord {
        let now = SystemTime::now();
        ModeRecord {
            time: humantime::format_rfc3339_seconds(now).to_string(),
            unix: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            who: crate::support::operator(),
            change,
            device: device.map(str::to_owned),
            mode: mode.map(str::to_owned),
            window: None,
        }
    }

    /// What the operator typed, as near as the record tells.
    pub fn command(&self) -> String {
        match self.change {
            Change::FirstStart => {
                format!("first start ({})", self.mode.as_deref().unwrap_or("learn"))
            }
            Change::Global => format!("monitor mode {}", self.mode.as_deref().unwrap_or("?")),
            Change::Device => format!(
                "monitor mode {} --device {}",
                self.mode.as_deref().unwrap_or("?"),
                self.device.as_deref().unwrap_or("?")
            ),
            Change::Detach => "monitor detach".into(),
        }
    }
}

/// The mode history as read from the state directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub records: Vec<ModeRecord>,
}

impl History {
    /// Reads the history (empty when there is none). A line that does not parse is an
    /// error naming it: the history decides modes, so it is not guessed around.
    pub fn load(state: &StateDir) -> Result<History, StateError> {
        let path = state.path().join(files::MODE_HISTORY);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(History::default()),
            Err(e) => return Err(StateError::Io(path, e)),
        };
        let mut records = Vec::new();
        for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| StateError::Io(path.clone(), e))?;
            if line.trim().is_empty() {
                continue;
            }
            let record = serde_json::from_str(&line).map_err(|e| {
                StateError::Json(path.with_extension(format!("jsonl line {}", index + 1)), e)
            })?;
            records.push(record);
        }
        Ok(History { records })
    }

    /// Appends `record` (durably: the line is synced before the mode changes).
    pub fn append(state: &StateDir, record: &ModeRecord) -> Result<(), StateError> {
        state.append_json_line(files::MODE_HISTORY, record)
    }

    /// The records since the last detach.
    fn current_era(&self) -> &[ModeRecord] {
        let start = self
            .records
            .iter()
            .rposition(|r| r.change == Change::Detach)
            .map_or(0, |i| i + 1);
        &self.records[start..]
    }

    /// The router-wide mode the history says is in force, `None` when the next start is a
    /// first start.
    pub fn global_mode(&self) -> Option<Mode> {
        self.current_era()
            .iter()
            .rev()
            .filter(|r| matches!(r.change, Change::FirstStart | Change::Global))
            .find_map(|r| r.mode.as_deref().and_then(mode_named))
    }

    /// The number of the newest learning window (0: none was opened by a command).
    pub fn last_window(&self) -> u32 {
        self.records
            .iter()
            .filter_map(|r| r.window)
            .max()
            .unwrap_or(0)
    }

    /// The record that opened `window`.
    pub fn window(&self, window: u32) -> Option<&ModeRecord> {
        if window == 0 {
            return self
                .records
                .iter()
                .rev()
                .find(|r| r.change == Change::FirstStart);
        }
        self.records.iter().find(|r| r.window == Some(window))
    }

    /// The window that taught `device` an entry recorded under `window`: the datapath
    /// records the newest window of the whole router, so an entry of a device that was
    /// learning because of an older command (its own, or the router's) belongs to the
    /// newest window at or before `window` that covers the device.
    pub fn window_of(&self, device: Option<&str>, window: u32) -> u32 {
        let mut candidates: Vec<&ModeRecord> = self
            .records
            .iter()
            .filter(|r| r.window.is_some_and(|w| w <= window))
            .collect();
        candidates.sort_by_key(|r| r.window);
        candidates
            .iter()
            .rev()
            .find(|r| match r.change {
                Change::Device => device.is_some() && r.device.as_deref() == device,
                _ => true,
            })
            .and_then(|r| r.window)
            .unwrap_or(0)
    }
}

/// The mode named `name` (learn, audit, enforce).
pub fn mode_named(name: &str) -> Option<Mode> {
    [Mode::Learn, Mode::Audit, Mode::Enforce]
        .into_iter()
        .find(|m| m.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(change: Change, device: Option<&str>, mode: &str, window: Option<u32>) -> ModeRecord {
        ModeRecord {
            window,
            ..ModeRecord::new(change, device, Some(mode))
        }
    }

    #[test]
    fn the_global_mode_is_the_last_global_change_since_a_detach() {
        let mut history = History::default();
        assert_eq!(
            history.global_mode(),
            None,
            "nothing recorded: a first start"
        );
        history
            .records
            .push(record(Change::FirstStart, None, "learn", None));
        history
            .records
            .push(record(Change::Global, None, "enforce", None));
        history
            .records
            .push(record(Change::Device, Some("pump"), "learn", Some(1)));
        assert_eq!(history.global_mode(), Some(Mode::Enforce));
        history
            .records
            .push(ModeRecord::new(Change::Detach, None, None));
        assert_eq!(history.global_mode(), None, "detached: a first start again");
        assert_eq!(
            history.last_window(),
            1,
            "windows keep counting across eras"
        );
    }

    #[test]
    fn entries_belong_to_the_newest_window_that_covers_their_device() {
        let history = History {
            records: vec![
                record(Change::FirstStart, None, "enforce", None),
                record(Change::Global, None, "learn", Some(1)),
                record(Change::Device, Some("pump"), "learn", Some(2)),
                record(Change::Device, Some("ct"), "learn", Some(3)),
            ],
        };
        // Recorded under window 3 (the newest when it was learned):
        assert_eq!(history.window_of(Some("ct"), 3), 3);
        assert_eq!(history.window_of(Some("pump"), 3), 2);
        assert_eq!(history.window_of(Some("badge"), 3), 1);
        assert_eq!(history.window_of(None, 3), 1);
        assert_eq!(history.window_of(Some("pump"), 0), 0);
        assert_eq!(
            history.window(2).map(ModeRecord::command).as_deref(),
            Some("monitor mode learn --device pump")
        );
    }
}

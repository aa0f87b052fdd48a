//! The records other processes append to the state directory (break-glass in
//! `audit.jsonl`, mode changes in `modes.jsonl`, both written by CLI commands and by the
//! daemon), read from where the daemon last got to, so that it forwards each line once to
//! its event stream (`events.jsonl` and the SIEM).
//!
//! Where it got to is kept in `forwarded.json` (byte offsets), so that what a command
//! wrote while no daemon ran is forwarded at the next start, and nothing twice after a
//! restart. A state directory without it (a first start, an upgrade) forwards both files
//! from their first line. A file shorter than the offset was replaced (restored from a
//! backup, say): it is read again from its start.

use std::{
    io::{Read as _, Seek as _, SeekFrom},
    path::Path,
};

use serde::{Deserialize, Serialize};

use super::{StateDir, StateError, audit::AuditRecord, files, modes::ModeRecord};

/// One record to forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    BreakGlass(AuditRecord),
    Mode(ModeRecord),
}

/// What was read: the records, and the lines that are no record (named by file and byte
/// offset; they stay in their file, unforwarded).
#[derive(Debug, Default)]
pub struct NewRecords {
    pub records: Vec<Record>,
    pub unreadable: Vec<String>,
}

/// Byte offsets of the first line not forwarded yet, per file.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct Forwarded {
    pub audit: u64,
    pub modes: u64,
}

impl Forwarded {
    /// Where the last daemon got to (the start of both files when none is recorded).
    pub fn load(state: &StateDir) -> Result<Forwarded, StateError> {
        Ok(state.read_json(files::FORWARDED)?.unwrap_or_default())
    }

    pub fn save(&self, state: &StateDir) -> Result<(), StateError> {
        state.write_json(files::FORWARDED, self)
    }

    /// The whole lines appended since; moves past them. A line being written (no newline
    /// yet) waits for the next call.
    pub fn read_new(&mut self, state: &StateDir) -> Result<NewRecords, StateError> {
        let mut new = NewRecords::default();
        for (line, at) in new_lines(&state.path().join(files::AUDIT), &mut self.audit)? {
            match serde_json::from_str(&line) {
                Ok(record) => new.records.push(Record::BreakGlass(record)),
                Err(e) => new.unreadable.push(format!(
                    "{} byte {at}: not a break-glass record: {e}",
                    files::AUDIT
                )),
            }
        }
        for (line, at) in new_lines(&state.path().join(files::MODE_HISTORY), &mut self.modes)? {
            match serde_json::from_str(&line) {
                Ok(record) => new.records.push(Record::Mode(record)),
                Err(e) => new.unreadable.push(format!(
                    "{} byte {at}: not a mode record: {e}",
                    files::MODE_HISTORY
                )),
            }
        }
        Ok(new)
    }
}

/// The complete, non-empty lines of `path` from `offset` on, each with its offset;
/// `offset` moves past them.
fn new_lines(path: &Path, offset: &mut u64) -> Result<Vec<(String, u64)>, StateError> {
    let io = |e| StateError::Io(path.to_path_buf(), e);
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            *offset = 0;
            return Ok(Vec::new());
        }
        Err(e) => return Err(io(e)),
    };
    let len = file.metadata().map_err(io)?.len();
    if len < *offset {
        *offset = 0;
    }
    if len == *offset {
        return Ok(Vec::new());
    }
    file.seek(SeekFrom::Start(*offset)).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(len - *offset)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    let mut at = *offset;
    for line in bytes[..end].split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        if !text.trim().is_empty() {
            lines.push((text.into_owned(), at));
        }
        at += line.len() as u64 + 1;
    }
    *offset += end as u64 + 1;
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::state::modes::{Change, History};

    fn temp_state(name: &str) -> StateDir {
        let dir =
            std::env::temp_dir().join(format!("monitor-forward-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        StateDir::new(dir)
    }

    fn append(state: &StateDir, name: &str, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(state.path().join(name))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn audit(event: &str, device: &str) -> AuditRecord {
        AuditRecord {
            time: "2026-05-20T10:00:00Z".into(),
            event: event.into(),
            who: "alice".into(),
            reason: "vendor repair".into(),
            devices: vec![device.into()],
            until: None,
            let_through: None,
            mac: None,
        }
    }

    #[test]
    fn each_record_is_read_once_across_restarts_and_half_lines_wait() {
        let state = temp_state("once");
        let mut at = Forwarded::load(&state).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            at.read_new(&state)
                .unwrap_or_else(|e| panic!("{e}"))
                .records
                .is_empty()
        );
        audit(crate::state::audit::START, "pump")
            .append(&state)
            .unwrap_or_else(|e| panic!("{e}"));
        let record = ModeRecord::new(Change::Global, None, Some("enforce"));
        History::append(&state, &record).unwrap_or_else(|e| panic!("{e}"));
        // A line being written: only its start is there yet.
        append(&state, files::AUDIT, r#"{"time":"2026-05-20T10:01:00Z","#);
        let new = at.read_new(&state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            new.records,
            [
                Record::BreakGlass(audit(crate::state::audit::START, "pump")),
                Record::Mode(record.clone())
            ]
        );
        assert!(new.unreadable.is_empty(), "{:?}", new.unreadable);
        at.save(&state).unwrap_or_else(|e| panic!("{e}"));
        // The daemon restarts: nothing again; the finished line once.
        let mut again = Forwarded::load(&state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, at);
        append(
            &state,
            files::AUDIT,
            r#""event":"break-glass-end","who":"alice","reason":"r","devices":["pump"]}"#,
        );
        append(&state, files::AUDIT, "\nnot json\n");
        let new = again.read_new(&state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.records.len(), 1, "{:?}", new.records);
        assert!(
            matches!(&new.records[0], Record::BreakGlass(r) if r.event == "break-glass-end"),
            "{:?}",
            new.records
        );
        assert_eq!(new.unreadable.len(), 1);
        assert!(
            new.unreadable[0].starts_with("audit.jsonl byte "),
            "{:?}",
            new.unreadable
        );
        assert!(
            again
                .read_new(&state)
                .unwrap_or_else(|e| panic!("{e}"))
                .records
                .is_empty()
        );
        // A file replaced by a shorter one is read from its start.
        std::fs::remove_file(state.path().join(files::AUDIT)).unwrap_or_else(|e| panic!("{e}"));
        audit(crate::state::audit::START, "ct")
            .append(&state)
            .unwrap_or_else(|e| panic!("{e}"));
        let new = again.read_new(&state).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            new.records,
            [Record::BreakGlass(audit(crate::state::audit::START, "ct"))]
        );
        let _ = std::fs::remove_dir_all(state.path());
    }
}

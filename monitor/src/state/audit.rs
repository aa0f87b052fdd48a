//! The break-glass audit trail (`audit.jsonl`): one JSON line when a break-glass starts
//! (written by `monitor allow`) and one when it ends (written by the daemon), appended and
//! synced before enforcement is lifted, never rewritten.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{StateDir, StateError, files};

/// What an audit line records.
pub const START: &str = "break-glass-start";
pub const END: &str = "break-glass-end";
/// An operator accepted another MAC for a device for a while (`monitor allow --mac`).
pub const MAC_ALLOW: &str = "mac-allow-start";

/// One line of the audit trail.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    /// RFC 3339.
    pub time: String,
    /// [`START`] or [`END`].
    pub event: String,
    pub who: String,
    pub reason: String,
    pub devices: Vec<String>,
    /// When it ends (start records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Packets let through by break-glass, per device (end records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub let_through: Option<BTreeMap<String, u64>>,
    /// The MAC accepted ([`MAC_ALLOW`] records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

impl AuditRecord {
    /// Appends the record to the audit trail, durably: it is synced before the caller
    /// lifts (or records the end of) anything.
    pub fn append(&self, state: &StateDir) -> Result<(), StateError> {
        state.append_json_line(files::AUDIT, self)
    }
}

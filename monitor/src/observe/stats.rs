//! The controller's own counters: what the daemon did, for metrics.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64},
};

/// The controller's own counters, for metrics.
#[derive(Debug, Default)]
pub struct ControllerStats {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Loads held back as suspicious ([`crate::policy::guard`]).
    pub reloads_held_back: AtomicU64,
    /// 1 while a held-back policy waits for `monitor reload --accept-shrink`.
    pub policy_held_back: AtomicU64,
    /// Unix seconds of the last policy that loaded.
    pub last_good_reload_unix: AtomicU64,
    pub events_written: AtomicU64,
    pub baseline_saves: AtomicU64,
    /// The syslog sender's ([`crate::observe::syslog`]); all 0 without `--syslog`.
    pub syslog: Arc<SyslogCounts>,
}

/// What became of the events offered to the SIEM.
#[derive(Debug, Default)]
pub struct SyslogCounts {
    /// Handed to the collector's socket.
    pub sent: AtomicU64,
    /// Dropped because the queue was full (the collector unreachable or slow).
    pub dropped: AtomicU64,
    /// Dropping now: said once in the log, until the sender has emptied the queue.
    pub dropping: AtomicBool,
}

//! The two clocks: the datapath times things on CLOCK_MONOTONIC, people and files on the
//! wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC now, in nanoseconds: what the XDP program's coarse clock reads.
pub fn monotonic_now_ns() -> u64 {
    // SAFETY: clock_gettime writes into the struct we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Unix time of a CLOCK_MONOTONIC instant, given both clocks now; `None` for 0
/// (never).
pub fn unix_of_monotonic(mono_ns: u64, now_mono_ns: u64, now_unix: u64) -> Option<u64> {
    (mono_ns != 0)
        .then(|| now_unix.saturating_sub(now_mono_ns.saturating_sub(mono_ns) / 1_000_000_000))
}

/// RFC 3339 to the second, UTC.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// RFC 3339 to the second of a Unix time.
pub fn rfc3339_unix(unix: u64) -> String {
    rfc3339(UNIX_EPOCH + std::time::Duration::from_secs(unix))
}

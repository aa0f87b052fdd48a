//! The site's clock for the baseline's schedules: the local hour of the week (in the
//! policy's `time-zone`), or the one `monitor clock set` fixed for a drill or a test,
//! written into CONFIG where the XDP program reads it with the rest of its settings. The
//! daemon does it every minute ([`tick`]), recording each learning device's coverage; the
//! CLI does it at once when the clock is set ([`set`]).

use anyhow::{Context, Result};
use monitor_common::{Mode, schedule};

use crate::{
    datapath::MapSet,
    state::{
        StateDir,
        inventory::Inventory,
        lock::WriteLock,
        week::{Coverage, SiteClock},
    },
    support::{clock, week},
};

/// The site's hour of the week now: the fixed one of `monitor clock set`, else the local
/// hour in the policy's time zone.
pub fn hour_now(state: &StateDir, inventory: &Inventory) -> Result<u8> {
    if let Some(fixed) = SiteClock::load(state)? {
        return Ok(fixed.hour_of_week);
    }
    let zone = inventory.schedule_clock.time_zone.as_deref();
    week::hour_of_week_at(clock::unix_now() as i64, zone)
        .map_err(anyhow::Error::msg)
        .context("telling the site's hour of the week")
}

/// What a tick did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    pub hour_of_week: u8,
    /// CONFIG got another hour (or tolerance).
    pub changed: bool,
    /// A learning device learned in an hour of the week it had not yet.
    pub coverage_grew: bool,
}

/// Writes the hour of the week into CONFIG (ordered with the CLI's writes of CONFIG by the
/// state's write lock) and records it in the coverage of every device learning now.
pub fn tick(
    maps: &mut MapSet,
    state: &StateDir,
    inventory: &Inventory,
    coverage: &mut Coverage,
) -> Result<Tick> {
    let hour = hour_now(state, inventory)?;
    let (changed, global) = {
        let _write = WriteLock::take(state.path())?;
        let changed = maps.set_schedule_clock(hour, inventory.schedule_clock.tolerance)?;
        (
            changed,
            Mode::try_from(maps.config()?.mode).unwrap_or(Mode::Learn),
        )
    };
    let mut coverage_grew = false;
    for device in &inventory.devices {
        if device.effective_mode(global) == Mode::Learn.name() {
            coverage_grew |= coverage.record(&device.spec.name, hour);
        }
    }
    if coverage_grew {
        coverage.save(state)?;
    }
    Ok(Tick {
        hour_of_week: hour,
        changed,
        coverage_grew,
    })
}

/// Fixes the site's hour of the week (`Some`), or returns it to the real clock (`None`),
/// and writes it into CONFIG at once; returns the hour in force.
pub fn set(maps: &mut MapSet, state: &StateDir, hour: Option<u8>) -> Result<u8> {
    let _write = WriteLock::take(state.path())?;
    match hour {
        Some(hour) => SiteClock {
            hour_of_week: hour,
            who: crate::support::operator(),
            time: clock::rfc3339(std::time::SystemTime::now()),
        }
        .save(state)?,
        None => SiteClock::clear(state)?,
    }
    let inventory = Inventory::load(state)?;
    let hour = hour_now(state, &inventory)?;
    maps.set_schedule_clock(hour, inventory.schedule_clock.tolerance)?;
    Ok(hour)
}

/// Reads a slot as people write it: `0`..`167`, or a day and hour (`mon 10`, `sun 23:00`).
pub fn parse_slot(text: &str) -> Result<u8, String> {
    if let Ok(n) = text.trim().parse::<u8>() {
        return schedule::is_slot(n)
            .then_some(n)
            .ok_or_else(|| format!("`{text}` is not an hour of the week (0 to 167)"));
    }
    let bad = || {
        format!(
            "`{text}` is not an hour of the week: give 0 to 167, or a day and hour such as `mon 10`"
        )
    };
    let (day, hour) = text.trim().split_once(' ').ok_or_else(bad)?;
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let day = days
        .iter()
        .position(|d| d.eq_ignore_ascii_case(day))
        .ok_or_else(bad)?;
    let hour = hour.trim().trim_end_matches(":00");
    let hour: u8 = hour.parse().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    Ok(schedule::hour_of_week(day as u8, hour))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_as_people_write_them() {
        assert_eq!(parse_slot("0"), Ok(0));
        assert_eq!(parse_slot("167"), Ok(167));
        assert_eq!(parse_slot("mon 10"), Ok(10));
        assert_eq!(parse_slot("Sun 23:00"), Ok(167));
        assert_eq!(parse_slot("wed 03"), Ok(51));
        for bad in ["168", "mon 24", "someday 10", "mon"] {
            assert!(parse_slot(bad).is_err(), "{bad}");
        }
    }
}

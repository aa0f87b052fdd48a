//! The hour-of-week schedule of a baseline entry: 168 one-hour slots of the site's local
//! week (Monday 00:00 is slot 0), a bit each, set while the entry's device learns and the
//! flow is seen in that hour. In audit and enforce a baseline flow seen at an hour its
//! entry never saw, nor within the tolerance of neighbouring hours, is `off_schedule`.
//!
//! The controller writes the current slot into `CONFIG` (`Config::hour_of_week`) every
//! minute: the datapath never reads a clock for it. Plain integer logic, loop-free, so
//! that the XDP program and the host tests run the same code.

/// Hours in a week: the slots of a schedule.
pub const HOURS_PER_WEEK: u8 = 168;
/// Words of a schedule bitmap (3 × 64 bits ≥ 168).
pub const SCHEDULE_WORDS: usize = 3;
/// `Config::hour_of_week` when no controller has told the datapath the hour: nothing is
/// learned into schedules and nothing is checked against them.
pub const HOUR_UNKNOWN: u8 = 0xff;
/// The widest tolerance (hours either side) a policy may set: beyond half a day a schedule
/// says little.
pub const MAX_TOLERANCE: u8 = 12;
/// The tolerance when the policy sets none: the hour before and after count, so that a
/// shift that starts a little early or ends late raises no alarm.
pub const DEFAULT_TOLERANCE: u8 = 1;

/// A schedule: bit `h % 64` of word `h / 64` is set when the flow was seen in slot `h`.
pub type Schedule = [u64; SCHEDULE_WORDS];

/// The slot of a local weekday (0 = Monday) and hour (0..24); [`HOUR_UNKNOWN`] when either
/// is out of range.
#[inline(always)]
pub const fn hour_of_week(weekday_from_monday: u8, hour: u8) -> u8 {
    if weekday_from_monday >= 7 || hour >= 24 {
        return HOUR_UNKNOWN;
    }
    weekday_from_monday * 24 + hour
}

/// Whether `hour` is a slot (not [`HOUR_UNKNOWN`] or another out-of-range value).
#[inline(always)]
pub const fn is_slot(hour: u8) -> bool {
    hour < HOURS_PER_WEEK
}

/// Slot `hour` as a mask of each word (all zero for an out-of-range hour). Words are
/// picked by comparison, never by a computed index: the verifier refuses a read of the
/// stack at a variable offset.
#[inline(always)]
const fn slot_mask(hour: u8) -> Schedule {
    if !is_slot(hour) {
        return [0; SCHEDULE_WORDS];
    }
    let bit = 1u64 << (hour % 64);
    let word = hour / 64;
    [
        if word == 0 { bit } else { 0 },
        if word == 1 { bit } else { 0 },
        if word == 2 { bit } else { 0 },
    ]
}

/// Records `hour` in `schedule`; returns whether the bit was new (an out-of-range hour
/// records nothing).
#[inline(always)]
pub fn record(schedule: &mut Schedule, hour: u8) -> bool {
    let mask = slot_mask(hour);
    let new = !has_any(schedule, &mask) && is_slot(hour);
    schedule[0] |= mask[0];
    schedule[1] |= mask[1];
    schedule[2] |= mask[2];
    new
}

/// Whether `schedule` has slot `hour`.
#[inline(always)]
pub fn has(schedule: &Schedule, hour: u8) -> bool {
    has_any(schedule, &slot_mask(hour))
}

/// Whether `schedule` has any slot of `mask`.
#[inline(always)]
fn has_any(schedule: &Schedule, mask: &Schedule) -> bool {
    (schedule[0] & mask[0]) | (schedule[1] & mask[1]) | (schedule[2] & mask[2]) != 0
}

/// Whether a schedule records anything: an entry learned before schedules existed, loaded
/// from an older file, imported or promoted from the policy has none, and is never
/// checked.
#[inline(always)]
pub fn is_recorded(schedule: &Schedule) -> bool {
    (schedule[0] | schedule[1] | schedule[2]) != 0
}

/// Slots a schedule records.
#[inline(always)]
pub fn hours(schedule: &Schedule) -> u32 {
    schedule[0].count_ones() + schedule[1].count_ones() + schedule[2].count_ones()
}

/// Bits `low..=high` (both below 168, `low <= high`) that fall in word `word`.
#[inline(always)]
fn span_in_word(low: u32, high: u32, word: u32) -> u64 {
    let first = word * 64;
    let last = first + 63;
    let from = if low > first { low } else { first };
    let to = if high < last { high } else { last };
    if from > to {
        return 0;
    }
    (u64::MAX >> (63 - (to - from))) << (from - first)
}

/// The slots within `tolerance` hours of `hour` (both ways, round the end of the week),
/// as a schedule mask. `hour` must be a slot; a tolerance wider than [`MAX_TOLERANCE`] is
/// cut to it.
#[inline(always)]
pub fn window(hour: u8, tolerance: u8) -> Schedule {
    let week = HOURS_PER_WEEK as u32;
    let hour = (hour as u32) % week;
    let tolerance = if tolerance > MAX_TOLERANCE {
        MAX_TOLERANCE as u32
    } else {
        tolerance as u32
    };
    // Two linear spans: the window, and what of it wrapped past either end of the week.
    let (first, second) = if hour < tolerance {
        ((0, hour + tolerance), (week + hour - tolerance, week - 1))
    } else if hour + tolerance >= week {
        ((hour - tolerance, week - 1), (0, hour + tolerance - week))
    } else {
        ((hour - tolerance, hour + tolerance), (1, 0))
    };
    let in_word = |word: u32| {
        let bits = span_in_word(first.0, first.1, word);
        if second.0 <= second.1 {
            bits | span_in_word(second.0, second.1, word)
        } else {
            bits
        }
    };
    [in_word(0), in_word(1), in_word(2)]
}

/// Whether a flow whose entry has `schedule` is on schedule at `hour`: the entry saw it in
/// `hour` or within `tolerance` hours of it. A schedule that records nothing, or an hour
/// the datapath was not told, is never off schedule.
#[inline(always)]
pub fn on_schedule(schedule: &Schedule, hour: u8, tolerance: u8) -> bool {
    if !is_slot(hour) || !is_recorded(schedule) {
        return true;
    }
    has_any(schedule, &window(hour, tolerance))
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    fn of(hours: &[u8]) -> Schedule {
        let mut s = [0; SCHEDULE_WORDS];
        for &h in hours {
            record(&mut s, h);
        }
        s
    }

    #[test]
    fn slots_of_the_week() {
        assert_eq!(hour_of_week(0, 0), 0);
        assert_eq!(hour_of_week(0, 23), 23);
        assert_eq!(hour_of_week(2, 9), 57);
        assert_eq!(hour_of_week(6, 23), 167);
        assert_eq!(hour_of_week(7, 0), HOUR_UNKNOWN);
        assert_eq!(hour_of_week(0, 24), HOUR_UNKNOWN);
        assert!(is_slot(167) && !is_slot(168) && !is_slot(HOUR_UNKNOWN));
    }

    #[test]
    fn recording_sets_one_bit_per_slot() {
        let mut s = [0; SCHEDULE_WORDS];
        assert!(!is_recorded(&s));
        assert!(record(&mut s, 63));
        assert!(!record(&mut s, 63), "the same slot again is not new");
        assert!(record(&mut s, 64));
        assert!(record(&mut s, 167));
        assert!(!record(&mut s, HOUR_UNKNOWN));
        assert!(!record(&mut s, 168));
        assert_eq!(s, [1 << 63, 1, 1 << 39]);
        assert_eq!(hours(&s), 3);
        assert!(has(&s, 64) && !has(&s, 65) && !has(&s, HOUR_UNKNOWN));
    }

    #[test]
    fn windows_wrap_round_the_week_and_cross_words() {
        let slots = |m: Schedule| {
            (0..HOURS_PER_WEEK)
                .filter(|&h| has(&m, h))
                .collect::<Vec<_>>()
        };
        assert_eq!(slots(window(10, 0)), [10]);
        assert_eq!(slots(window(10, 2)), [8, 9, 10, 11, 12]);
        assert_eq!(slots(window(0, 1)), [0, 1, 167]);
        assert_eq!(slots(window(167, 2)), [0, 1, 165, 166, 167]);
        assert_eq!(slots(window(64, 1)), [63, 64, 65]);
        assert_eq!(slots(window(127, 1)), [126, 127, 128]);
        // Cut to MAX_TOLERANCE.
        assert_eq!(hours(&window(100, 200)), 2 * MAX_TOLERANCE as u32 + 1);
        for hour in 0..HOURS_PER_WEEK {
            for tolerance in 0..=MAX_TOLERANCE {
                let mask = window(hour, tolerance);
                assert_eq!(
                    hours(&mask),
                    2 * tolerance as u32 + 1,
                    "{hour} ±{tolerance}"
                );
                assert!(has(&mask, hour));
            }
        }
    }

    /// The hour boundary: a badge reader seen Monday to Friday 07:00–18:59.
    #[test]
    fn on_schedule_with_tolerance_at_the_edge_of_a_shift() {
        let mut day_shift = Vec::new();
        for day in 0..5 {
            for hour in 7..19 {
                day_shift.push(hour_of_week(day, hour));
            }
        }
        let s = of(&day_shift);
        let monday = |h| hour_of_week(0, h);
        // (hour, tolerance) -> on schedule
        let rows = [
            (monday(7), 0, true),
            (monday(18), 0, true),
            (monday(19), 0, false),
            (monday(6), 0, false),
            (monday(19), 1, true),
            (monday(6), 1, true),
            (monday(20), 1, false),
            (monday(5), 1, false),
            (monday(20), 2, true),
            (monday(3), 2, false),
            // Saturday noon is far from any shift; Sunday 23:00 is an hour before nothing.
            (hour_of_week(5, 12), 3, false),
            (hour_of_week(6, 23), 1, false),
            // Friday 19:00 with tolerance 1 counts; Saturday 00:00 does not.
            (hour_of_week(4, 19), 1, true),
            (hour_of_week(5, 0), 1, false),
        ];
        for (hour, tolerance, want) in rows {
            assert_eq!(
                on_schedule(&s, hour, tolerance),
                want,
                "slot {hour} ±{tolerance}"
            );
        }
        // Round the end of the week: Sunday 23:00 learned, Monday 00:00 within 1.
        let late = of(&[hour_of_week(6, 23)]);
        assert!(on_schedule(&late, hour_of_week(0, 0), 1));
        assert!(!on_schedule(&late, hour_of_week(0, 0), 0));
    }

    #[test]
    fn nothing_recorded_or_no_hour_is_never_off_schedule() {
        assert!(on_schedule(&[0; SCHEDULE_WORDS], 40, 0));
        assert!(on_schedule(&of(&[1]), HOUR_UNKNOWN, 0));
        assert!(on_schedule(&of(&[1]), 200, 0));
        assert!(!on_schedule(&of(&[1]), 40, 0));
    }
}

//! The site's week: the local hour of the week in the policy's time zone (what the
//! controller writes into CONFIG for the baseline's schedules), and schedules as people
//! read and write them (`mon-fri 07-19; sat 10-12`). The slot math itself is
//! `monitor_common::schedule`.

use monitor_common::schedule::{self, HOURS_PER_WEEK, SCHEDULE_WORDS, Schedule};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The time zone named `name` (IANA), or why not.
pub fn time_zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    jiff::tz::TimeZone::get(name).map_err(|e| {
        format!(
            "`{name}` is not a time zone of this system's database (such as Europe/Berlin): {e}"
        )
    })
}

/// The local hour of the week (0 = Monday 00:00) at `unix` seconds in the time zone named
/// `zone` (`None`: the system's), or why it cannot be told.
pub fn hour_of_week_at(unix: i64, zone: Option<&str>) -> Result<u8, String> {
    let tz = match zone {
        Some(name) => time_zone(name)?,
        None => jiff::tz::TimeZone::system(),
    };
    let timestamp = jiff::Timestamp::from_second(unix).map_err(|e| e.to_string())?;
    let local = timestamp.to_zoned_datetime(tz);
    let weekday = local.weekday().to_monday_zero_offset() as u8;
    Ok(schedule::hour_of_week(weekday, local.hour() as u8))
}

/// `mon 10:00`: a slot as people read it.
pub fn slot_name(hour: u8) -> String {
    if !schedule::is_slot(hour) {
        return "unknown".into();
    }
    format!("{} {:02}:00", DAYS[usize::from(hour / 24)], hour % 24)
}

/// A day's hours as half-open ranges: `07-19,22-24`.
fn day_text(schedule: &Schedule, day: u8) -> String {
    let mut spans = Vec::new();
    let mut hour = 0u8;
    while hour < 24 {
        if schedule::has(schedule, day * 24 + hour) {
            let start = hour;
            while hour < 24 && schedule::has(schedule, day * 24 + hour) {
                hour += 1;
            }
            spans.push(format!("{start:02}-{hour:02}"));
        } else {
            hour += 1;
        }
    }
    spans.join(",")
}

/// A schedule as text: days with the same hours grouped (`mon-fri 07-19; sat 10-12`),
/// hours as half-open ranges (`07-19` is 07:00 to 19:00). Empty for a schedule that
/// records nothing.
pub fn format(schedule: &Schedule) -> String {
    let days: Vec<String> = (0..7).map(|d| day_text(schedule, d)).collect();
    let mut parts = Vec::new();
    let mut day = 0;
    while day < 7 {
        let mut last = day;
        while last + 1 < 7 && days[last + 1] == days[day] {
            last += 1;
        }
        if !days[day].is_empty() {
            if last == day {
                parts.push(format!("{} {}", DAYS[day], days[day]));
            } else {
                parts.push(format!("{}-{} {}", DAYS[day], DAYS[last], days[day]));
            }
        }
        day = last + 1;
    }
    parts.join("; ")
}

fn day_of(name: &str) -> Result<u8, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(name))
        .map(|d| d as u8)
        .ok_or_else(|| format!("`{name}` is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

fn hour_of(text: &str, most: u8) -> Result<u8, String> {
    text.parse::<u8>()
        .ok()
        .filter(|h| *h <= most)
        .ok_or_else(|| format!("`{text}` is not an hour from 0 to {most}"))
}

/// Reads what [`format`] writes; the error names the part that is wrong.
pub fn parse(text: &str) -> Result<Schedule, String> {
    let mut schedule = [0u64; SCHEDULE_WORDS];
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (days, hours) = part
            .split_once(' ')
            .ok_or_else(|| format!("`{part}`: give days and hours, such as `mon-fri 07-19`"))?;
        let (first, last) = match days.split_once('-') {
            Some((a, b)) => (day_of(a)?, day_of(b)?),
            None => (day_of(days)?, day_of(days)?),
        };
        if last < first {
            return Err(format!("`{days}`: the days run backwards"));
        }
        for span in hours.split(',').map(str::trim) {
            let (from, to) = span
                .split_once('-')
                .ok_or_else(|| format!("`{span}` in `{part}`: give hours as FROM-TO (07-19)"))?;
            let (from, to) = (hour_of(from, 23)?, hour_of(to, 24)?);
            if to <= from {
                return Err(format!("`{span}` in `{part}`: the hours run backwards"));
            }
            for day in first..=last {
                for hour in from..to {
                    schedule::record(&mut schedule, day * 24 + hour);
                }
            }
        }
    }
    Ok(schedule)
}

/// Hours of the week a schedule covers, as people read it (`120 of 168 hours`).
pub fn coverage_text(schedule: &Schedule) -> String {
    format!("{} of {HOURS_PER_WEEK} hours", schedule::hours(schedule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_as_text_round_trip() {
        let mut s = [0u64; SCHEDULE_WORDS];
        for day in 0..5 {
            for hour in 7..19 {
                schedule::record(&mut s, schedule::hour_of_week(day, hour));
            }
        }
        schedule::record(&mut s, schedule::hour_of_week(2, 22));
        schedule::record(&mut s, schedule::hour_of_week(2, 23));
        schedule::record(&mut s, schedule::hour_of_week(6, 0));
        let text = format(&s);
        assert_eq!(
            text,
            "mon-tue 07-19; wed 07-19,22-24; thu-fri 07-19; sun 00-01"
        );
        assert_eq!(parse(&text), Ok(s));
        assert_eq!(format(&[0; SCHEDULE_WORDS]), "");
        assert_eq!(parse(""), Ok([0; SCHEDULE_WORDS]));
        assert_eq!(
            format(&[u64::MAX, u64::MAX, (1 << 40) - 1]),
            "mon-sun 00-24"
        );
        assert_eq!(coverage_text(&s), "63 of 168 hours");
    }

    #[test]
    fn bad_schedules_are_named() {
        for (text, names) in [
            ("mon", "give days and hours"),
            ("moon 07-19", "`moon` is not a day"),
            ("fri-mon 07-19", "backwards"),
            ("mon 19-07", "backwards"),
            ("mon 07-25", "`25` is not an hour"),
            ("mon 07", "FROM-TO"),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(names), "{text}: {err}");
        }
    }

    #[test]
    fn local_hours_of_the_week() {
        // 2027-01-18 is a Monday; 09:30 UTC is 10:30 in Berlin (CET, UTC+1).
        let monday_0930_utc = 1_800_264_600;
        assert_eq!(hour_of_week_at(monday_0930_utc, Some("UTC")), Ok(9));
        assert_eq!(
            hour_of_week_at(monday_0930_utc, Some("Europe/Berlin")),
            Ok(10)
        );
        // Honolulu (UTC-10) is still on Sunday, 23:30: the last slot of the week.
        assert_eq!(
            hour_of_week_at(monday_0930_utc, Some("Pacific/Honolulu")),
            Ok(6 * 24 + 23)
        );
        assert!(hour_of_week_at(0, Some("Mars/Olympus")).is_err());
        assert_eq!(slot_name(10), "mon 10:00");
        assert_eq!(slot_name(167), "sun 23:00");
    }
}

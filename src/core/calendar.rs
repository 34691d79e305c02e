//! UTC calendar arithmetic for reports and alert periods: days since the Unix epoch, civil dates,
//! ISO weeks (Monday start) and months, and parsing of report time bounds.
//!
//! Everything is integer arithmetic on UTC milliseconds; there are no time zones other than UTC.
//! Days are counted from 1970-01-01 (day 0, a Thursday). The civil-date conversions use the
//! proleptic Gregorian calendar with 400-year eras, valid for every day a `u64` millisecond time
//! can express from 1970 on.

use crate::core::error::GatewayError;

/// Milliseconds in a UTC day (no leap seconds in Unix time).
pub const DAY_MS: u64 = 86_400_000;

/// The latest time accepted in a report bound: 9999-12-31T23:59:59.999Z.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// The UTC day (days since 1970-01-01) that contains `ms`.
pub fn day_of(ms: u64) -> u64 {
    ms / DAY_MS
}

/// A civil date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u32,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

/// Days in `month` of `year`.
pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (which must be on or after it and valid).
pub fn days_from_civil(date: Date) -> u64 {
    // Shift the year to start in March so the leap day is the last day of the "year".
    let (y, m) = if date.month <= 2 {
        (u64::from(date.year) - 1, u64::from(date.month) + 9)
    } else {
        (u64::from(date.year), u64::from(date.month) - 3)
    };
    let era = y / 400;
    let year_of_era = y % 400;
    let day_of_year = (153 * m + 2) / 5 + u64::from(date.day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719_468 = days from 0000-03-01 to 1970-01-01.
    (era * 146_097 + day_of_era).saturating_sub(719_468)
}

/// The civil date of a day since 1970-01-01.
pub fn civil_from_days(days: u64) -> Date {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (year_of_era + era * 400 + u64::from(month <= 2)) as u32;
    Date { year, month, day }
}

/// A time bucket of a report or an alert period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Bucket {
    /// A UTC day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A UTC calendar month.
    Month,
}

impl Bucket {
    /// The first day of the bucket that contains `day`.
    pub fn start_day(self, day: u64) -> u64 {
        match self {
            Bucket::Day => day,
            // Day 0 was a Thursday: Mondays are the days where (day + 3) % 7 == 0.
            Bucket::Week => ((day + 3) / 7 * 7).saturating_sub(3),
            Bucket::Month => {
                let d = civil_from_days(day);
                days_from_civil(Date { day: 1, ..d })
            }
        }
    }

    /// The label of the bucket that contains `day`: `2026-11-28`, `2026-W48`, `2026-11`.
    pub fn label(self, day: u64) -> String {
        match self {
            Bucket::Day => {
                let d = civil_from_days(day);
                format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
            }
            Bucket::Week => {
                let (year, week) = iso_week(day);
                format!("{year:04}-W{week:02}")
            }
            Bucket::Month => {
                let d = civil_from_days(day);
                format!("{:04}-{:02}", d.year, d.month)
            }
        }
    }
}

/// The ISO-8601 week-numbering year and week (1..=53) of a day.
///
/// A week belongs to the year of its Thursday; week 1 is the week with the year's first Thursday.
/// The days before the first Monday of 1970 (1970-01-01 to 01-04) are in 1970-W01, whose Monday
/// was 1969-12-29.
pub fn iso_week(day: u64) -> (u32, u32) {
    // Thursday of the same Monday-start week (day 0 is itself a Thursday).
    let thursday = (day + 3) / 7 * 7;
    let date = civil_from_days(thursday);
    let ordinal = thursday
        - days_from_civil(Date {
            year: date.year,
            month: 1,
            day: 1,
        });
    (date.year, (ordinal / 7 + 1) as u32)
}

/// Parses a report time bound: epoch milliseconds (`1764288000000`) or ISO-8601 in UTC:
/// `2026-11-28`, `2026-11-28T10:00Z`, `2026-11-28T10:00:00Z`, `2026-11-28T10:00:00.123Z`, with
/// `Z`, `+00:00` or any other `±hh:mm` offset (converted to UTC). A space may replace the `T`.
pub fn parse_time(param: &str, value: &str) -> Result<u64, GatewayError> {
    let invalid = || {
        GatewayError::invalid_param(
            param,
            format!(
                "`{param}` must be epoch milliseconds or an ISO-8601 UTC time such as \
                 2026-11-28 or 2026-11-28T10:00:00Z (got `{value}`)."
            ),
        )
    };
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return v
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms <= MAX_TIME_MS)
            .ok_or_else(invalid);
    }
    parse_iso(v).ok_or_else(invalid)
}

fn digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn parse_iso(v: &str) -> Option<u64> {
    let b = v.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = u32::try_from(digits(&b[0..4])?).ok()?;
    let month = u32::try_from(digits(&b[5..7])?).ok()?;
    let day = u32::try_from(digits(&b[8..10])?).ok()?;
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    let mut ms = days_from_civil(Date { year, month, day }) * DAY_MS;
    let rest = &b[10..];
    if rest.is_empty() {
        return Some(ms);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let hour = digits(&rest[1..3])?;
    let minute = digits(&rest[4..6])?;
    if hour > 23 || minute > 59 {
        return None;
    }
    ms += (hour * 60 + minute) * 60_000;
    let mut i = 6;
    if rest.get(i) == Some(&b':') {
        let second = digits(rest.get(i + 1..i + 3)?)?;
        if second > 59 {
            return None;
        }
        ms += second * 1000;
        i += 3;
        if rest.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while rest.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if end == start {
                return None;
            }
            // Milliseconds: the first three fraction digits (further digits are dropped).
            let frac = &rest[start..end.min(start + 3)];
            let scale = 10u64.pow(3 - frac.len() as u32);
            ms += digits(frac)? * scale;
            i = end;
        }
    }
    let zone = &rest[i..];
    match zone {
        b"Z" | b"z" => {}
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let offset = (digits(&[*h1, *h2])? * 60 + digits(&[*m1, *m2])?) * 60_000;
            if offset > 24 * 3_600_000 {
                return None;
            }
            // Local time = UTC + offset, so UTC = local - offset.
            ms = if *sign == b'+' {
                ms.checked_sub(offset)?
            } else {
                ms + offset
            };
        }
        _ => return None,
    }
    Some(ms).filter(|ms| *ms <= MAX_TIME_MS)
}

/// ISO-8601 UTC text of a millisecond time, e.g. `2026-11-28T10:00:00.000Z`.
pub fn format_time(ms: u64) -> String {
    let d = civil_from_days(ms / DAY_MS);
    let in_day = ms % DAY_MS;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        d.year,
        d.month,
        d.day,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u32, month: u32, day: u32) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        // Walk every day from 1970 to 2500 and check the conversions agree with a naive count.
        let mut expected = date(1970, 1, 1);
        for days in 0..193_000u64 {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            assert_eq!(days_from_civil(expected), days);
            expected = if expected.day < days_in_month(expected.year, expected.month) {
                Date {
                    day: expected.day + 1,
                    ..expected
                }
            } else if expected.month < 12 {
                date(expected.year, expected.month + 1, 1)
            } else {
                date(expected.year + 1, 1, 1)
            };
        }
    }

    #[test]
    fn known_days() {
        assert_eq!(days_from_civil(date(2000, 3, 1)), 11_017);
        assert_eq!(days_from_civil(date(2026, 11, 28)), 20_785);
        assert_eq!(civil_from_days(20_785), date(2026, 11, 28));
        assert_eq!(
            civil_from_days(days_from_civil(date(2024, 2, 29))),
            date(2024, 2, 29)
        );
    }

    #[test]
    fn weeks_start_on_monday_utc() {
        // 2026-11-28 is a Saturday; its week started Monday 2026-11-23.
        let sat = days_from_civil(date(2026, 11, 28));
        assert_eq!(
            civil_from_days(Bucket::Week.start_day(sat)),
            date(2026, 11, 23)
        );
        let mon = days_from_civil(date(2026, 11, 23));
        assert_eq!(Bucket::Week.start_day(mon), mon);
        let sun = days_from_civil(date(2026, 11, 29));
        assert_eq!(Bucket::Week.start_day(sun), mon);
        assert_eq!(Bucket::Week.start_day(sun + 1), sun + 1);
        // Every week start is a Monday and at most 6 days back.
        for day in 4..5000 {
            let start = Bucket::Week.start_day(day);
            assert!(day - start < 7);
            assert_eq!((start + 3) % 7, 0, "day {day}");
        }
        // The first days of 1970 belong to the week of Monday 1969-12-29: clamp to day 0.
        assert_eq!(Bucket::Week.start_day(0), 0);
        assert_eq!(Bucket::Week.start_day(3), 0);
        assert_eq!(Bucket::Week.start_day(4), 4);
    }

    #[test]
    fn iso_week_numbers() {
        let w = |y, m, d| iso_week(days_from_civil(date(y, m, d)));
        assert_eq!(w(2026, 11, 28), (2026, 48));
        assert_eq!(w(1970, 1, 1), (1970, 1));
        // Years whose first days belong to the previous year's last week, and the reverse.
        assert_eq!(w(2021, 1, 3), (2020, 53));
        assert_eq!(w(2021, 1, 4), (2021, 1));
        assert_eq!(w(2024, 12, 30), (2025, 1));
        assert_eq!(w(2027, 1, 1), (2026, 53));
        assert_eq!(w(2015, 12, 31), (2015, 53));
        assert_eq!(
            Bucket::Week.label(days_from_civil(date(2021, 1, 3))),
            "2020-W53"
        );
    }

    #[test]
    fn months_and_days() {
        let day = days_from_civil(date(2026, 11, 28));
        assert_eq!(
            Bucket::Month.start_day(day),
            days_from_civil(date(2026, 11, 1))
        );
        assert_eq!(Bucket::Month.label(day), "2026-11");
        assert_eq!(Bucket::Day.label(day), "2026-11-28");
        assert_eq!(Bucket::Day.start_day(day), day);
        let leap = days_from_civil(date(2024, 2, 29));
        assert_eq!(
            Bucket::Month.start_day(leap),
            days_from_civil(date(2024, 2, 1))
        );
    }

    #[test]
    fn parses_epoch_and_iso() {
        let day_ms = days_from_civil(date(2026, 11, 28)) * DAY_MS;
        assert_eq!(
            parse_time("start", "1764288000000").unwrap(),
            1_764_288_000_000
        );
        assert_eq!(parse_time("start", "2026-11-28").unwrap(), day_ms);
        assert_eq!(
            parse_time("start", "2026-11-28T10:00Z").unwrap(),
            day_ms + 36_000_000
        );
        assert_eq!(
            parse_time("start", "2026-11-28T10:00:05Z").unwrap(),
            day_ms + 36_005_000
        );
        assert_eq!(
            parse_time("start", "2026-11-28T10:00:05.5Z").unwrap(),
            day_ms + 36_005_500
        );
        assert_eq!(
            parse_time("start", "2026-11-28T10:00:05.123456Z").unwrap(),
            day_ms + 36_005_123
        );
        assert_eq!(
            parse_time("start", "2026-11-28T10:00:00+00:00").unwrap(),
            day_ms + 36_000_000
        );
        assert_eq!(
            parse_time("start", "2026-11-28T10:00:00+02:00").unwrap(),
            day_ms + 28_800_000
        );
        assert_eq!(
            parse_time("start", "2026-11-28 10:00:00-01:30").unwrap(),
            day_ms + 41_400_000
        );
        assert_eq!(format_time(day_ms + 36_005_123), "2026-11-28T10:00:05.123Z");
    }

    #[test]
    fn rejects_bad_times() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-29",
            "2026-11-28T24:00Z",
            "2026-11-28T10:00",
            "2026-11-28T10:00:00",
            "2026-11-28T10:00:00.Z",
            "2026-11-28T10:00:00+0200",
            "1969-12-31",
            "-5",
            "99999999999999999999",
            "1970-01-01T00:00:00+01:00",
        ] {
            let err = parse_time("end", bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
            assert_eq!(err.param.as_deref(), Some("end"));
        }
    }
}

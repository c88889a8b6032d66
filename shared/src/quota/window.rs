//! Period windows in UTC: where the current one started and when it resets.

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use super::Period;

/// The window of `period` holding `at`: `[start, end)`.
pub fn bounds(period: Period, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let d = at.date_naive();
    let start = match period {
        Period::Minute => at
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(at),
        Period::Hour => at
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(at),
        Period::Day => Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default()),
        Period::Month => Utc.from_utc_datetime(
            &d.with_day(1)
                .unwrap_or(d)
                .and_hms_opt(0, 0, 0)
                .unwrap_or_default(),
        ),
    };
    let end = match period {
        Period::Minute => start + chrono::Duration::minutes(1),
        Period::Hour => start + chrono::Duration::hours(1),
        Period::Day => start + chrono::Duration::days(1),
        Period::Month => {
            let (y, m) = if start.month() == 12 {
                (start.year() + 1, 1)
            } else {
                (start.year(), start.month() + 1)
            };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                .single()
                .unwrap_or(start)
        }
    };
    (start, end)
}

/// Microseconds since the epoch.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 30).unwrap();
        let (s, e) = bounds(Period::Month, at);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        let (s, e) = bounds(Period::Minute, at);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap());
        assert_eq!(e, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        let (s, _) = bounds(Period::Day, at);
        assert_eq!(s, Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap());
    }
}

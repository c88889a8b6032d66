//! Period windows in UTC: the window of a period holding an instant
//! (`[start, end)`: where it started and when it resets), and [`Windows`],
//! the current window of each period cached for the quota hot path.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use super::Period;
use super::decide::Window;

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

/// The current window of each period, cached: a PERIODIC decision reads
/// two numbers instead of doing calendar arithmetic.
///
/// Per period (MINUTE, HOUR, DAY, MONTH), `[start, end)` in whole seconds
/// packed in one word (start high, end low), so a reader never sees the
/// start of one window with the end of another.
#[derive(Default)]
pub struct Windows([AtomicU64; 4]);

const US: i64 = 1_000_000;

impl Windows {
    /// The window of `period` holding `now` (µs since the epoch).
    #[inline]
    pub fn get(&self, period: Period, now: i64) -> Window {
        let cell = &self.0[period as usize];
        let packed = cell.load(Ordering::Relaxed);
        let (start, end) = (((packed >> 32) as i64) * US, ((packed as u32) as i64) * US);
        if start <= now && now < end {
            return (start, end);
        }
        self.refresh(cell, period, now)
    }

    #[cold]
    fn refresh(&self, cell: &AtomicU64, period: Period, now: i64) -> Window {
        let at = DateTime::from_timestamp_micros(now).unwrap_or_default();
        let (a, b) = bounds(period, at);
        let (s, e) = (a.timestamp(), b.timestamp());
        if let (Ok(s32), Ok(e32)) = (u32::try_from(s), u32::try_from(e)) {
            // Another thread may store meanwhile; both store the same window.
            cell.store((u64::from(s32) << 32) | u64::from(e32), Ordering::Relaxed);
        }
        (micros(a), micros(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_windows_match_the_calendar() {
        let w = Windows::default();
        for (i, p) in [Period::Minute, Period::Hour, Period::Day, Period::Month]
            .into_iter()
            .enumerate()
        {
            let mut t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
            for _ in 0..3 {
                let now = micros(t);
                let (a, b) = bounds(p, t);
                assert_eq!(w.get(p, now), (micros(a), micros(b)), "{i}");
                assert_eq!(w.get(p, now), (micros(a), micros(b)));
                t += chrono::Duration::seconds(1);
            }
        }
    }

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

//! The current window of each period, cached: a PERIODIC decision reads two
//! numbers instead of doing calendar arithmetic.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::DateTime;
use shared::quota::decide::Window;
use shared::quota::{Period, window};

/// Per period (MINUTE, HOUR, DAY, MONTH), `[start, end)` in whole seconds
/// packed in one word (start high, end low), so a reader never sees the
/// start of one window with the end of another.
#[derive(Default)]
pub struct Windows([AtomicU64; 4]);

const US: i64 = 1_000_000;

impl Windows {
    /// The window of `period` holding `now` (µs since the epoch).
    pub fn get(&self, period: Period, now: i64) -> Window {
        let cell = &self.0[period as usize];
        let packed = cell.load(Ordering::Relaxed);
        let (start, end) = (((packed >> 32) as i64) * US, ((packed as u32) as i64) * US);
        if start <= now && now < end {
            return (start, end);
        }
        let at = DateTime::from_timestamp_micros(now).unwrap_or_default();
        let (a, b) = window::bounds(period, at);
        let (s, e) = (a.timestamp(), b.timestamp());
        if let (Ok(s32), Ok(e32)) = (u32::try_from(s), u32::try_from(e)) {
            // Another thread may store meanwhile; both store the same window.
            cell.store((u64::from(s32) << 32) | u64::from(e32), Ordering::Relaxed);
        }
        (window::micros(a), window::micros(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn cached_windows_match_the_calendar() {
        let w = Windows::default();
        for (i, p) in [Period::Minute, Period::Hour, Period::Day, Period::Month]
            .into_iter()
            .enumerate()
        {
            let mut t = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
            for _ in 0..3 {
                let now = window::micros(t);
                let (a, b) = window::bounds(p, t);
                assert_eq!(w.get(p, now), (window::micros(a), window::micros(b)), "{i}");
                assert_eq!(w.get(p, now), (window::micros(a), window::micros(b)));
                t += chrono::Duration::seconds(1);
            }
        }
    }
}

//! The time logic of `[[trigger.schedule]]`: when a schedule fires, and which fire is due.
//!
//! Missed fires are reported, not replayed: after the host was down, only the latest fire time
//! that passed runs, with the number of earlier ones skipped. `every` fires are aligned to
//! multiples of the interval since the Unix epoch, so a restart keeps the same grid; `cron`
//! expressions (with seconds: `sec min hour day-of-month month day-of-week`) run in UTC.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// At every multiple of this interval since the Unix epoch.
    Every(Duration),
    /// At the times of a cron expression, in UTC.
    Cron(Box<cron::Schedule>),
}

/// The fire that is due now, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The latest fire time at or before now that has not run.
    pub fire_ms: Option<u64>,
    /// Earlier fire times after the last run that were skipped (at most [`MAX_COUNTED`] for cron).
    pub missed: u64,
}

/// Missed cron fires are counted up to this many.
pub const MAX_COUNTED: u64 = 10_000;

/// The longest `every` interval: 366 days.
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

/// An interval in whole milliseconds, at least 1 (an `Every` made in code may hold anything).
fn interval_ms(every: &Duration) -> u64 {
    u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Schedule {
    /// `every = "10s"`: a duration from one second to [`MAX_EVERY`] (366 days).
    pub fn every(text: &str) -> Result<Schedule, String> {
        let expected = "expected a duration of at least 1s and at most 366days like \"10s\" or \"5m\"";
        match humantime::parse_duration(text) {
            Ok(d) if (Duration::from_secs(1)..=MAX_EVERY).contains(&d) => Ok(Schedule::Every(d)),
            Ok(_) => Err(format!("`every = \"{text}\"`: {expected}")),
            Err(e) => Err(format!("`every = \"{text}\"`: {e}; {expected}")),
        }
    }

    /// `cron = "0 */5 * * * *"`: a cron expression with seconds, in UTC.
    pub fn cron(text: &str) -> Result<Schedule, String> {
        cron::Schedule::from_str(text).map(|s| Schedule::Cron(Box::new(s))).map_err(|e| {
            format!(
                "`cron = \"{text}\"`: {e}; expected the fields `sec min hour day-of-month month day-of-week [year]`, e.g. \"0 */5 * * * *\" (every 5 minutes)"
            )
        })
    }

    /// The first fire time strictly after `t_ms` (ms since the Unix epoch), if there is one.
    pub fn next_after(&self, t_ms: u64) -> Option<u64> {
        match self {
            Schedule::Every(every) => {
                let every = interval_ms(every);
                (t_ms / every + 1).checked_mul(every)
            }
            Schedule::Cron(cron) => {
                let after = DateTime::<Utc>::from_timestamp_millis(i64::try_from(t_ms).ok()?)?;
                let next = cron.after(&after).next()?;
                u64::try_from(next.timestamp_millis()).ok()
            }
        }
    }

    /// The fire due at `now_ms` after the last run at `last_fire_ms` (none: nothing ran yet, and
    /// nothing is due before the first fire after now).
    pub fn due(&self, last_fire_ms: Option<u64>, now_ms: u64) -> Due {
        let none = Due { fire_ms: None, missed: 0 };
        let Some(last) = last_fire_ms else { return none };
        let Some(first) = self.next_after(last).filter(|&t| t <= now_ms) else { return none };
        match self {
            Schedule::Every(every) => {
                let every = interval_ms(every);
                let latest = now_ms / every * every;
                Due { fire_ms: Some(latest), missed: (latest - first) / every }
            }
            Schedule::Cron(_) => {
                let (mut latest, mut missed) = (first, 0);
                while let Some(next) = self.next_after(latest).filter(|&t| t <= now_ms) {
                    latest = next;
                    missed += 1;
                    if missed == MAX_COUNTED {
                        // Stop counting; run the latest fire before now.
                        return Due { fire_ms: Some(self.last_at_or_before(now_ms).unwrap_or(latest)), missed };
                    }
                }
                Due { fire_ms: Some(latest), missed }
            }
        }
    }

    /// The latest cron fire time at or before `t_ms`, searching back up to a day.
    fn last_at_or_before(&self, t_ms: u64) -> Option<u64> {
        let day = 24 * 3600 * 1000;
        let mut fire = self.next_after(t_ms.checked_sub(day)?)?;
        if fire > t_ms {
            return None;
        }
        while let Some(next) = self.next_after(fire).filter(|&n| n <= t_ms) {
            fire = next;
        }
        Some(fire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fires_on_an_aligned_grid_strictly_after() {
        let s = Schedule::every("10s").unwrap();
        assert_eq!(s.next_after(0), Some(10_000));
        assert_eq!(s.next_after(10_000), Some(20_000));
        assert_eq!(s.next_after(12_345), Some(20_000));
    }

    #[test]
    fn missed_fires_are_counted_and_only_the_latest_runs() {
        let s = Schedule::every("10s").unwrap();
        assert_eq!(s.due(None, 1_000_000), Due { fire_ms: None, missed: 0 });
        assert_eq!(s.due(Some(100_000), 105_000), Due { fire_ms: None, missed: 0 });
        assert_eq!(s.due(Some(100_000), 110_000), Due { fire_ms: Some(110_000), missed: 0 });
        assert_eq!(s.due(Some(100_000), 145_000), Due { fire_ms: Some(140_000), missed: 3 });
        let year = 365 * 24 * 3600 * 1000;
        let s = Schedule::every("1s").unwrap();
        assert_eq!(s.due(Some(0), year), Due { fire_ms: Some(year), missed: year / 1000 - 1 });
    }

    #[test]
    fn cron_with_seconds_in_utc() {
        let s = Schedule::cron("0 */5 * * * *").unwrap();
        assert_eq!(s.next_after(0), Some(300_000));
        assert_eq!(s.next_after(300_000), Some(600_000));
        assert_eq!(s.due(Some(0), 1_000_000), Due { fire_ms: Some(900_000), missed: 2 });
        let every_second = Schedule::cron("* * * * * *").unwrap();
        let due = every_second.due(Some(0), 365 * 24 * 3600 * 1000);
        assert_eq!(due, Due { fire_ms: Some(365 * 24 * 3600 * 1000), missed: MAX_COUNTED });
    }

    #[test]
    fn bad_schedules_say_what_was_expected() {
        let e = Schedule::every("0s").unwrap_err();
        assert!(e.contains("at least 1s and at most 366days"), "{e}");
        assert!(Schedule::every("366days").is_ok());
        // 2^64 ms: once truncated to 0 ms, a division by zero at the first fire.
        for too_long in ["367days", "18446744073709551s 616ms", "600000000years"] {
            let e = Schedule::every(too_long).unwrap_err();
            assert!(e.contains(too_long) && e.contains("at least 1s and at most 366days"), "{e}");
        }
        let zero = Schedule::Every(Duration::ZERO);
        assert_eq!(zero.next_after(5), Some(6), "an interval made in code is at least 1 ms");
        let e = Schedule::every("soon").unwrap_err();
        assert!(e.contains("soon") && e.contains("\"10s\""), "{e}");
        let e = Schedule::cron("every monday").unwrap_err();
        assert!(e.contains("every monday") && e.contains("sec min hour"), "{e}");
    }
}

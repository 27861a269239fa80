//! The last hour of one function, a slot per minute: calls, errors, and a latency histogram fine
//! enough for percentiles (four buckets per doubling: within 19%). For the dashboard's charts;
//! kept in memory only, so a restart starts a new hour.

use serde::Serialize;

/// Minutes kept.
pub const MINUTES: u64 = 60;

/// Latency buckets per doubling: bucket `i` holds calls of 2^(i/4) to 2^((i+1)/4) µs.
const PER_DOUBLING: f64 = 4.0;

/// Buckets: up to 2^32 µs (71 minutes), longer calls in the last.
const BUCKETS: usize = 128;

/// One minute of one function.
#[derive(Clone)]
struct Minute {
    /// Minutes since the Unix epoch.
    minute: u64,
    calls: u32,
    errors: u32,
    latency: [u32; BUCKETS],
}

/// One minute of one function, as the API answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Point {
    /// The minute's start, ms since the Unix epoch.
    pub minute_ms: u64,
    /// Calls that finished in it.
    pub calls: u32,
    /// Those that did not end `ok`.
    pub errors: u32,
    /// Median latency in µs (the upper bound of the bucket holding it, as for the others).
    pub p50_us: u64,
    /// 90th percentile latency in µs.
    pub p90_us: u64,
    /// 99th percentile latency in µs.
    pub p99_us: u64,
}

/// The last hour of one function.
#[derive(Default)]
pub(super) struct History {
    /// Slot `minute % MINUTES`; empty until the first call.
    minutes: Vec<Minute>,
}

impl History {
    /// Count a call that finished at `now_ms` after `micros`.
    pub(super) fn record(&mut self, now_ms: u64, micros: u64, error: bool) {
        if self.minutes.is_empty() {
            let empty = Minute { minute: u64::MAX, calls: 0, errors: 0, latency: [0; BUCKETS] };
            self.minutes = vec![empty; MINUTES as usize];
        }
        let minute = now_ms / 60_000;
        let slot = &mut self.minutes[(minute % MINUTES) as usize];
        if slot.minute != minute {
            *slot = Minute { minute, calls: 0, errors: 0, latency: [0; BUCKETS] };
        }
        slot.calls += 1;
        slot.errors += u32::from(error);
        slot.latency[bucket(micros)] += 1;
    }

    /// The minutes of the hour before `now_ms` that had calls, oldest first.
    pub(super) fn points(&self, now_ms: u64) -> Vec<Point> {
        let now = now_ms / 60_000;
        let mut kept: Vec<&Minute> =
            self.minutes.iter().filter(|m| m.minute <= now && now - m.minute < MINUTES && m.calls > 0).collect();
        kept.sort_by_key(|m| m.minute);
        kept.into_iter()
            .map(|m| Point {
                minute_ms: m.minute * 60_000,
                calls: m.calls,
                errors: m.errors,
                p50_us: percentile(&m.latency, m.calls, 0.50),
                p90_us: percentile(&m.latency, m.calls, 0.90),
                p99_us: percentile(&m.latency, m.calls, 0.99),
            })
            .collect()
    }
}

/// The bucket of a call that took `micros`.
fn bucket(micros: u64) -> usize {
    if micros <= 1 {
        return 0;
    }
    ((micros as f64).log2() * PER_DOUBLING).floor().min((BUCKETS - 1) as f64) as usize
}

/// The upper bound (µs) of the bucket holding quantile `q` of `calls` calls.
fn percentile(latency: &[u32; BUCKETS], calls: u32, q: f64) -> u64 {
    let rank = ((f64::from(calls) * q).ceil() as u64).max(1);
    let mut seen = 0u64;
    for (i, n) in latency.iter().enumerate() {
        seen += u64::from(*n);
        if seen >= rank {
            return 2f64.powf((i + 1) as f64 / PER_DOUBLING).round() as u64;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    #[test]
    fn percentiles_are_within_a_bucket_of_the_truth() {
        let mut history = History::default();
        let start = 1_000 * MINUTE;
        // 1..=1000 µs: p50 500, p90 900, p99 990.
        for micros in 1..=1000 {
            history.record(start + 5, micros, micros % 100 == 0);
        }
        let points = history.points(start + 30_000);
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!((p.minute_ms, p.calls, p.errors), (start, 1000, 10));
        for (got, truth) in [(p.p50_us, 500.0), (p.p90_us, 900.0), (p.p99_us, 990.0)] {
            let ratio = got as f64 / truth;
            assert!((1.0..1.2).contains(&ratio), "{got} µs for {truth} µs");
        }
    }

    #[test]
    fn the_hour_rolls_over_and_old_minutes_drop_out() {
        let mut history = History::default();
        let start = 1_000 * MINUTE;
        history.record(start, 10, false);
        history.record(start + 2 * MINUTE, 20, true);
        history.record(start + 2 * MINUTE + 1, 40, false);
        let minutes: Vec<(u64, u32, u32)> =
            history.points(start + 3 * MINUTE).iter().map(|p| (p.minute_ms, p.calls, p.errors)).collect();
        assert_eq!(minutes, [(start, 1, 0), (start + 2 * MINUTE, 2, 1)]);
        // An hour later the first minute is gone; its slot holds the new minute alone.
        history.record(start + MINUTES * MINUTE, 1_000_000, false);
        let points = history.points(start + MINUTES * MINUTE);
        assert_eq!(
            points.iter().map(|p| p.minute_ms).collect::<Vec<_>>(),
            [start + 2 * MINUTE, start + MINUTES * MINUTE]
        );
        assert_eq!((points[1].calls, points[1].p50_us), (1, 1_048_576), "a bucket's upper bound: 2^20 µs");
        assert!(history.points(start + 3 * MINUTES * MINUTE).is_empty(), "nothing within the hour");
        assert!(History::default().points(start).is_empty());
    }

    #[test]
    fn extreme_latencies_land_in_the_first_and_last_buckets() {
        assert_eq!((bucket(0), bucket(1), bucket(2)), (0, 0, 4));
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }
}

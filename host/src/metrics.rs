//! Call counters, latency histograms, instances in flight, the most recent calls and the last
//! hour per function ([`history`]), shared by every app of a [`crate::Host`]; rendered in the
//! Prometheus text format for `/metrics`.

pub mod history;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use self::history::{History, Point};

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

/// How many finished calls [`Metrics::recent`] keeps.
pub const RECENT_CALLS: usize = 100;

/// One finished call, as listed by [`Metrics::recent`].
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// The app.
    pub app: String,
    /// `function.export`, or the manifest function behind an http route.
    pub function: String,
    /// What started it: `call` (typed call) or `http` (a `[[trigger.http]]` route).
    pub trigger: &'static str,
    /// `ok` or a [`crate::CallError::code`].
    pub outcome: &'static str,
    /// Wall time of the call in microseconds.
    pub micros: u64,
    /// When it finished, in milliseconds since the Unix epoch.
    pub finished_ms: u64,
}

/// The last hour of one function, as [`Metrics::history`] lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionHistory {
    /// The app.
    pub app: String,
    /// `function.export`, or the manifest function behind an http route.
    pub function: String,
    /// The minutes that had calls, oldest first.
    pub minutes: Vec<Point>,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counts and latency of one function of one app, with its names to share with recent calls.
struct FunctionStats {
    app: Arc<str>,
    function: Arc<str>,
    calls: BTreeMap<&'static str, u64>,
    latency: Histogram,
    history: History,
}

/// A recent call, its names shared with its function's stats.
struct Recent {
    app: Arc<str>,
    function: Arc<str>,
    trigger: &'static str,
    outcome: &'static str,
    micros: u64,
    finished_ms: u64,
}

#[derive(Default)]
struct Recorded {
    /// By app, then function: found by `&str`, so that recording a call allocates nothing once
    /// its function was seen (this runs on every call).
    functions: BTreeMap<String, BTreeMap<String, FunctionStats>>,
    errors: BTreeMap<&'static str, u64>,
    outbound: BTreeMap<(String, String, String, &'static str), u64>,
    rate_limited: BTreeMap<String, u64>,
    recent: VecDeque<Recent>,
}

/// Counters for `/metrics` and the dashboard.
#[derive(Default)]
pub struct Metrics {
    in_flight: AtomicI64,
    recorded: Mutex<Recorded>,
}

/// Counts an instance as in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Mark an instance as running until the guard is dropped.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Instances running now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Record a finished call.
    pub fn record(&self, app: &str, function: &str, trigger: &'static str, outcome: &'static str, elapsed: Duration) {
        let finished_ms = crate::clock::now_ms();
        let mut r = self.recorded.lock().unwrap();
        if !r.functions.get(app).is_some_and(|functions| functions.contains_key(function)) {
            let stats = FunctionStats {
                app: app.into(),
                function: function.into(),
                calls: BTreeMap::new(),
                latency: Histogram::default(),
                history: History::default(),
            };
            r.functions.entry(app.to_string()).or_default().insert(function.to_string(), stats);
        }
        let stats = r.functions.get_mut(app).and_then(|f| f.get_mut(function)).expect("inserted above");
        *stats.calls.entry(outcome).or_default() += 1;
        let h = &mut stats.latency;
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            h.counts[i] += 1;
        }
        h.count += 1;
        h.sum += seconds;
        let micros = elapsed.as_micros() as u64;
        stats.history.record(finished_ms, micros, outcome != "ok");
        let (app, function) = (stats.app.clone(), stats.function.clone());
        if r.recent.len() == RECENT_CALLS {
            r.recent.pop_front();
        }
        r.recent.push_back(Recent { app, function, trigger, outcome, micros, finished_ms });
    }

    /// Count an error answer of the server by its stable code.
    pub fn record_error(&self, code: &'static str) {
        *self.recorded.lock().unwrap().errors.entry(code).or_default() += 1;
    }

    /// Count an outbound HTTP request of `function` in `app` to `host` (a grant entry's host, or
    /// `other`) that ended with `outcome` (`ok`, `denied`, or an error code).
    pub fn record_outbound(&self, app: &str, function: &str, host: &str, outcome: &'static str) {
        let key = (app.to_string(), function.to_string(), host.to_string(), outcome);
        *self.recorded.lock().unwrap().outbound.entry(key).or_default() += 1;
    }

    /// Count a request to `app` made without a token and refused by its `public-rate-limit`.
    pub fn record_rate_limited(&self, app: &str) {
        *self.recorded.lock().unwrap().rate_limited.entry(app.to_string()).or_default() += 1;
    }

    /// Calls so far of `function` in `app` that ended with `outcome`.
    pub fn calls(&self, app: &str, function: &str, outcome: &'static str) -> u64 {
        let r = self.recorded.lock().unwrap();
        let stats = r.functions.get(app).and_then(|f| f.get(function));
        stats.and_then(|s| s.calls.get(outcome)).copied().unwrap_or(0)
    }

    /// The last [`RECENT_CALLS`] finished calls, newest first.
    pub fn recent(&self) -> Vec<CallRecord> {
        let r = self.recorded.lock().unwrap();
        let record = |c: &Recent| CallRecord {
            app: c.app.to_string(),
            function: c.function.to_string(),
            trigger: c.trigger,
            outcome: c.outcome,
            micros: c.micros,
            finished_ms: c.finished_ms,
        };
        r.recent.iter().rev().map(record).collect()
    }

    /// Per function with calls in the last hour: a point per minute that had calls, oldest first.
    pub fn history(&self) -> Vec<FunctionHistory> {
        let now_ms = crate::clock::now_ms();
        let r = self.recorded.lock().unwrap();
        let functions = r.functions.values().flat_map(BTreeMap::values);
        functions
            .map(|s| FunctionHistory {
                app: s.app.to_string(),
                function: s.function.to_string(),
                minutes: s.history.points(now_ms),
            })
            .filter(|h| !h.minutes.is_empty())
            .collect()
    }

    /// Everything in the Prometheus text exposition format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let r = self.recorded.lock().unwrap();
        let mut out = String::new();
        out.push_str("# HELP host_calls_total Finished calls by app, function and outcome.\n");
        out.push_str("# TYPE host_calls_total counter\n");
        let functions = || r.functions.values().flat_map(BTreeMap::values);
        for stats in functions() {
            for (outcome, n) in &stats.calls {
                let _ = writeln!(
                    out,
                    "host_calls_total{{app=\"{}\",function=\"{}\",outcome=\"{outcome}\"}} {n}",
                    escape(&stats.app),
                    escape(&stats.function)
                );
            }
        }
        out.push_str("# HELP host_call_duration_seconds Wall time of calls, instantiation included.\n");
        out.push_str("# TYPE host_call_duration_seconds histogram\n");
        for stats in functions() {
            let (h, app, function) = (&stats.latency, &stats.app, &stats.function);
            let labels = format!("app=\"{}\",function=\"{}\"", escape(app), escape(function));
            let mut cumulative = 0;
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                let _ = writeln!(out, "host_call_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
            }
            let _ = writeln!(out, "host_call_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "host_call_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "host_call_duration_seconds_count{{{labels}}} {}", h.count);
        }
        out.push_str("# HELP host_instances_in_flight Guest instances running now.\n");
        out.push_str("# TYPE host_instances_in_flight gauge\n");
        let _ = writeln!(out, "host_instances_in_flight {}", self.in_flight());
        out.push_str("# HELP host_http_errors_total Error answers of the server by stable error code.\n");
        out.push_str("# TYPE host_http_errors_total counter\n");
        for (code, n) in &r.errors {
            let _ = writeln!(out, "host_http_errors_total{{code=\"{code}\"}} {n}");
        }
        out.push_str("# HELP host_outbound_requests_total Outbound HTTP requests of functions by host and outcome.\n");
        out.push_str("# TYPE host_outbound_requests_total counter\n");
        for ((app, function, host, outcome), n) in &r.outbound {
            let _ = writeln!(
                out,
                "host_outbound_requests_total{{app=\"{}\",function=\"{}\",host=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(app),
                escape(function),
                escape(host)
            );
        }
        out.push_str(
            "# HELP host_rate_limited_total Requests without a token refused by the app's public rate limit.\n",
        );
        out.push_str("# TYPE host_rate_limited_total counter\n");
        for (app, n) in &r.rate_limited {
            let _ = writeln!(out, "host_rate_limited_total{{app=\"{}\"}} {n}", escape(app));
        }
        out
    }
}

/// Escape a Prometheus label value.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

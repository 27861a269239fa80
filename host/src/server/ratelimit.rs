//! Token buckets per app and client address, for calls made without a token (public exports and
//! public routes), and the `429 rate-limited` past them. Memory stays bounded: a bucket that has filled up again is the same as no
//! bucket and is dropped when the map is pruned, and past [`MAX_CLIENTS`] the buckets idle the
//! longest go first.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{ApiError, Server};
use crate::manifest::RateLimit;

/// Most buckets kept at once, over all apps.
const MAX_CLIENTS: usize = 65_536;

/// How often full buckets are swept out even while the map is small.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The client a bucket belongs to: its IPv4 address, or the /64 network of its IPv6 address
/// (one host usually holds a whole /64, so single addresses would let it dodge the limit).
fn client(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// Calls left in one bucket, as of `at`, and the limit it fills up under.
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Calls it holds when full.
    capacity: f64,
    /// Calls it gains a second.
    rate: f64,
}

impl Bucket {
    fn new(limit: &RateLimit, now: Instant) -> Bucket {
        let capacity = f64::from(limit.count);
        Bucket { tokens: capacity, at: now, capacity, rate: capacity / limit.per.as_secs_f64() }
    }

    /// Bring the bucket up to `now`, taking a changed `limit` (an app deployed again) into account.
    fn refill(&mut self, limit: &RateLimit, now: Instant) {
        let fresh = Bucket::new(limit, now);
        self.tokens = self.refilled(now).min(fresh.capacity);
        (self.at, self.capacity, self.rate) = (now, fresh.capacity, fresh.rate);
    }

    /// The calls it holds at `now`.
    fn refilled(&self, now: Instant) -> f64 {
        (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(self.capacity)
    }
}

/// The buckets of every app and client.
pub(super) struct RateLimiter {
    state: Mutex<State>,
    max_clients: usize,
}

struct State {
    buckets: HashMap<(String, IpAddr), Bucket>,
    swept: Instant,
}

impl RateLimiter {
    /// No buckets yet.
    pub(super) fn new() -> RateLimiter {
        RateLimiter::with_capacity(MAX_CLIENTS)
    }

    fn with_capacity(max_clients: usize) -> RateLimiter {
        RateLimiter { state: Mutex::new(State { buckets: HashMap::new(), swept: Instant::now() }), max_clients }
    }

    /// Take one call from the bucket of `app` and `ip` under `limit` at `now`: `Err` with how
    /// long until the next call is allowed when the bucket is empty.
    pub(super) fn take(&self, app: &str, ip: IpAddr, limit: &RateLimit, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("rate limiter lock");
        let key = (app.to_string(), client(ip));
        if !state.buckets.contains_key(&key) {
            state.make_room(self.max_clients, now);
        }
        let bucket = state.buckets.entry(key).or_insert_with(|| Bucket::new(limit, now));
        bucket.refill(limit, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / bucket.rate))
    }

    /// Buckets held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().expect("rate limiter lock").buckets.len()
    }
}

impl State {
    /// Before a new bucket: sweep out full buckets when the map is full or a minute has passed;
    /// a full map is then cut to three quarters, the buckets idle the longest going first, so that
    /// the next sweep of a full map is many new clients away.
    fn make_room(&mut self, max: usize, now: Instant) {
        let full = self.buckets.len() >= max;
        if full || now.saturating_duration_since(self.swept) >= SWEEP_EVERY {
            self.buckets.retain(|_, b| b.refilled(now) < b.capacity);
            self.swept = now;
        }
        let keep = max * 3 / 4;
        if full && self.buckets.len() > keep {
            let mut idle: Vec<(Instant, (String, IpAddr))> =
                self.buckets.iter().map(|(k, b)| (b.at, k.clone())).collect();
            idle.sort_unstable_by_key(|(at, _)| *at);
            let excess = idle.len() - keep;
            for (_, key) in idle.into_iter().take(excess) {
                self.buckets.remove(&key);
            }
        }
    }
}

/// Take one call of the client's bucket for `app`, or answer `429 rate-limited` with
/// `Retry-After` in whole seconds. The client is the TCP peer (put there by `listen::serve`).
pub(super) fn over_limit(server: &Server, app: &str, extensions: &Extensions) -> Option<Response> {
    // A router served some other way has no peer address: its clients share one bucket.
    let ip = extensions.get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let limit = server.running().get(app).map(|s| s.app.manifest().access.public_rate_limit).unwrap_or_default();
    let wait = server.limiter.take(app, ip, &limit, Instant::now()).err()?;
    server.host.metrics().record_rate_limited(app);
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let message = format!(
        "too many requests without a token from this address to app `{app}` (limit {limit}): retry in {seconds} s, or send a bearer token"
    );
    let error = ApiError {
        extra: json!({ "retry_after": seconds }),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", message)
    };
    let mut response = error.into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit { count: 3, per: Duration::from_secs(3) };

    #[test]
    fn a_bucket_allows_its_burst_then_one_call_per_refill() {
        let limiter = RateLimiter::new();
        let (ip, t0) = ("10.0.0.1".parse().unwrap(), Instant::now());
        for _ in 0..3 {
            assert_eq!(limiter.take("a", ip, &LIMIT, t0), Ok(()));
        }
        assert_eq!(limiter.take("a", ip, &LIMIT, t0), Err(Duration::from_secs(1)));
        assert_eq!(limiter.take("a", ip, &LIMIT, t0 + Duration::from_millis(500)), Err(Duration::from_millis(500)));
        assert_eq!(limiter.take("a", ip, &LIMIT, t0 + Duration::from_secs(1)), Ok(()));
        // Other apps and other clients have their own buckets.
        assert_eq!(limiter.take("b", ip, &LIMIT, t0), Ok(()));
        assert_eq!(limiter.take("a", "10.0.0.2".parse().unwrap(), &LIMIT, t0), Ok(()));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let limit = RateLimit { count: 1, per: Duration::from_secs(60) };
        assert_eq!(limiter.take("a", "2001:db8::1".parse().unwrap(), &limit, t0), Ok(()));
        assert!(limiter.take("a", "2001:db8::ffff:2".parse().unwrap(), &limit, t0).is_err());
        assert_eq!(limiter.take("a", "2001:db8:0:1::1".parse().unwrap(), &limit, t0), Ok(()));
        // An IPv4 address mapped into IPv6 is the IPv4 client.
        assert_eq!(limiter.take("a", "192.0.2.1".parse().unwrap(), &limit, t0), Ok(()));
        assert!(limiter.take("a", "::ffff:192.0.2.1".parse().unwrap(), &limit, t0).is_err());
    }

    #[test]
    fn many_clients_do_not_grow_the_map_without_end() {
        let limiter = RateLimiter::with_capacity(100);
        let t0 = Instant::now();
        let (hammer, mut let_through) = ("10.255.255.255".parse().unwrap(), 0);
        for i in 0..10_000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            assert_eq!(limiter.take("a", IpAddr::V4(i.into()), &LIMIT, now), Ok(()));
            assert!(limiter.len() <= 100, "{} buckets after {i} clients", limiter.len());
            let_through += usize::from(limiter.take("a", hammer, &LIMIT, now).is_ok());
        }
        // A client calling all along keeps its bucket through the evictions: its burst of 3 in the
        // first 3 ms, then one call a second up to 10.002 s, just past the end.
        assert_eq!(let_through, 3 + 9);
        // A refilled bucket is swept out with the rest once a minute.
        let later = t0 + Duration::from_secs(100);
        assert_eq!(limiter.take("a", "10.9.9.9".parse().unwrap(), &LIMIT, later), Ok(()));
        assert_eq!(limiter.len(), 1);
    }
}

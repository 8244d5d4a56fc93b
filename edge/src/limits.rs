//! Rate limits: per connection, and per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `burst` at most, refilled at `rate` per second.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// `rate` per second, bursts up to `rate`.
    pub fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self::new(rate, rate)
    }

    /// `rate` per minute, bursts up to `rate`.
    pub fn per_minute(rate: u32) -> Self {
        let burst = f64::from(rate.max(1));
        Self::new(burst / 60.0, burst)
    }

    fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst, tokens: burst, last: Instant::now() }
    }

    /// Takes one token when there is one.
    pub fn try_take(&mut self) -> bool {
        self.take_at(Instant::now()).is_ok()
    }

    /// Takes one token, or says how long until there is one.
    fn take_at(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }

    /// Full again by `now`: forgetting it changes nothing.
    fn is_idle_at(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate >= self.burst
    }
}

/// A per-minute limit for each client address, in bounded memory: past
/// `MAX_CLIENTS` the buckets that have refilled are forgotten.
pub struct PerClient {
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, RateLimit>>,
}

const MAX_CLIENTS: usize = 100_000;

impl PerClient {
    pub fn per_minute(rate: u32) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    /// Counts one request from `client`; over the rate, how long to wait.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            buckets.retain(|_, bucket| !bucket.is_idle_at(now));
        }
        buckets.entry(client).or_insert_with(|| RateLimit::per_minute(self.rate)).take_at(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_capped_and_refills_with_time() {
        let mut limit = RateLimit::per_second(3);
        let start = limit.last;
        assert!((0..3).all(|_| limit.take_at(start).is_ok()));
        assert!(limit.take_at(start).is_err());
        assert!(limit.take_at(start + Duration::from_millis(400)).is_ok());
        assert!(limit.take_at(start + Duration::from_millis(400)).is_err());
    }

    #[test]
    fn a_minute_limit_says_how_long_to_wait() {
        let mut limit = RateLimit::per_minute(6);
        let start = limit.last;
        assert!((0..6).all(|_| limit.take_at(start).is_ok()));
        let wait = limit.take_at(start).unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= Duration::from_secs(10), "{wait:?}");
        assert!(!limit.is_idle_at(start + Duration::from_secs(30)));
        assert!(limit.is_idle_at(start + Duration::from_secs(61)));
    }

    #[test]
    fn clients_are_counted_apart() {
        let limits = PerClient::per_minute(1);
        let (a, b) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(limits.check(a).is_ok());
        assert!(limits.check(a).is_err());
        assert!(limits.check(b).is_ok());
    }
}

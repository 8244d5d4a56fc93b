//! Per-connection rate limits.

use std::time::Instant;

/// A token bucket: `rate` per second, bursts up to `rate`.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn per_second(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self { rate, tokens: rate, last: Instant::now() }
    }

    /// Takes one token when there is one.
    pub fn try_take(&mut self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_capped_and_refills_with_time() {
        let mut limit = RateLimit::per_second(3);
        let start = limit.last;
        assert!((0..3).all(|_| limit.take_at(start)));
        assert!(!limit.take_at(start));
        assert!(limit.take_at(start + Duration::from_millis(400)));
        assert!(!limit.take_at(start + Duration::from_millis(400)));
    }
}

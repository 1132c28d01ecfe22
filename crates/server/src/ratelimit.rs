//! Token-bucket rate limits per key (a token's subject, a client address). A request takes one
//! token; buckets refill at `per_second` up to `burst`. Answered with 429 and `Retry-After`,
//! which F3548 lists for every DSS endpoint.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

use parking_lot::Mutex;

/// A rate: `per_second` requests on average, `burst` at once. `per_second == 0` disables it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    pub const UNLIMITED: Rate = Rate { per_second: 0.0, burst: 0.0 };
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Buckets are forgotten once full again, when the map grows past this many keys.
const TIDY_AT: usize = 50_000;

pub struct Limiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Self {
        Self { rate, buckets: Mutex::new(HashMap::new()) }
    }

    fn enabled(&self) -> bool {
        self.rate.per_second > 0.0
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * self.rate.per_second).min(self.rate.burst);
        b.at = now;
    }

    /// Seconds until one token is available (at least 1, as `Retry-After` counts whole seconds).
    fn wait_s(&self, b: &Bucket) -> u64 {
        let s = ((1.0 - b.tokens) / self.rate.per_second).ceil();
        if s.is_finite() && s >= 1.0 {
            s as u64
        } else {
            1
        }
    }

    /// Takes one token for `key`; `Err(retry_after_s)` when none is left.
    pub fn take(&self, key: &K) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= TIDY_AT && !buckets.contains_key(key) {
            let (rate, burst) = (self.rate.per_second, self.rate.burst);
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let b = buckets.entry(key.clone()).or_insert(Bucket { tokens: self.rate.burst, at: now });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_s(b))
        }
    }

    /// `Err(retry_after_s)` when `key` has no token left, without taking one.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        match buckets.get_mut(key) {
            Some(b) => {
                self.refill(b, now);
                if b.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait_s(b))
                }
            }
            None => Ok(()),
        }
    }
}

/// The DSS's limits: requests per token subject, and failed authentications per client address
/// (an invalid token costs its sender, and once a sender has spent its budget its requests are
/// refused before any signature is checked).
pub struct RateLimits {
    pub per_subject: Limiter<String>,
    pub failed_auth_per_ip: Limiter<std::net::IpAddr>,
}

impl RateLimits {
    pub fn new(per_subject: Rate, failed_auth_per_ip: Rate) -> Self {
        Self { per_subject: Limiter::new(per_subject), failed_auth_per_ip: Limiter::new(failed_auth_per_ip) }
    }

    pub fn unlimited() -> Self {
        Self::new(Rate::UNLIMITED, Rate::UNLIMITED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let l = Limiter::new(Rate { per_second: 10.0, burst: 3.0 });
        let k = "uss1".to_owned();
        assert!(l.take(&k).is_ok() && l.take(&k).is_ok() && l.take(&k).is_ok());
        assert_eq!(l.take(&k), Err(1), "the burst is spent; a token comes back within a second");
        assert!(l.check(&k).is_err());
        assert!(l.take(&"uss2".to_owned()).is_ok(), "keys have their own buckets");
        std::thread::sleep(std::time::Duration::from_millis(150));
        assert!(l.take(&k).is_ok(), "refilled at 10/s");
    }

    #[test]
    fn zero_disables_and_slow_rates_say_how_long_to_wait() {
        let off = Limiter::new(Rate::UNLIMITED);
        for _ in 0..10_000 {
            assert!(off.take(&1u8).is_ok());
        }
        let slow = Limiter::new(Rate { per_second: 0.1, burst: 1.0 });
        assert!(slow.take(&1u8).is_ok());
        let wait = slow.take(&1u8).expect_err("spent");
        assert!((9..=10).contains(&wait), "{wait}");
    }
}

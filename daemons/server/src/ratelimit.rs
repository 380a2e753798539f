//! Per-caller token buckets. Pure: time is passed in as seconds.

use std::collections::HashMap;
use std::sync::Mutex;

/// A set of token buckets keyed by caller.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, f64)>>,
}

impl RateLimiter {
    /// `rate` tokens per second, at most `burst` saved.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens from `key`'s bucket at time `now` (seconds). On refusal returns how
    /// many seconds until enough tokens are back.
    ///
    /// A batch costing more than the burst needs a full bucket (and empties it), so a large
    /// batch is slowed down, never refused forever.
    pub fn check(&self, key: &str, now: f64, cost: f64) -> Result<(), f64> {
        let cost = cost.min(self.burst);
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() > 100_000 {
            // Forget idle callers rather than grow without bound.
            b.retain(|_, (tokens, last)| *tokens < self.burst && now - *last < 60.0);
        }
        let (tokens, last) = b.entry(key.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + (now - *last).max(0.0) * self.rate).min(self.burst);
        *last = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            Err((cost - *tokens) / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let r = RateLimiter::new(10.0, 5.0);
        for _ in 0..5 {
            r.check("a", 0.0, 1.0).unwrap();
        }
        let wait = r.check("a", 0.0, 1.0).unwrap_err();
        assert!((wait - 0.1).abs() < 1e-9);
        // Other callers are unaffected.
        r.check("b", 0.0, 1.0).unwrap();
        // After 0.1 s one token is back.
        r.check("a", 0.1, 1.0).unwrap();
        assert!(r.check("a", 0.1, 1.0).is_err());
    }

    #[test]
    fn a_batch_larger_than_the_burst_waits_for_a_full_bucket() {
        let r = RateLimiter::new(10.0, 5.0);
        r.check("a", 0.0, 100.0).unwrap();
        let wait = r.check("a", 0.0, 100.0).unwrap_err();
        assert!((wait - 0.5).abs() < 1e-9, "{wait}");
        r.check("a", 0.5, 100.0).unwrap();
    }
}

//! The per-connection rate limit of PROTOCOL.md §1: a token bucket over client messages, with
//! the "keeps exceeding" clock of close 4008.

use std::time::Instant;

/// Token bucket over client messages, with the "keeps exceeding" clock of close 4008.
pub struct RateLimiter {
    tokens: f64,
    rate_per_second: f64,
    burst: f64,
    refilled_at: Instant,
    /// When the current run of refusals began, and when the last refusal was.
    excess: Option<(Instant, Instant)>,
}

pub enum RateVerdict {
    Allowed,
    Limited,
    Close,
}

impl RateLimiter {
    /// A gap this long without a refusal ends a run of refusals.
    const RUN_GAP: std::time::Duration = std::time::Duration::from_secs(2);

    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        RateLimiter {
            tokens: burst as f64,
            rate_per_second,
            burst: burst as f64,
            refilled_at: Instant::now(),
            excess: None,
        }
    }

    pub fn check(&mut self, close_after: std::time::Duration) -> RateVerdict {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateVerdict::Allowed;
        }
        let started = match self.excess {
            Some((started, last)) if now.duration_since(last) < Self::RUN_GAP => started,
            _ => now,
        };
        self.excess = Some((started, now));
        if now.duration_since(started) >= close_after {
            RateVerdict::Close
        } else {
            RateVerdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rate_limiter_burst_then_refuse() {
        let mut limiter = RateLimiter::new(10.0, 20);
        for _ in 0..20 {
            assert!(matches!(limiter.check(std::time::Duration::from_secs(10)), RateVerdict::Allowed));
        }
        assert!(matches!(limiter.check(std::time::Duration::from_secs(10)), RateVerdict::Limited));
        assert!(matches!(limiter.check(std::time::Duration::ZERO), RateVerdict::Close));
    }
}

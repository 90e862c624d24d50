//! The per-connection rate limit of PROTOCOL.md §1: a token bucket over client messages, with
//! the "keeps exceeding" clock of close 4008.

use std::time::{Duration, Instant};

use crate::config::Limits;

/// Token bucket over client messages, with the "keeps exceeding" clock of close 4008. The
/// rate and the burst are the node's ([`Limits`]), passed to each check rather than kept by
/// every connection.
pub struct RateLimiter {
    tokens: f64,
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
    const RUN_GAP: Duration = Duration::from_secs(2);

    pub fn new(limits: &Limits) -> Self {
        RateLimiter { tokens: limits.rate_burst as f64, refilled_at: Instant::now(), excess: None }
    }

    pub fn check(&mut self, limits: &Limits) -> RateVerdict {
        self.check_with(limits.rate_per_second, limits.rate_burst, limits.rate_limit_close_after)
    }

    fn check_with(&mut self, rate_per_second: f64, burst: u32, close_after: Duration) -> RateVerdict {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate_per_second).min(burst as f64);
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
        let mut limiter = RateLimiter { tokens: 20.0, refilled_at: Instant::now(), excess: None };
        for _ in 0..20 {
            assert!(matches!(limiter.check_with(10.0, 20, Duration::from_secs(10)), RateVerdict::Allowed));
        }
        assert!(matches!(limiter.check_with(10.0, 20, Duration::from_secs(10)), RateVerdict::Limited));
        assert!(matches!(limiter.check_with(10.0, 20, Duration::ZERO), RateVerdict::Close));
    }
}

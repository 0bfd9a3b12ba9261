//! Per-client rate limit, counted in events so a batch of 500 costs 500.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

pub struct ClientRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

/// Why a client was refused: come back after this long.
#[derive(Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl ClientRateLimiter {
    pub fn new(events_per_second: u32, burst: u32) -> anyhow::Result<Self> {
        let rate = NonZeroU32::new(events_per_second)
            .ok_or_else(|| anyhow::anyhow!("RATE_LIMIT_EVENTS_PER_SECOND must be at least 1"))?;
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| anyhow::anyhow!("RATE_LIMIT_BURST must be at least 1"))?;
        Ok(ClientRateLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        })
    }

    /// Takes `events` tokens from `client`'s bucket, or says how long to wait.
    /// A request larger than the whole burst can never pass; it is refused with the
    /// time a full bucket takes to refill, so the client sees it must split it.
    pub fn check(&self, client: &str, events: usize) -> Result<(), RetryAfter> {
        let Some(n) = NonZeroU32::new(u32::try_from(events).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        match self.limiter.check_key_n(&client.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(RetryAfter(not_until.wait_time_from(self.clock.now()))),
            Err(_insufficient) => Err(RetryAfter(Duration::from_secs(1))),
        }
    }

    /// Forgets clients whose buckets are full again, so memory tracks active clients.
    pub fn forget_idle_clients(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_events_not_requests_and_keys_are_independent() {
        let limiter = ClientRateLimiter::new(1, 10).expect("valid");
        assert_eq!(limiter.check("a", 10), Ok(()));
        let refused = limiter.check("a", 1).expect_err("bucket empty");
        assert!(refused.0 > Duration::ZERO && refused.0 <= Duration::from_secs(1));
        assert_eq!(
            limiter.check("b", 7),
            Ok(()),
            "another client has its own bucket"
        );
    }

    #[test]
    fn a_request_larger_than_the_burst_is_refused() {
        let limiter = ClientRateLimiter::new(1, 5).expect("valid");
        assert!(limiter.check("a", 6).is_err());
        assert_eq!(limiter.check("a", 0), Ok(()));
    }

    #[test]
    fn zero_rate_is_a_configuration_error() {
        assert!(ClientRateLimiter::new(0, 5).is_err());
    }
}

//! Per-destination limits: a token bucket for `rate_limit` and a semaphore for
//! `max_in_flight`.

use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// `50/s`, `600/m`, `10/h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Requests allowed per second.
    pub per_second: f64,
}

/// Why a rate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate; write a count per unit, for example \"50/s\", \"600/m\" or \"10/h\"")]
pub struct BadRate(pub String);

impl FromStr for Rate {
    type Err = BadRate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadRate(s.to_owned());
        let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
        let n: f64 = n.trim().parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        if !(n.is_finite() && n > 0.0) {
            return Err(bad());
        }
        Ok(Rate {
            per_second: n / secs,
        })
    }
}

/// A token bucket: bursts up to one second's worth (at least one request).
#[derive(Debug)]
pub struct RateLimiter {
    rate: Rate,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate: Rate) -> Self {
        let burst = rate.per_second.max(1.0);
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token, waiting for one if the bucket is empty.
    pub async fn acquire(&self) {
        let wait = {
            let mut guard = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (tokens, last) = &mut *guard;
            let now = Instant::now();
            *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate.per_second)
                .min(self.burst);
            *last = now;
            *tokens -= 1.0;
            if *tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-*tokens / self.rate.per_second)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("50/s".parse::<Rate>().unwrap().per_second, 50.0);
        assert_eq!("600/m".parse::<Rate>().unwrap().per_second, 10.0);
        assert!("50".parse::<Rate>().is_err());
        assert!("0/s".parse::<Rate>().is_err());
        assert!("5/d".parse::<Rate>().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_its_burst_then_spaces_requests() {
        let limiter = RateLimiter::new("2/s".parse().unwrap());
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        // 2 at once, then 4 more at 500 ms each.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}

//! A circuit breaker per destination: after repeated failures it opens, and
//! due messages wait without spending their attempts; after a cool-down one
//! probe goes through, and its result closes or reopens the circuit.
//!
//! Time is a parameter (milliseconds), so the state machine is tested without
//! waiting.

use std::time::Duration;

/// When the breaker opens and how long it stays open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// The first cool-down; each failed probe doubles it.
    pub cool_down: Duration,
    /// The longest cool-down.
    pub max_cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(300),
        }
    }
}

/// The breaker's state, for metrics and the overview.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Deliveries wait until the cool-down ends.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// One destination's breaker.
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    failures: u32,
    open_until: Option<i64>,
    cool_down: Duration,
    probe_in_flight: bool,
    /// The last time it held messages back: from when it opened until it
    /// closed (`None`: still open or half-open).
    held: Option<(i64, Option<i64>)>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            failures: 0,
            open_until: None,
            cool_down: config.cool_down,
            probe_in_flight: false,
            held: None,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: i64) -> CircuitState {
        match self.open_until {
            None => CircuitState::Closed,
            Some(t) if now < t => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        }
    }

    /// When an open circuit lets a probe through.
    pub fn reopens_at(&self) -> Option<i64> {
        self.open_until
    }

    /// Whether an attempt may start at `now`. In half-open state the first
    /// caller becomes the probe; others wait.
    pub fn try_acquire(&mut self, now: i64) -> bool {
        match self.state(now) {
            CircuitState::Closed => true,
            CircuitState::Open => false,
            CircuitState::HalfOpen if self.probe_in_flight => false,
            CircuitState::HalfOpen => {
                self.probe_in_flight = true;
                true
            }
        }
    }

    /// Whether claims for this destination should wait (open, or a probe is out).
    pub fn blocks_claims(&self, now: i64) -> bool {
        match self.state(now) {
            CircuitState::Closed => false,
            CircuitState::Open => true,
            CircuitState::HalfOpen => self.probe_in_flight,
        }
    }

    /// Reports an attempt's result: `healthy` when the receiver answered in a
    /// way that says it is up (success, or a content error), false for server
    /// errors, rate limits, timeouts and network failures.
    pub fn on_result(&mut self, healthy: bool, now: i64) {
        let was_probe = self.probe_in_flight;
        self.probe_in_flight = false;
        if healthy {
            self.failures = 0;
            if self.open_until.take().is_some() {
                if let Some((_, closed)) = &mut self.held {
                    *closed = Some(now);
                }
            }
            self.cool_down = self.config.cool_down;
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if was_probe {
            self.cool_down = (self.cool_down * 2).min(self.config.max_cool_down);
            self.open_until = Some(now + self.cool_down.as_millis() as i64);
        } else if self.failures >= self.config.failure_threshold && self.open_until.is_none() {
            self.open_until = Some(now + self.cool_down.as_millis() as i64);
            self.held = Some((now, None));
        }
    }

    /// How long, of the time from `due` to `now`, the circuit held messages
    /// back (open, or half-open until its probe closed it): what an attempt
    /// due at `due` and starting at `now` waited for the breaker, if at all.
    pub fn held_for(&self, due: i64, now: i64) -> Option<i64> {
        let (opened, closed) = self.held?;
        let held = closed.unwrap_or(now).min(now) - opened.max(due);
        (held > 0).then_some(held)
    }

    /// Gives up a probe slot without a result (the attempt did not happen).
    pub fn cancel_probe(&mut self) {
        self.probe_in_flight = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_secs(10),
            max_cool_down: Duration::from_secs(40),
        })
    }

    #[test]
    fn opens_after_the_threshold_and_lets_one_probe_through_after_the_cool_down() {
        let mut b = breaker();
        for t in 0..2 {
            b.on_result(false, t);
        }
        assert_eq!(b.state(2), CircuitState::Closed);
        b.on_result(false, 2);
        assert_eq!(b.state(3), CircuitState::Open);
        assert!(!b.try_acquire(5_000) && b.blocks_claims(5_000));
        assert_eq!(b.state(10_002), CircuitState::HalfOpen);
        assert!(b.try_acquire(10_002), "the probe");
        assert!(!b.try_acquire(10_003), "only one probe");
        b.on_result(true, 10_050);
        assert_eq!(b.state(10_051), CircuitState::Closed);
        assert!(b.try_acquire(10_051));
    }

    #[test]
    fn a_failed_probe_reopens_for_twice_as_long_up_to_the_cap() {
        let mut b = breaker();
        for t in 0..3 {
            b.on_result(false, t);
        }
        let mut now = 10_002;
        for expected in [20_000, 40_000, 40_000] {
            assert!(b.try_acquire(now));
            b.on_result(false, now);
            assert_eq!(b.reopens_at(), Some(now + expected));
            now += expected;
        }
    }

    /// An attempt knows how long of its wait the circuit held it back.
    #[test]
    fn the_hold_of_an_attempt_is_the_open_time_after_it_was_due() {
        let mut b = breaker();
        assert_eq!(b.held_for(0, 50_000), None, "never opened");
        for t in 0..3 {
            b.on_result(false, 1_000 + t);
        }
        // Open from 1,002; the probe at 11,002 closes it at 11,050.
        assert!(b.try_acquire(11_002));
        b.on_result(true, 11_050);
        assert_eq!(b.held_for(0, 11_050), Some(10_048));
        assert_eq!(b.held_for(5_000, 11_060), Some(6_050), "due while open");
        assert_eq!(b.held_for(12_000, 12_500), None, "due after it closed");
    }

    #[test]
    fn a_healthy_answer_resets_the_count() {
        let mut b = breaker();
        b.on_result(false, 0);
        b.on_result(false, 1);
        b.on_result(true, 2);
        b.on_result(false, 3);
        b.on_result(false, 4);
        assert_eq!(b.state(5), CircuitState::Closed);
    }
}

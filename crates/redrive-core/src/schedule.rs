//! Schedules: how long to wait after a failed attempt before the next one.
//!
//! The random source is a parameter, so a jittered schedule is reproducible in
//! tests and benchmarks.

use std::time::Duration;

use rand_core::RngCore;

use crate::duration::HumanDuration;

/// How a delay is spread to keep many clients from retrying in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the computed delay.
    None,
    /// A uniform delay between zero and the computed delay ("full jitter").
    Full,
}

/// The delays between attempts.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// A fixed list: after attempt *n* wait the *n*-th delay; past its end, the last.
    Fixed(Vec<Duration>),
    /// `base * factor^(n-1)`, at most `cap`, optionally jittered.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The growth per attempt (at least 1).
        factor: f64,
        /// The largest delay.
        cap: Duration,
        /// Whether and how to randomise.
        jitter: Jitter,
    },
    /// `base + step * (n-1)`, at most `cap`, optionally jittered.
    Linear {
        /// The first delay.
        base: Duration,
        /// The increase per attempt.
        step: Duration,
        /// The largest delay.
        cap: Duration,
        /// Whether and how to randomise.
        jitter: Jitter,
    },
}

impl Schedule {
    /// A fixed schedule from offsets measured from the first attempt
    /// (seed 004 writes "1er renvoi à +1min, 2ème renvoi à +10 min" from t0):
    /// `[1m, 10m]` becomes the delays `[1m, 9m]`. Offsets must increase.
    pub fn from_offsets(offsets: &[Duration]) -> Option<Schedule> {
        let mut delays = Vec::with_capacity(offsets.len());
        let mut previous = Duration::ZERO;
        for &at in offsets {
            delays.push(at.checked_sub(previous).filter(|d| !d.is_zero())?);
            previous = at;
        }
        (!delays.is_empty()).then_some(Schedule::Fixed(delays))
    }

    /// The delay after the failure of attempt `attempt` (counted from 1).
    ///
    /// Never above [`Schedule::cap`]. Draws from `rng` only when jittered.
    pub fn delay<R: RngCore + ?Sized>(&self, attempt: u32, rng: &mut R) -> Duration {
        let n = attempt.max(1);
        let (nominal, jitter) = match self {
            Schedule::Fixed(list) => {
                let i = (n as usize - 1).min(list.len().saturating_sub(1));
                (list.get(i).copied().unwrap_or(Duration::ZERO), Jitter::None)
            }
            Schedule::Exponential {
                base,
                factor,
                cap,
                jitter,
            } => {
                let exp = i32::try_from(n - 1).unwrap_or(i32::MAX);
                let ms = base.as_millis() as f64 * factor.powi(exp);
                let capped = if ms.is_finite() && ms < cap.as_millis() as f64 {
                    Duration::from_millis(ms as u64)
                } else {
                    *cap
                };
                (capped, *jitter)
            }
            Schedule::Linear {
                base,
                step,
                cap,
                jitter,
            } => {
                let grown = step
                    .checked_mul(n - 1)
                    .and_then(|s| base.checked_add(s))
                    .unwrap_or(*cap);
                (grown.min(*cap), *jitter)
            }
        };
        match jitter {
            Jitter::None => nominal,
            Jitter::Full => {
                let ms = nominal.as_millis() as u64;
                Duration::from_millis(rng.next_u64() % (ms + 1))
            }
        }
    }

    /// The largest delay this schedule can produce.
    pub fn cap(&self) -> Duration {
        match self {
            Schedule::Fixed(list) => list.iter().copied().max().unwrap_or(Duration::ZERO),
            Schedule::Exponential { cap, .. } | Schedule::Linear { cap, .. } => *cap,
        }
    }

    /// True when delays are drawn at random (a timeline then shows upper bounds).
    pub fn is_jittered(&self) -> bool {
        matches!(
            self,
            Schedule::Exponential {
                jitter: Jitter::Full,
                ..
            } | Schedule::Linear {
                jitter: Jitter::Full,
                ..
            }
        )
    }

    /// The delay before jitter: the upper bound of a jittered delay.
    pub fn nominal_delay(&self, attempt: u32) -> Duration {
        let unjittered = match self {
            Schedule::Exponential {
                base, factor, cap, ..
            } => Schedule::Exponential {
                base: *base,
                factor: *factor,
                cap: *cap,
                jitter: Jitter::None,
            },
            Schedule::Linear {
                base, step, cap, ..
            } => Schedule::Linear {
                base: *base,
                step: *step,
                cap: *cap,
                jitter: Jitter::None,
            },
            fixed @ Schedule::Fixed(_) => return fixed.delay(attempt, &mut NoRandom),
        };
        unjittered.delay(attempt, &mut NoRandom)
    }

    /// One line for people: `fixed 1m, 10m, 1h, 24h` or
    /// `exponential base 1s, factor 2, cap 1h, full jitter`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Fixed(list) => {
                let items: Vec<String> =
                    list.iter().map(|d| HumanDuration(*d).to_string()).collect();
                format!("fixed {}", items.join(", "))
            }
            Schedule::Exponential {
                base,
                factor,
                cap,
                jitter,
            } => format!(
                "exponential base {}, factor {}, cap {}, {}",
                HumanDuration(*base),
                factor,
                HumanDuration(*cap),
                jitter_name(*jitter)
            ),
            Schedule::Linear {
                base,
                step,
                cap,
                jitter,
            } => format!(
                "linear base {}, step {}, cap {}, {}",
                HumanDuration(*base),
                HumanDuration(*step),
                HumanDuration(*cap),
                jitter_name(*jitter)
            ),
        }
    }
}

fn jitter_name(j: Jitter) -> &'static str {
    match j {
        Jitter::None => "no jitter",
        Jitter::Full => "full jitter",
    }
}

/// An [`RngCore`] for unjittered schedules: never consulted.
struct NoRandom;

impl RngCore for NoRandom {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        dst.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn fixed_repeats_its_last_delay() {
        let sched = Schedule::Fixed(vec![s(60), s(600)]);
        let mut rng = NoRandom;
        assert_eq!(sched.delay(1, &mut rng), s(60));
        assert_eq!(sched.delay(2, &mut rng), s(600));
        assert_eq!(sched.delay(9, &mut rng), s(600));
        assert_eq!(sched.cap(), s(600));
    }

    #[test]
    fn offsets_become_the_delays_between_them() {
        let sched = Schedule::from_offsets(&[s(60), s(600), s(3600), s(86_400)]).unwrap();
        assert_eq!(
            sched,
            Schedule::Fixed(vec![s(60), s(540), s(3000), s(82_800)])
        );
        assert_eq!(Schedule::from_offsets(&[s(60), s(60)]), None);
        assert_eq!(Schedule::from_offsets(&[s(60), s(30)]), None);
        assert_eq!(Schedule::from_offsets(&[]), None);
    }

    #[test]
    fn exponential_doubles_up_to_the_cap() {
        let sched = Schedule::Exponential {
            base: s(1),
            factor: 2.0,
            cap: s(8),
            jitter: Jitter::None,
        };
        let got: Vec<_> = (1..=6).map(|n| sched.delay(n, &mut NoRandom)).collect();
        assert_eq!(got, vec![s(1), s(2), s(4), s(8), s(8), s(8)]);
        assert_eq!(sched.delay(u32::MAX, &mut NoRandom), s(8));
    }

    #[test]
    fn linear_grows_by_its_step_up_to_the_cap() {
        let sched = Schedule::Linear {
            base: s(10),
            step: s(5),
            cap: s(22),
            jitter: Jitter::None,
        };
        let got: Vec<_> = (1..=4).map(|n| sched.delay(n, &mut NoRandom)).collect();
        assert_eq!(got, vec![s(10), s(15), s(20), s(22)]);
        assert_eq!(sched.delay(u32::MAX, &mut NoRandom), s(22));
    }

    #[test]
    fn full_jitter_stays_between_zero_and_the_nominal_delay() {
        struct Max;
        impl RngCore for Max {
            fn next_u32(&mut self) -> u32 {
                u32::MAX
            }
            fn next_u64(&mut self) -> u64 {
                4_000
            }
            fn fill_bytes(&mut self, _: &mut [u8]) {}
        }
        let sched = Schedule::Exponential {
            base: s(1),
            factor: 2.0,
            cap: s(3600),
            jitter: Jitter::Full,
        };
        // nominal delay after attempt 3 is 4 s = 4000 ms; 4000 % 4001 = 4000.
        assert_eq!(sched.delay(3, &mut Max), Duration::from_millis(4000));
        assert_eq!(sched.nominal_delay(3), s(4));
        assert!(sched.is_jittered());
    }
}

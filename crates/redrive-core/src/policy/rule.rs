//! Rules: a condition on an attempt's outcome, and a note saying where the rule
//! comes from (a seed document, or a key of a policy file).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use crate::class::ErrorClass;
use crate::classify::Classification;

/// A status code or an inclusive range of them (`503`, `5xx`, `500-504`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// The lowest status matched.
    pub lo: u16,
    /// The highest status matched.
    pub hi: u16,
}

impl StatusRange {
    /// Exactly one status.
    pub const fn one(status: u16) -> Self {
        StatusRange {
            lo: status,
            hi: status,
        }
    }

    /// A whole class of statuses: `hundreds(5)` is `5xx`.
    pub const fn hundreds(digit: u16) -> Self {
        StatusRange {
            lo: digit * 100,
            hi: digit * 100 + 99,
        }
    }

    /// True when `status` is in the range.
    pub const fn contains(self, status: u16) -> bool {
        self.lo <= status && status <= self.hi
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else if self.lo.is_multiple_of(100) && self.hi == self.lo + 99 {
            write!(f, "{}xx", self.lo / 100)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Why a status text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a status: write a code from 100 to 599 (`503`), a class (`5xx`) or a range (`500-504`)")]
pub struct BadStatus(pub String);

impl FromStr for StatusRange {
    type Err = BadStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadStatus(s.to_owned());
        let code = |t: &str| -> Result<u16, BadStatus> {
            let n: u16 = t.trim().parse().map_err(|_| bad())?;
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(bad())
            }
        };
        let t = s.trim();
        if let Some(d) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            return match d {
                "1" | "2" | "3" | "4" | "5" => {
                    Ok(StatusRange::hundreds(d.parse().map_err(|_| bad())?))
                }
                _ => Err(bad()),
            };
        }
        if let Some((lo, hi)) = t.split_once('-') {
            let (lo, hi) = (code(lo)?, code(hi)?);
            return if lo <= hi {
                Ok(StatusRange { lo, hi })
            } else {
                Err(bad())
            };
        }
        code(t).map(StatusRange::one)
    }
}

/// What a rule looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The outcome's error class.
    Class(ErrorClass),
    /// The response status.
    Status(StatusRange),
    /// The problem details `type` member (RFC 9457), compared exactly.
    ProblemType(String),
    /// A `typeCode` member (SyncHive's `RETRY_LATER`).
    TypeCode(String),
    /// A boolean `retryable` member (SyncHive's connector errors).
    Retryable(bool),
    /// An OAuth `error` member (seed 001's `invalid_token`).
    OAuthError(String),
}

impl Condition {
    /// True when the classified outcome meets the condition.
    pub fn matches(&self, c: &Classification<'_>) -> bool {
        match self {
            Condition::Class(class) => c.class == *class,
            Condition::Status(range) => c.status.is_some_and(|s| range.contains(s)),
            Condition::ProblemType(t) => c.signals.problem_type.as_deref() == Some(t.as_str()),
            Condition::TypeCode(t) => c.signals.type_code.as_deref() == Some(t.as_str()),
            Condition::Retryable(b) => c.signals.retryable == Some(*b),
            Condition::OAuthError(e) => c.signals.oauth_error.as_deref() == Some(e.as_str()),
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Class(class) => write!(f, "class {class}"),
            Condition::Status(range) => write!(f, "status {range}"),
            Condition::ProblemType(t) => write!(f, "problem type {t}"),
            Condition::TypeCode(t) => write!(f, "typeCode {t}"),
            Condition::Retryable(b) => write!(f, "body retryable = {b}"),
            Condition::OAuthError(e) => write!(f, "OAuth error {e}"),
        }
    }
}

/// A condition and where it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// What the rule matches.
    pub when: Condition,
    /// Its source, for people: `seed 004: 408 is a temporary error`, or the
    /// policy file key that set it.
    pub note: Cow<'static, str>,
}

impl Rule {
    /// A rule with a condition and a note.
    pub fn new(when: Condition, note: impl Into<Cow<'static, str>>) -> Self {
        Rule {
            when,
            note: note.into(),
        }
    }

    /// Matches one error class.
    pub fn class(class: ErrorClass, note: impl Into<Cow<'static, str>>) -> Self {
        Rule::new(Condition::Class(class), note)
    }

    /// Matches one status code.
    pub fn status(status: u16, note: impl Into<Cow<'static, str>>) -> Self {
        Rule::new(Condition::Status(StatusRange::one(status)), note)
    }

    /// Matches an inclusive status range.
    pub fn statuses(range: StatusRange, note: impl Into<Cow<'static, str>>) -> Self {
        Rule::new(Condition::Status(range), note)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.note.is_empty() {
            write!(f, "{}", self.when)
        } else {
            write!(f, "{} ({})", self.when, self.note)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse_and_print() {
        for (text, lo, hi) in [("503", 503, 503), ("5xx", 500, 599), ("500-504", 500, 504)] {
            let r: StatusRange = text.parse().unwrap();
            assert_eq!((r.lo, r.hi), (lo, hi));
            assert_eq!(r.to_string(), text);
        }
        for bad in ["6xx", "99", "600", "504-500", "abc", "", "5x"] {
            assert!(bad.parse::<StatusRange>().is_err(), "{bad}");
        }
    }
}

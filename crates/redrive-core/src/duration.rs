//! Human durations (`200ms`, `5s`, `10m`, `1h`, `24h`, `7d`) as DESIGN.md writes them.
//!
//! One parser and one printer for the whole product, so a duration read from a
//! policy file prints back the way a person wrote it.

use std::fmt;
use std::time::Duration;

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {why}; write a number and a unit (ms, s, m, h, d), for example `500ms`, `10s`, `1h30m` or `7d`")]
pub struct DurationError {
    /// The text as given.
    pub input: String,
    /// What exactly was wrong with it.
    pub why: &'static str,
}

/// Parses `1h30m`-style durations: one or more `<integer><unit>` parts, units
/// `ms`, `s`, `m`, `h`, `d`. A bare `0` is accepted as zero.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError {
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a whole number before each unit"));
        }
        let (number, tail) = rest.split_at(digits);
        let value: u128 = number.parse().map_err(|_| err("the number is too large"))?;
        let unit_len = tail.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let (unit, tail) = tail.split_at(unit_len);
        let millis_per_unit: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("a unit is missing")),
            u if u.starts_with(['.', ',']) => {
                return Err(err(
                    "fractions are not allowed; use a smaller unit (1500ms, not 1.5s)",
                ))
            }
            _ => return Err(err("the unit is not one of ms, s, m, h, d")),
        };
        total = value
            .checked_mul(millis_per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| err("the number is too large"))?;
        rest = tail;
    }
    let millis = u64::try_from(total).map_err(|_| err("the number is too large"))?;
    Ok(Duration::from_millis(millis))
}

/// A duration read from text in a configuration file (`"10m"`), with an error
/// that says how to write one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationText(pub Duration);

impl<'de> serde::Deserialize<'de> for DurationText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = String::deserialize(d).map_err(|_| {
            D::Error::custom("expected a duration in quotes, for example \"10s\" or \"1h\"")
        })?;
        parse_duration(&text)
            .map(DurationText)
            .map_err(D::Error::custom)
    }
}

/// Prints a duration the way [`parse_duration`] reads it, largest units first
/// (`1d1h11m`, `1s`, `250ms`, `0s`). Sub-millisecond parts are dropped.
pub fn format_duration(d: Duration) -> String {
    HumanDuration(d).to_string()
}

/// A [`Duration`] that displays as `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000u128),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_of_design_md() {
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration_and_says_why() {
        for (input, why) in [
            ("", "it is empty"),
            ("10", "a unit is missing"),
            ("5 minutes", "the unit is not one of ms, s, m, h, d"),
            ("m", "expected a whole number before each unit"),
            ("-5s", "expected a whole number before each unit"),
            (
                "1.5s",
                "fractions are not allowed; use a smaller unit (1500ms, not 1.5s)",
            ),
            (
                "99999999999999999999999999999999999999999d",
                "the number is too large",
            ),
        ] {
            let e = parse_duration(input).unwrap_err();
            assert_eq!(e.why, why, "for {input:?}");
            assert!(e.to_string().contains(&format!("`{input}`")));
        }
    }

    #[test]
    fn formats_back_to_the_same_text() {
        for text in ["200ms", "5s", "10m", "1h", "1d", "1d1h11m", "1m30s", "0s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}

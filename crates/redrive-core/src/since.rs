//! `since` as the API reads it: a duration back from now (`24h`, `1h30m`)
//! or an RFC 3339 time in UTC (`2026-12-06T10:00:00Z`, fractions allowed).
//!
//! The language is exactly that of [`PATTERN`], which the OpenAPI document
//! gives, so that a value the document allows is never refused and one it
//! does not is never taken: at most four parts of at most six digits (no
//! overflow), no spaces, months and days by their ranges. A day past its
//! month's end (`02-30`) runs on into the next month, as `date -d` does.

/// The pattern of a `since` value in the OpenAPI document.
pub const PATTERN: &str = "^(0|([0-9]{1,6}(ms|s|m|h|d)){1,4}|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?Z)$";

/// What a `since` value says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This many milliseconds before now.
    Ago(u64),
    /// This time, in milliseconds since the Unix epoch.
    At(i64),
}

/// Reads a `since` value, or `None` when it is not one.
pub fn parse_since(text: &str) -> Option<Since> {
    if text == "0" {
        return Some(Since::Ago(0));
    }
    duration(text)
        .map(Since::Ago)
        .or_else(|| timestamp(text).map(Since::At))
}

fn duration(text: &str) -> Option<u64> {
    let mut rest = text.as_bytes();
    let mut total: u64 = 0;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=6).contains(&digits) {
            return None;
        }
        let n: u64 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest {
            [b'm', b's', ..] => (1, 2),
            [b's', ..] => (1_000, 1),
            [b'm', ..] => (60_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'd', ..] => (86_400_000, 1),
            _ => return None,
        };
        rest = &rest[len..];
        total += n * unit;
        parts += 1;
        if parts > 4 {
            return None;
        }
    }
    (parts > 0).then_some(total)
}

fn timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut millis = 0i64;
    let tail = &b[19..];
    let tail = match tail {
        [b'.', rest @ ..] => {
            let digits = rest.iter().take_while(|d| d.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            for (i, d) in rest[..digits].iter().take(3).enumerate() {
                millis += i64::from(d - b'0') * [100, 10, 1][i];
            }
            &rest[digits..]
        }
        _ => tail,
    };
    if tail != b"Z" {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm); a day past the month's end counts on into the next.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_as_the_pattern_says() {
        assert_eq!(parse_since("24h"), Some(Since::Ago(86_400_000)));
        assert_eq!(parse_since("1h30m"), Some(Since::Ago(5_400_000)));
        assert_eq!(parse_since("500ms"), Some(Since::Ago(500)));
        assert_eq!(parse_since("0"), Some(Since::Ago(0)));
        assert_eq!(parse_since("1970-01-01T00:00:00Z"), Some(Since::At(0)));
        assert_eq!(
            parse_since("2026-12-06T10:00:00.25Z"),
            Some(Since::At(1_796_551_200_250))
        );
        // Past the month's end: on into the next month.
        assert_eq!(
            parse_since("2026-02-30T00:00:00Z"),
            parse_since("2026-03-02T00:00:00Z")
        );
        assert_eq!(
            parse_since("0000-01-01T00:00:00Z"),
            Some(Since::At(-62_167_219_200_000))
        );
        for bad in [
            "",
            " 1h",
            "1h ",
            "1.5h",
            "1234567s",
            "1s1s1s1s1s",
            "h",
            "1",
            "10x",
            "2026-13-01T00:00:00Z",
            "2026-12-06T24:00:00Z",
            "2026-12-06T10:00:00",
            "2026-12-06T10:00:00+01:00",
            "2026-12-06 10:00:00Z",
            "2026-12-06T10:00:00.Z",
            "2026-12-06T10:00:00.1234567890Z",
            "2026-00-06T10:00:00Z",
        ] {
            assert_eq!(parse_since(bad), None, "{bad:?}");
        }
    }
}

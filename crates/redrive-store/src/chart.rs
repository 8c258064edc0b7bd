//! The overview chart's buckets: whole minutes, in both stores.
//!
//! SQLite keeps attempts counted by the minute (see `sqlite::minutes`), so a
//! bucket cannot be finer; PostgreSQL counts from its attempts but rounds the
//! same way, so the two answer the same question the same.

/// One minute, in milliseconds.
pub const MINUTE_MS: i64 = 60_000;

/// The start of the minute holding `at` (milliseconds since the epoch).
pub fn minute_of(at: i64) -> i64 {
    at.saturating_sub(at.rem_euclid(MINUTE_MS))
}

/// `bucket_ms` rounded up to whole minutes, at least one.
pub fn whole_minutes(bucket_ms: i64) -> i64 {
    let minutes = bucket_ms.max(1).saturating_add(MINUTE_MS - 1) / MINUTE_MS;
    minutes.saturating_mul(MINUTE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_start_at_a_whole_minute_also_before_the_epoch() {
        assert_eq!(minute_of(0), 0);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60_000);
        assert_eq!(minute_of(-1), -60_000);
        assert_eq!(whole_minutes(1_000), 60_000);
        assert_eq!(whole_minutes(60_000), 60_000);
        assert_eq!(whole_minutes(60_001), 120_000);
        assert_eq!(whole_minutes(0), 60_000);
        assert_eq!(whole_minutes(i64::MAX) % MINUTE_MS, 0);
        assert_eq!(minute_of(i64::MIN), i64::MIN);
    }
}

//! Repeated identical errors are logged once, then counted (DESIGN.md,
//! "Hardening"): a store that fails for a minute fails every claim, record
//! and enqueue in that minute, and one line per failure filled disks with
//! the same line. Each place that reports an error names itself (a site);
//! the first error of a site is logged, the same text again within the
//! window only counted, and the next line logged says how many it stood
//! for. A different error logs at once. Every error counts in
//! `redrive_errors_total{site}` whether logged or not.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long an identical error stays quiet after it was logged.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The most distinct errors remembered; past it the memory starts over
/// (a flood of all-different errors is logged, not counted).
const KEPT: usize = 1024;

struct Seen {
    logged_at: Instant,
    quiet: u64,
}

/// Each (site, error) pair: when it was last logged, and how many identical
/// ones were not since.
pub struct Quiet {
    window: Duration,
    seen: Mutex<HashMap<(&'static str, String), Seen>>,
}

impl Quiet {
    /// Errors quiet for `window` after each line.
    pub fn new(window: Duration) -> Quiet {
        Quiet {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log `text` at `site` now: `Some(n)` (log, saying it
    /// stands for `n` identical errors not logged before it) or `None`
    /// (counted, not logged).
    pub fn check(&self, site: &'static str, text: &str) -> Option<u64> {
        metrics::counter!("redrive_errors_total", "site" => site).increment(1);
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = seen.get_mut(&(site, text.to_owned())) {
            if now.duration_since(s.logged_at) < self.window {
                s.quiet += 1;
                return None;
            }
            let quiet = s.quiet;
            s.logged_at = now;
            s.quiet = 0;
            return Some(quiet);
        }
        if seen.len() >= KEPT {
            seen.clear();
        }
        seen.insert(
            (site, text.to_owned()),
            Seen {
                logged_at: now,
                quiet: 0,
            },
        );
        Some(0)
    }
}

static PROCESS: LazyLock<Quiet> = LazyLock::new(|| Quiet::new(WINDOW));

/// [`Quiet::check`] on the process's errors.
pub fn check(site: &'static str, text: &str) -> Option<u64> {
    PROCESS.check(site, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_same_error_is_logged_once_a_window_and_counted() {
        let q = Quiet::new(Duration::from_secs(60));
        let logged: Vec<Option<u64>> = (0..1000).map(|_| q.check("record", "disk full")).collect();
        assert_eq!(logged[0], Some(0));
        assert!(
            logged[1..].iter().all(Option::is_none),
            "999 identical errors: no line"
        );
        // Another site, or another error, speaks at once.
        assert_eq!(q.check("claim", "disk full"), Some(0));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(q.check("record", "database is locked"), Some(0));
        assert_eq!(q.check("record", "database is locked"), None);
        // After the window, the next line says how many it stands for.
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(q.check("record", "database is locked"), Some(1));
        assert_eq!(q.check("record", "database is locked"), None);
        assert_eq!(q.check("record", "disk full"), Some(999));
    }
}

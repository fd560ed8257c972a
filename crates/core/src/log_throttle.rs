//! At most one log line per key a minute (docs/ARCHITECTURE.md#errors): a failure that every
//! read or request meets is said once, with how many like it were left out since, instead of
//! flooding the log. The cache keeps the same rule per slot (`FlightCache::report`); this is
//! for failures outside it (a template that cannot be rendered, a role that cannot be
//! assumed).

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// One line per key in this long.
pub const EVERY: Duration = Duration::from_secs(60);

/// Keys past this many are pruned of those whose minute has passed.
const PRUNE_AT: usize = 1024;

#[derive(Debug, Default)]
pub struct LogThrottle {
    /// Per key: when it was last logged, and how many were left out since.
    logged: Mutex<HashMap<String, (Instant, u64)>>,
}

impl LogThrottle {
    /// `Some(left_out)` when a line about `key` is due (noting it), `None` when one was
    /// written within [`EVERY`] (counting this one as left out).
    pub fn due(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut logged = self.logged.lock();
        if logged.len() > PRUNE_AT {
            logged.retain(|_, (at, _)| now.duration_since(*at) < EVERY);
        }
        match logged.get_mut(key) {
            Some((at, left_out)) if now.duration_since(*at) < EVERY => {
                *left_out += 1;
                None
            }
            other => {
                let left_out = other.map_or(0, |(_, n)| *n);
                logged.insert(key.to_owned(), (now, 0));
                Some(left_out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_a_minute_per_key_counting_those_left_out() {
        let throttle = LogThrottle::default();
        assert_eq!(throttle.due("a"), Some(0));
        assert_eq!(throttle.due("a"), None);
        assert_eq!(throttle.due("a"), None);
        assert_eq!(throttle.due("b"), Some(0), "keys are apart");
        tokio::time::advance(EVERY).await;
        assert_eq!(throttle.due("a"), Some(2), "the two left out");
        assert_eq!(throttle.due("a"), None);
    }
}

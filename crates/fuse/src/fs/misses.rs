//! A budget, per uid, of lookups of names that turn out not to exist.
//!
//! A name the listing does not have is asked for upstream (docs/ARCHITECTURE.md#mount-layout),
//! which is what lets a role without ListSecrets read `prod/db`. Unbounded, it lets any user
//! who may look up names make secretsfs call Secrets Manager once per made-up name: cost and
//! throttling for every other user. So each uid has a bucket of misses that refills at a
//! steady rate; an empty bucket answers ENOENT with no call (one log line a minute per uid),
//! while names that exist, and everything cached or listed, are never held back.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Misses a uid may have at once.
pub const MISS_BURST: u32 = 100;
/// Misses a uid gets back per second.
pub const MISSES_PER_SECOND: u32 = 1;
/// Buckets kept before full ones (uids that have not missed lately) are forgotten.
const UIDS_KEPT: usize = 4096;
const REPORT_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    refused: u64,
    reported_at: Option<Instant>,
}

#[derive(Debug)]
pub struct MissBudget {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<u32, Bucket>>,
}

impl Default for MissBudget {
    fn default() -> Self {
        MissBudget::new(MISS_BURST, MISSES_PER_SECOND)
    }
}

impl MissBudget {
    pub fn new(burst: u32, per_second: u32) -> Self {
        MissBudget {
            burst: f64::from(burst),
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let earned = (now - bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.at = now;
    }

    /// Whether `uid` may still have a lookup go upstream for a name that may not exist; when
    /// not, the refusal is counted and logged (once a minute per uid, with the count).
    pub fn may_ask(&self, uid: u32) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        let Some(bucket) = buckets.get_mut(&uid) else {
            return true;
        };
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            return true;
        }
        bucket.refused += 1;
        if bucket.reported_at.is_none_or(|at| now - at >= REPORT_EVERY) {
            tracing::warn!(target: "secretsfs::fuse::fs::misses",
                uid,
                refused = bucket.refused,
                burst = self.burst,
                per_second = self.per_second,
                "too many lookups of names that do not exist: answering ENOENT without asking upstream"
            );
            bucket.reported_at = Some(now);
            bucket.refused = 0;
        }
        false
    }

    /// Charges `uid` one miss: a lookup went upstream and found nothing.
    pub fn missed(&self, uid: u32) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock();
        if buckets.len() >= UIDS_KEPT && !buckets.contains_key(&uid) {
            let (burst, per_second) = (self.burst, self.per_second);
            buckets.retain(|_, b| b.tokens + (now - b.at).as_secs_f64() * per_second < burst);
        }
        let bucket = buckets.entry(uid).or_insert(Bucket {
            tokens: self.burst,
            at: now,
            refused: 0,
            reported_at: None,
        });
        self.refill(bucket, now);
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn each_uid_has_its_own_bucket_that_refills() {
        let budget = MissBudget::new(3, 1);
        for _ in 0..3 {
            assert!(budget.may_ask(1000));
            budget.missed(1000);
        }
        assert!(!budget.may_ask(1000), "the burst is spent");
        assert!(budget.may_ask(1001), "another uid is not held back");
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert!(budget.may_ask(1000), "one back after a second");
        budget.missed(1000);
        assert!(!budget.may_ask(1000));
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..3 {
            assert!(budget.may_ask(1000));
            budget.missed(1000);
        }
        assert!(!budget.may_ask(1000), "never more than the burst");
    }
}

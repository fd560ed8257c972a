//! Counters of the cache, shared by every front end that exposes them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// The upstream operations, for per-operation call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    GetSecretValue,
    DescribeSecret,
    ListSecrets,
    BatchGetSecretValue,
}

impl Op {
    pub const ALL: [Op; 4] = [
        Op::GetSecretValue,
        Op::DescribeSecret,
        Op::ListSecrets,
        Op::BatchGetSecretValue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::GetSecretValue => "GetSecretValue",
            Op::DescribeSecret => "DescribeSecret",
            Op::ListSecrets => "ListSecrets",
            Op::BatchGetSecretValue => "BatchGetSecretValue",
        }
    }
}

tokio::task_local! {
    /// The counters and operation of the source call under way on this task. A task-local
    /// rather than a parameter: sources stay unaware of the cache, and only a source that
    /// sends several requests for one call (pages) has anything to report.
    static CALL: (Arc<Stats>, Op);
}

/// Counts one more request of the source call under way: each page after the first of a
/// ListSecrets or BatchGetSecretValue. Outside `Stats::count_requests` (a source used on its
/// own) there is nothing to count it in, and it does nothing.
pub fn count_further_request() {
    let _ = CALL.try_with(|(stats, op)| stats.upstream_call(*op));
}

#[derive(Debug, Default)]
pub struct Stats {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    coalesced_waits: AtomicU64,
    stale_serves: AtomicU64,
    refreshes_ahead: AtomicU64,
    evictions: AtomicU64,
    upstream: [AtomicU64; 4],
    upstream_errors: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Answers from a fresh cached value.
    pub hits: u64,
    /// Answers from a cached not-found.
    pub negative_hits: u64,
    /// Lookups that started an upstream fetch.
    pub misses: u64,
    /// Lookups that waited on a fetch another lookup had started.
    pub coalesced_waits: u64,
    /// Answers with a value past its TTL because the refresh failed transiently.
    pub stale_serves: u64,
    /// Fetches started ahead of a value's expiry, with no reader waiting on them.
    pub refreshes_ahead: u64,
    pub evictions: u64,
    pub upstream_calls: UpstreamCalls,
    pub upstream_errors: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UpstreamCalls {
    pub get_secret_value: u64,
    pub describe_secret: u64,
    pub list_secrets: u64,
    pub batch_get_secret_value: u64,
}

impl StatsSnapshot {
    /// Adds `other`'s counts to these.
    pub fn absorb(&mut self, other: &StatsSnapshot) {
        self.hits += other.hits;
        self.negative_hits += other.negative_hits;
        self.misses += other.misses;
        self.coalesced_waits += other.coalesced_waits;
        self.stale_serves += other.stale_serves;
        self.refreshes_ahead += other.refreshes_ahead;
        self.evictions += other.evictions;
        self.upstream_errors += other.upstream_errors;
        let (mine, theirs) = (&mut self.upstream_calls, &other.upstream_calls);
        mine.get_secret_value += theirs.get_secret_value;
        mine.describe_secret += theirs.describe_secret;
        mine.list_secrets += theirs.list_secrets;
        mine.batch_get_secret_value += theirs.batch_get_secret_value;
    }
}

impl UpstreamCalls {
    pub fn get(&self, op: Op) -> u64 {
        match op {
            Op::GetSecretValue => self.get_secret_value,
            Op::DescribeSecret => self.describe_secret,
            Op::ListSecrets => self.list_secrets,
            Op::BatchGetSecretValue => self.batch_get_secret_value,
        }
    }

    pub fn total(&self) -> u64 {
        Op::ALL.iter().map(|&op| self.get(op)).sum()
    }
}

impl Stats {
    pub(crate) fn hit(&self) {
        self.hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn negative_hit(&self) {
        self.negative_hits.fetch_add(1, Relaxed);
    }
    pub(crate) fn miss(&self) {
        self.misses.fetch_add(1, Relaxed);
    }
    pub(crate) fn coalesced_wait(&self) {
        self.coalesced_waits.fetch_add(1, Relaxed);
    }
    pub(crate) fn stale_serve(&self) {
        self.stale_serves.fetch_add(1, Relaxed);
    }
    pub(crate) fn refresh_ahead(&self) {
        self.refreshes_ahead.fetch_add(1, Relaxed);
    }
    pub(crate) fn eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
    }
    pub(crate) fn upstream_call(&self, op: Op) {
        self.upstream[op as usize].fetch_add(1, Relaxed);
    }

    /// Runs one call of a source's `op`, counting its first request now and each further one
    /// the source reports with [`count_further_request`], so that a listing of 20 pages counts
    /// 20 requests, as Secrets Manager (and its bill) counts them.
    pub(crate) async fn count_requests<T>(
        self: &Arc<Self>,
        op: Op,
        call: impl Future<Output = T>,
    ) -> T {
        self.upstream_call(op);
        CALL.scope((Arc::clone(self), op), call).await
    }
    pub(crate) fn upstream_error(&self) {
        self.upstream_errors.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let up = |op: Op| self.upstream[op as usize].load(Relaxed);
        StatsSnapshot {
            hits: self.hits.load(Relaxed),
            negative_hits: self.negative_hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            coalesced_waits: self.coalesced_waits.load(Relaxed),
            stale_serves: self.stale_serves.load(Relaxed),
            refreshes_ahead: self.refreshes_ahead.load(Relaxed),
            evictions: self.evictions.load(Relaxed),
            upstream_calls: UpstreamCalls {
                get_secret_value: up(Op::GetSecretValue),
                describe_secret: up(Op::DescribeSecret),
                list_secrets: up(Op::ListSecrets),
                batch_get_secret_value: up(Op::BatchGetSecretValue),
            },
            upstream_errors: self.upstream_errors.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_counts_its_first_request_and_each_further_one_it_reports() {
        let stats = Arc::new(Stats::default());
        count_further_request();
        let pages = stats
            .count_requests(Op::ListSecrets, async {
                count_further_request();
                tokio::task::yield_now().await;
                count_further_request();
                "three pages"
            })
            .await;
        assert_eq!(pages, "three pages");
        stats.count_requests(Op::GetSecretValue, async {}).await;
        count_further_request();
        let calls = stats.snapshot().upstream_calls;
        assert_eq!((calls.list_secrets, calls.get_secret_value), (3, 1));
        assert_eq!(calls.total(), 4, "nothing counted outside a call");
    }
}

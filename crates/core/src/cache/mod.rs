//! The one cache of a secretsfs process (docs/ARCHITECTURE.md#cache), shared by every front end.
//!
//! [`flight`] holds the mechanism (TTL, single-flight, stale-if-error, negative entries, LRU
//! bounds); [`stats`] its counters. What is cached, and how selectors map onto entries, is the
//! engine's business.

pub mod budget;
pub mod flight;
pub mod stats;

use std::time::Duration;

pub use flight::{Served, Weigh};
pub use stats::{Op, Stats, StatsSnapshot, UpstreamCalls};

/// The knobs of the cache; defaults are the agent's where it has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CacheConfig {
    pub ttl: Duration,
    /// Up to this fraction of the TTL is taken off each fetched value's at random, so that a
    /// fleet of hosts started together does not refresh in lockstep.
    pub ttl_jitter: f64,
    pub max_stale: Duration,
    pub negative_ttl: Duration,
    pub max_entries: usize,
    pub max_bytes: usize,
    /// How long a listing (ListSecrets) is reused; listings change less than values matter.
    pub list_ttl: Duration,
    /// After a failed refresh, how long a stale value is served before the next attempt.
    pub error_backoff: Duration,
}

pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_TTL_JITTER_PERCENT: u8 = 10;
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(3600);
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Sized so that a host with a few thousand secrets never evicts what `ls -l` just fetched;
/// the byte bound below is what bounds memory (values are small).
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;
/// 1000 secrets of the 64 KiB the API allows; a typical secret is well under 1 KiB.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_LIST_TTL: Duration = Duration::from_secs(60);
pub const DEFAULT_ERROR_BACKOFF: Duration = Duration::from_secs(5);

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: DEFAULT_TTL,
            ttl_jitter: f64::from(DEFAULT_TTL_JITTER_PERCENT) / 100.0,
            max_stale: DEFAULT_MAX_STALE,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            list_ttl: DEFAULT_LIST_TTL,
            error_backoff: DEFAULT_ERROR_BACKOFF,
        }
    }
}

impl CacheConfig {
    pub(crate) fn value_timing(&self) -> flight::Timing {
        flight::Timing {
            ttl: self.ttl,
            ttl_jitter: self.ttl_jitter,
            max_stale: self.max_stale,
            negative_ttl: self.negative_ttl,
            error_backoff: self.error_backoff.min(self.ttl),
        }
    }

    pub(crate) fn list_timing(&self) -> flight::Timing {
        flight::Timing {
            ttl: self.list_ttl,
            ..self.value_timing()
        }
    }

    pub fn limits(&self) -> flight::Limits {
        flight::Limits {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
        }
    }
}

//! One key's state: the value it holds, a remembered not-found or failure, the fetch under way,
//! and what a reader may be answered from them without waiting.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::{Flight, Outcome, Served, Timing};
use crate::error::{Error, ErrorKind};

pub(super) struct Stored<V> {
    pub(super) value: Arc<V>,
    pub(super) fetched_at: Instant,
    pub(super) fresh_until: Instant,
    /// When a refresh ahead of expiry is due, if the value is still in use.
    pub(super) refresh_at: Instant,
}

pub(super) struct SlotState<V> {
    pub(super) good: Option<Stored<V>>,
    pub(super) not_found: Option<(Error, Instant)>,
    /// After a transient failure: when to try again, and the failure.
    pub(super) failing: Option<(Instant, Error)>,
    pub(super) flight: Option<Flight<V>>,
    /// What this slot is charged against the byte bound.
    pub(super) bytes: usize,
    /// Set once the slot has left the map; a fetch that lands later must not be charged.
    pub(super) evicted: bool,
    /// The failure last logged for this key, to log each class once a minute at most.
    pub(super) reported: Option<Reported>,
    /// When a reader last asked for this key: a value read within its TTL is refreshed ahead.
    pub(super) last_read: Option<Instant>,
    /// After failed fetches: when fetching ahead of readers may try again, and how many failed
    /// in a row (the wait doubles with each), so that a watched secret that cannot be read is
    /// not asked for on every round.
    pub(super) ahead_retry: Option<(Instant, u32)>,
    /// Set when the key was expired while a fetch was under way: what that fetch brings may
    /// predate the expiry, so it lands already due.
    pub(super) expired_in_flight: bool,
}

/// A failure that was logged: its class, when, and how many like it were not logged since.
pub(super) struct Reported {
    pub(super) kind: ErrorKind,
    pub(super) at: Instant,
    pub(super) suppressed: u64,
}

/// One log line per key and class of failure in this long, with the count of those left out.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(60);

pub(super) struct Slot<V> {
    pub(super) last_used: AtomicU64,
    pub(super) state: Mutex<SlotState<V>>,
}

pub(super) enum Answer<V> {
    Fresh(Outcome<V>),
    Negative(Outcome<V>),
    Stale(Outcome<V>),
}

impl<V> SlotState<V> {
    pub(super) fn answer(&self, now: Instant, timing: &Timing) -> Option<Answer<V>> {
        if let Some(good) = &self.good {
            let fresh_until = good.fresh_until;
            if now < fresh_until {
                return Some(Answer::Fresh(Ok(Served {
                    value: good.value.clone(),
                    stale: false,
                    fresh_until,
                    refresh_error: None,
                })));
            }
            if let Some((retry_after, error)) = &self.failing
                && now < *retry_after
                && now <= fresh_until + timing.max_stale
            {
                return Some(Answer::Stale(Ok(Served {
                    value: good.value.clone(),
                    stale: true,
                    fresh_until: *retry_after,
                    refresh_error: Some(error.clone()),
                })));
            }
        }
        match &self.not_found {
            Some((err, until)) if now < *until => Some(Answer::Negative(Err(err.clone()))),
            _ => None,
        }
    }

    /// Past its back-off, a value whose refresh failed transiently, while it may still be
    /// served stale: what a reader gets while the next try runs.
    pub(super) fn stale_while_retrying(&self, now: Instant, timing: &Timing) -> Option<Served<V>> {
        let good = self.good.as_ref()?;
        let (_, error) = self.failing.as_ref()?;
        let servable = !timing.max_stale.is_zero() && now <= good.fresh_until + timing.max_stale;
        servable.then(|| Served {
            value: good.value.clone(),
            stale: true,
            fresh_until: now,
            refresh_error: Some(error.clone()),
        })
    }
}

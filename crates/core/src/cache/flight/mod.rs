//! A keyed cache with TTL, single-flight, stale-if-error, a negative cache and LRU bounds.
//!
//! One mechanism serves secret values, descriptions and listings alike. Each key has a slot;
//! a slot holds the last good value, a cached not-found, and at most one fetch in flight that
//! every concurrent reader of the key awaits (single-flight, for cold misses and refreshes).
//!
//! Hits must not serialize threads on one lock: the slot map is sharded (dashmap), each slot
//! has its own short-held mutex, and recency is an atomic stamp per slot, so hits on different
//! keys touch no common lock. Eviction scans the stamps for the oldest slot; that costs O(n)
//! but runs only after a fetch, whose network round trip dwarfs it.
//!
//! Fetches run as tokio tasks, so a reader that gives up (a cancelled request) does not cancel
//! the fetch others are waiting on, and the result lands in the cache either way.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use tokio::time::Instant;

use super::budget::{Budget, Member};
use super::stats::Stats;
use crate::error::{Error, Result};

mod landing;
mod slot;

use slot::{Answer, Slot, SlotState};

impl<K, V> Member for Inner<K, V>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    fn oldest(&self, keep: u64) -> Option<u64> {
        self.oldest_slot(keep, false).map(|(_, stamp)| stamp)
    }

    fn oldest_valueless(&self, keep: u64) -> Option<u64> {
        self.oldest_slot(keep, true).map(|(_, stamp)| stamp)
    }

    fn release(&self, stamp: u64) -> bool {
        let victim = self
            .slots
            .iter()
            .find(|e| e.value().last_used.load(Relaxed) == stamp)
            .map(|e| e.key().clone());
        let Some(victim) = victim else {
            return false;
        };
        // Not if it was used or began a fetch since it was chosen.
        let removed = self.slots.remove_if(&victim, |_, slot| {
            slot.last_used.load(Relaxed) == stamp
                && slot.state.try_lock().is_some_and(|s| s.flight.is_none())
        });
        let Some((_, slot)) = removed else {
            return false;
        };
        let mut state = slot.state.lock();
        state.evicted = true;
        state.good = None;
        let bytes = std::mem::take(&mut state.bytes);
        self.bytes.fetch_sub(bytes, Relaxed);
        self.budget.recharge(bytes, 0);
        self.budget.remove_entry();
        self.stats.eviction();
        tracing::debug!(target: "secretsfs::cache::flight", what = self.what, key = ?victim, "evicted");
        true
    }
}

/// How long answers stay good.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub ttl: Duration,
    /// The fraction of the TTL that may be taken off at random, per fetch.
    pub ttl_jitter: f64,
    /// How long past its TTL a value may still be served when refreshing it fails
    /// transiently; zero disables stale-if-error.
    pub max_stale: Duration,
    /// How long a not-found is remembered; zero disables the negative cache.
    pub negative_ttl: Duration,
    /// After a failed refresh, how long the stale value is served before trying again, so a
    /// throttled upstream is not hammered by every read.
    pub error_backoff: Duration,
}

impl Timing {
    fn jittered_ttl(&self) -> Duration {
        if self.ttl_jitter <= 0.0 {
            return self.ttl;
        }
        self.ttl
            .mul_f64(1.0 - self.ttl_jitter.min(1.0) * fastrand::f64())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// The size a cached value is charged against the byte bound.
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// A cached answer, shared by every reader it was served to.
#[derive(Debug)]
pub struct Served<V> {
    pub value: Arc<V>,
    /// True when the value is past its TTL and served because the refresh failed transiently.
    pub stale: bool,
    /// Until when this answer may be reused without asking again.
    pub fresh_until: Instant,
    /// For a stale answer, the failure that kept it from being refreshed.
    pub refresh_error: Option<Error>,
}

impl<V> Clone for Served<V> {
    fn clone(&self) -> Self {
        Served {
            value: self.value.clone(),
            stale: self.stale,
            fresh_until: self.fresh_until,
            refresh_error: self.refresh_error.clone(),
        }
    }
}

pub type Outcome<V> = Result<Served<V>>;
pub type Flight<V> = Shared<BoxFuture<'static, Outcome<V>>>;

/// Told of every value that lands, with the one it replaced (none for a first fetch).
pub type Observer<K, V> =
    Box<dyn Fn(&FlightCache<K, V>, &K, Option<&Arc<V>>, &Arc<V>) + Send + Sync>;

/// Why a fetch was started: a reader needs the value, or it is refreshed ahead of expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launch {
    Read,
    RefreshAhead,
}

struct Inner<K, V> {
    what: &'static str,
    observer: std::sync::OnceLock<Observer<K, V>>,
    slots: DashMap<K, Arc<Slot<V>>>,
    /// This cache's bytes, for its own counters; the budget holds the total.
    bytes: AtomicUsize,
    timing: Timing,
    budget: Arc<Budget>,
    stats: Arc<Stats>,
}

pub struct FlightCache<K, V> {
    inner: Arc<Inner<K, V>>,
}

/// Another handle on the same cache.
impl<K, V> Clone for FlightCache<K, V> {
    fn clone(&self) -> Self {
        FlightCache {
            inner: self.inner.clone(),
        }
    }
}

impl<K, V> FlightCache<K, V>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    /// `what` names the kind of entry in log lines ("secret value", "listing"); `budget` is
    /// shared with the engine's other caches.
    pub fn new(what: &'static str, timing: Timing, budget: Arc<Budget>, stats: Arc<Stats>) -> Self {
        let inner = Arc::new(Inner {
            what,
            observer: std::sync::OnceLock::new(),
            slots: DashMap::new(),
            bytes: AtomicUsize::new(0),
            timing,
            budget: budget.clone(),
            stats,
        });
        budget.join(Arc::downgrade(&inner) as Weak<dyn Member>);
        FlightCache { inner }
    }

    /// Answers from the cache alone, without waiting: `None` means a fetch is needed. For front
    /// ends that answer hits inline and hand misses elsewhere.
    pub fn try_get(&self, key: &K) -> Option<Outcome<V>> {
        let slot = self.inner.slots.get(key)?.value().clone();
        self.inner.touch(&slot);
        let now = Instant::now();
        let mut state = slot.state.lock();
        state.last_read = Some(now);
        let answer = state.answer(now, &self.inner.timing)?;
        drop(state);
        Some(self.inner.count(answer))
    }

    /// Answers from the cache, or fetches with `load` (once, however many readers wait).
    /// With `refresh`, a fresh cached value is not enough: a fetch is made, or joined.
    pub async fn get<F>(&self, key: &K, refresh: bool, load: F) -> Outcome<V>
    where
        F: FnOnce() -> BoxFuture<'static, Result<V>>,
    {
        self.get_as(key, refresh, load, true).await
    }

    /// Like [`FlightCache::get`] with no reader behind it (a prefetch): the value does not
    /// count as in use, so it is not refreshed ahead on that account.
    pub async fn get_unread<F>(&self, key: &K, load: F) -> Outcome<V>
    where
        F: FnOnce() -> BoxFuture<'static, Result<V>>,
    {
        self.get_as(key, false, load, false).await
    }

    async fn get_as<F>(&self, key: &K, refresh: bool, load: F, read: bool) -> Outcome<V>
    where
        F: FnOnce() -> BoxFuture<'static, Result<V>>,
    {
        let inner = &self.inner;
        let slot = inner.slot(key);
        let flight = {
            let mut state = slot.state.lock();
            let now = Instant::now();
            if read {
                state.last_read = Some(now);
            }
            if !refresh && let Some(answer) = state.answer(now, &inner.timing) {
                return inner.count(answer);
            }
            // Upstream has been failing: the retry goes on without this reader, who keeps the
            // stale value rather than wait out the SDK's retries of a call likely to fail
            // again. Readers thus wait once per outage, not once per back-off.
            let stale = (!refresh)
                .then(|| state.stale_while_retrying(now, &inner.timing))
                .flatten();
            let flight = match &state.flight {
                Some(flight) => {
                    if stale.is_none() {
                        inner.stats.coalesced_wait();
                    }
                    flight.clone()
                }
                None => {
                    inner.stats.miss();
                    Inner::start(inner, key, &slot, &mut state, load(), Launch::Read)
                }
            };
            if let Some(served) = stale {
                inner.stats.stale_serve();
                return Ok(served);
            }
            flight
        };
        let outcome = flight.await;
        if matches!(&outcome, Ok(served) if served.stale) {
            inner.stats.stale_serve();
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.inner.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.slots.is_empty()
    }

    /// Bytes charged against the bound, for tests and metrics.
    pub fn bytes(&self) -> usize {
        self.inner.bytes.load(Relaxed)
    }

    /// True when a read of `key` would start a fetch: nothing servable is cached and no fetch
    /// is under way. Counts nothing and leaves recency alone.
    pub fn needs_fetch(&self, key: &K) -> bool {
        self.would_fetch(key, false)
    }

    /// Whether a read of `key` would start a fetch; `ahead` also asks that it is not waiting
    /// out the back-off of failed fetches ahead of readers.
    fn would_fetch(&self, key: &K, ahead: bool) -> bool {
        let Some(slot) = self.inner.slots.get(key).map(|s| s.value().clone()) else {
            return true;
        };
        let state = slot.state.lock();
        let now = Instant::now();
        state.flight.is_none()
            && state.answer(now, &self.inner.timing).is_none()
            && !(ahead && state.ahead_retry.is_some_and(|(retry, _)| now < retry))
    }

    pub fn contains(&self, key: &K) -> bool {
        self.inner.slots.contains_key(key)
    }

    /// Sets the one observer of landed values (the engine's change detection).
    pub fn observe(&self, observer: Observer<K, V>) {
        if self.inner.observer.set(observer).is_err() {
            tracing::error!(target: "secretsfs::cache::flight", what = self.inner.what, "a second observer was refused");
        }
    }

    /// The keys worth refreshing ahead at `now`: values still in use (read within their TTL, or
    /// `watched`), past half their life, with no fetch under way and not backing off after a
    /// failure. `due` is set for those whose own refresh moment has come; the others may join
    /// a batch that goes out anyway.
    pub fn refresh_candidates(
        &self,
        now: Instant,
        watched: impl Fn(&K) -> bool,
    ) -> Vec<Candidate<K>> {
        let ttl = self.inner.timing.ttl;
        self.inner
            .slots
            .iter()
            .filter_map(|entry| {
                let state = entry.value().state.try_lock()?;
                let good = state.good.as_ref()?;
                let half_life = good.fetched_at + (good.fresh_until - good.fetched_at) / 2;
                let backing_off = state
                    .failing
                    .as_ref()
                    .is_some_and(|(retry, _)| now < *retry)
                    || state.ahead_retry.is_some_and(|(retry, _)| now < retry);
                if state.flight.is_some() || backing_off || now < half_life {
                    return None;
                }
                let in_use = state
                    .last_read
                    .is_some_and(|read| now.duration_since(read) <= ttl);
                (in_use || watched(entry.key())).then(|| Candidate {
                    key: entry.key().clone(),
                    due: now >= good.refresh_at,
                })
            })
            .collect()
    }

    /// Refreshes `key` ahead of its expiry: starts a fetch unless one is under way, and returns
    /// it to await. Readers meanwhile keep getting the value they have, without waiting.
    pub fn refresh_ahead<F>(&self, key: &K, load: F) -> Flight<V>
    where
        F: FnOnce() -> BoxFuture<'static, Result<V>>,
    {
        let inner = &self.inner;
        let slot = inner.slot(key);
        let mut state = slot.state.lock();
        if let Some(flight) = &state.flight {
            return flight.clone();
        }
        inner.stats.refresh_ahead();
        Inner::start(inner, key, &slot, &mut state, load(), Launch::RefreshAhead)
    }

    /// Whether fetching `key` ahead of readers is due: a read would fetch it, and it is not
    /// waiting out the back-off of failed fetches.
    pub fn fetch_ahead_due(&self, key: &K) -> bool {
        self.would_fetch(key, true)
    }

    /// Makes the cached values of the keys `which` selects due now: the next read fetches
    /// them again (and may still be served them stale if that fails).
    pub fn expire(&self, which: impl Fn(&K) -> bool) {
        let now = Instant::now();
        for entry in self.inner.slots.iter().filter(|e| which(e.key())) {
            let mut state = entry.value().state.lock();
            if state.flight.is_some() {
                state.expired_in_flight = true;
            }
            if let Some(good) = state.good.as_mut() {
                good.fresh_until = good.fresh_until.min(now);
                good.refresh_at = good.refresh_at.min(now);
            }
        }
    }
}

/// A key worth refreshing ahead (see [`FlightCache::refresh_candidates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<K> {
    pub key: K,
    pub due: bool,
}

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    fn slot(&self, key: &K) -> Arc<Slot<V>> {
        let slot = match self.slots.get(key) {
            Some(slot) => slot.value().clone(),
            None => self
                .slots
                .entry(key.clone())
                .or_insert_with(|| {
                    self.budget.add_entry();
                    Arc::new(Slot {
                        last_used: AtomicU64::new(0),
                        state: Mutex::new(SlotState {
                            good: None,
                            not_found: None,
                            failing: None,
                            flight: None,
                            bytes: 0,
                            evicted: false,
                            reported: None,
                            last_read: None,
                            ahead_retry: None,
                            expired_in_flight: false,
                        }),
                    })
                })
                .value()
                .clone(),
        };
        self.touch(&slot);
        slot
    }

    fn touch(&self, slot: &Slot<V>) {
        slot.last_used.store(self.budget.stamp(), Relaxed);
    }

    fn count(&self, answer: Answer<V>) -> Outcome<V> {
        match answer {
            Answer::Fresh(o) => {
                self.stats.hit();
                o
            }
            Answer::Negative(o) => {
                self.stats.negative_hit();
                o
            }
            Answer::Stale(o) => {
                self.stats.stale_serve();
                o
            }
        }
    }

    /// The least recently used slot other than the one stamped `keep` that may go (no
    /// fetch in flight), and its stamp.
    /// The least recently used slot with no fetch under way (and, if `valueless`, no value).
    fn oldest_slot(&self, keep: u64, valueless: bool) -> Option<(K, u64)> {
        self.slots
            .iter()
            .map(|e| {
                let stamp = e.value().last_used.load(Relaxed);
                (e, stamp)
            })
            .filter(|(_, stamp)| *stamp != keep)
            .filter(|(e, _)| {
                e.value()
                    .state
                    .try_lock()
                    .is_some_and(|s| s.flight.is_none() && !(valueless && s.good.is_some()))
            })
            .min_by_key(|(_, stamp)| *stamp)
            .map(|(e, stamp)| (e.key().clone(), stamp))
    }
}

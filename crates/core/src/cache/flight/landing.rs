//! A fetch from launch to landing: it runs as a task of its own, and what it brings is stored
//! in the key's slot, charged against the byte budget, logged when it failed, and shown to the
//! observer when it is a new value.

use std::hash::Hash;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::slot::{REPORT_EVERY, Reported, Slot, SlotState, Stored};
use super::{Flight, FlightCache, Inner, Launch, Outcome, Served, Weigh};
use crate::error::{Error, ErrorKind, Result};

/// What a reader gets for `err`, for the log: an error of its kind, which each front end
/// answers in its own way (docs/ARCHITECTURE.md#errors: for `Unavailable`, EIO from the mount,
/// and from the HTTP API the upstream's status passed through, or 502).
fn refusal(err: &Error) -> String {
    format!("an error ({:?})", err.kind())
}

/// The share of a value's life after which it is refreshed ahead when still in use, drawn at
/// random per value: late enough that a value is not fetched much more often than its TTL
/// (values due together share a batch call), early enough that the refresh lands before it
/// expires.
const REFRESH_AT: std::ops::Range<f64> = 0.88..0.93;

/// The longest wait between fetches ahead of readers of a key that keeps failing.
const AHEAD_RETRY_MAX: Duration = Duration::from_secs(300);
/// The same for a watched name that does not exist (yet): one call a minute at most, so that
/// a secret created after the start is seen within a minute.
const AHEAD_MISSING_RETRY_MAX: Duration = Duration::from_secs(60);

impl<K, V> Inner<K, V>
where
    K: Hash + Eq + Clone + std::fmt::Debug + Send + Sync + 'static,
    V: Weigh + Send + Sync + 'static,
{
    /// Launches a fetch of `key` and records it in the slot, for readers to join.
    pub(super) fn start(
        inner: &Arc<Self>,
        key: &K,
        slot: &Arc<Slot<V>>,
        state: &mut SlotState<V>,
        load: BoxFuture<'static, Result<V>>,
        why: Launch,
    ) -> Flight<V> {
        let flight = Inner::launch(inner.clone(), key.clone(), slot.clone(), load, why);
        state.flight = Some(flight.clone());
        flight
    }

    fn launch(
        inner: Arc<Self>,
        key: K,
        slot: Arc<Slot<V>>,
        load: BoxFuture<'static, Result<V>>,
        why: Launch,
    ) -> Flight<V> {
        let task = tokio::spawn(async move {
            let result = AssertUnwindSafe(load)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Internal, "the fetch panicked")));
            let (outcome, replaced) = inner.settle(&key, &slot, result, why);
            if let (Some(observer), Ok(served)) = (inner.observer.get(), &outcome)
                && !served.stale
            {
                let cache = FlightCache {
                    inner: inner.clone(),
                };
                observer(&cache, &key, replaced.as_ref(), &served.value);
            }
            outcome
        });
        async move {
            task.await
                .unwrap_or_else(|_| Err(Error::new(ErrorKind::Internal, "the fetch was cancelled")))
        }
        .boxed()
        .shared()
    }

    /// Stores what a fetch brought and decides what its waiters get; a value that lands also
    /// returns the one it replaced, for the observer.
    fn settle(
        &self,
        key: &K,
        slot: &Slot<V>,
        result: Result<V>,
        why: Launch,
    ) -> (Outcome<V>, Option<Arc<V>>) {
        let now = Instant::now();
        let timing = &self.timing;
        let mut state = slot.state.lock();
        state.flight = None;
        let before = state.bytes;
        let mut replaced = None;
        let outcome = match result {
            Ok(value) => {
                if let Some(reported) = state.reported.take() {
                    tracing::warn!(target: "secretsfs::cache::flight::landing", operation = self.what, key = ?key,
                        left_out = reported.suppressed, "succeeds again after failing");
                }
                state.bytes = value.weight();
                let value = Arc::new(value);
                // A refresh ahead already lands at a random moment, which is what keeps a fleet
                // of hosts apart; values refreshed together keep one lifetime, so that they stay
                // due together and share batch calls.
                let life = match why {
                    Launch::Read => timing.jittered_ttl(),
                    Launch::RefreshAhead => timing.ttl,
                };
                let fresh_until = if std::mem::take(&mut state.expired_in_flight) {
                    now
                } else {
                    now + life
                };
                state.ahead_retry = None;
                replaced = state
                    .good
                    .replace(Stored {
                        value: value.clone(),
                        fetched_at: now,
                        fresh_until,
                        refresh_at: now
                            + life.mul_f64(
                                REFRESH_AT.start
                                    + fastrand::f64() * (REFRESH_AT.end - REFRESH_AT.start),
                            ),
                    })
                    .map(|old| old.value);
                state.not_found = None;
                state.failing = None;
                Ok(Served {
                    value,
                    stale: false,
                    fresh_until,
                    refresh_error: None,
                })
            }
            Err(err) if err.is_transient() => {
                self.stats.upstream_error();
                let servable = state.good.as_ref().filter(|good| {
                    !timing.max_stale.is_zero() && now <= good.fresh_until + timing.max_stale
                });
                match servable.map(|good| (good.value.clone(), now - good.fetched_at)) {
                    Some((value, age)) => {
                        let retry_after = now + timing.error_backoff;
                        let readers_get =
                            format!("the last good value, {} s old (stale)", age.as_secs());
                        self.report(key, &mut state, &err, &readers_get);
                        state.failing = Some((retry_after, err.clone()));
                        Ok(Served {
                            value,
                            stale: true,
                            fresh_until: retry_after,
                            refresh_error: Some(err),
                        })
                    }
                    None => {
                        self.report(key, &mut state, &err, &refusal(&err));
                        Err(err)
                    }
                }
            }
            Err(err) => {
                // A definite answer (gone, denied, undecryptable) retires the old value at once:
                // it must not be served again, and its buffer is zeroed as it drops.
                self.stats.upstream_error();
                if err.kind() != ErrorKind::NotFound {
                    self.report(key, &mut state, &err, &refusal(&err));
                }
                state.good = None;
                state.bytes = 0;
                state.failing = None;
                if err.kind() == ErrorKind::NotFound && !timing.negative_ttl.is_zero() {
                    state.not_found = Some((err.clone(), now + timing.negative_ttl));
                }
                Err(err)
            }
        };
        if let Err(err) = &outcome {
            state.expired_in_flight = false;
            let failures = state.ahead_retry.map_or(0, |(_, n)| n) + 1;
            let most = if err.kind() == ErrorKind::NotFound {
                AHEAD_MISSING_RETRY_MAX
            } else {
                AHEAD_RETRY_MAX
            };
            let wait = timing
                .error_backoff
                .max(Duration::from_secs(1))
                .saturating_mul(1 << failures.min(8))
                .min(most);
            state.ahead_retry = Some((now + wait, failures));
        }
        // Charged under the slot's lock, which eviction also takes, so the total never
        // passes through a value that was not true.
        let evicted = state.evicted;
        if !evicted {
            self.bytes.fetch_add(state.bytes, Relaxed);
            self.bytes.fetch_sub(before, Relaxed);
            self.budget.recharge(before, state.bytes);
        }
        drop(state);
        if !evicted {
            self.budget.enforce(slot.last_used.load(Relaxed));
        }
        (outcome, replaced)
    }

    /// Logs a failed fetch at warn, with what its readers get, once per key and class of
    /// failure in [`REPORT_EVERY`]; the line says how many like it were left out since.
    fn report(&self, key: &K, state: &mut SlotState<V>, err: &Error, readers_get: &str) {
        let now = Instant::now();
        match &mut state.reported {
            Some(r) if r.kind == err.kind() && now.duration_since(r.at) < REPORT_EVERY => {
                r.suppressed += 1;
            }
            reported => {
                let left_out = reported.as_ref().map_or(0, |r| r.suppressed);
                let code = err.upstream_detail().map(|u| u.code.as_str());
                tracing::warn!(target: "secretsfs::cache::flight::landing", operation = self.what, key = ?key, code, error = %err,
                    readers_get, left_out, "fetch failed");
                *reported = Some(Reported {
                    kind: err.kind(),
                    at: now,
                    suppressed: 0,
                });
            }
        }
    }
}

//! Fetching ahead of readers (docs/ARCHITECTURE.md#cache): the prefetch of a listing's values
//! (`ls -l` needs every size) and the refresh of values in use before they expire, so that a
//! reader of a secret in steady use never waits on the network.
//!
//! Both go out in BatchGetSecretValue calls of 20 ids where they read AWSCURRENT, since that
//! is all the batch call returns; other stages and version ids cost one GetSecretValue each.
//! Where the batch call is refused (policies often grant GetSecretValue alone), each name
//! falls back to its own GetSecretValue, and refreshes skip the batch for a while.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use super::{BATCH_REFUSAL_REMEMBERED, Engine, ValueKey, upstream};
use crate::cache::Op;
use crate::cache::flight::Candidate;
use crate::error::{ErrorKind, Result};
use crate::selector::VersionRef;
use crate::source::SecretValue;

/// The answers of one batch call, each taken by the fetch of its own name.
type BatchResult = futures::future::Shared<
    BoxFuture<'static, Result<Arc<parking_lot::Mutex<HashMap<String, Result<SecretValue>>>>>>,
>;

/// How often the refresher looks for values due: often enough to catch the window between a
/// value's refresh moment and its expiry (7% of the TTL at least), rarely enough to cost nothing.
fn refresh_tick(ttl: Duration) -> Duration {
    (ttl / 40).clamp(Duration::from_millis(25), Duration::from_secs(1))
}

impl Engine {
    /// Brings the AWSCURRENT values of `names` into the cache, batched, for listings that need
    /// every size (`ls -l`), for names fetched at start and for a CSI mount's objects. Names already cached or being
    /// fetched are skipped; each name's fetch is a regular single-flight entry, so a reader
    /// arriving meanwhile waits on the batch instead of calling again.
    pub async fn prefetch_current(&self, names: &[String]) {
        let current = VersionRef::current();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| self.values.needs_fetch(&((*n).clone(), current.clone())))
            .cloned()
            .collect();
        // Batched as refreshes are: not again while the batch call is taken as refused.
        let fetches = self
            .current_loads(&missing)
            .into_iter()
            .map(|(key, load)| async move {
                let _ = self.values.get_unread(&key, move || load).await;
            });
        futures::future::join_all(fetches).await;
    }

    /// Refreshes values in use ahead of their expiry, forever; the mount, `serve` and `watch`
    /// run it beside their front ends. Values nobody reads (and nobody watches) expire as
    /// they would without it.
    pub async fn refresh_ahead(self: Arc<Self>) {
        let mut tick = tokio::time::interval(refresh_tick(self.config.ttl));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh_round();
        }
    }

    /// One look for values due: starts their fetches (tasks of their own) and returns.
    pub(crate) fn refresh_round(&self) {
        let now = Instant::now();
        let watched = self.watched.read().clone();
        self.fetch_watched_missing(&watched);
        let candidates = self
            .values
            .refresh_candidates(now, |key| watched.contains(key));
        let (current, other): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.key.1.is_current());
        // A batch costs one call whether it carries one name or twenty: once one current value
        // is due, every current value past half its life goes with it, and values refreshed
        // together stay due together.
        if current.iter().any(|c| c.due) {
            let names: Vec<String> = current.into_iter().map(|c| c.key.0).collect();
            self.refresh_current(&names);
        }
        for Candidate { key, .. } in other.into_iter().filter(|c| c.due) {
            let load = self.single_load(key.clone());
            drop(self.values.refresh_ahead(&key, move || load));
        }
        let described = self.descriptions.refresh_candidates(now, |_| false);
        for Candidate { key, .. } in described.into_iter().filter(|c| c.due) {
            let (source, stats, id) = (self.source.clone(), self.stats.clone(), key.clone());
            let load = async move {
                upstream(&stats, Op::DescribeSecret, source.describe_secret(&id)).await
            }
            .boxed();
            drop(self.descriptions.refresh_ahead(&key, move || load));
        }
    }

    /// Refreshes the values due for a refresh now and waits for them: for a process that is
    /// frozen between requests (a Lambda extension), which refreshes while it runs and must
    /// have no fetch in flight when it is frozen. Values in use past half their life go
    /// together with one that is due, in batches, as [`Engine::refresh_ahead`] sends them.
    pub async fn refresh_due_now(&self) {
        let now = Instant::now();
        let candidates = self.values.refresh_candidates(now, |_| false);
        let (current, other): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| c.key.1.is_current());
        let mut flights = Vec::new();
        if current.iter().any(|c| c.due) {
            let names: Vec<String> = current.into_iter().map(|c| c.key.0).collect();
            for (key, load) in self.current_loads(&names) {
                flights.push(self.values.refresh_ahead(&key, move || load));
            }
        }
        for Candidate { key, .. } in other.into_iter().filter(|c| c.due) {
            let load = self.single_load(key.clone());
            flights.push(self.values.refresh_ahead(&key, move || load));
        }
        futures::future::join_all(flights).await;
    }

    /// Makes every cached value, description and listing due now: after the process was
    /// frozen for longer than its monotonic clock shows, nothing may be served as fresh on
    /// the clock's word (a failed refetch may still serve them stale).
    pub fn expire_all(&self) {
        self.values.expire(|_| true);
        self.descriptions.expire(|_| true);
        self.listings.expire(|_| true);
    }

    /// Watched values not cached at all (never fetched, or evicted): fetched like a reader
    /// would, so that a change can be seen.
    fn fetch_watched_missing(&self, watched: &std::collections::HashSet<ValueKey>) {
        let (current, other): (Vec<&ValueKey>, Vec<&ValueKey>) = watched
            .iter()
            .filter(|key| self.values.fetch_ahead_due(key))
            .partition(|(_, version)| version.is_current());
        for key in other {
            let load = self.single_load(key.clone());
            let (values, key) = (self.values.clone(), key.clone());
            tokio::spawn(async move {
                let _ = values.get_unread(&key, move || load).await;
            });
        }
        let names: Vec<String> = current.into_iter().map(|(n, _)| n.clone()).collect();
        for (key, load) in self.current_loads(&names) {
            let values = self.values.clone();
            tokio::spawn(async move {
                let _ = values.get_unread(&key, move || load).await;
            });
        }
    }

    /// Refreshes the AWSCURRENT values of `names`, batched.
    fn refresh_current(&self, names: &[String]) {
        for (key, load) in self.current_loads(names) {
            drop(self.values.refresh_ahead(&key, move || load));
        }
    }

    /// The fetch of each of `names`' AWSCURRENT value, [`crate::source::SecretSource::batch_limit`]
    /// (20 for Secrets Manager) to a batch call, or one call each where batches are refused.
    fn current_loads(
        &self,
        names: &[String],
    ) -> Vec<(ValueKey, BoxFuture<'static, Result<SecretValue>>)> {
        let mut loads = Vec::with_capacity(names.len());
        for chunk in names.chunks(self.source.batch_limit().max(1)) {
            let batch = self.maybe_batch(chunk);
            for name in chunk {
                let key = (name.clone(), VersionRef::current());
                let load = match &batch {
                    Some(batch) => self.taken_from_batch(batch.clone(), name.clone()),
                    None => self.single_load(key.clone()),
                };
                loads.push((key, load));
            }
        }
        loads
    }

    /// A batch call for `ids`, unless the batch call was refused lately or there is one id.
    fn maybe_batch(&self, ids: &[String]) -> Option<BatchResult> {
        let refused = self
            .batch_refused_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        (!refused && ids.len() > 1).then(|| self.batch_call(ids.to_vec()))
    }

    /// One BatchGetSecretValue, shared by the fetches of the names it covers.
    fn batch_call(&self, ids: Vec<String>) -> BatchResult {
        let (source, stats) = (self.source.clone(), self.stats.clone());
        let refused_until = self.batch_refused_until.clone();
        async move {
            let call = source.batch_get_secret_value(&ids);
            let items = upstream(&stats, Op::BatchGetSecretValue, call).await;
            match items {
                Ok(items) => Ok(Arc::new(parking_lot::Mutex::new(
                    items.into_iter().collect(),
                ))),
                Err(e) => {
                    if e.kind() == ErrorKind::AccessDenied {
                        let mut until = refused_until.lock();
                        if until.is_none() {
                            tracing::info!(target: "secretsfs::engine::ahead", error = %e, "BatchGetSecretValue is refused: \
                                values are fetched with GetSecretValue, one call each");
                        }
                        *until = Some(Instant::now() + BATCH_REFUSAL_REMEMBERED);
                    }
                    Err(e)
                }
            }
        }
        .boxed()
        .shared()
    }

    /// The fetch of one name's AWSCURRENT value out of a batch; where the batch call itself
    /// was refused, the name's own GetSecretValue.
    fn taken_from_batch(
        &self,
        batch: BatchResult,
        name: String,
    ) -> BoxFuture<'static, Result<SecretValue>> {
        let fallback = self.single_load((name.clone(), VersionRef::current()));
        async move {
            match batch.await {
                Ok(items) => {
                    let item = items.lock().remove(&name);
                    match item {
                        Some(item) => item,
                        None => fallback.await,
                    }
                }
                Err(e) if e.kind() == ErrorKind::AccessDenied => fallback.await,
                Err(e) => Err(e),
            }
        }
        .boxed()
    }

    /// One GetSecretValue for one key.
    pub(super) fn single_load(
        &self,
        (id, version): ValueKey,
    ) -> BoxFuture<'static, Result<SecretValue>> {
        let (source, stats) = (self.source.clone(), self.stats.clone());
        async move {
            upstream(
                &stats,
                Op::GetSecretValue,
                source.get_secret_value(&id, &version),
            )
            .await
        }
        .boxed()
    }
}

//! The engine: what the front ends call. It turns selectors into cached upstream fetches and
//! values into the bytes a selector names.
//!
//! Every selector of one secret and version shares one cache entry, so reading `db`,
//! `db:user` and `db::AWSCURRENT` costs one GetSecretValue. The engine never blocks a thread
//! on the network: fetches are tokio tasks; [`Engine::get_cached`] answers hits without
//! waiting, for front ends that must not block.

use std::sync::Arc;

use futures::FutureExt;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::cache::budget::Budget;
use crate::cache::flight::FlightCache;
use crate::cache::{CacheConfig, Op, Served, Stats, StatsSnapshot, Weigh};

use crate::error::Result;
use crate::extract;
use crate::selector::{Selector, VersionRef};
use crate::source::{DynSource, SecretDescription, SecretListing, SecretValue};

type ValueKey = (String, VersionRef);

impl Weigh for SecretValue {
    fn weight(&self) -> usize {
        self.payload.len() + self.arn.len() + self.name.len() + self.version_id.len()
    }
}

impl Weigh for SecretDescription {
    fn weight(&self) -> usize {
        self.arn.len()
            + self.name.len()
            + self
                .versions
                .iter()
                .map(|(id, stages)| id.len() + stages.iter().map(String::len).sum::<usize>())
                .sum::<usize>()
    }
}

impl Weigh for Vec<SecretListing> {
    fn weight(&self) -> usize {
        self.iter().map(|l| l.arn.len() + l.name.len()).sum()
    }
}

/// The bytes a selector names, with the version they came from.
#[derive(Debug)]
pub struct Resolved {
    pub secret: Arc<SecretValue>,
    /// Set when the selector names a JSON key; otherwise the whole payload is the answer.
    extracted: Option<Zeroizing<Vec<u8>>>,
    pub stale: bool,
    pub fresh_until: Instant,
}

impl Resolved {
    /// A whole value of one version, fresh for a minute (unit tests of the front ends, which
    /// have the core with `memory-source`).
    #[cfg(any(test, feature = "memory-source"))]
    #[doc(hidden)]
    pub fn of_bytes(version_id: &str, bytes: &[u8]) -> Resolved {
        Resolved {
            secret: Arc::new(SecretValue {
                arn: String::new(),
                name: "test".into(),
                version_id: version_id.into(),
                stages: vec!["AWSCURRENT".into()],
                created: None,
                payload: crate::source::Payload::Binary(Zeroizing::new(bytes.to_vec())),
                answer: Default::default(),
            }),
            extracted: None,
            stale: false,
            fresh_until: Instant::now() + std::time::Duration::from_secs(60),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match &self.extracted {
            Some(bytes) => bytes,
            None => self.secret.payload.as_bytes(),
        }
    }
}

/// A value that landed in the cache: a first fetch (`previous` is `None`) or one that differs
/// from the value it replaced (a new version, or new bytes under the same version id, as the
/// file source allows). Values that land unchanged are not told.
#[derive(Debug)]
pub struct Landed {
    pub secret_id: String,
    pub version: VersionRef,
    pub previous: Option<Arc<SecretValue>>,
    pub value: Arc<SecretValue>,
}

impl Landed {
    /// A value replaced by another, not a first fetch.
    pub fn is_rotation(&self) -> bool {
        self.previous.is_some()
    }
}

/// How many landed values wait for a slow listener before the oldest are dropped (it is told
/// how many it missed).
const CHANGES_QUEUED: usize = 4096;

/// How long the refusal of BatchGetSecretValue is believed before it is tried again.
const BATCH_REFUSAL_REMEMBERED: std::time::Duration = std::time::Duration::from_secs(600);

pub struct Engine {
    source: DynSource,
    values: FlightCache<ValueKey, SecretValue>,
    descriptions: FlightCache<String, SecretDescription>,
    listings: FlightCache<Option<String>, Vec<SecretListing>>,
    budget: Arc<Budget>,
    stats: Arc<Stats>,
    config: CacheConfig,
    changes: tokio::sync::broadcast::Sender<Arc<Landed>>,
    /// Values refreshed ahead even when nobody reads them (what change hooks watch).
    watched: parking_lot::RwLock<std::collections::HashSet<ValueKey>>,
    /// Until when BatchGetSecretValue is taken as refused, so that refreshes go straight to
    /// GetSecretValue instead of being refused again every round.
    batch_refused_until: Arc<parking_lot::Mutex<Option<Instant>>>,
}

impl Engine {
    pub fn new(source: DynSource, config: CacheConfig) -> Self {
        Engine::with_budget(
            source,
            config,
            Budget::new(config.limits()),
            Arc::new(Stats::default()),
        )
    }

    /// An engine of another source (another role's) beside `self`: its own caches, so no value
    /// of one is served by the other, under the same budget of entries and bytes and counted in
    /// the same statistics.
    pub fn sharing(&self, source: DynSource) -> Self {
        Engine::with_budget(source, self.config, self.budget.clone(), self.stats.clone())
    }

    /// An engine under a budget and statistics of its own choosing: the first of a family
    /// whose members ([`Engine::sharing`]) are made on demand, as the CSI provider's engines
    /// per identity.
    pub fn with_budget(
        source: DynSource,
        config: CacheConfig,
        budget: Arc<Budget>,
        stats: Arc<Stats>,
    ) -> Self {
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_QUEUED);
        let engine = Engine {
            values: FlightCache::new(
                "secret value",
                config.value_timing(),
                budget.clone(),
                stats.clone(),
            ),
            descriptions: FlightCache::new(
                "description",
                config.value_timing(),
                budget.clone(),
                stats.clone(),
            ),
            listings: FlightCache::new(
                "listing",
                config.list_timing(),
                budget.clone(),
                stats.clone(),
            ),
            budget,
            source: crate::source::checked::Checked::wrap(source),
            stats,
            config,
            changes,
            watched: Default::default(),
            batch_refused_until: Default::default(),
        };
        engine.observe_values();
        engine
    }

    /// Tells the listeners of [`Engine::changes`] of every value that lands new, and retires
    /// what a new current version makes out of date: the secret's description and its other
    /// stages' values (a rotation moves AWSPREVIOUS too), so that every front end and layout
    /// shows the rotation from the same moment.
    fn observe_values(&self) {
        let changes = self.changes.clone();
        let descriptions = self.descriptions.clone();
        self.values
            .observe(Box::new(move |values, (id, version), previous, value| {
                let same = previous.is_some_and(|p| {
                    p.version_id == value.version_id
                        && p.payload.as_bytes() == value.payload.as_bytes()
                });
                if same {
                    return;
                }
                if previous.is_some() && version.is_current() {
                    descriptions.expire(|name| name == id);
                    values.expire(|(name, other)| {
                        name == id && other.version_id.is_none() && !other.is_current()
                    });
                }
                // No listener is not an error: a `get` has none.
                let _ = changes.send(Arc::new(Landed {
                    secret_id: id.clone(),
                    version: version.clone(),
                    previous: previous.cloned(),
                    value: value.clone(),
                }));
            }));
    }

    /// Every value that lands new from now on (see [`Landed`]).
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<Landed>> {
        self.changes.subscribe()
    }

    /// Keeps the AWSCURRENT values of these secrets refreshed ahead whether read or not, in
    /// place of those watched before.
    pub fn watch(&self, names: impl IntoIterator<Item = (String, VersionRef)>) {
        *self.watched.write() = names.into_iter().collect();
    }

    /// The one budget of entries and bytes of everything cached; the mount's inodes charge the
    /// versions they hold to it too.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// The source's name of the call behind `op` (GetParameter for a Parameter Store source).
    pub fn operation_name(&self, op: crate::cache::Op) -> &'static str {
        self.source.operation_name(op)
    }

    /// The bytes a selector names, from the cache or from one (shared) upstream fetch.
    pub async fn get(&self, selector: &Selector) -> Result<Resolved> {
        let served = self
            .secret_value(&selector.secret_id, &selector.version_ref(), false)
            .await?;
        resolve(selector, served)
    }

    /// Like [`Engine::get`], but answers only from the cache: `None` means a fetch is needed.
    /// Whether reading the AWSCURRENT value of `selector`'s secret would start a fetch (a
    /// lookup deciding whether to prefetch ahead). Counts nothing.
    pub fn needs_fetch_current(&self, selector: &Selector) -> bool {
        let key = (selector.secret_id.clone(), VersionRef::current());
        self.values.needs_fetch(&key)
    }

    /// A whole secret version from the cache alone (fresh, stale-if-error, or a cached
    /// not-found): `None` means a fetch is needed.
    pub fn cached_value(
        &self,
        secret_id: &str,
        version: &VersionRef,
    ) -> Option<Result<Served<SecretValue>>> {
        self.values
            .try_get(&(secret_id.to_owned(), version.clone()))
    }

    pub fn get_cached(&self, selector: &Selector) -> Option<Result<Resolved>> {
        let key = (selector.secret_id.clone(), selector.version_ref());
        let outcome = self.values.try_get(&key)?;
        Some(outcome.and_then(|served| resolve(selector, served)))
    }

    /// A whole secret version, as GetSecretValue answers it. `refresh` skips a fresh cached
    /// value (the agent's `refreshNow`), still joining a fetch already under way.
    pub async fn secret_value(
        &self,
        secret_id: &str,
        version: &VersionRef,
        refresh: bool,
    ) -> Result<Served<SecretValue>> {
        let key = (secret_id.to_owned(), version.clone());
        self.values
            .get(&key, refresh, || self.single_load(key.clone()))
            .await
    }

    /// The version -> stages map of a secret, cached like values.
    pub async fn describe(&self, secret_id: &str) -> Result<Served<SecretDescription>> {
        let key = secret_id.to_owned();
        self.descriptions
            .get(&key, false, || {
                let (source, stats, id) = (self.source.clone(), self.stats.clone(), key.clone());
                async move { upstream(&stats, Op::DescribeSecret, source.describe_secret(&id)).await }
                    .boxed()
            })
            .await
    }

    /// Secret names, optionally under a prefix, cached for the listing TTL.
    pub async fn list(&self, prefix: Option<&str>) -> Result<Served<Vec<SecretListing>>> {
        let key = prefix.map(str::to_owned);
        self.listings
            .get(&key, false, || {
                let (source, stats, prefix) =
                    (self.source.clone(), self.stats.clone(), key.clone());
                async move {
                    upstream(
                        &stats,
                        Op::ListSecrets,
                        source.list_secrets(prefix.as_deref()),
                    )
                    .await
                }
                .boxed()
            })
            .await
    }
}

/// One upstream call, each of its requests counted, and timed as a whole (the latency
/// histogram of `/metrics`).
async fn upstream<T>(
    stats: &Arc<Stats>,
    op: Op,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let started = std::time::Instant::now();
    let result = stats.count_requests(op, call).await;
    metrics::histogram!(UPSTREAM_LATENCY, "operation" => op.name())
        .record(started.elapsed().as_secs_f64());
    result
}

/// The name of the upstream latency histogram.
pub const UPSTREAM_LATENCY: &str = "secretsfs_upstream_call_duration_seconds";

fn resolve(selector: &Selector, served: Served<SecretValue>) -> Result<Resolved> {
    let extracted = selector
        .json_key
        .as_deref()
        .map(|key| extract::json_key(&served.value.payload, key, &selector.secret_id))
        .transpose()?;
    Ok(Resolved {
        secret: served.value,
        extracted,
        stale: served.stale,
        fresh_until: served.fresh_until,
    })
}

mod ahead;
mod render;
pub mod roles;
#[cfg(test)]
mod tests;

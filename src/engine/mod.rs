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
use std::collections::HashMap;

use crate::error::{Error, ErrorKind, Result};
use crate::extract;
use crate::selector::{Selector, VersionRef};
use crate::source::{BATCH_LIMIT, DynSource, SecretDescription, SecretListing, SecretValue};

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
    /// A whole value of one version, fresh for a minute (unit tests of the front ends).
    #[cfg(test)]
    pub fn of_bytes(version_id: &str, bytes: &[u8]) -> Resolved {
        Resolved {
            secret: Arc::new(SecretValue {
                arn: String::new(),
                name: "test".into(),
                version_id: version_id.into(),
                stages: vec!["AWSCURRENT".into()],
                created: None,
                payload: crate::source::Payload::Binary(Zeroizing::new(bytes.to_vec())),
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

pub struct Engine {
    source: DynSource,
    values: FlightCache<ValueKey, SecretValue>,
    descriptions: FlightCache<String, SecretDescription>,
    listings: FlightCache<Option<String>, Vec<SecretListing>>,
    budget: Arc<Budget>,
    stats: Arc<Stats>,
    config: CacheConfig,
}

impl Engine {
    pub fn new(source: DynSource, config: CacheConfig) -> Self {
        let stats = Arc::new(Stats::default());
        let budget = Budget::new(config.limits());
        Engine {
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
            source,
            stats,
            config,
        }
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
            .get(&key, refresh, || {
                let (source, stats) = (self.source.clone(), self.stats.clone());
                let (id, version) = key.clone();
                async move {
                    upstream(
                        &stats,
                        Op::GetSecretValue,
                        source.get_secret_value(&id, &version),
                    )
                    .await
                }
                .boxed()
            })
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

impl Engine {
    /// Brings the AWSCURRENT values of `names` into the cache with BatchGetSecretValue, 20 ids
    /// a call, for listings that need every size (`ls -l`). Names already cached or being
    /// fetched are skipped; each name's fetch is a regular single-flight entry, so a reader
    /// arriving meanwhile waits on the batch instead of calling again. Where the batch call
    /// itself is refused (policies often grant GetSecretValue but not BatchGetSecretValue),
    /// each name falls back to its own GetSecretValue.
    pub async fn prefetch_current(&self, names: &[String]) {
        let current = VersionRef::current();
        let missing: Vec<String> = names
            .iter()
            .filter(|n| self.values.needs_fetch(&((*n).clone(), current.clone())))
            .cloned()
            .collect();
        let mut fetches = Vec::new();
        for chunk in missing.chunks(BATCH_LIMIT) {
            let batch = self.batch_call(chunk.to_vec());
            for name in chunk {
                let key = (name.clone(), current.clone());
                let (batch, source, stats) =
                    (batch.clone(), self.source.clone(), self.stats.clone());
                let name = name.clone();
                fetches.push(async move {
                    let _ = self
                        .values
                        .get(&key, false, move || {
                            async move {
                                match batch.await {
                                    Ok(items) => items.lock().remove(&name).unwrap_or_else(|| {
                                        Err(Error::not_found(format!("secret {name} not found")))
                                    }),
                                    Err(e) if e.kind() == ErrorKind::AccessDenied => {
                                        let current = VersionRef::current();
                                        let call = source.get_secret_value(&name, &current);
                                        upstream(&stats, Op::GetSecretValue, call).await
                                    }
                                    Err(e) => Err(e),
                                }
                            }
                            .boxed()
                        })
                        .await;
                });
            }
        }
        futures::future::join_all(fetches).await;
    }

    /// One BatchGetSecretValue, shared by the fetches of the names it covers.
    fn batch_call(&self, ids: Vec<String>) -> BatchResult {
        let (source, stats) = (self.source.clone(), self.stats.clone());
        async move {
            let call = source.batch_get_secret_value(&ids);
            let items = upstream(&stats, Op::BatchGetSecretValue, call).await?;
            Ok(Arc::new(parking_lot::Mutex::new(
                items.into_iter().collect(),
            )))
        }
        .boxed()
        .shared()
    }
}

/// The answers of one batch call, each taken by the fetch of its own name.
type BatchResult = futures::future::Shared<
    futures::future::BoxFuture<
        'static,
        Result<Arc<parking_lot::Mutex<HashMap<String, Result<SecretValue>>>>>,
    >,
>;

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

#[cfg(test)]
mod failure_log_tests;
#[cfg(test)]
mod tests;

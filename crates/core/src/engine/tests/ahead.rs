//! Refresh ahead and change notices, against the in-memory source under tokio's paused clock:
//! every figure is a count of calls or of readers that waited, never a timing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::advance;

use crate::cache::{DEFAULT_TTL, Op};
use crate::engine::*;
use crate::error::Error;
use crate::source::memory::MemorySource;

const TTL: Duration = DEFAULT_TTL;

/// An engine with its refresher running, as the mount and `serve` have it.
fn refreshing(config: CacheConfig) -> (Arc<MemorySource>, Arc<Engine>) {
    let source = Arc::new(MemorySource::new());
    let engine = Arc::new(Engine::new(source.clone(), config));
    tokio::spawn(engine.clone().refresh_ahead());
    (source, engine)
}

fn jittered() -> CacheConfig {
    CacheConfig::default()
}

async fn read(engine: &Engine, s: &str) -> Vec<u8> {
    let selector = Selector::parse(s).unwrap();
    engine.get(&selector).await.unwrap().bytes().to_vec()
}

/// Readers that waited on an upstream call: cold misses and joins of a fetch under way.
fn waited(engine: &Engine) -> u64 {
    let stats = engine.stats();
    stats.misses + stats.coalesced_waits
}

fn calls(source: &MemorySource) -> usize {
    source.calls(Op::GetSecretValue) + source.calls(Op::BatchGetSecretValue)
}

/// Advances the paused clock in small steps, so that the refresher's ticks and the fetches
/// they start run in between.
async fn pass(time: Duration) {
    let step = Duration::from_millis(250);
    let mut passed = Duration::ZERO;
    while passed < time {
        advance(step).await;
        tokio::task::yield_now().await;
        passed += step;
    }
}

#[tokio::test(start_paused = true)]
async fn a_secret_read_steadily_never_makes_a_reader_wait_after_the_first_read() {
    let (source, engine) = refreshing(jittered());
    source.put("db", "v1");
    let mut rotated = false;
    let mut seen_v2_after = None;
    for second in 0..5 * TTL.as_secs() {
        let value = read(&engine, "db").await;
        if second == 2 * TTL.as_secs() {
            source.put("db", "v2");
            rotated = true;
        }
        if rotated && value == b"v2" && seen_v2_after.is_none() {
            seen_v2_after = Some(second - 2 * TTL.as_secs());
        }
        pass(Duration::from_secs(1)).await;
    }
    assert_eq!(
        waited(&engine),
        1,
        "only the first read waited on the network"
    );
    let refreshes = engine.stats().refreshes_ahead;
    assert!(
        (4..=7).contains(&refreshes),
        "{refreshes} refreshes in 5 TTLs"
    );
    assert_eq!(calls(&source) as u64, 1 + refreshes);
    let after = seen_v2_after.expect("the rotation was seen");
    assert!(after <= TTL.as_secs(), "seen {after} s after the rotation");
}

#[tokio::test(start_paused = true)]
async fn a_value_nobody_reads_is_refreshed_at_most_once_more_then_expires() {
    let (source, engine) = refreshing(jittered());
    source.put("db", "v1");
    read(&engine, "db").await;
    pass(5 * TTL).await;
    assert_eq!(
        source.calls(Op::GetSecretValue),
        2,
        "one refresh within the read's TTL"
    );
    assert!(
        engine.needs_fetch_current(&Selector::whole("db")),
        "then it expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_hundred_watched_secrets_cost_at_most_six_calls_per_ttl() {
    let (source, engine) = refreshing(jittered());
    let names: Vec<String> = (0..100).map(|i| format!("app/s{i:03}")).collect();
    for name in &names {
        source.put(name, "v");
    }
    engine.watch(names.iter().map(|n| (n.clone(), VersionRef::current())));
    pass(Duration::from_secs(1)).await;
    assert_eq!(
        engine.values.len(),
        100,
        "watched values are fetched unread"
    );
    let start = calls(&source);
    assert_eq!(start, 5, "in batches of 20");
    const TTLS: u32 = 10;
    pass(TTL * TTLS).await;
    let per_ttl = (calls(&source) - start) as f64 / f64::from(TTLS);
    println!("100 watched secrets: {per_ttl} calls per TTL");
    assert!(per_ttl <= 6.0, "{per_ttl} calls per TTL");
    assert_eq!(source.calls(Op::GetSecretValue), 0, "all of them batched");
    assert_eq!(waited(&engine), 100, "no reader; the first fetches only");
}

#[tokio::test(start_paused = true)]
async fn refreshes_fall_back_to_get_secret_value_and_remember_the_batch_refusal() {
    let (source, engine) = refreshing(jittered());
    for name in ["a", "b", "c"] {
        source.put(name, "v");
    }
    engine.watch(["a", "b", "c"].map(|n| (n.to_owned(), VersionRef::current())));
    source.fail_next(
        Error::new(
            crate::error::ErrorKind::AccessDenied,
            "BatchGetSecretValue denied",
        ),
        1,
    );
    pass(Duration::from_secs(1)).await;
    assert_eq!(source.calls(Op::BatchGetSecretValue), 1);
    assert_eq!(source.calls(Op::GetSecretValue), 3, "each name on its own");
    pass(BATCH_REFUSAL_REMEMBERED - Duration::from_secs(5)).await;
    assert_eq!(
        source.calls(Op::BatchGetSecretValue),
        1,
        "not asked again while the refusal is remembered"
    );
    assert!(
        source.calls(Op::GetSecretValue) >= 6,
        "refreshed one by one"
    );
    pass(TTL).await;
    assert_eq!(source.calls(Op::BatchGetSecretValue), 2, "then tried again");
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_fails_keeps_serving_the_value_without_making_readers_wait() {
    let (source, engine) = refreshing(jittered());
    source.put("db", "v1");
    read(&engine, "db").await;
    source.fail_next(tests::transient(), 1000);
    for _ in 0..TTL.as_secs() + 30 {
        assert_eq!(read(&engine, "db").await, b"v1");
        pass(Duration::from_secs(1)).await;
    }
    assert!(engine.stats().stale_serves > 0, "served stale past the TTL");
    assert_eq!(engine.stats().misses, 1);
}

#[tokio::test(start_paused = true)]
async fn a_rotation_is_told_once_with_both_versions_and_an_unchanged_refresh_is_not() {
    let (source, engine) = refreshing(jittered());
    let v1 = source.put("db", "v1");
    let mut changes = engine.changes();
    engine.watch([("db".to_owned(), VersionRef::current())]);
    pass(Duration::from_secs(1)).await;
    let first = changes.try_recv().expect("the first fetch is told");
    assert!(!first.is_rotation());
    pass(2 * TTL).await;
    assert!(
        changes.try_recv().is_err(),
        "refreshes found the same version"
    );
    let v2 = source.put("db", "v2");
    pass(TTL).await;
    let change = changes.try_recv().expect("the rotation is told");
    assert_eq!(change.previous.as_ref().unwrap().version_id, v1);
    assert_eq!(change.value.version_id, v2);
    assert!(changes.try_recv().is_err(), "once");
}

#[tokio::test(start_paused = true)]
async fn a_rotation_retires_the_other_stages_so_every_layout_shows_it_together() {
    let (source, engine) = refreshing(jittered());
    source.put("db", "v1");
    source.put("db", "v2");
    assert_eq!(read(&engine, "db::AWSPREVIOUS").await, b"v1");
    assert_eq!(read(&engine, "db").await, b"v2");
    source.put("db", "v3");
    // Only the current value is read: its refresh finds v3, and AWSPREVIOUS follows at once.
    for _ in 0..TTL.as_secs() {
        read(&engine, "db").await;
        pass(Duration::from_secs(1)).await;
    }
    assert_eq!(read(&engine, "db").await, b"v3");
    assert_eq!(read(&engine, "db::AWSPREVIOUS").await, b"v2");
}

#[tokio::test(start_paused = true)]
async fn values_prefetched_for_a_listing_are_not_refreshed_unless_read() {
    let (source, engine) = refreshing(jittered());
    let names: Vec<String> = (0..40).map(|i| format!("dir/s{i:02}")).collect();
    for name in &names {
        source.put(name, "v");
    }
    engine.prefetch_current(&names).await;
    read(&engine, "dir/s00").await;
    assert_eq!(calls(&source), 2, "two batches");
    pass(3 * TTL).await;
    assert_eq!(
        calls(&source),
        3,
        "one refresh, of the value that was read: {:?}",
        engine.stats()
    );
}

#[tokio::test(start_paused = true)]
async fn a_watched_secret_that_cannot_be_read_is_asked_for_with_a_growing_back_off() {
    let (source, engine) = refreshing(CacheConfig {
        negative_ttl: Duration::ZERO,
        ..jittered()
    });
    engine.watch([("missing".to_owned(), VersionRef::current())]);
    pass(Duration::from_secs(300)).await;
    let calls = source.calls(Op::GetSecretValue);
    // Every tick (1 s) would be 300; the back-off doubles from 10 s to a minute for a name
    // that does not exist (10, 20, 40, then every 60 s).
    assert!((6..=8).contains(&calls), "{calls} calls in 5 minutes");
}

/// A source whose batch answers leave out the ids given as ARNs, as the service's answer
/// cannot be matched to a partial ARN.
struct ArnsUnmatched(Arc<MemorySource>);

#[async_trait::async_trait]
impl crate::source::SecretSource for ArnsUnmatched {
    async fn get_secret_value(
        &self,
        id: &str,
        version: &VersionRef,
    ) -> crate::error::Result<crate::source::SecretValue> {
        let name = id.rsplit(':').next().unwrap_or(id);
        self.0.get_secret_value(name, version).await
    }
    async fn describe_secret(
        &self,
        id: &str,
    ) -> crate::error::Result<crate::source::SecretDescription> {
        self.0.describe_secret(id).await
    }
    async fn list_secrets(
        &self,
        prefix: Option<&str>,
    ) -> crate::error::Result<Vec<crate::source::SecretListing>> {
        self.0.list_secrets(prefix).await
    }
    async fn batch_get_secret_value(
        &self,
        ids: &[String],
    ) -> crate::error::Result<Vec<crate::source::BatchItem>> {
        let names: Vec<String> = ids
            .iter()
            .filter(|id| !id.starts_with("arn:"))
            .cloned()
            .collect();
        self.0.batch_get_secret_value(&names).await
    }
}

#[tokio::test(start_paused = true)]
async fn an_id_a_batch_answer_leaves_out_is_fetched_alone_not_taken_for_missing() {
    let memory = Arc::new(MemorySource::new());
    memory.put("db", "v1");
    memory.put("other", "v1");
    let engine = Arc::new(Engine::new(
        Arc::new(ArnsUnmatched(memory.clone())),
        jittered(),
    ));
    tokio::spawn(engine.clone().refresh_ahead());
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db";
    for _ in 0..3 * TTL.as_secs() {
        for id in [arn, "db", "other"] {
            assert_eq!(read(&engine, id).await, b"v1", "{id}");
        }
        pass(Duration::from_secs(1)).await;
    }
    assert!(
        memory.calls(Op::BatchGetSecretValue) >= 2,
        "refreshed in batches"
    );
    assert_eq!(engine.stats().negative_hits, 0);
}

//! The cache's behaviour through the engine, against the in-memory source under tokio's
//! paused clock: every figure here is a count, never a timing.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio::time::advance;

use super::*;

mod ahead;
mod failure_log;
use crate::cache::{DEFAULT_TTL, Op};
use crate::error::{Error, ErrorKind, Upstream};
use crate::source::memory::MemorySource;

fn engine_with(config: CacheConfig) -> (Arc<MemorySource>, Engine) {
    let source = Arc::new(MemorySource::new());
    let engine = Engine::new(source.clone(), config);
    (source, engine)
}

/// Without jitter, so that expiry falls exactly at the TTL.
fn config() -> CacheConfig {
    CacheConfig {
        ttl_jitter: 0.0,
        ..CacheConfig::default()
    }
}

fn engine() -> (Arc<MemorySource>, Engine) {
    engine_with(config())
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

async fn read(engine: &Engine, s: &str) -> Result<Vec<u8>> {
    engine.get(&sel(s)).await.map(|r| r.bytes().to_vec())
}

fn gets(source: &MemorySource) -> usize {
    source.calls(Op::GetSecretValue)
}

fn transient() -> Error {
    Error::upstream(
        ErrorKind::Unavailable,
        "GetSecretValue: ThrottlingException: Rate exceeded",
        Upstream {
            code: "ThrottlingException".into(),
            status: Some(400),
            message: None,
        },
    )
}

#[tokio::test(start_paused = true)]
async fn values_expire_after_the_ttl_and_are_fetched_again() {
    let (source, engine) = engine();
    source.put("db", "v1");
    assert_eq!(read(&engine, "db").await.unwrap(), b"v1");
    source.put("db", "v2");
    advance(DEFAULT_TTL - Duration::from_secs(1)).await;
    assert_eq!(read(&engine, "db").await.unwrap(), b"v1", "still fresh");
    assert_eq!(gets(&source), 1);
    advance(Duration::from_secs(2)).await;
    assert_eq!(
        read(&engine, "db").await.unwrap(),
        b"v2",
        "refetched after the TTL"
    );
    assert_eq!(gets(&source), 2);
    let stats = engine.stats();
    assert_eq!((stats.hits, stats.misses), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_cold_readers_cause_one_call() {
    let (source, engine) = engine();
    source.put("db", "v1");
    source.set_latency(Duration::from_millis(200));
    let reads = join_all((0..100).map(|_| read(&engine, "db"))).await;
    assert!(reads.iter().all(|r| r.as_deref().ok() == Some(&b"v1"[..])));
    assert_eq!(gets(&source), 1);
    let stats = engine.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.coalesced_waits, 99);
    assert_eq!(stats.upstream_calls.get_secret_value, 1);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_readers_of_an_expired_value_cause_one_refresh() {
    let (source, engine) = engine();
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.put("db", "v2");
    source.set_latency(Duration::from_millis(200));
    advance(DEFAULT_TTL + Duration::from_secs(1)).await;
    let reads = join_all((0..100).map(|_| read(&engine, "db"))).await;
    assert!(reads.iter().all(|r| r.as_deref().ok() == Some(&b"v2"[..])));
    assert_eq!(gets(&source), 2);
    assert_eq!(engine.stats().coalesced_waits, 99);
}

#[tokio::test(start_paused = true)]
async fn all_selectors_of_a_secret_share_one_fetch() {
    let (source, engine) = engine();
    source.put("db", r#"{"user":"app","password":"pw"}"#);
    source.set_latency(Duration::from_millis(50));
    let concurrent = join_all(
        [
            "db",
            "db:user",
            "db:password",
            "db::AWSCURRENT",
            "db:user:AWSCURRENT",
        ]
        .map(|s| read(&engine, s)),
    )
    .await;
    assert_eq!(concurrent[1].as_deref().unwrap(), b"app");
    assert_eq!(concurrent[2].as_deref().unwrap(), b"pw");
    assert_eq!(gets(&source), 1);
    assert_eq!(read(&engine, "db:password").await.unwrap(), b"pw");
    assert_eq!(gets(&source), 1, "later reads of other selectors are hits");
    // Another stage is another version: its own fetch.
    read(&engine, "db::AWSPREVIOUS").await.unwrap_err();
    assert_eq!(gets(&source), 2);
}

#[tokio::test(start_paused = true)]
async fn the_least_recently_used_entry_is_evicted_at_the_entry_bound() {
    let (source, engine) = engine_with(CacheConfig {
        max_entries: 3,
        ..config()
    });
    for name in ["a", "b", "c", "d"] {
        source.put(name, name);
    }
    for name in ["a", "b", "c", "a"] {
        read(&engine, name).await.unwrap();
    }
    assert_eq!(gets(&source), 3);
    read(&engine, "d").await.unwrap();
    assert_eq!(engine.stats().evictions, 1);
    read(&engine, "a").await.unwrap();
    read(&engine, "c").await.unwrap();
    assert_eq!(gets(&source), 4, "a and c stayed");
    read(&engine, "b").await.unwrap();
    assert_eq!(gets(&source), 5, "b, least recently used, was evicted");
}

#[tokio::test(start_paused = true)]
async fn names_that_do_not_exist_evict_each_other_before_any_value() {
    let (source, engine) = engine_with(CacheConfig {
        max_entries: 3,
        ..config()
    });
    source.put("a", "a");
    source.put("b", "b");
    read(&engine, "a").await.unwrap();
    read(&engine, "b").await.unwrap();
    for i in 0..50 {
        read(&engine, &format!("missing-{i}")).await.unwrap_err();
    }
    assert_eq!(
        engine.stats().evictions,
        49,
        "each miss pushed out the one before"
    );
    read(&engine, "a").await.unwrap();
    read(&engine, "b").await.unwrap();
    assert_eq!(
        source.calls(Op::GetSecretValue),
        52,
        "a and b stayed cached through 50 misses"
    );
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_evicts_too() {
    let (source, engine) = engine_with(CacheConfig {
        max_bytes: 3000,
        ..config()
    });
    for name in ["a", "b", "c"] {
        source.put(name, &"x".repeat(1000));
        read(&engine, name).await.unwrap();
    }
    assert!(engine.values.bytes() <= 3000);
    assert_eq!(engine.stats().evictions, 1);
    read(&engine, "c").await.unwrap();
    read(&engine, "b").await.unwrap();
    assert_eq!(gets(&source), 3);
    read(&engine, "a").await.unwrap();
    assert_eq!(gets(&source), 4, "a, the oldest, was evicted");
}

#[tokio::test(start_paused = true)]
async fn transient_failures_serve_the_stale_value_up_to_max_stale() {
    let ttl = Duration::from_secs(10);
    let (source, engine) = engine_with(CacheConfig {
        ttl,
        max_stale: Duration::from_secs(60),
        error_backoff: Duration::from_secs(5),
        ..config()
    });
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.fail_next(transient(), usize::MAX);

    advance(ttl + Duration::from_secs(1)).await;
    let served = engine.get(&sel("db")).await.unwrap();
    assert!(served.stale);
    assert_eq!(served.bytes(), b"v1");
    assert_eq!(gets(&source), 2);

    // Within the back-off the stale value is served without asking again.
    advance(Duration::from_secs(2)).await;
    assert!(engine.get(&sel("db")).await.unwrap().stale);
    assert_eq!(gets(&source), 2);
    assert_eq!(engine.stats().stale_serves, 2);

    // After it, one more try (behind the reader), and the stale value again.
    advance(Duration::from_secs(4)).await;
    assert!(engine.get(&sel("db")).await.unwrap().stale);
    tokio::task::yield_now().await;
    assert_eq!(gets(&source), 3);

    // Past ttl + max_stale the error comes through.
    advance(Duration::from_secs(60)).await;
    let err = engine.get(&sel("db")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);

    // Recovery: a good answer replaces the stale state.
    source.clear_failures();
    assert!(!engine.get(&sel("db")).await.unwrap().stale);
}

/// While upstream keeps failing, readers wait on the first failed refresh only: each retry
/// after the back-off runs behind them while they get the stale value at once, and the read
/// that sets off the first retry after recovery is followed by fresh values.
#[tokio::test(start_paused = true)]
async fn while_upstream_keeps_failing_readers_wait_once_and_retries_run_behind_them() {
    let (ttl, backoff, latency) = (
        Duration::from_secs(10),
        Duration::from_secs(5),
        Duration::from_secs(3),
    );
    let (source, engine) = engine_with(CacheConfig {
        ttl,
        max_stale: Duration::from_secs(600),
        error_backoff: backoff,
        ..config()
    });
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.set_latency(latency);
    source.fail_next(transient(), usize::MAX);
    advance(ttl).await;

    let started = tokio::time::Instant::now();
    assert!(engine.get(&sel("db")).await.unwrap().stale);
    assert_eq!(
        started.elapsed(),
        latency,
        "the first failure is waited for"
    );
    for retry in 1..=3 {
        tokio::time::sleep(backoff).await;
        let started = tokio::time::Instant::now();
        let served = engine.get(&sel("db")).await.unwrap();
        assert!(served.stale && served.bytes() == b"v1", "retry {retry}");
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "retry {retry} was waited for"
        );
        // The retry fails meanwhile (a second later than it, not at the same instant); one
        // call each.
        tokio::time::sleep(latency + Duration::from_secs(1)).await;
        assert_eq!(gets(&source), 2 + retry);
    }

    source.clear_failures();
    source.put("db", "v2");
    tokio::time::sleep(backoff).await;
    assert!(engine.get(&sel("db")).await.unwrap().stale);
    tokio::time::sleep(latency + Duration::from_secs(1)).await;
    let served = engine.get(&sel("db")).await.unwrap();
    assert!(!served.stale && served.bytes() == b"v2");
    assert_eq!(gets(&source), 6);
}

#[tokio::test(start_paused = true)]
async fn max_stale_zero_disables_stale_if_error() {
    let (source, engine) = engine_with(CacheConfig {
        max_stale: Duration::ZERO,
        ..config()
    });
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.fail_next(transient(), 1);
    advance(DEFAULT_TTL + Duration::from_secs(1)).await;
    assert_eq!(
        read(&engine, "db").await.unwrap_err().kind(),
        ErrorKind::Unavailable
    );
    assert_eq!(engine.stats().stale_serves, 0);
}

#[tokio::test(start_paused = true)]
async fn non_transient_errors_are_not_masked_by_a_stale_value() {
    for (kind, code) in [
        (ErrorKind::NotFound, "ResourceNotFoundException"),
        (ErrorKind::AccessDenied, "AccessDeniedException"),
        (ErrorKind::Decryption, "DecryptionFailure"),
        (ErrorKind::InvalidRequest, "InvalidRequestException"),
    ] {
        let (source, engine) = engine();
        source.put("db", "v1");
        read(&engine, "db").await.unwrap();
        let err = Error::upstream(
            kind,
            code,
            Upstream {
                code: code.into(),
                status: Some(400),
                message: None,
            },
        );
        source.fail_next(err, 1);
        advance(DEFAULT_TTL + Duration::from_secs(1)).await;
        assert_eq!(
            read(&engine, "db").await.unwrap_err().kind(),
            kind,
            "{code}"
        );
        assert_eq!(engine.stats().stale_serves, 0, "{code}");
        // The old value is gone, not served later as stale either.
        source.fail_next(transient(), 1);
        assert!(read(&engine, "db").await.is_err(), "{code}");
    }
}

#[tokio::test(start_paused = true)]
async fn not_found_is_remembered_for_the_negative_ttl() {
    let (source, engine) = engine();
    let err = read(&engine, "missing").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(
        read(&engine, "missing").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(gets(&source), 1);
    assert_eq!(engine.stats().negative_hits, 1);
    // Created in the meantime: visible once the negative entry expires.
    source.put("missing", "now here");
    advance(crate::cache::DEFAULT_NEGATIVE_TTL + Duration::from_secs(1)).await;
    assert_eq!(read(&engine, "missing").await.unwrap(), b"now here");
    assert_eq!(gets(&source), 2);
}

#[tokio::test(start_paused = true)]
async fn negative_ttl_zero_disables_the_negative_cache() {
    let (source, engine) = engine_with(CacheConfig {
        negative_ttl: Duration::ZERO,
        ..config()
    });
    read(&engine, "missing").await.unwrap_err();
    read(&engine, "missing").await.unwrap_err();
    assert_eq!(gets(&source), 2);
}

#[tokio::test(start_paused = true)]
async fn a_deleted_secret_is_not_found_after_its_ttl() {
    let (source, engine) = engine();
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.delete("db");
    advance(DEFAULT_TTL + Duration::from_secs(1)).await;
    assert_eq!(
        read(&engine, "db").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn get_cached_answers_only_from_the_cache() {
    let (source, engine) = engine();
    source.put("db", r#"{"k":"v"}"#);
    assert!(engine.get_cached(&sel("db:k")).is_none());
    read(&engine, "db").await.unwrap();
    let hit = engine.get_cached(&sel("db:k")).unwrap().unwrap();
    assert_eq!(hit.bytes(), b"v");
    assert_eq!(gets(&source), 1);
    advance(DEFAULT_TTL).await;
    assert!(
        engine.get_cached(&sel("db:k")).is_none(),
        "expired: a fetch is needed"
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_fetches_even_when_fresh_and_joins_a_running_fetch() {
    let (source, engine) = engine();
    source.put("db", "v1");
    read(&engine, "db").await.unwrap();
    source.put("db", "v2");
    source.set_latency(Duration::from_millis(100));
    let current = VersionRef::current();
    let both = join_all((0..10).map(|_| engine.secret_value("db", &current, true))).await;
    assert!(
        both.iter()
            .all(|s| s.as_ref().unwrap().value.payload.as_bytes() == b"v2")
    );
    assert_eq!(gets(&source), 2);
    assert_eq!(read(&engine, "db").await.unwrap(), b"v2");
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_reader_does_not_cancel_the_fetch() {
    let (source, engine) = engine();
    source.put("db", "v1");
    source.set_latency(Duration::from_secs(5));
    let gave_up = tokio::time::timeout(Duration::from_secs(1), read(&engine, "db")).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(read(&engine, "db").await.unwrap(), b"v1");
    assert_eq!(gets(&source), 1, "the fetch finished and was cached");
}

#[tokio::test(start_paused = true)]
async fn describe_and_list_are_cached_and_coalesced() {
    let (source, engine) = engine();
    source.put("prod/a", "1");
    source.put("prod/b", "2");
    source.put("dev/c", "3");
    source.set_latency(Duration::from_millis(10));
    let lists = join_all((0..10).map(|_| engine.list(Some("prod/")))).await;
    let names: Vec<_> = lists[0]
        .as_ref()
        .unwrap()
        .value
        .iter()
        .map(|l| l.name.clone())
        .collect();
    assert_eq!(names, ["prod/a", "prod/b"]);
    assert_eq!(source.calls(Op::ListSecrets), 1);
    engine.describe("prod/a").await.unwrap();
    engine.describe("prod/a").await.unwrap();
    assert_eq!(source.calls(Op::DescribeSecret), 1);
    assert_eq!(engine.stats().upstream_calls.total(), 2);
}

#[tokio::test(start_paused = true)]
async fn binary_values_are_served_raw() {
    let (source, engine) = engine();
    source.put_binary("bin", &[0, 159, 255]);
    assert_eq!(read(&engine, "bin").await.unwrap(), [0, 159, 255]);
    assert_eq!(
        read(&engine, "bin:key").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test(start_paused = true)]
async fn prefetch_fetches_uncached_names_in_batches_of_twenty() {
    let (source, engine) = engine();
    let names: Vec<String> = (0..45).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        source.put(name, name);
    }
    read(&engine, "s00").await.unwrap();
    engine.prefetch_current(&names).await;
    // 44 uncached names: 20 + 20 + 4.
    assert_eq!(source.calls(Op::BatchGetSecretValue), 3);
    assert_eq!(gets(&source), 1);
    for name in &names {
        assert_eq!(read(&engine, name).await.unwrap(), name.as_bytes());
    }
    assert_eq!(gets(&source), 1, "every value came from the batches");
    engine.prefetch_current(&names).await;
    assert_eq!(
        source.calls(Op::BatchGetSecretValue),
        3,
        "nothing left to fetch"
    );
}

#[tokio::test(start_paused = true)]
async fn prefetch_reports_missing_names_as_not_found_and_falls_back_when_batch_is_denied() {
    let (source, engine) = engine();
    source.put("a", "1");
    source.put("b", "2");
    engine.prefetch_current(&["a".into(), "gone".into()]).await;
    assert_eq!(
        read(&engine, "gone").await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        gets(&source),
        0,
        "the not-found came from the batch and is cached"
    );

    let denied = Error::upstream(
        ErrorKind::AccessDenied,
        "BatchGetSecretValue: AccessDeniedException",
        Upstream {
            code: "AccessDeniedException".into(),
            status: Some(400),
            message: None,
        },
    );
    source.put("c", "3");
    source.fail_next(denied, 1);
    engine.prefetch_current(&["b".into(), "c".into()]).await;
    assert_eq!(gets(&source), 2, "fell back to GetSecretValue");
    assert_eq!(read(&engine, "b").await.unwrap(), b"2");
    assert_eq!(gets(&source), 2);

    // While the refusal is remembered, a prefetch asks each name alone, not the batch again.
    let batches = source.calls(Op::BatchGetSecretValue);
    source.put("d", "4");
    source.put("e", "5");
    engine.prefetch_current(&["d".into(), "e".into()]).await;
    assert_eq!(source.calls(Op::BatchGetSecretValue), batches);
    assert_eq!(gets(&source), 4);
}

#[tokio::test(start_paused = true)]
async fn ttl_jitter_spreads_expiry_over_the_last_share_of_the_ttl() {
    let (source, engine) = engine_with(CacheConfig {
        ttl: Duration::from_secs(100),
        ttl_jitter: 0.5,
        ..config()
    });
    let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
    for name in &names {
        source.put(name, "v");
        read(&engine, name).await.unwrap();
    }
    // Nothing expires before half the TTL; everything has by the full TTL; and the expiries
    // are spread, not all at one instant.
    advance(Duration::from_secs(49)).await;
    let fresh_at_49 = names
        .iter()
        .filter(|n| engine.get_cached(&sel(n)).is_some())
        .count();
    advance(Duration::from_secs(26)).await;
    let fresh_at_75 = names
        .iter()
        .filter(|n| engine.get_cached(&sel(n)).is_some())
        .count();
    advance(Duration::from_secs(26)).await;
    let fresh_at_101 = names
        .iter()
        .filter(|n| engine.get_cached(&sel(n)).is_some())
        .count();
    assert_eq!(fresh_at_49, 40);
    assert!(
        fresh_at_75 > 0 && fresh_at_75 < 40,
        "{fresh_at_75} of 40 still fresh at 75%"
    );
    assert_eq!(fresh_at_101, 0);
}

#[tokio::test(start_paused = true)]
async fn one_budget_bounds_values_descriptions_and_listings_together() {
    let (source, engine) = engine_with(CacheConfig {
        max_entries: 2,
        ..config()
    });
    source.put("a", "1");
    source.put("b", "2");
    engine.list(None).await.unwrap();
    read(&engine, "a").await.unwrap();
    read(&engine, "b").await.unwrap();
    assert_eq!(engine.budget().entries(), 2);
    engine.list(None).await.unwrap();
    assert_eq!(
        source.calls(Op::ListSecrets),
        2,
        "the listing was the least recently used entry of all"
    );
    engine.describe("b").await.unwrap();
    assert_eq!(engine.budget().entries(), 2);
    read(&engine, "b").await.unwrap();
    assert_eq!(gets(&source), 3, "b's value went for the description");
}

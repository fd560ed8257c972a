//! Engines per role: the ARN shape, the bound, separation of values, one shared budget, and
//! a role that cannot be assumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use futures::FutureExt;

use super::*;
use crate::cache::{CacheConfig, Op};
use crate::error::ErrorKind;
use crate::selector::VersionRef;
use crate::source::memory::MemorySource;

#[test]
fn role_arns_of_the_agents_shape_are_accepted_and_nothing_else() {
    for good in [
        "arn:aws:iam::123456789012:role/a",
        "arn:aws-us-gov:iam::123456789012:role/path/to/Name_1+=,.@-",
        "arn:aws-cn:iam::000000000000:role/service-role/x",
    ] {
        assert!(is_role_arn(good), "{good} refused");
    }
    for bad in [
        "",
        "not-a-valid-arn",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::12345678901:role/a",
        "arn:aws:iam::1234567890123:role/a",
        "arn:aws:iam::12345678901x:role/a",
        "arn:aws:iam:us-east-1:123456789012:role/a",
        "arn:aws:iam::123456789012:user/a",
        "arn:aws:sts::123456789012:assumed-role/a/s",
        "arn::iam::123456789012:role/a",
        "arn:aws:iam::123456789012:role/a b",
        "arn:aws:iam::123456789012:role/a?b",
        "arn:aws:iam::123456789012:role/é",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:role/a",
    ] {
        assert!(!is_role_arn(bad), "{bad:?} accepted");
    }
    let long = format!("arn:aws:iam::123456789012:role/{}", "a".repeat(2048));
    assert!(!is_role_arn(&long), "an ARN of 2 kB accepted");
}

/// Roles whose sources are memory sources of their own, made on demand and counted.
struct Fixture {
    base_source: Arc<MemorySource>,
    sources: Arc<parking_lot::Mutex<HashMap<String, Arc<MemorySource>>>>,
    connects: Arc<AtomicUsize>,
    roles: Roles,
}

fn fixture(max: usize, config: CacheConfig) -> Fixture {
    let base_source = Arc::new(MemorySource::new());
    base_source.put("db", "base");
    let base = Arc::new(Engine::new(base_source.clone(), config));
    let sources: Arc<parking_lot::Mutex<HashMap<String, Arc<MemorySource>>>> = Default::default();
    let connects = Arc::new(AtomicUsize::new(0));
    let connect: Connect = {
        let (sources, connects) = (sources.clone(), connects.clone());
        Arc::new(move |role: String| {
            let (sources, connects) = (sources.clone(), connects.clone());
            async move {
                connects.fetch_add(1, SeqCst);
                tokio::task::yield_now().await;
                if role.ends_with("/denied") {
                    return Err(Error::new(
                        ErrorKind::AccessDenied,
                        format!("assuming role {role}: AccessDenied"),
                    ));
                }
                let source = Arc::new(MemorySource::new());
                source.put("db", &format!("as {role}"));
                sources.lock().insert(role, source.clone());
                Ok(source as DynSource)
            }
            .boxed()
        })
    };
    Fixture {
        base_source,
        sources,
        connects,
        roles: Roles::new(base, connect, max),
    }
}

fn role(name: &str) -> String {
    format!("arn:aws:iam::123456789012:role/{name}")
}

async fn value(engine: &Engine) -> String {
    let served = engine
        .secret_value("db", &VersionRef::current(), false)
        .await
        .unwrap();
    String::from_utf8(served.value.payload.as_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn each_role_reads_through_its_own_source_and_cache() {
    let f = fixture(20, CacheConfig::default());
    let a = f.roles.engine(&role("a")).await.unwrap();
    let b = f.roles.engine(&role("b")).await.unwrap();
    assert_eq!(value(&f.roles.base).await, "base");
    assert_eq!(value(&a).await, format!("as {}", role("a")));
    assert_eq!(value(&b).await, format!("as {}", role("b")));
    // Second reads are hits, each in its own role's cache.
    for engine in [&f.roles.base, &a, &b] {
        value(engine).await;
    }
    let again = f.roles.engine(&role("a")).await.unwrap();
    assert!(Arc::ptr_eq(&a, &again), "a role's engine is built once");
    assert_eq!(f.connects.load(SeqCst), 2, "one assume per role");
    assert_eq!(f.base_source.calls(Op::GetSecretValue), 1);
    for name in ["a", "b"] {
        let calls = f.sources.lock()[&role(name)].calls(Op::GetSecretValue);
        assert_eq!(calls, 1, "role {name}: GetSecretValue calls");
    }
    // One budget and one set of statistics for all of them.
    assert!(Arc::ptr_eq(a.budget(), f.roles.base.budget()));
    assert_eq!(f.roles.base.budget().entries(), 3);
    let stats = f.roles.base.stats();
    assert_eq!(stats.upstream_calls.get(Op::GetSecretValue), 3);
    assert_eq!(stats.hits, 3);
}

#[tokio::test]
async fn the_budget_is_shared_so_roles_evict_each_other() {
    let config = CacheConfig {
        max_entries: 2,
        ..CacheConfig::default()
    };
    let f = fixture(20, config);
    value(&f.roles.base).await;
    for name in ["a", "b", "c"] {
        let engine = f.roles.engine(&role(name)).await.unwrap();
        value(&engine).await;
    }
    assert!(
        f.roles.base.budget().entries() <= 2,
        "{} entries cached under a budget of 2",
        f.roles.base.budget().entries()
    );
}

#[tokio::test]
async fn past_max_roles_a_new_role_is_refused_and_known_ones_still_served() {
    let f = fixture(2, CacheConfig::default());
    f.roles.engine(&role("a")).await.unwrap();
    f.roles.engine(&role("b")).await.unwrap();
    let refused = f.roles.engine(&role("c")).await;
    assert!(
        matches!(refused, Err(RoleRefusal::TooMany { max: 2 })),
        "{:?}",
        refused.err()
    );
    assert_eq!(f.connects.load(SeqCst), 2, "no assume past the bound");
    assert!(f.roles.engine(&role("a")).await.is_ok());
    assert_eq!(f.roles.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_role_that_cannot_be_assumed_takes_no_place_and_is_tried_again_later() {
    let f = fixture(1, CacheConfig::default());
    for _ in 0..3 {
        let refused = f.roles.engine(&role("denied")).await;
        match refused {
            Err(RoleRefusal::NotAssumed(e)) => assert_eq!(e.kind(), ErrorKind::AccessDenied),
            other => panic!("{:?}", other.err()),
        }
    }
    assert_eq!(f.connects.load(SeqCst), 1, "the refusal is remembered");
    tokio::time::advance(super::REFUSAL_REMEMBERED).await;
    assert!(f.roles.engine(&role("denied")).await.is_err());
    assert_eq!(f.connects.load(SeqCst), 2, "then tried again");
    assert!(f.roles.is_empty());
    // The one place is still free.
    f.roles.engine(&role("a")).await.unwrap();
}

#[tokio::test]
async fn concurrent_first_requests_for_a_role_assume_it_once() {
    let f = fixture(20, CacheConfig::default());
    let arn = role("a");
    let engines = futures::future::join_all((0..8).map(|_| f.roles.engine(&arn))).await;
    assert!(engines.iter().all(Result::is_ok));
    assert_eq!(f.connects.load(SeqCst), 1);
}

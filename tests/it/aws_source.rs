//! The `aws` source end to end: the engine over the real SDK against the fake Secrets
//! Manager, whose counters prove single-flight and shared fetch.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use secretsfs::cache::{CacheConfig, Op as EngineOp};
use secretsfs::selector::VersionRef;
use secretsfs::source::SecretSource;
use secretsfs::source::aws::{AwsOptions, AwsSource};
use secretsfs::{Engine, ErrorKind, Selector};

use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};

const VID_1: &str = "aaaaaaaa-1111-4111-8111-111111111111";
const VID_2: &str = "aaaaaaaa-2222-4222-8222-222222222222";

async fn source(fake: &FakeSecretsManager) -> AwsSource {
    AwsSource::connect(&AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(fake.endpoint_url()),
        timeout: Some(Duration::from_secs(20)),
        credentials: Some(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("x", "x", None, None, "test"),
            ),
        ),
        ..AwsOptions::default()
    })
    .await
    .unwrap()
}

async fn engine(fake: &FakeSecretsManager, config: CacheConfig) -> Engine {
    Engine::new(Arc::new(source(fake).await), config)
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn db_fake() -> FakeSecretsManager {
    let fake = FakeSecretsManager::start();
    fake.put_version(
        "prod/db",
        VID_1,
        &["AWSPREVIOUS", "blue"],
        SecretData::String(r#"{"user":"old","password":"pw1"}"#.into()),
    );
    fake.put_version(
        "prod/db",
        VID_2,
        &["AWSCURRENT"],
        SecretData::String(r#"{"user":"app","password":"pw2"}"#.into()),
    );
    fake.put_version(
        "bin",
        VID_1,
        &["AWSCURRENT"],
        SecretData::Binary(vec![0, 1, 255]),
    );
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_reads_cost_one_get_secret_value() {
    let fake = db_fake();
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(300));
    let engine = Arc::new(engine(&fake, CacheConfig::default()).await);
    let reads = (0..100).map(|_| {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .get(&sel("prod/db:password"))
                .await
                .map(|r| r.bytes().to_vec())
        })
    });
    for read in join_all(reads).await {
        assert!(read.unwrap().unwrap() == b"pw2");
    }
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    let stats = engine.stats();
    assert_eq!(stats.upstream_calls.get(EngineOp::GetSecretValue), 1);
    assert_eq!(stats.misses + stats.coalesced_waits + stats.hits, 100);
    assert!(stats.coalesced_waits > 0);
}

#[tokio::test]
async fn every_selector_of_a_secret_shares_one_fetch() {
    let fake = db_fake();
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(200));
    let engine = engine(&fake, CacheConfig::default()).await;
    let selectors = [
        "prod/db",
        "prod/db:user",
        "prod/db:password",
        "prod/db::AWSCURRENT",
    ]
    .map(sel);
    let reads = join_all(selectors.iter().map(|s| engine.get(s))).await;
    assert!(reads[1].as_ref().unwrap().bytes() == b"app");
    assert!(reads.iter().all(Result::is_ok));
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    assert_eq!(engine.stats().coalesced_waits, 3);
    engine.get(&sel("prod/db:user")).await.unwrap();
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
}

#[tokio::test]
async fn values_stages_versions_binary_and_arns_round_trip() {
    let fake = db_fake();
    let engine = engine(&fake, CacheConfig::default()).await;
    let bytes = |s: &'static str| {
        let engine = &engine;
        async move { engine.get(&sel(s)).await.unwrap().bytes().to_vec() }
    };
    assert!(bytes("prod/db:password:AWSPREVIOUS").await == b"pw1");
    assert!(bytes("prod/db:user:blue").await == b"old");
    assert!(bytes("bin").await == [0, 1, 255]);
    let by_id = engine
        .get(&sel(&format!("prod/db:::{VID_1}")))
        .await
        .unwrap();
    assert_eq!(by_id.secret.version_id, VID_1);
    assert!(by_id.secret.stages.contains(&"blue".to_owned()));
    let arn = fake.arn("prod/db");
    let by_arn = engine.get(&sel(&format!("{arn}:password"))).await.unwrap();
    assert!(by_arn.bytes() == b"pw2");
    assert_eq!(by_arn.secret.name, "prod/db");
    assert!(by_arn.secret.created.is_some());
}

#[tokio::test]
async fn calls_carry_the_secretsfs_user_agent() {
    let fake = db_fake();
    let engine = engine(&fake, CacheConfig::default()).await;
    engine.get(&sel("prod/db")).await.unwrap();
    let agents = fake.user_agents();
    let expected = concat!("secretsfs/", env!("CARGO_PKG_VERSION"));
    assert!(agents.iter().all(|ua| ua.contains(expected)), "{agents:?}");
}

#[tokio::test]
async fn upstream_errors_are_classified_by_code() {
    let fake = db_fake();
    let source = source(&fake).await;
    let current = VersionRef::current();
    let cases = [
        (
            Fault::NotFound,
            ErrorKind::NotFound,
            "ResourceNotFoundException",
        ),
        (
            Fault::AccessDenied,
            ErrorKind::AccessDenied,
            "AccessDeniedException",
        ),
        (
            Fault::Decryption,
            ErrorKind::Decryption,
            "DecryptionFailure",
        ),
        (
            Fault::Throttling,
            ErrorKind::Unavailable,
            "ThrottlingException",
        ),
        (
            Fault::Internal,
            ErrorKind::Unavailable,
            "InternalServiceError",
        ),
        (
            Fault::DropConnection,
            ErrorKind::Unavailable,
            "ConnectionError",
        ),
    ];
    for (fault, kind, code) in cases {
        fake.clear_faults();
        fake.inject(Op::GetSecretValue, fault, usize::MAX);
        let err = source
            .get_secret_value("prod/db", &current)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{code}: {err}");
        let upstream = err.upstream_detail().unwrap();
        assert_eq!(upstream.code, code, "{err}");
        assert!(!err.to_string().contains("pw2"));
    }
    fake.clear_faults();
    let missing = source.get_secret_value("nope", &current).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(missing.upstream_detail().unwrap().status, Some(400));
}

#[tokio::test]
async fn transient_errors_are_retried_by_the_sdk() {
    let fake = db_fake();
    let source = source(&fake).await;
    fake.inject(Op::GetSecretValue, Fault::Internal, 1);
    let value = source
        .get_secret_value("prod/db", &VersionRef::current())
        .await
        .unwrap();
    assert_eq!(value.version_id, VID_2);
    assert_eq!(fake.calls(Op::GetSecretValue), 2);
}

#[tokio::test]
async fn a_throttled_refresh_serves_the_stale_value() {
    let fake = db_fake();
    let engine = engine(
        &fake,
        CacheConfig {
            ttl: Duration::from_secs(1),
            ..CacheConfig::default()
        },
    )
    .await;
    assert!(engine.get(&sel("prod/db:password")).await.unwrap().bytes() == b"pw2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fake.inject(Op::GetSecretValue, Fault::Throttling, usize::MAX);
    let stale = engine.get(&sel("prod/db:password")).await.unwrap();
    assert!(stale.stale);
    assert!(stale.bytes() == b"pw2");
    assert_eq!(engine.stats().stale_serves, 1);
    // Access denied is not transient: no stale value masks it.
    fake.clear_faults();
    fake.inject(Op::GetSecretValue, Fault::AccessDenied, usize::MAX);
    let err = engine
        .secret_value("prod/db", &VersionRef::current(), true)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AccessDenied);
}

#[tokio::test]
async fn listing_follows_every_page_and_keeps_the_prefix_exact() {
    let fake = FakeSecretsManager::start();
    for name in ["app/a", "app/b", "app/c", "App/d", "apple", "other/e"] {
        fake.put_string(name, "v");
    }
    fake.set_list_page_size(2);
    let source = source(&fake).await;
    let all = source.list_secrets(None).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(fake.calls(Op::ListSecrets), 3);
    let app: Vec<_> = source
        .list_secrets(Some("app/"))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(app, ["app/a", "app/b", "app/c"]);
}

#[tokio::test]
async fn describe_maps_versions_to_stages() {
    let fake = db_fake();
    let source = source(&fake).await;
    let described = source.describe_secret("prod/db").await.unwrap();
    assert_eq!(described.stages().get("blue"), Some(&VID_1));
    assert_eq!(described.stages().get("AWSCURRENT"), Some(&VID_2));
    assert_eq!(described.arn, fake.arn("prod/db"));
}

#[tokio::test]
async fn batch_answers_each_id_with_its_value_or_error() {
    let fake = db_fake();
    let source = source(&fake).await;
    let ids = ["prod/db".to_owned(), "missing".to_owned(), fake.arn("bin")];
    let items = source.batch_get_secret_value(&ids).await.unwrap();
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 1);
    assert_eq!(items.len(), 3);
    assert_eq!(items[0].1.as_ref().unwrap().version_id, VID_2);
    assert_eq!(items[1].1.as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    assert!(items[2].1.as_ref().unwrap().payload.as_bytes() == [0, 1, 255]);
}

//! What a test can do to the fake's answers: injected faults, dropped
//! connections, latency, and holds that keep answers back until released.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::time::timeout;

use super::{DEADLINE, client};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};

#[tokio::test]
async fn faults_give_the_sdk_error_codes() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("faulty", "faulty-value");

    let cases = [
        (Fault::Throttling, "ThrottlingException", 400),
        (Fault::Internal, "InternalServiceError", 500),
        (Fault::NotFound, "ResourceNotFoundException", 400),
        (Fault::AccessDenied, "AccessDeniedException", 400),
        (Fault::Decryption, "DecryptionFailure", 400),
    ];
    for (fault, code, status) in cases {
        fake.inject(Op::GetSecretValue, fault, 1);
        let err = client
            .get_secret_value()
            .secret_id("faulty")
            .send()
            .await
            .expect_err("fault injected");
        assert_eq!(
            err.code(),
            Some(code),
            "{fault:?}: {}",
            DisplayErrorContext(&err)
        );
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(status)
        );
        assert!(!err.message().unwrap_or_default().contains("faulty-value"));
        client
            .get_secret_value()
            .secret_id("faulty")
            .send()
            .await
            .expect("a fault injected once applies once");
    }

    fake.inject(Op::DescribeSecret, Fault::AccessDenied, 1);
    let err = client
        .describe_secret()
        .secret_id("faulty")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    fake.inject(Op::ListSecrets, Fault::Throttling, 1);
    let err = client.list_secrets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));
    fake.inject(Op::BatchGetSecretValue, Fault::Internal, 1);
    let err = client
        .batch_get_secret_value()
        .secret_id_list("faulty")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InternalServiceError"));

    // Queued injections apply in order, each for its count.
    fake.inject(Op::GetSecretValue, Fault::Throttling, 2);
    fake.inject(Op::GetSecretValue, Fault::Decryption, 1);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let result = client.get_secret_value().secret_id("faulty").send().await;
        codes.push(result.err().and_then(|e| e.code().map(str::to_owned)));
    }
    let expected = [
        "ThrottlingException",
        "ThrottlingException",
        "DecryptionFailure",
    ]
    .map(|c| Some(c.to_owned()))
    .into_iter()
    .chain([None]);
    assert!(codes.into_iter().eq(expected));

    fake.inject(Op::GetSecretValue, Fault::Throttling, usize::MAX);
    for _ in 0..3 {
        let err = client
            .get_secret_value()
            .secret_id("faulty")
            .send()
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some("ThrottlingException"));
    }
    fake.clear_faults();
    client
        .get_secret_value()
        .secret_id("faulty")
        .send()
        .await
        .expect("faults cleared");
}

#[tokio::test]
async fn drop_connection_is_a_transport_error() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("dropped", "value");

    // Warm the connection pool so the drop also hits a reused connection.
    client
        .get_secret_value()
        .secret_id("dropped")
        .send()
        .await
        .expect("warm-up");
    fake.inject(Op::GetSecretValue, Fault::DropConnection, 1);
    let err = client
        .get_secret_value()
        .secret_id("dropped")
        .send()
        .await
        .expect_err("connection dropped");
    assert!(
        matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "{}",
        DisplayErrorContext(&err)
    );
    client
        .get_secret_value()
        .secret_id("dropped")
        .send()
        .await
        .expect("the next request gets a new connection");
    assert_eq!(fake.calls(Op::GetSecretValue), 3);
}

#[tokio::test]
async fn latency_is_applied() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("slow", "value");
    client
        .get_secret_value()
        .secret_id("slow")
        .send()
        .await
        .expect("warm-up");

    let delay = Duration::from_millis(300);
    fake.set_latency(Op::GetSecretValue, delay);
    let started = Instant::now();
    client
        .get_secret_value()
        .secret_id("slow")
        .send()
        .await
        .expect("delayed");
    assert!(started.elapsed() >= delay);

    fake.inject(Op::GetSecretValue, Fault::Throttling, 1);
    let started = Instant::now();
    client
        .get_secret_value()
        .secret_id("slow")
        .send()
        .await
        .unwrap_err();
    assert!(started.elapsed() >= delay, "faults are delayed too");

    fake.set_latency(Op::GetSecretValue, Duration::ZERO);
    client
        .get_secret_value()
        .secret_id("slow")
        .send()
        .await
        .expect("undelayed");
}

#[tokio::test]
async fn hold_blocks_only_the_held_secret() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("held", "old-value");
    fake.put_string("free", "free-value");

    let latch = fake.hold("held");
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.get_secret_value().secret_id("held").send().await }
    });
    timeout(DEADLINE, latch.until_waiting(1))
        .await
        .expect("the held request reaches the fake");
    assert_eq!(latch.waiting(), 1);

    let free = timeout(DEADLINE, client.get_secret_value().secret_id("free").send())
        .await
        .expect("another secret is not held")
        .expect("GetSecretValue");
    assert!(free.secret_string() == Some("free-value"));
    assert!(!held.is_finished());

    // The answer was computed on arrival: the hold delivers what was current then.
    fake.put_string("held", "new-value");
    latch.release();
    let out = timeout(DEADLINE, held)
        .await
        .expect("released in time")
        .expect("task")
        .expect("GetSecretValue");
    assert!(out.secret_string() == Some("old-value"));

    // Batches are held when any of their ids (name or ARN) is held; dropping
    // the latch releases too.
    let latch = fake.hold("held");
    let batch = tokio::spawn({
        let client = client.clone();
        let arn = fake.arn("held");
        async move {
            client
                .batch_get_secret_value()
                .secret_id_list("free")
                .secret_id_list(arn)
                .send()
                .await
        }
    });
    timeout(DEADLINE, latch.until_waiting(1))
        .await
        .expect("the held batch reaches the fake");
    client
        .describe_secret()
        .secret_id("held")
        .send()
        .await
        .expect("DescribeSecret is never held");
    drop(latch);
    let out = timeout(DEADLINE, batch)
        .await
        .expect("released in time")
        .expect("task")
        .expect("BatchGetSecretValue");
    assert_eq!(out.secret_values().len(), 2);

    client
        .get_secret_value()
        .secret_id("held")
        .send()
        .await
        .expect("no hold left");
}

//! What a test can do to the fake's answers: injected faults, dropped
//! connections, latency, and holds that keep answers back until released.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::time::timeout;

use super::{DEADLINE, client};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};

/// How an SDK call failed, whatever its operation.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) code: Option<String>,
    pub(super) status: Option<u16>,
    pub(super) message: Option<String>,
    /// The whole error, for a failure message.
    pub(super) context: String,
}

fn failure<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    Failure {
        code: err.code().map(str::to_owned),
        status: err.raw_response().map(|r| r.status().as_u16()),
        message: err.message().map(str::to_owned),
        context: DisplayErrorContext(&err).to_string(),
    }
}

/// `op` through the SDK on the secret `id` (ListSecrets: on them all).
pub(super) async fn call(client: &Client, op: Op, id: &str) -> Result<(), Failure> {
    match op {
        Op::GetSecretValue => client
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map(drop)
            .map_err(failure),
        Op::DescribeSecret => client
            .describe_secret()
            .secret_id(id)
            .send()
            .await
            .map(drop)
            .map_err(failure),
        Op::ListSecrets => client
            .list_secrets()
            .send()
            .await
            .map(drop)
            .map_err(failure),
        Op::BatchGetSecretValue => client
            .batch_get_secret_value()
            .secret_id_list(id)
            .send()
            .await
            .map(drop)
            .map_err(failure),
    }
}

#[tokio::test]
async fn faults_give_the_sdk_error_codes() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("faulty", "faulty-value");

    // An operation, the fault injected into it, and the error code and HTTP status the SDK
    // reports.
    #[rustfmt::skip]
    let cases = [
        (Op::GetSecretValue, Fault::Throttling, "ThrottlingException", 400),
        (Op::GetSecretValue, Fault::Internal, "InternalServiceError", 500),
        (Op::GetSecretValue, Fault::NotFound, "ResourceNotFoundException", 400),
        (Op::GetSecretValue, Fault::AccessDenied, "AccessDeniedException", 400),
        (Op::GetSecretValue, Fault::Decryption, "DecryptionFailure", 400),
        (Op::DescribeSecret, Fault::AccessDenied, "AccessDeniedException", 400),
        (Op::ListSecrets, Fault::Throttling, "ThrottlingException", 400),
        (Op::BatchGetSecretValue, Fault::Internal, "InternalServiceError", 500),
    ];
    for (op, fault, code, status) in cases {
        fake.inject(op, fault, 1);
        let err = call(&client, op, "faulty")
            .await
            .expect_err("fault injected");
        assert_eq!(
            err.code.as_deref(),
            Some(code),
            "{op:?} under {fault:?}: {}",
            err.context
        );
        assert_eq!(err.status, Some(status), "{op:?} under {fault:?}");
        assert!(
            !err.message.unwrap_or_default().contains("faulty-value"),
            "{op:?} under {fault:?}: the message holds the value"
        );
        if let Err(e) = call(&client, op, "faulty").await {
            panic!("{op:?}: a fault injected once applies once: {}", e.context);
        }
    }

    // Queued injections apply in order, each for its count.
    fake.inject(Op::GetSecretValue, Fault::Throttling, 2);
    fake.inject(Op::GetSecretValue, Fault::Decryption, 1);
    let mut codes = Vec::new();
    for _ in 0..4 {
        let result = call(&client, Op::GetSecretValue, "faulty").await;
        codes.push(result.err().and_then(|e| e.code));
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
        let err = call(&client, Op::GetSecretValue, "faulty")
            .await
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("ThrottlingException"));
    }
    fake.clear_faults();
    call(&client, Op::GetSecretValue, "faulty")
        .await
        .expect("faults cleared");
}

#[tokio::test]
async fn drop_connection_is_a_transport_error() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("dropped", "value");

    // Warm the connection pool so the drop also hits a reused connection.
    call(&client, Op::GetSecretValue, "dropped")
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
    call(&client, Op::GetSecretValue, "dropped")
        .await
        .expect("the next request gets a new connection");
    assert_eq!(fake.calls(Op::GetSecretValue), 3);
}

#[tokio::test]
async fn latency_is_applied() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("slow", "value");
    call(&client, Op::GetSecretValue, "slow")
        .await
        .expect("warm-up");

    let delay = Duration::from_millis(300);
    fake.set_latency(Op::GetSecretValue, delay);
    let started = Instant::now();
    call(&client, Op::GetSecretValue, "slow")
        .await
        .expect("delayed");
    assert!(started.elapsed() >= delay);

    fake.inject(Op::GetSecretValue, Fault::Throttling, 1);
    let started = Instant::now();
    call(&client, Op::GetSecretValue, "slow").await.unwrap_err();
    assert!(started.elapsed() >= delay, "faults are delayed too");

    fake.set_latency(Op::GetSecretValue, Duration::ZERO);
    call(&client, Op::GetSecretValue, "slow")
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

    call(&client, Op::GetSecretValue, "held")
        .await
        .expect("no hold left");
}

#[tokio::test]
async fn reset_mid_body_sends_half_the_announced_body_then_resets() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let fake = FakeSecretsManager::start();
    fake.put_string("cut", "a value long enough to be cut in half");
    fake.inject(Op::GetSecretValue, Fault::ResetMidBody, 1);
    let addr = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let body = r#"{"SecretId":"cut"}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: fake\r\nX-Amz-Target: secretsmanager.GetSecretValue\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let end = timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => received.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e.kind()),
            }
        }
    })
    .await
    .expect("the fake ends the connection");
    assert_eq!(end, Some(std::io::ErrorKind::ConnectionReset));
    let text = String::from_utf8_lossy(&received);
    let (head, got) = text.split_once("\r\n\r\n").expect("a response head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let announced: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .expect("a content-length");
    assert_eq!(got.len(), announced / 2, "half the announced body arrived");

    // The SDK sees a broken answer; the next call is answered whole.
    let client = client(&fake).await;
    fake.inject(Op::GetSecretValue, Fault::ResetMidBody, 1);
    let err = call(&client, Op::GetSecretValue, "cut")
        .await
        .expect_err("reset mid-body");
    assert!(err.code.is_none(), "{}", err.context);
    call(&client, Op::GetSecretValue, "cut")
        .await
        .expect("the next call is answered");
}

#[tokio::test]
async fn secret_latency_delays_only_that_secret() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("slow", "value");
    fake.put_string("fast", "value");
    let delay = Duration::from_secs(30);
    fake.set_secret_latency("slow", delay);
    let slow = tokio::spawn({
        let client = client.clone();
        async move { call(&client, Op::GetSecretValue, "slow").await }
    });
    // The slow call is in the fake (counted) before the fast one is made.
    while fake.calls(Op::GetSecretValue) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..3 {
        timeout(DEADLINE, call(&client, Op::GetSecretValue, "fast"))
            .await
            .expect("another secret is not delayed")
            .expect("GetSecretValue");
    }
    assert!(!slow.is_finished(), "the slow secret answered early");
    slow.abort();

    fake.set_secret_latency("slow", Duration::ZERO);
    let started = Instant::now();
    call(&client, Op::GetSecretValue, "slow")
        .await
        .expect("no latency left");
    assert!(started.elapsed() < delay);
}

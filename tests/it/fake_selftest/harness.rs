//! The fake as test machinery: the calls, request bodies and user agents it
//! records, and serving callers whatever runtime they have, or none.

use std::time::Duration;

use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};

use super::client;

#[tokio::test]
async fn counters_and_request_log() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("counted", "value");

    client
        .get_secret_value()
        .secret_id("counted")
        .send()
        .await
        .unwrap();
    fake.inject(Op::GetSecretValue, Fault::Throttling, 1);
    client
        .get_secret_value()
        .secret_id("counted")
        .send()
        .await
        .unwrap_err();
    client
        .describe_secret()
        .secret_id("counted")
        .send()
        .await
        .unwrap();
    client.list_secrets().max_results(7).send().await.unwrap();
    client
        .batch_get_secret_value()
        .secret_id_list("counted")
        .send()
        .await
        .unwrap();

    assert_eq!(fake.calls(Op::GetSecretValue), 2, "faulted requests count");
    assert_eq!(fake.calls(Op::DescribeSecret), 1);
    assert_eq!(fake.calls(Op::ListSecrets), 1);
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 1);

    let requests = fake.requests();
    let ops: Vec<Op> = requests.iter().map(|(op, _)| *op).collect();
    assert_eq!(
        ops,
        [
            Op::GetSecretValue,
            Op::GetSecretValue,
            Op::DescribeSecret,
            Op::ListSecrets,
            Op::BatchGetSecretValue
        ]
    );
    assert_eq!(requests[0].1["SecretId"], "counted");
    assert_eq!(requests[3].1["MaxResults"], 7);
    assert_eq!(
        requests[4].1["SecretIdList"],
        serde_json::json!(["counted"])
    );

    let agents = fake.user_agents();
    assert_eq!(agents.len(), 5);
    assert!(
        agents.iter().all(|ua| ua.contains("aws-sdk-rust")),
        "{agents:?}"
    );

    fake.reset_calls();
    assert_eq!(fake.calls(Op::GetSecretValue), 0);
    assert_eq!(fake.calls(Op::BatchGetSecretValue), 0);
}

/// The fake must not need the caller's runtime: plain tests and tests with
/// their own runtimes use it too.
#[test]
fn serves_without_a_caller_runtime_and_stops_on_drop() {
    let fake = FakeSecretsManager::start();
    fake.put_string("plain", "value");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = runtime.block_on(async {
        let client = client(&fake).await;
        client.get_secret_value().secret_id("plain").send().await
    });
    assert_eq!(out.expect("GetSecretValue").name(), Some("plain"));
    drop(runtime);

    let addr = fake.endpoint_url().trim_start_matches("http://").to_owned();
    drop(fake);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is closed"
    );
}

/// Latency and holds run on the fake's own clock, so a caller whose tokio
/// clock is paused still gets its answers.
#[tokio::test(start_paused = true)]
async fn serves_a_caller_with_a_paused_clock() {
    let fake = FakeSecretsManager::start();
    fake.put_string("paused", "value");
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(100));
    let client = client(&fake).await;
    client
        .get_secret_value()
        .secret_id("paused")
        .send()
        .await
        .expect("delayed in real time");

    let latch = fake.hold("paused");
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.get_secret_value().secret_id("paused").send().await }
    });
    latch.until_waiting(1).await;
    latch.release();
    held.await.expect("task").expect("released");
}

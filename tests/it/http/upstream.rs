//! Upstream behaviour seen over HTTP: errors and timeouts as the agent maps them, one call for
//! many concurrent cold requests, refreshNow, and stale values while upstream fails.

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::{error_body, serve};
use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};
use crate::support::http::{self, Response};

/// Upstream failures reach the client as the agent passes them on: AWS's status and code,
/// or the agent's own codes for connection failures and timeouts.
#[tokio::test]
async fn upstream_errors_pass_through_as_the_agent_maps_them() {
    let fake = FakeSecretsManager::start();
    for name in ["denied", "throttled", "failing", "dropped"] {
        fake.put_string(name, &format!("value of {name}"));
    }
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let cases = [
        (
            "denied",
            Fault::AccessDenied,
            1,
            400,
            error_body(
                "AccessDeniedException",
                "User: arn:aws:iam::123456789012:user/test is not authorized to perform: \
                 secretsmanager:GetSecretValue",
            ),
        ),
        (
            "throttled",
            Fault::Throttling,
            usize::MAX,
            400,
            error_body("ThrottlingException", "Rate exceeded"),
        ),
        (
            "failing",
            Fault::Internal,
            usize::MAX,
            500,
            error_body(
                "InternalServiceError",
                "An error occurred on the server side.",
            ),
        ),
        (
            "dropped",
            Fault::DropConnection,
            usize::MAX,
            502,
            r#"{"__type":"ConnectionError","message":"Read Error"}"#.to_owned(),
        ),
    ];
    let mut failures = Vec::new();
    for (name, fault, times, status, body) in cases {
        fake.inject(Op::GetSecretValue, fault, times);
        let r = http::get(served.addr, &format!("/secretsmanager/get?secretId={name}")).await;
        fake.clear_faults();
        if r.status != status || r.body != body.as_bytes() {
            failures.push(format!(
                "{name} ({fault:?}): status {} body {} (want {status} {body})",
                r.status,
                r.describe()
            ));
        } else if !r
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            failures.push(format!(
                "{name}: content-type {:?}",
                r.header("content-type")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Once the faults are gone the same secrets read (no failure was cached).
    let r = http::get(served.addr, "/v1/failing").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.json()["SecretString"] == "value of failing");
}

#[tokio::test]
async fn a_slow_upstream_is_answered_504_within_the_timeout() {
    let fake = FakeSecretsManager::start();
    fake.put_string("slow", "s");
    fake.set_latency(Op::GetSecretValue, Duration::from_secs(30));
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--timeout".into(), "1".into()]);
    let served = serve(&strs(&global), &[]).await;
    let started = Instant::now();
    let r = http::get(served.addr, "/secretsmanager/get?secretId=slow").await;
    let took = started.elapsed();
    fake.set_latency(Op::GetSecretValue, Duration::ZERO);
    assert_eq!(
        (r.status, r.text()),
        (
            504,
            r#"{"__type":"TimeoutError","message":"Timeout"}"#.to_owned()
        )
    );
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
}

#[tokio::test]
async fn a_hundred_concurrent_cold_requests_cost_one_call() {
    let fake = FakeSecretsManager::start();
    fake.put_string("hot", "the hot value");
    fake.set_latency(Op::GetSecretValue, Duration::from_millis(300));
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let addr = served.addr;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            tokio::spawn(async move { http::get(addr, "/secretsmanager/get?secretId=hot").await })
        })
        .collect();
    let responses: Vec<Response> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("request task"))
        .collect();
    let first = &responses[0];
    assert_eq!(first.status, 200, "{}", first.describe());
    assert!(
        first.json()["SecretString"] == "the hot value",
        "the value differs"
    );
    for (i, r) in responses.iter().enumerate() {
        assert!(
            r.status == 200 && r.body == first.body,
            "response {i}: status {}, body differs from the first",
            r.status
        );
    }
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
}

#[tokio::test]
async fn refresh_now_fetches_at_once_and_concurrent_refreshes_coalesce() {
    let fake = FakeSecretsManager::start();
    fake.put_string("rotating", "one");
    let served = serve(&strs(&aws_args(&fake.endpoint_url())), &[]).await;
    let addr = served.addr;
    let plain = "/secretsmanager/get?secretId=rotating";
    let refresh = "/secretsmanager/get?secretId=rotating&refreshNow=true";
    let value = |r: &Response| {
        assert_eq!(r.status, 200, "{}", r.describe());
        r.json()["SecretString"].as_str().unwrap().to_owned()
    };

    assert!(value(&http::get(addr, plain).await) == "one");
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    let two = fake.put_string("rotating", "two");
    assert!(
        value(&http::get(addr, plain).await) == "one",
        "cached before refreshNow"
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 1);
    let r = http::get(addr, refresh).await;
    assert!(value(&r) == "two", "refreshNow returns the new value");
    assert_eq!(r.json()["VersionId"], two.as_str());
    assert_eq!(fake.calls(Op::GetSecretValue), 2);
    assert!(
        value(&http::get(addr, plain).await) == "two",
        "the refresh updated the cache"
    );
    assert_eq!(fake.calls(Op::GetSecretValue), 2);

    fake.set_latency(Op::GetSecretValue, Duration::from_millis(300));
    fake.put_string("rotating", "three");
    let tasks: Vec<_> = (0..20)
        .map(|_| tokio::spawn(async move { http::get(addr, refresh).await }))
        .collect();
    for (i, r) in join_all(tasks).await.into_iter().enumerate() {
        let r = r.expect("request task");
        assert!(value(&r) == "three", "refresh {i}: value differs");
    }
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        3,
        "20 concurrent refreshes share one call"
    );
}

#[tokio::test]
async fn refresh_now_reports_a_failure_while_plain_reads_serve_stale() {
    let fake = FakeSecretsManager::start();
    fake.put_string("flaky", "good value");
    let mut global = aws_args(&fake.endpoint_url());
    global.extend(["--ttl".into(), "1".into()]);
    let served = serve(&strs(&global), &[]).await;
    let plain = "/secretsmanager/get?secretId=flaky";
    let good = http::get(served.addr, plain).await;
    assert_eq!(good.status, 200, "{}", good.describe());

    fake.inject(Op::GetSecretValue, Fault::Internal, usize::MAX);
    let calls = fake.calls(Op::GetSecretValue);
    let r = http::get(served.addr, &format!("{plain}&refreshNow=true")).await;
    assert_eq!(
        (r.status, r.describe()),
        (
            500,
            format!(
                "{:?}",
                error_body(
                    "InternalServiceError",
                    "An error occurred on the server side."
                )
            )
        ),
        "refreshNow answers the failure, not the cached value"
    );
    assert!(
        fake.calls(Op::GetSecretValue) > calls,
        "refreshNow called upstream"
    );

    // Past the TTL, a plain read serves the last good value while upstream fails.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stale = http::get(served.addr, plain).await;
    assert_eq!(stale.status, 200, "{}", stale.describe());
    assert!(
        stale.body == good.body,
        "the stale body differs from the good one"
    );
    fake.clear_faults();
}

//! Answers the SDK cannot read: a 200 whose body is cut short, noise, or a value that is not
//! base64, and an error page with no code in it. The SDK must see each as a service error
//! without a code, with the status the fake sent.

use super::client;
use super::faults::call;
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op};

const VALUE: &str = "malformed-canary-value-0123456789";

#[tokio::test]
async fn unreadable_answers_reach_the_sdk_without_a_code() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    fake.put_string("spoilt", VALUE);

    #[rustfmt::skip]
    let cases = [
        (Op::GetSecretValue, Fault::TruncatedAnswer, 200),
        (Op::GetSecretValue, Fault::GarbageAnswer, 200),
        (Op::GetSecretValue, Fault::NotBase64, 200),
        (Op::GetSecretValue, Fault::ErrorPage(503), 503),
        (Op::GetSecretValue, Fault::ErrorPage(418), 418),
        (Op::BatchGetSecretValue, Fault::NotBase64, 200),
        (Op::ListSecrets, Fault::GarbageAnswer, 200),
        (Op::DescribeSecret, Fault::TruncatedAnswer, 200),
    ];
    let mut failures = Vec::new();
    for (op, fault, status) in cases {
        fake.inject(op, fault, 1);
        let err = call(&client, op, "spoilt")
            .await
            .expect_err("an unreadable answer");
        // Checked first: the messages below show the context.
        assert!(
            !err.context.contains(VALUE),
            "{op:?} under {fault:?}: the error holds the value"
        );
        if err.code.is_some() || err.status != Some(status) {
            failures.push(format!(
                "{op:?} under {fault:?}: code {:?}, status {:?} (want none, {status}): {}",
                err.code, err.status, err.context
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        5,
        "each fault applied to one request"
    );
    if let Err(e) = call(&client, Op::GetSecretValue, "spoilt").await {
        panic!("faults injected once are gone: {}", e.context);
    }
}

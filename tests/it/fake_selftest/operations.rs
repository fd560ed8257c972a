//! Single-secret operations round-tripped through the SDK: GetSecretValue
//! by name, ARN, version id and stage, DescribeSecret, not-found answers,
//! and operations the fake does not implement.

use std::time::{Duration, SystemTime};

use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::{DEADLINE, client};
use crate::support::fake_sm::{FakeSecretsManager, SecretData};

#[tokio::test]
async fn get_secret_value_round_trips() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;

    let before = SystemTime::now();
    let v1 = fake.put_string("app/db", "first-value");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let v2 = fake.put_string("app/db", "second-value");
    let after = SystemTime::now();
    assert_eq!(v1.len(), 36, "version ids are UUID-shaped");
    assert_ne!(v1, v2);

    let current = client
        .get_secret_value()
        .secret_id("app/db")
        .send()
        .await
        .expect("GetSecretValue");
    assert!(
        current.secret_string() == Some("second-value"),
        "AWSCURRENT is the latest put"
    );
    assert!(current.secret_binary().is_none());
    assert_eq!(current.version_id(), Some(v2.as_str()));
    assert_eq!(current.version_stages(), ["AWSCURRENT"]);
    assert_eq!(current.name(), Some("app/db"));
    assert_eq!(current.arn(), Some(fake.arn("app/db").as_str()));

    let created = SystemTime::try_from(*current.created_date().expect("CreatedDate"))
        .expect("CreatedDate in range");
    // The fake keeps milliseconds, as AWS does, and f64 rounding adds a hair.
    let slack = Duration::from_millis(5);
    assert!(created + slack >= before && created <= after + slack);

    let previous = client
        .get_secret_value()
        .secret_id("app/db")
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .expect("GetSecretValue AWSPREVIOUS");
    assert!(
        previous.secret_string() == Some("first-value"),
        "rotation kept the old value"
    );
    assert_eq!(previous.version_id(), Some(v1.as_str()));
    let previous_created = SystemTime::try_from(*previous.created_date().expect("CreatedDate"))
        .expect("CreatedDate in range");
    assert!(
        previous_created < created,
        "each version has its own CreatedDate"
    );

    let by_id = client
        .get_secret_value()
        .secret_id(fake.arn("app/db"))
        .version_id(&v1)
        .send()
        .await
        .expect("GetSecretValue by ARN and VersionId");
    assert_eq!(by_id.version_stages(), ["AWSPREVIOUS"]);
    assert_eq!(by_id.name(), Some("app/db"));

    let both = client
        .get_secret_value()
        .secret_id("app/db")
        .version_id(&v1)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
        .expect("VersionId and VersionStage of the same version");
    assert_eq!(both.version_id(), Some(v1.as_str()));

    let binary = [0u8, 1, 2, 254, 255];
    fake.put_version(
        "app/bin",
        "bin-version-1",
        &["AWSCURRENT"],
        SecretData::Binary(binary.to_vec()),
    );
    let out = client
        .get_secret_value()
        .secret_id("app/bin")
        .send()
        .await
        .expect("GetSecretValue binary");
    assert!(
        out.secret_binary().map(|b| b.as_ref()) == Some(&binary[..]),
        "binary round-trips"
    );
    assert!(out.secret_string().is_none());
    assert_eq!(out.version_id(), Some("bin-version-1"));

    let arn = fake.arn("app/db");
    let suffix = arn
        .strip_prefix("arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-")
        .expect("ARN format");
    assert!(suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        arn,
        FakeSecretsManager::start().arn("app/db"),
        "ARN suffix is deterministic"
    );
}

#[tokio::test]
async fn get_secret_value_not_found_cases() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    let v1 = fake.put_string("present", "value-1");
    fake.put_string("present", "value-2");

    let cases: [(&str, Option<&str>, Option<&str>); 5] = [
        ("absent", None, None),
        ("present", None, Some("NOSUCHSTAGE")),
        ("present", Some("no-such-version"), None),
        // Both given but designating different versions.
        ("present", Some(v1.as_str()), Some("AWSCURRENT")),
        (
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:present-XXXXXX",
            None,
            None,
        ),
    ];
    for (secret_id, version_id, stage) in cases {
        let err = client
            .get_secret_value()
            .secret_id(secret_id)
            .set_version_id(version_id.map(str::to_owned))
            .set_version_stage(stage.map(str::to_owned))
            .send()
            .await
            .expect_err("must not be found");
        assert_eq!(
            err.code(),
            Some("ResourceNotFoundException"),
            "{secret_id} {version_id:?} {stage:?}: {}",
            DisplayErrorContext(&err)
        );
        assert!(err.into_service_error().is_resource_not_found_exception());
    }

    fake.delete_secret("present");
    let err = client
        .get_secret_value()
        .secret_id("present")
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
}

#[tokio::test]
async fn describe_secret_reports_staged_versions() {
    let fake = FakeSecretsManager::start();
    let client = client(&fake).await;
    let data = || SecretData::String("staged".to_owned());
    fake.put_version("staged", "ver-a", &["AWSCURRENT", "blue"], data());
    fake.put_version("staged", "ver-b", &["blue"], data());

    let out = client
        .describe_secret()
        .secret_id("staged")
        .send()
        .await
        .expect("DescribeSecret");
    assert_eq!(out.name(), Some("staged"));
    assert_eq!(out.arn(), Some(fake.arn("staged").as_str()));
    let stages = out.version_ids_to_stages().expect("VersionIdsToStages");
    assert_eq!(stages.len(), 2);
    assert_eq!(stages["ver-a"], ["AWSCURRENT"], "blue moved away");
    assert_eq!(stages["ver-b"], ["blue"]);
    let created = out.created_date().expect("CreatedDate");
    let changed = out.last_changed_date().expect("LastChangedDate");
    assert!(changed >= created);

    let rotated = fake.put_string("staged", "rotated");
    fake.put_version("staged", "ver-c", &["blue"], data());
    let out = client
        .describe_secret()
        .secret_id(fake.arn("staged"))
        .send()
        .await
        .expect("DescribeSecret by ARN");
    let stages = out.version_ids_to_stages().expect("VersionIdsToStages");
    assert_eq!(
        stages.len(),
        3,
        "versions without stages are not listed: {stages:?}"
    );
    assert_eq!(stages["ver-a"], ["AWSPREVIOUS"]);
    assert_eq!(stages[&rotated], ["AWSCURRENT"]);
    assert_eq!(stages["ver-c"], ["blue"]);

    // A version left without stages is still readable by id.
    let out = client
        .get_secret_value()
        .secret_id("staged")
        .version_id("ver-b")
        .send()
        .await
        .expect("deprecated version by id");
    assert!(out.version_stages().is_empty());

    let err = client
        .describe_secret()
        .secret_id("absent")
        .send()
        .await
        .expect_err("absent");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));
}

#[tokio::test]
async fn unknown_operation_is_rejected() {
    let fake = FakeSecretsManager::start();
    let addr = fake.endpoint_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST / HTTP/1.1\r\nHost: fake\r\nUser-Agent: selftest-raw\r\n\
              X-Amz-Target: secretsmanager.PutSecretValue\r\n\
              Content-Type: application/x-amz-json-1.1\r\n\
              Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        )
        .await
        .expect("write");
    let mut response = String::new();
    timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("UnknownOperationException"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("x-amzn-errortype: unknownoperationexception")
    );
    assert_eq!(fake.user_agents(), ["selftest-raw"]);
    assert!(fake.requests().is_empty());
}

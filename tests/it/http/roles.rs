//! `roleArn` (the agent's role chaining) and `--role-arn`, against moto behind a recording
//! proxy: which calls were made, how many AssumeRole, and with which credentials each Secrets
//! Manager call was signed (compared, never printed).

use aws_sdk_secretsmanager::error::DisplayErrorContext;

use super::serve;
use crate::support::cli::{aws_args, run, strs};
use crate::support::counting_proxy::CountingProxy;
use crate::support::http::{self, Conn};
use crate::support::moto::Moto;
use crate::support::mount::Mounted;

const NAME: &str = "roles/db";
const ROLE_A: &str = "arn:aws:iam::123456789012:role/reader-a";
const ROLE_B: &str = "arn:aws:iam::123456789012:role/reader-b";
/// What the tests' environment gives as the base credentials (support::cli).
const BASE_KEY_ID: &str = "x";

/// Moto with one secret, behind a recording proxy; the secret's value.
async fn moto_with_secret() -> (Moto, CountingProxy, String) {
    let moto = Moto::start();
    let value = "roles value 0123";
    moto.client()
        .await
        .create_secret()
        .name(NAME)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating {NAME}: {}", DisplayErrorContext(&e)));
    let proxy = CountingProxy::start(&moto.endpoint_url());
    (moto, proxy, value.to_owned())
}

fn distinct(ids: &[String]) -> usize {
    ids.iter().collect::<std::collections::BTreeSet<_>>().len()
}

#[tokio::test]
async fn role_arn_reads_each_role_with_its_own_credentials_and_cache() {
    let (_moto, proxy, value) = moto_with_secret().await;
    let served = serve(&strs(&aws_args(&proxy.endpoint_url())), &[]).await;
    let targets = [
        format!("/secretsmanager/get?secretId={NAME}&roleArn={ROLE_A}"),
        format!("/secretsmanager/get?secretId={NAME}&roleArn={ROLE_B}"),
        format!("/secretsmanager/get?secretId={NAME}"),
        // Again, and by the path route: each a hit in its own role's cache.
        format!("/secretsmanager/get?secretId={NAME}&roleArn={ROLE_A}"),
        format!("/v1/{NAME}?roleArn={ROLE_A}"),
        format!("/v1/{NAME}?roleArn={ROLE_B}"),
        format!("/v1/{NAME}"),
    ];
    for target in &targets {
        let r = http::get(served.addr, target).await;
        assert_eq!(r.status, 200, "{target}: {}", r.describe());
        assert!(
            r.json()["SecretString"].as_str() == Some(value.as_str()),
            "{target}: not moto's value"
        );
    }
    assert_eq!(proxy.calls("AssumeRole"), 2, "one AssumeRole per role");
    let keys = proxy.key_ids("GetSecretValue");
    assert_eq!(keys.len(), 3, "one GetSecretValue per role and one without");
    assert_eq!(
        distinct(&keys),
        3,
        "each role's call is signed with its own credentials"
    );
    let base_calls = keys.iter().filter(|k| *k == BASE_KEY_ID).count();
    assert_eq!(
        base_calls, 1,
        "only the request without roleArn is made with the base credentials"
    );
    for key in proxy.key_ids("AssumeRole") {
        assert!(
            key == BASE_KEY_ID,
            "AssumeRole is made with the base credentials"
        );
    }
    // One set of counters for every role's engine.
    let metrics = Conn::tcp(served.addr)
        .await
        .get("/metrics", &[])
        .await
        .text();
    let line = "secretsfs_upstream_calls_total{operation=\"GetSecretValue\"} 3";
    assert!(
        metrics.lines().any(|l| l == line),
        "no {line:?} in:\n{metrics}"
    );
}

#[tokio::test]
async fn an_invalid_role_arn_is_400_before_any_call() {
    let (_moto, proxy, _) = moto_with_secret().await;
    let served = serve(&strs(&aws_args(&proxy.endpoint_url())), &[]).await;
    let expected = "invalid roleArn format, expected arn:<partition>:iam::<account>:role/<name>";
    for target in [
        format!("/secretsmanager/get?secretId={NAME}&roleArn=not-a-valid-arn"),
        format!("/secretsmanager/get?secretId={NAME}&roleArn=arn:aws:iam::123:role/a"),
        format!("/v1/{NAME}?roleArn=arn:aws:iam::123456789012:user/a"),
    ] {
        let r = http::get(served.addr, &target).await;
        assert_eq!((r.status, r.text()), (400, expected.to_owned()), "{target}");
    }
    assert_eq!(proxy.calls("AssumeRole"), 0);
    assert_eq!(proxy.calls("GetSecretValue"), 0);
}

#[tokio::test]
async fn roles_past_max_roles_are_400_and_a_refused_role_403() {
    let (_moto, proxy, _) = moto_with_secret().await;
    let served = serve(
        &strs(&aws_args(&proxy.endpoint_url())),
        &["--max-roles", "2"],
    )
    .await;
    for role in [ROLE_A, ROLE_B] {
        let r = http::get(served.addr, &format!("/v1/{NAME}?roleArn={role}")).await;
        assert_eq!(r.status, 200, "{role}: {}", r.describe());
    }
    let third = "arn:aws:iam::123456789012:role/reader-c";
    let r = http::get(served.addr, &format!("/v1/{NAME}?roleArn={third}")).await;
    assert_eq!(r.status, 400, "{}", r.describe());
    assert_eq!(r.json()["__type"], "MaxRolesExceeded");
    assert_eq!(
        r.json()["message"],
        format!(
            "The maximum number of assumed roles (2) has been reached. Unable to assume the \
             following role to create a client: {third}"
        )
    );
    assert_eq!(proxy.calls("AssumeRole"), 2, "no AssumeRole past the bound");
    let r = http::get(served.addr, &format!("/v1/{NAME}?roleArn={ROLE_A}")).await;
    assert_eq!(r.status, 200, "a known role is still served");
    drop(served);

    // A role STS refuses: 403 as the agent answers it, no Secrets Manager call, one log line.
    let served = serve(&strs(&aws_args(&proxy.endpoint_url())), &[]).await;
    let before = proxy.calls("GetSecretValue");
    let assumed_before = proxy.calls("AssumeRole");
    let denied = "arn:aws:iam::123456789012:role/denied";
    for _ in 0..3 {
        let r = http::get(served.addr, &format!("/v1/{NAME}?roleArn={denied}")).await;
        assert_eq!(r.status, 403, "{}", r.describe());
        assert_eq!(r.json()["__type"], "AccessDeniedException");
        assert_eq!(
            r.json()["message"],
            format!("Failed to create caching client from role: {denied}")
        );
    }
    assert_eq!(proxy.calls("GetSecretValue"), before);
    assert_eq!(
        proxy.calls("AssumeRole") - assumed_before,
        1,
        "the refusal is remembered: one AssumeRole for three requests"
    );
    let log = served.stop().await;
    let lines = log
        .lines()
        .filter(|l| l.contains("cannot assume the role") && l.contains(denied))
        .count();
    assert_eq!(lines, 1, "the refusal is logged once:\n{log}");
    assert!(log.contains("AccessDenied"), "the cause is logged:\n{log}");
}

#[tokio::test]
async fn a_mount_with_role_arn_reads_everything_as_the_role() {
    let (_moto, proxy, value) = moto_with_secret().await;
    let mut global = aws_args(&proxy.endpoint_url());
    global.extend(["--role-arn".to_owned(), ROLE_A.to_owned()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let read = std::fs::read(m.path(NAME)).unwrap();
    assert!(read == value.as_bytes(), "the file is not moto's value");
    let listing = std::fs::read_dir(m.path("roles")).unwrap().count();
    assert_eq!(listing, 1);
    assert_eq!(
        proxy.calls("AssumeRole"),
        1,
        "one AssumeRole, at start-up's credential check, used by the reads"
    );
    let mut made = 0;
    for op in [
        "GetSecretValue",
        "ListSecrets",
        "DescribeSecret",
        "BatchGetSecretValue",
    ] {
        for key in proxy.key_ids(op) {
            made += 1;
            assert!(key != BASE_KEY_ID, "{op} made with the base credentials");
        }
    }
    assert!(made >= 2, "{made} Secrets Manager calls");
    let role_keys: Vec<String> = ["GetSecretValue", "ListSecrets"]
        .iter()
        .flat_map(|op| proxy.key_ids(op))
        .collect();
    assert_eq!(
        distinct(&role_keys),
        1,
        "all with the one role's credentials"
    );
}

#[tokio::test]
async fn get_with_role_arn_assumes_the_role_once() {
    let (_moto, proxy, value) = moto_with_secret().await;
    let mut args = aws_args(&proxy.endpoint_url());
    args.extend([
        "--role-arn".to_owned(),
        ROLE_B.to_owned(),
        "get".to_owned(),
        NAME.to_owned(),
    ]);
    let out = run(&strs(&args)).await;
    assert!(
        out.status.success(),
        "get failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == value.as_bytes(), "get printed another value");
    assert_eq!(proxy.calls("AssumeRole"), 1);
    let keys = proxy.key_ids("GetSecretValue");
    assert!(
        keys.len() == 1 && keys[0] != BASE_KEY_ID,
        "not read as the role"
    );

    let mut args = aws_args(&proxy.endpoint_url());
    args.extend(["--role-arn", "arn:aws:iam::1:role/x", "get", NAME].map(str::to_owned));
    let out = run(&strs(&args)).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "an invalid --role-arn is a usage error"
    );
    assert_eq!(proxy.calls("AssumeRole"), 1);
}

/// `--role-arn` reads Parameter Store as the role too: a `--source ssm` mount of another
/// account's parameters.
#[tokio::test]
async fn a_parameter_store_mount_with_role_arn_reads_as_the_role() {
    let moto = Moto::start();
    moto.ssm_client()
        .await
        .put_parameter()
        .name("/roles/url")
        .value("postgres://role@db")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap_or_else(|e| panic!("putting /roles/url: {}", DisplayErrorContext(&e)));
    let proxy = CountingProxy::start(&moto.endpoint_url());
    let mut global = crate::support::cli::source_args("ssm", &proxy.endpoint_url());
    global.extend(["--role-arn".to_owned(), ROLE_A.to_owned()]);
    let m = Mounted::start(&strs(&global), &[]).await;
    let read = std::fs::read(m.path("roles/url")).unwrap();
    assert!(
        read == b"postgres://role@db",
        "the file is not moto's value"
    );
    assert_eq!(proxy.calls("AssumeRole"), 1);
    let keys: Vec<String> = ["GetParametersByPath", "GetParameter", "GetParameters"]
        .iter()
        .flat_map(|op| proxy.key_ids(op))
        .collect();
    assert!(!keys.is_empty(), "no Parameter Store call seen");
    assert!(
        keys.iter().all(|k| k != BASE_KEY_ID),
        "a Parameter Store call made with the base credentials"
    );
}

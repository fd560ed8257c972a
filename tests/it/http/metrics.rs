//! `/metrics`: request and upstream counters that never name a secret, and upstream requests
//! counted one per page.

use super::serve_demo;
use crate::support::cli::{aws_args, strs};
use crate::support::fake_sm::{FakeSecretsManager, Op};
use crate::support::http::{self, Conn};
use crate::support::mount::Mounted;

#[tokio::test]
async fn metrics_count_requests_without_naming_secrets() {
    let served = serve_demo().await;
    for target in [
        "/secretsmanager/get?secretId=api-key",
        "/secretsmanager/get?secretId=api-key",
        "/v1/prod/db",
        "/secretsmanager/get?secretId=nope-missing",
    ] {
        http::get(served.addr, target).await;
    }
    let r = Conn::tcp(served.addr).await.get("/metrics", &[]).await;
    assert_eq!(r.status, 200, "/metrics needs no token");
    let text = r.text();
    // Checked first: the message below shows the text.
    for secret in [
        "api-key",
        "prod/db",
        "nope-missing",
        "demo-api-key-0123456789",
        "demo-Pa55",
    ] {
        assert!(
            !text.contains(secret),
            "/metrics mentions a secret's name or value"
        );
    }
    let has_line = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
    let mut missing = Vec::new();
    for prefix in [
        "secretsfs_http_requests_total{status=\"200\"} 3",
        "secretsfs_http_requests_total{status=\"400\"} 1",
        "secretsfs_cache_hits_total ",
        "secretsfs_upstream_calls_total{operation=\"GetSecretValue\"} ",
        "secretsfs_upstream_call_duration_seconds_bucket",
    ] {
        if !has_line(prefix) {
            missing.push(prefix);
        }
    }
    assert!(
        missing.is_empty(),
        "no line starting with {missing:?} in:\n{text}"
    );
}

/// The value of `secretsfs_upstream_calls_total` for `operation`, if the text has it.
fn upstream_calls(text: &str, operation: &str) -> Option<usize> {
    let prefix = format!("secretsfs_upstream_calls_total{{operation=\"{operation}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.trim().parse().ok())
}

/// `ls -l` of 45 secrets with 4 a page: a listing of 12 pages and batches of 5 pages. Each
/// page is a request to Secrets Manager, and /metrics counts each, as the fake does.
#[tokio::test]
async fn metrics_count_every_page_of_a_listing_and_of_a_batch() {
    let fake = FakeSecretsManager::start();
    for i in 0..45 {
        fake.put_string(&format!("paged/{i:02}"), "v");
    }
    fake.set_list_page_size(4);
    let (m, addr) = Mounted::start_with_http_api(&strs(&aws_args(&fake.endpoint_url()))).await;
    let entries = std::fs::read_dir(m.path("paged")).unwrap();
    let sizes: Vec<u64> = entries
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert_eq!(sizes, [1; 45], "ls -l sees every secret");

    let text = Conn::tcp(addr).await.get("/metrics", &[]).await.text();
    let ops = [
        (Op::ListSecrets, "ListSecrets"),
        (Op::BatchGetSecretValue, "BatchGetSecretValue"),
        (Op::GetSecretValue, "GetSecretValue"),
        (Op::DescribeSecret, "DescribeSecret"),
    ];
    let counted: Vec<_> = ops
        .iter()
        .map(|&(op, name)| (name, upstream_calls(&text, name), Some(fake.calls(op))))
        .collect();
    assert!(
        counted.iter().all(|(_, metric, fake)| metric == fake),
        "(operation, /metrics, the fake's count): {counted:?}"
    );
    assert!(
        fake.calls(Op::ListSecrets) >= 12 && fake.calls(Op::BatchGetSecretValue) >= 5,
        "listings and batches of several pages: {counted:?}"
    );
}

//! `/metrics`: request and upstream counters that never name a secret.

use super::serve_demo;
use crate::support::http::{self, Conn};

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

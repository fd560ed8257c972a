//! What hardening could not do reaches the configured log, not a stderr nobody reads: `serve`
//! with `--mlock`, without CAP_IPC_LOCK (dropped from the bounding set, so root loses it at
//! exec) and with a limited RLIMIT_MEMLOCK, warns once in its `--log-file` and serves anyway.

use crate::support::cli::{WITHOUT_IPC_LOCK, demo_source};
use crate::support::http::{self, Served};

#[tokio::test]
async fn a_hardening_warning_is_in_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("secretsfs.log");
    let source = demo_source();
    let args = [
        "--source",
        &source,
        "--mlock",
        "--log-file",
        log.to_str().unwrap(),
        "serve",
        "--http-port",
        "0",
    ];
    let served = Served::start_wrapped(&WITHOUT_IPC_LOCK, &args).await;
    let r = http::get(served.addr, "/v1/api-key").await;
    assert_eq!(r.status, 200, "serves without the lock: {}", r.describe());
    let stderr = served.stop().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("memory is not locked"))
        .collect();
    assert!(
        matches!(&warnings[..], [line] if line.contains("WARN") && line.contains("CAP_IPC_LOCK")),
        "want one warning in the log file, got {warnings:?} in:\n{text}"
    );
    assert!(
        !stderr.contains("memory is not locked"),
        "the warning went to stderr too:\n{stderr}"
    );
}

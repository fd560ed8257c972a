//! The config file, the `file` source and the token file: only regular files, each under its
//! limit, refused in one line with exit 78 at start; at a re-read (SIGHUP, a changed token
//! file) a bad file is logged and the old contents kept.

use super::{assert_refused, fifo, sparse, zero};
use crate::support::cli::{self, demo_source};
use crate::support::http::{Conn, Served, TOKEN_HEADER};

const NOT_REGULAR: &str = "not a regular file";

#[tokio::test]
async fn a_config_file_that_is_a_device_a_fifo_or_too_big_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (zero(dir.path(), "zero.toml"), NOT_REGULAR),
        (fifo(dir.path(), "fifo.toml"), NOT_REGULAR),
        (
            sparse(dir.path(), "big.toml", (4 << 20) + 1),
            "larger than the limit of 4 MiB",
        ),
    ];
    for (path, cause) in &cases {
        let path = path.to_str().unwrap();
        let get = [
            "--config",
            path,
            "--source",
            &demo_source(),
            "get",
            "api-key",
        ];
        assert_refused(&cli::run(&get).await, 78, cause);
        let out = cli::run(&["check-config", path]).await;
        assert_refused(&out, 78, &format!("config file {path}: "));
        assert_refused(&out, 78, cause);
    }
}

#[tokio::test]
async fn a_log_file_or_audit_log_that_is_a_fifo_or_a_directory_is_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = fifo(dir.path(), "log.fifo");
    let cases = [
        (fifo.to_str().unwrap(), "a FIFO, not a regular file"),
        (dir.path().to_str().unwrap(), "Is a directory"),
    ];
    for (path, cause) in cases {
        for flag in ["--log-file", "--audit-log"] {
            let get = [flag, path, "--source", &demo_source(), "get", "api-key"];
            // cli::run gives up (failing the test) past its deadline: before, this waited for
            // a reader of the FIFO for good.
            let out = cli::run(&get).await;
            assert_refused(&out, 78, &format!("{flag} {path}: {cause}"));
            let checked = cli::run(&[flag, path, "check-config", "/dev/null"]).await;
            assert_refused(&checked, 78, &format!("{flag} {path}: {cause}"));
        }
    }
}

#[tokio::test]
async fn a_secrets_file_that_is_a_device_a_fifo_or_too_big_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (zero(dir.path(), "zero.json"), NOT_REGULAR),
        (fifo(dir.path(), "fifo.json"), NOT_REGULAR),
        (
            sparse(dir.path(), "big.json", (64 << 20) + 1),
            "larger than the limit of 64 MiB",
        ),
    ];
    for (path, cause) in &cases {
        let source = format!("file:{}", path.display());
        let out = cli::run(&["--source", &source, "get", "api-key"]).await;
        assert_refused(&out, 78, &format!("secrets file {}: ", path.display()));
        assert_refused(&out, 78, cause);
    }
}

#[tokio::test]
async fn a_token_file_that_is_a_device_or_a_fifo_stops_serve_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for path in [zero(dir.path(), "zero"), fifo(dir.path(), "fifo")] {
        let value = format!("file://{}", path.display());
        let args = ["--source", &demo_source(), "serve", "--http-port", "0"];
        let out = cli::run_with_env(&args, &[("AWS_TOKEN", &value)]).await;
        assert_refused(&out, 78, &format!("token file {}", path.display()));
        assert_refused(&out, 78, NOT_REGULAR);
    }
}

#[tokio::test]
async fn re_reads_of_a_bad_token_or_config_file_keep_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok1\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "ttl = 60\n").unwrap();
    let value = format!("file://{}", token.display());
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--source",
        &demo_source(),
        "serve",
        "--http-port",
        "0",
    ];
    let served = Served::start_with_env(&args, &[("AWS_TOKEN", &value)]).await;
    let get = "/secretsmanager/get?secretId=api-key";
    let status = |t: &'static str| {
        let addr = served.addr;
        async move {
            Conn::tcp(addr)
                .await
                .get(get, &[(TOKEN_HEADER, t)])
                .await
                .status
        }
    };
    assert_eq!(status("tok1").await, 200);

    std::fs::remove_file(&token).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &token).unwrap();
    assert_eq!(status("tok1").await, 200, "the old token still opens");
    assert_eq!(status("tok1").await, 200);
    let stderr = served.stderr();
    assert_eq!(
        stderr
            .matches("token file changed but cannot be read; keeping the old token")
            .count(),
        1,
        "one line, however many requests: {stderr}"
    );
    assert!(stderr.contains(NOT_REGULAR), "{stderr}");

    std::fs::remove_file(&config).unwrap();
    fifo(dir.path(), "config.toml");
    served.hangup();
    served
        .wait_for_log("the new configuration is invalid; keeping the old one", 1)
        .await;
    assert!(served.stderr().contains("a FIFO, not a regular file"));
    assert_eq!(status("tok1").await, 200, "serve goes on");
    served.stop().await;
}

#[tokio::test]
async fn a_credentials_file_that_is_a_fifo_is_refused_before_the_sdk_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let fake = crate::support::fake_sm::FakeSecretsManager::start();
    let fifo = fifo(dir.path(), "credentials");
    let mut args = crate::support::cli::aws_args(&fake.endpoint_url());
    args.extend(["--credentials-file-path".into(), fifo.display().to_string()]);
    args.extend(["get".into(), "db".into()]);
    let out = cli::run(&crate::support::cli::strs(&args)).await;
    assert_refused(
        &out,
        78,
        &format!(
            "credentials_file_path {}: a FIFO, not a regular file",
            fifo.display()
        ),
    );
    assert_eq!(fake.calls(crate::support::fake_sm::Op::GetSecretValue), 0);
}

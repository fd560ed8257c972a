//! The SSRF token: read from a file and re-read, required by `serve`, and named by
//! `--ssrf-env-variables`.

use super::API_KEY_BODY;
use crate::support::cli::{demo_source, run_with_env};
use crate::support::http::{Conn, Served, TOKEN, TOKEN_HEADER};

#[tokio::test]
async fn a_token_file_is_re_read_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  tok1\n").unwrap();
    let value = format!("file://{}", file.display());
    let served = Served::start_with_env(
        &["--source", &demo_source(), "serve", "--http-port", "0"],
        &[("AWS_TOKEN", &value)],
    )
    .await;
    let get = "/secretsmanager/get?secretId=api-key";
    let addr = served.addr;
    let with_token =
        |t: &'static str| async move { Conn::tcp(addr).await.get(get, &[(TOKEN_HEADER, t)]).await };
    let r = with_token("tok1").await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "tok1: {}",
        r.describe()
    );
    let r = with_token("  tok1\n".trim_end()).await;
    assert_eq!(
        r.status, 200,
        "hyper strips the header's whitespace; the file is trimmed"
    );
    assert_eq!(with_token("tok2").await.status, 403);

    std::fs::write(&file, "tok2\n").unwrap();
    let r = with_token("tok2").await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "tok2: {}",
        r.describe()
    );
    let r = with_token("tok1").await;
    assert_eq!((r.status, r.text()), (403, "Bad Token".to_owned()));
    served.stop().await;
}

#[tokio::test]
async fn serve_without_a_token_exits_78_with_one_line() {
    let out = run_with_env(
        &["--source", &demo_source(), "serve", "--http-port", "0"],
        &[],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "stdout: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1 && stderr.contains("AWS_TOKEN"),
        "stderr is not one line naming AWS_TOKEN: {stderr:?}"
    );
}

#[tokio::test]
async fn a_token_variable_named_by_ssrf_env_variables() {
    let served = Served::start_with_env(
        &[
            "--source",
            &demo_source(),
            "serve",
            "--http-port",
            "0",
            "--ssrf-env-variables",
            "MY_TOKEN",
        ],
        &[("MY_TOKEN", "my-own-token"), ("AWS_TOKEN", TOKEN)],
    )
    .await;
    let get = "/secretsmanager/get?secretId=api-key";
    let r = Conn::tcp(served.addr)
        .await
        .get(get, &[(TOKEN_HEADER, "my-own-token")])
        .await;
    assert!(
        r.status == 200 && r.body == API_KEY_BODY.as_bytes(),
        "{}",
        r.describe()
    );
    let r = Conn::tcp(served.addr)
        .await
        .get(get, &[(TOKEN_HEADER, TOKEN)])
        .await;
    assert_eq!(
        (r.status, r.text()),
        (403, "Bad Token".to_owned()),
        "AWS_TOKEN is not in the list"
    );
    served.stop().await;
}

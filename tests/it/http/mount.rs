//! The HTTP API in the mount's process: one cache for both front ends, and what a mount does
//! without a token.

use crate::support::cli::{aws_args, demo_source, run_with_env, strs};
use crate::support::fake_sm::{FakeSecretsManager, Op};
use crate::support::http::{self, Conn, public_tempdir};
use crate::support::mount::{Http, Mounted, is_mounted};

#[tokio::test]
async fn a_mount_and_its_http_api_share_one_cache() {
    let fake = FakeSecretsManager::start();
    fake.put_string("shared/db", "shared value: 0123");
    let (m, addr) = Mounted::start_with_http_api(&strs(&aws_args(&fake.endpoint_url()))).await;
    let file = std::fs::read(m.path("shared/db")).unwrap();
    let r = http::get(addr, "/secretsmanager/get?secretId=shared/db").await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let json = r.json();
    let over_http = json["SecretString"].as_str().unwrap();
    assert!(
        over_http.as_bytes() == file,
        "the file and the HTTP SecretString differ"
    );
    assert!(
        file == b"shared value: 0123",
        "the file differs from the fake's value"
    );
    assert_eq!(
        fake.calls(Op::GetSecretValue),
        1,
        "one fetch for both front ends"
    );
    let r = Conn::tcp(addr).await.get("/ping", &[]).await;
    assert_eq!((r.status, r.text()), (200, "healthy".to_owned()));
}

#[tokio::test]
async fn a_mount_without_a_token_mounts_without_tcp_and_says_so_once() {
    let fake = FakeSecretsManager::start();
    fake.put_string("plain", "p");
    // No token in the environment, and no --http-* flag (the default port is left alone):
    // HTTP as configured, without the --no-http that would silence the warning.
    let m = Mounted::start_with(
        &strs(&aws_args(&fake.endpoint_url())),
        &[],
        &[],
        Http::AsConfigured,
    )
    .await;
    assert!(std::fs::read(m.path("plain")).unwrap() == b"p");
    let log = m.log();
    assert_eq!(
        log.lines().filter(|l| l.contains("no SSRF token")).count(),
        1,
        "the warning, once:\n{log}"
    );
    assert!(
        !log.contains("HTTP API listening"),
        "no listener without a token:\n{log}"
    );
}

#[tokio::test]
async fn a_mount_with_an_explicit_port_and_no_token_fails_78() {
    let dir = public_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("secretsfs.log");
    let out = run_with_env(
        &[
            "--source",
            &demo_source(),
            "mount",
            mnt.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
            "--http-port",
            "0",
        ],
        &[],
    )
    .await;
    let mounted_after = is_mounted(&mnt);
    if mounted_after {
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "stderr: {stderr}");
    assert!(
        stderr.ends_with('\n') && stderr.lines().count() == 1 && stderr.contains("AWS_TOKEN"),
        "stderr is not one line naming AWS_TOKEN: {stderr:?}"
    );
    assert!(!mounted_after, "the mount was left behind");
}

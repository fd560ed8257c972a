//! The provider's socket: 0600, a stale one replaced, a live one or a non-socket left alone,
//! removed at SIGTERM.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::support::cli::run;

#[tokio::test]
async fn the_socket_is_0600_replaces_a_stale_one_and_is_removed_at_stop() {
    let world = World::new();
    let mut provider = world.provider(&[]).await;
    let mode = std::fs::metadata(&provider.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second provider on the same socket refuses to take it over from a live one.
    let socket = provider.socket.to_str().unwrap().to_owned();
    let out = run(&[
        "csi-provider",
        "--socket",
        &socket,
        "--kube-api",
        "http://127.0.0.1:1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another provider answers on"), "{stderr}");

    assert_eq!(provider.stop().await, Some(0));
    assert!(!provider.socket.exists(), "the socket is removed at stop");

    // A socket nobody answers on (a provider killed) is replaced.
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("secretsfs.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let kube = world.kube.url();
    let replacing = Provider::start_at(
        Some(&stale),
        &world.proxy.endpoint_url(),
        &["--kube-api", &kube],
        &[],
    )
    .await;
    let mut client = connect(&stale).await;
    let version = client
        .version(secretsfs::csi::proto::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(version.into_inner().runtime_name, "secretsfs");
    drop(replacing);

    // Anything that is not a socket is left alone.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = run(&[
        "csi-provider",
        "--socket",
        file.to_str().unwrap(),
        "--kube-api",
        "http://127.0.0.1:1",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not a socket"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

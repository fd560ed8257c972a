//! The Unix socket (`--http-socket`): callers decided by their uid, groups and the policy.

use super::{error_body, serve};
use crate::support::cli::strs;
use crate::support::fake_sm::{FakeSecretsManager, Op};
use crate::support::http::{Conn, get_as_nobody, public_tempdir};
use crate::support::policy::{PolicyFixture, TEAM_GID};

fn get_secret_value_requests_for(fake: &FakeSecretsManager, name: &str) -> usize {
    fake.requests()
        .into_iter()
        .filter(|(op, body)| *op == Op::GetSecretValue && body["SecretId"] == name)
        .count()
}

#[tokio::test]
async fn the_unix_socket_is_decided_by_the_callers_uid_and_the_policy() {
    let fixture = PolicyFixture::start();
    let fake = &fixture.fake;
    let dir = public_tempdir();
    let socket = dir.path().join("api.sock");
    let global = fixture.global_args();
    let served = serve(&strs(&global), &["--http-socket", socket.to_str().unwrap()]).await;

    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = std::fs::metadata(&socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o666,
        "the socket's default mode"
    );

    let denied = error_body(
        "AccessDeniedException",
        "access denied by the secretsfs policy",
    );
    let (status, body) = get_as_nobody(&socket, "/secretsmanager/get?secretId=private", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "private as uid 65534: {status}"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/private", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "/v1/private as uid 65534: {status}"
    );
    assert_eq!(
        get_secret_value_requests_for(fake, "private"),
        0,
        "a denied caller causes no upstream call"
    );

    let value_of = |status: u16, body: &[u8]| -> String {
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_slice(body).unwrap();
        json["SecretString"].as_str().unwrap().to_owned()
    };
    let (status, body) = get_as_nobody(&socket, "/secretsmanager/get?secretId=public", &[]);
    assert!(
        value_of(status, &body) == "value of public",
        "public as uid 65534"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/team/app", &[]);
    assert!(
        status == 403 && body == denied.as_bytes(),
        "team/app outside the group: {status}"
    );
    let (status, body) = get_as_nobody(&socket, "/v1/team/app", &[TEAM_GID]);
    assert!(
        value_of(status, &body) == "value of team/app",
        "team/app in group 4242"
    );

    // Root, without any token header: allowed.
    let r = Conn::unix(&socket)
        .await
        .get("/secretsmanager/get?secretId=private", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(
        r.json()["SecretString"] == "value of private",
        "private as root"
    );
    assert_eq!(get_secret_value_requests_for(fake, "private"), 1);

    let log = served.stop().await;
    assert!(
        log.lines().any(|l| l.contains("access denied")
            && l.contains("uid=65534")
            && l.contains("private")),
        "the denial is logged"
    );
    assert!(!log.contains("value of"), "no value in the log");
    assert!(!socket.exists(), "the socket is removed on exit");
}

/// A secret id with a line break must not write a line of the requester's choosing into the
/// text log (a forged audit record), nor a NUL; the record says the request was invalid.
#[tokio::test]
async fn a_requested_id_cannot_forge_a_log_line() {
    let fixture = PolicyFixture::start();
    let dir = public_tempdir();
    let socket = dir.path().join("api.sock");
    let global = fixture.global_args();
    let served = serve(&strs(&global), &["--http-socket", socket.to_str().unwrap()]).await;
    let forged = "1999-01-01T00:00:00.000000Z%20%20WARN%20secretsfs::audit:%20access%20\
                  front=%22mount%22%20uid=1000%20selector=private%20decision=%22denied%22";
    for target in [
        format!("/secretsmanager/get?secretId=public%0A{forged}"),
        format!("/secretsmanager/get?secretId=public%0D%0A{forged}%00"),
        format!("/v1/public%0A{forged}"),
        format!("/systemsmanager/parameters/get?name=/p%0A{forged}"),
    ] {
        let (status, _) = get_as_nobody(&socket, &target, &[]);
        assert_eq!(status, 400, "{target}");
    }
    let log = served.stop().await;
    assert!(
        !log.lines().any(|l| l.starts_with("1999-01-01")),
        "a forged line:\n{log}"
    );
    assert!(!log.contains('\0'), "a NUL in the log");
    let invalid = log
        .lines()
        .filter(|l| l.contains("secretsfs::audit") && l.contains("1999-01-01"))
        .collect::<Vec<_>>();
    assert_eq!(invalid.len(), 4, "one record per request:\n{log}");
    for line in invalid {
        assert!(line.contains("decision=\"invalid\""), "{line}");
        assert!(line.contains("uid=65534"), "{line}");
    }
}

//! Secrets as environment variables: `secretsfs exec` and `secretsfs watch --env`, against
//! moto (and the fake Secrets Manager for a denied read): the exact bytes, JSON keys, stages,
//! the ECS form from both sources, exit codes before COMMAND runs, a rotation restarting
//! COMMAND, the caller's resource limits, no process of ours left by `exec`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::cli::{command, run_with_env, run_wrapped};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::moto::{Moto, create_string, put_parameter, put_string};

const DB: &str = r#"{"username":"app","password":"pw 1 ünïcode\nline two"}"#;

/// `secretsfs --region us-east-1 ARGS` with moto's endpoint for every service (Secrets
/// Manager and SSM).
async fn at_moto(moto: &Moto, args: &[&str]) -> std::process::Output {
    let endpoint = moto.endpoint_url();
    let mut all = vec!["--region", "us-east-1"];
    all.extend(args);
    run_with_env(&all, &[("AWS_ENDPOINT_URL", endpoint.as_str())]).await
}

/// A script that writes each named variable's value to DIR/NAME, byte for byte, and a marker.
fn dump(dir: &Path, names: &[&str]) -> String {
    let mut script = String::new();
    for name in names {
        script.push_str(&format!(
            "printf '%s' \"${name}\" > {}/{name}; ",
            dir.display()
        ));
    }
    script.push_str(&format!("touch {}/ran", dir.display()));
    script
}

#[tokio::test]
async fn exec_hands_command_the_exact_values_of_keys_stages_and_the_ecs_form() {
    let moto = Moto::start();
    let sm = moto.client().await;
    let db = create_string(&sm, "prod/db", DB).await;
    put_string(&sm, "prod/db", r#"{"password":"pw 2"}"#).await;
    let ssm = moto.ssm_client().await;
    for (name, value) in [("/prod/feature", "on"), ("plain-param", "p=1")] {
        put_parameter(
            &ssm,
            name,
            value,
            aws_sdk_ssm::types::ParameterType::SecureString,
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task.json");
    std::fs::write(
        &task,
        format!(
            r#"{{"containerDefinitions": [{{"name": "app", "secrets": [
                {{"name": "ECS_OLD_PASSWORD", "valueFrom": "{arn}:password:AWSPREVIOUS:"}},
                {{"name": "ECS_FEATURE", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/prod/feature"}},
                {{"name": "ECS_PLAIN", "valueFrom": "plain-param"}}
            ]}}]}}"#,
            arn = db.arn
        ),
    )
    .unwrap();
    let names = [
        "WHOLE",
        "PASSWORD",
        "ECS_OLD_PASSWORD",
        "ECS_FEATURE",
        "ECS_PLAIN",
    ];
    let script = dump(dir.path(), &names);
    let out = at_moto(
        &moto,
        &[
            "exec",
            "--env",
            "WHOLE=prod/db",
            "--env",
            "PASSWORD=prod/db:password",
            "--env-file",
            task.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("WHOLE"), br#"{"password":"pw 2"}"#);
    assert_eq!(read("PASSWORD"), b"pw 2");
    assert_eq!(
        read("ECS_OLD_PASSWORD"),
        "pw 1 ünïcode\nline two".as_bytes()
    );
    assert_eq!(read("ECS_FEATURE"), b"on");
    assert_eq!(read("ECS_PLAIN"), b"p=1");
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[tokio::test]
async fn a_value_that_cannot_be_read_exits_with_get_s_code_before_command_runs() {
    let moto = Moto::start();
    let sm = moto.client().await;
    sm.create_secret()
        .name("bin/nul")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(
            b"a\0b".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dump(dir.path(), &[]);
    let exec = |assignment: String| {
        let command = ["exec", "--env", "", "--", "/bin/sh", "-c", ""].map(str::to_owned);
        let mut command = command.to_vec();
        command[2] = assignment;
        command[6] = script.clone();
        command
    };
    let run = |assignment: &str| {
        let command = exec(format!("X={assignment}"));
        let moto = &moto;
        async move {
            let args: Vec<&str> = command.iter().map(String::as_str).collect();
            at_moto(moto, &args).await
        }
    };
    let missing = run("prod/missing").await;
    assert_eq!(missing.status.code(), Some(66));
    let nul = run("bin/nul").await;
    assert_eq!(nul.status.code(), Some(70));
    let line = String::from_utf8_lossy(&nul.stderr);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("holds a NUL byte"), "{line}");
    let bad = run("prod/db:a:b:c:d").await;
    assert_eq!(bad.status.code(), Some(65));
    assert!(!dir.path().join("ran").exists(), "COMMAND ran");

    // A read the policy denies: 77, as `get`.
    let fake = FakeSecretsManager::start();
    fake.put_string("prod/db", "v");
    fake.allow_reading_only(&["other"]);
    let out = run_with_env(
        &[
            "--endpoint-url",
            &fake.endpoint_url(),
            "--region",
            "us-east-1",
            "exec",
            "--env",
            "X=prod/db",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        &[],
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(77),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.path().join("ran").exists(), "COMMAND ran");
}

#[tokio::test]
async fn exec_leaves_no_process_of_ours_and_command_has_the_caller_s_limits() {
    let fake = FakeSecretsManager::start();
    fake.put_string("prod/db", "v");
    let endpoint = fake.endpoint_url();
    let args = [
        "--endpoint-url",
        endpoint.as_str(),
        "--region",
        "us-east-1",
        "exec",
        "--env",
        "X=prod/db",
        "--",
        "/bin/sleep",
        "30",
    ];
    let mut child = command(&args, &[]).stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "secretsfs did not become sleep: {comm}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The same pid is COMMAND now, and it has no child: nothing of ours runs.
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    assert_eq!(children.trim(), "");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("sleep"), "{}", exe.display());
    child.kill().await.unwrap();

    // secretsfs runs with core dumps off; COMMAND gets the limits its caller had.
    let out = run_wrapped(
        &["prlimit", "--core=1024:4096"],
        &[
            "--endpoint-url",
            endpoint.as_str(),
            "--region",
            "us-east-1",
            "exec",
            "--env",
            "X=prod/db",
            "--",
            "/bin/grep",
            "core",
            "/proc/self/limits",
        ],
        &[],
    )
    .await;
    let limits = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = limits.split_whitespace().collect();
    assert_eq!(fields[4..6], ["1024", "4096"], "{limits}");
}

#[tokio::test]
async fn watch_env_restarts_command_with_the_rotated_value_and_refuses_signal() {
    let moto = Moto::start();
    let sm = moto.client().await;
    create_string(&sm, "prod/db", r#"{"password":"first"}"#).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!("printf '%s\\n' \"$DB\" >> {}; exec sleep 60", log.display());
    let endpoint = moto.endpoint_url();
    let mut child = command(
        &[
            "--region",
            "us-east-1",
            "--ttl",
            "1",
            "watch",
            "--debounce",
            "0",
            "--env",
            "DB=prod/db:password",
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
        &[("AWS_ENDPOINT_URL", endpoint.as_str())],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        async move {
            while lines().lines().count() < n {
                assert!(Instant::now() < deadline, "COMMAND's log: {:?}", lines());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(1).await;
    assert_eq!(lines(), "first\n");
    put_string(&sm, "prod/db", r#"{"password":"second"}"#).await;
    wait_for(2).await;
    assert_eq!(lines(), "first\nsecond\n");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "sleep's status: killed by SIGTERM"
    );

    let refused = at_moto(
        &moto,
        &[
            "watch",
            "--signal",
            "HUP",
            "--env",
            "DB=prod/db",
            "--",
            "true",
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--signal cannot go with --env"));
}

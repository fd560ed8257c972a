//! The configuration as a user meets it: `check-config`, precedence with the environment, an
//! agent's config file, SIGHUP, and the service's plumbing (sd-notify, --mlock).

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use crate::support::cli::{self, demo_source, stderr_lines};
use crate::support::mount::Mounted;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[tokio::test]
async fn check_config_prints_the_effective_settings_with_their_origin() {
    let config = write_config(
        "ttl = \"120\"\nregion = \"eu-west-1\"\n[[policy]]\npath = \"a/**\"\nmode = \"0400\"\n",
    );
    let path = config.path().to_str().unwrap();
    let out = cli::run_with_env(&["check-config", path], &[("AWS_TOKEN", "not-to-be-shown")]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ttl = 120    # config file"), "{text}");
    assert!(
        text.contains("region = eu-west-1    # config file"),
        "{text}"
    );
    assert!(text.contains("cache_size = 10000    # default"), "{text}");
    assert!(text.contains("1 policy rule(s)"));
    assert!(
        !text.contains("not-to-be-shown"),
        "the token is never shown"
    );
}

#[tokio::test]
async fn flags_beat_the_environment_which_beats_the_file() {
    let config =
        write_config("ttl = 120\nregion = \"eu-west-1\"\nendpoint_url = \"http://file\"\n");
    let path = config.path().to_str().unwrap();
    let env = [("SECRETSFS_TTL", "60"), ("AWS_REGION", "us-east-2")];
    let out = cli::run_with_env(&["--config", path, "check-config"], &env).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ttl = 60    # flag or environment"), "{text}");
    assert!(
        text.contains("region = us-east-2    # flag or environment"),
        "{text}"
    );
    assert!(
        text.contains("endpoint_url = http://file    # config file"),
        "{text}"
    );
    let out = cli::run_with_env(
        &[
            "--config",
            path,
            "--ttl",
            "30",
            "--region",
            "ap-south-1",
            "check-config",
        ],
        &env,
    )
    .await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ttl = 30    #"), "{text}");
    assert!(text.contains("region = ap-south-1    #"), "{text}");
}

#[tokio::test]
async fn an_agent_config_is_a_drop_in_and_bad_ones_fail_in_one_line() {
    let agent = write_config(
        "log_level = \"INFO\"\nhttp_port = \"2773\"\nregion = \"us-west-2\"\nttl_seconds = \"300\"\n\
         cache_size = '1000'\nmax_conn = 10\nssrf_headers = [\"X-Vault-Token\"]\n\
         ssrf_env_variables = [\"AWS_TOKEN\"]\npath_prefix = \"/v1/\"\nignore_transient_errors = true\n\
         validate_credentials = false\n",
    );
    let out = cli::run(&["check-config", agent.path().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    for (text, key) in [
        ("ttl_seconds = 3601\n", "ttl_seconds"),
        ("unknown_key = 1\n", "unknown_key"),
        ("ttl = 1\nttl_seconds = 1\n", "ttl_seconds"),
    ] {
        let bad = write_config(text);
        let path = bad.path().to_str().unwrap();
        let out = cli::run(&["check-config", path]).await;
        let lines = stderr_lines(&out);
        assert_eq!(out.status.code(), Some(78), "{text}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(key) && lines[0].contains(path),
            "{lines:?}"
        );
    }
    // A bad file stops every command before it does anything, `get` included.
    let bad = write_config("cache_size = 0\n");
    let out = cli::run(&[
        "--config",
        bad.path().to_str().unwrap(),
        "--source",
        &demo_source(),
        "get",
        "api-key",
    ])
    .await;
    assert_eq!(out.status.code(), Some(78));
}

/// Whether uid 65534 may read `path`.
fn nobody_reads(path: &std::path::Path) -> bool {
    crate::support::nobody::cat_as_nobody(path, &[])
        .status
        .success()
}

#[tokio::test]
async fn sighup_replaces_the_policy_and_keeps_the_old_one_on_a_bad_file() {
    let open = "[[policy]]\npath = \"api-key\"\nmode = \"0444\"\n";
    let config = write_config(open);
    let path = config.path().to_str().unwrap().to_owned();
    let global = [
        "--source".to_owned(),
        demo_source(),
        "--config".into(),
        path.clone(),
        "--dir-mode".into(),
        "0555".into(),
    ];
    let global: Vec<&str> = global.iter().map(String::as_str).collect();
    let m = Mounted::start(&global, &["--no-kernel-cache"]).await;
    let file = m.path("api-key");
    assert!(nobody_reads(&file));

    std::fs::write(&path, "[[policy]]\npath = \"api-key\"\nmode = \"0400\"\n").unwrap();
    m.hangup();
    m.wait_for_log("policy replaced", 1).await;
    assert!(!nobody_reads(&file), "the new policy denies");

    std::fs::write(&path, "ttl = \"not a number\"\n").unwrap();
    m.hangup();
    m.wait_for_log("keeping the old one", 1).await;
    assert!(!nobody_reads(&file), "the old (new) policy still holds");
    assert!(m.is_mounted(), "a bad reload does not unmount");
}

/// systemd's side of Type=notify: a datagram socket the service writes its state to.
fn notify_socket() -> (tempfile::TempDir, UnixDatagram, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (dir, socket, path.to_str().unwrap().to_owned())
}

fn receive(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn the_service_tells_systemd_when_it_is_ready_and_when_it_stops() {
    let (_dir, socket, path) = notify_socket();
    let mnt_dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let mnt = mnt_dir.path().to_str().unwrap().to_owned();
    let mut child = cli::command(
        &["--source", &demo_source(), "mount", "-f", "--no-http", &mnt],
        &[("NOTIFY_SOCKET", &path)],
    )
    .spawn()
    .unwrap();
    let ready = tokio::task::spawn_blocking({
        let socket = socket.try_clone().unwrap();
        move || receive(&socket)
    })
    .await
    .unwrap();
    assert!(ready.contains("READY=1"), "{ready}");
    assert!(
        crate::support::mount::is_mounted(std::path::Path::new(&mnt)),
        "ready means mounted"
    );
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopping = tokio::task::spawn_blocking(move || receive(&socket))
        .await
        .unwrap();
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn mlock_locks_with_the_capability_and_warns_once_without() {
    let out = cli::run(&["--mlock", "--source", &demo_source(), "get", "api-key"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{:?}", stderr_lines(&out));
    // Without CAP_IPC_LOCK (dropped from the bounding set, so root loses it at exec) and with
    // a limited RLIMIT_MEMLOCK: one warning, no lock, and the command still works.
    let out = std::process::Command::new(cli::WITHOUT_IPC_LOCK[0])
        .args(&cli::WITHOUT_IPC_LOCK[1..])
        .arg(cli::SECRETSFS)
        .args(["--mlock", "--source", &demo_source(), "get", "api-key"])
        .env("SECRETSFS_CONFIG", "/dev/null")
        .output()
        .unwrap();
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    assert!(out.stdout == b"demo-api-key-0123456789");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("memory is not locked"), "{lines:?}");
}

/// `check-config` of a sample (agent keys, quoted numbers, policy rules, one flag and two
/// variables) against its committed output: a change to how any key resolves or shows is a
/// diff to review, and a deliberate one updates tests/golden/check-config.out with it.
#[tokio::test]
async fn check_config_of_the_golden_sample_is_unchanged() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/check-config.out");
    let env = [
        ("SECRETSFS_NEGATIVE_TTL", "5"),
        ("AWS_REGION", "eu-central-1"),
        ("AWS_TOKEN", "never-shown"),
    ];
    let args = [
        "--timeout",
        "20",
        "check-config",
        "tests/golden/check-config.toml",
    ];
    let mut command = cli::command(&args, &env);
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::time::timeout(cli::DEADLINE, command.output())
        .await
        .expect("check-config finishes")
        .expect("secretsfs runs");
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = std::fs::read_to_string(golden).unwrap();
    assert!(
        text == expected,
        "check-config output differs from {golden}:\n--- expected\n{expected}\n--- got\n{text}"
    );
}

/// check-config only reads: the log files it names need not exist, and are not created.
#[tokio::test]
async fn check_config_creates_no_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let config = write_config(&format!(
        "log_to_file = true\naudit_log = \"{}/audit.log\"\n",
        missing.display()
    ));
    let out = cli::run(&["check-config", config.path().to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{:?}", stderr_lines(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("log_file = /var/log/secretsfs/secretsfs.log    # config file"),
        "{text}"
    );
    assert!(!missing.exists());
}

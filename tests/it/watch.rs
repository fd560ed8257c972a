//! `secretsfs watch SELECTOR... -- COMMAND` against the fake Secrets Manager: COMMAND restarts
//! (or gets a signal) on a rotation, signals go on to it, and its status is watch's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::support::cli::{aws_args, command, run, strs};
use crate::support::fake_sm::FakeSecretsManager;
use crate::support::mount::alive;

const TTL: &str = "2";

struct Watching {
    child: tokio::process::Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// `secretsfs watch SELECTORS -- sh -c SCRIPT`, where SCRIPT may append to `$LOG`.
fn watch(
    fake: &FakeSecretsManager,
    options: &[&str],
    selectors: &[&str],
    script: &str,
) -> Watching {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut args = aws_args(&fake.endpoint_url());
    args.extend(["--ttl".into(), TTL.into(), "watch".into()]);
    args.extend(options.iter().map(|s| s.to_string()));
    args.extend(selectors.iter().map(|s| s.to_string()));
    args.extend(["--", "/bin/sh", "-c", script].map(str::to_owned));
    let child = command(&strs(&args), &[("LOG", log.to_str().unwrap())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Watching {
        child,
        log,
        _dir: dir,
    }
}

fn lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (10 s at most) until the log has `count` lines starting with `prefix`.
async fn until_logged(log: &Path, prefix: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<String> = lines(log)
            .into_iter()
            .filter(|l| l.starts_with(prefix))
            .collect();
        if found.len() >= count {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{count} x {prefix:?} never logged: {:?}",
            lines(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exit_of(child: &mut tokio::process::Child) -> i32 {
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("watch exits")
        .unwrap();
    status.code().expect("watch exits, not killed")
}

#[tokio::test]
async fn a_rotation_restarts_the_command_and_sigterm_goes_on_to_it() {
    let fake = FakeSecretsManager::start();
    fake.put_string("app/db", r#"{"password":"one","host":"h"}"#);
    let script = r#"echo "started $$" >> "$LOG"; exec sleep 1000"#;
    let mut w = watch(&fake, &[], &["app/db:password"], script);
    let first = until_logged(&w.log, "started", 1).await;
    // Another key's change is not this selector's.
    fake.put_string("app/db", r#"{"password":"one","host":"other"}"#);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lines(&w.log).len(), 1, "no restart for another key");
    fake.put_string("app/db", r#"{"password":"two","host":"other"}"#);
    let started = until_logged(&w.log, "started", 2).await;
    let old_pid: i32 = first[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert!(!alive(old_pid), "the old command was stopped");
    let new_pid: i32 = started[1].split(' ').nth(1).unwrap().parse().unwrap();
    kill(Pid::from_raw(w.child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(
        exit_of(&mut w.child).await,
        128 + 15,
        "sleep died of the SIGTERM"
    );
    assert!(!alive(new_pid), "SIGTERM reached the command");
    // The default filter of `watch` shows what it did to the command (a container's log).
    let mut stderr = String::new();
    w.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(
        stderr
            .matches("watched secrets changed: restarting the command")
            .count(),
        1,
        "{stderr}"
    );
}

#[tokio::test]
async fn with_signal_the_command_is_signalled_not_restarted() {
    let fake = FakeSecretsManager::start();
    fake.put_string("cert", "one");
    let script = r#"trap 'echo hup >> "$LOG"' HUP; echo started >> "$LOG"
        while :; do sleep 0.1; done"#;
    let mut w = watch(&fake, &["--signal", "HUP"], &["cert"], script);
    until_logged(&w.log, "started", 1).await;
    fake.put_string("cert", "two");
    until_logged(&w.log, "hup", 1).await;
    assert_eq!(lines(&w.log), ["started", "hup"]);
    kill(Pid::from_raw(w.child.id().unwrap() as i32), Signal::SIGTERM).unwrap();
    exit_of(&mut w.child).await;
}

#[tokio::test]
async fn the_commands_exit_status_is_watchs() {
    let fake = FakeSecretsManager::start();
    fake.put_string("db", "v");
    let mut w = watch(&fake, &[], &["db"], "exit 3");
    assert_eq!(exit_of(&mut w.child).await, 3);
}

#[tokio::test]
async fn a_bad_selector_or_a_missing_secret_fails_before_the_command_starts() {
    let fake = FakeSecretsManager::start();
    let endpoint = fake.endpoint_url();
    let base = aws_args(&endpoint);
    for (selector, code) in [("db:::not-a-version", 65), ("missing", 66)] {
        let mut args = base.clone();
        args.extend(
            ["watch", selector, "--", "/bin/touch", "/nonexistent-dir/x"].map(str::to_owned),
        );
        let out = run(&strs(&args)).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{selector}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    }
}

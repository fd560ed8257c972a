//! Hooks that fail: retries and their backoff, a change replacing a retry, timeouts, signals
//! and their pid files.

use std::path::PathBuf;
use std::time::Duration;

use super::{Logs, change, counts, gone, hook, is_root, quoted, sh, until};
use crate::hooks::{HookSpec, Hooks};

#[tokio::test]
async fn a_failing_hook_is_retried_until_it_succeeds() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let f = quoted(&dir.path().join("attempts"));
    let script = format!(
        "n=$(cat {f} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {f}; \
         [ $n -ge 3 ] || {{ echo \"attempt $n: not yet\" >&2; exit 3; }}"
    );
    let spec = sh(&script, "name = \"flaky\"\ndebounce = 0");
    let hooks = Hooks::with_backoff(&[spec], Duration::from_millis(10)).unwrap();
    hooks.fire(0, change("a", "1"));
    until("success", || hooks.counts(0).succeeded == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hooks.counts(0), counts(3, 1, 2));
    let text = logs.text();
    assert!(text.contains("exited with status 3"), "{text}");
    assert!(text.contains("attempt 2: not yet"), "{text}");
    assert_eq!(text.matches("hook failed; retrying").count(), 2, "{text}");
    assert!(text.contains("hook ran"), "{text}");
}

#[tokio::test]
async fn a_change_while_waiting_to_retry_replaces_the_retry() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("changed");
    let script = format!(
        "echo \"$SECRETSFS_CHANGED\" > {}; [ \"$SECRETSFS_NEW_VERSION\" = v2 ]",
        quoted(&out)
    );
    // Without the replacement the retry would come only after the backoff, far beyond
    // `until`'s limit.
    let hooks =
        Hooks::with_backoff(&[sh(&script, "debounce = 0")], Duration::from_secs(3600)).unwrap();
    hooks.fire(0, change("s1", "v1"));
    until("the failure", || hooks.counts(0).failed == 1).await;
    hooks.fire(0, change("s2", "v2"));
    until("the fresh run", || hooks.counts(0).succeeded == 1).await;
    assert_eq!(hooks.counts(0), counts(2, 1, 1));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "s1\ns2\n");
}

#[tokio::test]
async fn a_hook_that_overruns_its_timeout_is_killed_with_its_group() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pids");
    let f = quoted(&out);
    let script = format!("echo $$ > {f}; sleep 100 & echo $! >> {f}; exec sleep 100");
    let hooks = Hooks::new(&[sh(&script, "debounce = 0\ntimeout = 1\nretries = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the timeout", || hooks.counts(0).failed == 1).await;
    assert_eq!(hooks.counts(0), counts(1, 0, 1));
    let pids: Vec<i32> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    until("the group to go", || pids.iter().all(|p| gone(*p))).await;
    let text = logs.text();
    assert!(text.contains("timed out after 1 s"), "{text}");
    assert!(text.contains("gave up after 1 attempt(s)"), "{text}");
}

#[tokio::test]
async fn a_signal_hook_signals_the_pid_in_its_pid_file() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    let mut child = tokio::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args(["sleep", "100"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, format!("{}\n", child.id().unwrap())).unwrap();
    let body = format!(
        "secrets = [\"x\"]\nsignal = \"TERM\"\npid_file = {:?}\ndebounce = 0",
        pid_file.display().to_string()
    );
    let hooks = Hooks::new(&[hook(&body)]).unwrap();
    hooks.fire(0, change("a", "1"));
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process got the signal")
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(nix::libc::SIGTERM));
    until("the count", || hooks.counts(0).succeeded == 1).await;
    assert_eq!(hooks.counts(0), counts(1, 1, 0));
}

#[tokio::test]
async fn a_missing_garbled_or_unreadable_pid_file_is_a_failure_that_is_retried() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let missing: PathBuf = dir.path().join("missing.pid");
    let garbled = dir.path().join("garbled.pid");
    std::fs::write(&garbled, "not a pid\n").unwrap();
    // Neither may hang the hook's worker nor fill memory.
    let fifo = dir.path().join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let zero = dir.path().join("zero.pid");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let specs: Vec<HookSpec> = [&missing, &garbled, &fifo, &zero]
        .iter()
        .map(|p| {
            hook(&format!(
                "secrets = [\"x\"]\nsignal = \"HUP\"\npid_file = {:?}\ndebounce = 0\nretries = 1",
                p.display().to_string()
            ))
        })
        .collect();
    let hooks = Hooks::with_backoff(&specs, Duration::from_millis(10)).unwrap();
    for index in 0..specs.len() {
        hooks.fire(index, change("a", "1"));
    }
    until("every hook to give up", || {
        (0..specs.len()).all(|index| hooks.counts(index).failed == 2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for index in 0..specs.len() {
        assert_eq!(hooks.counts(index), counts(2, 0, 2), "hook {index}");
    }
    let text = logs.text();
    assert!(text.contains("No such file or directory"), "{text}");
    assert!(text.contains("no pid in it"), "{text}");
    assert!(text.contains("a FIFO, not a regular file"), "{text}");
    assert!(
        text.contains("zero.pid is a symbolic link; a pid file is opened without following links"),
        "{text}"
    );
    assert_eq!(
        text.matches("gave up after 2 attempt(s)").count(),
        4,
        "{text}"
    );
}

#[tokio::test]
async fn a_pid_file_of_another_user_may_not_name_a_process_not_its_own() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    // Root's process, named by a file that uid 65534 owns (and so could have written).
    let mut roots = tokio::process::Command::new("sleep")
        .arg("100")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, format!("{}\n", roots.id().unwrap())).unwrap();
    nix::unistd::chown(&pid_file, Some(65534.into()), Some(65534.into())).unwrap();
    let body = format!(
        "secrets = [\"x\"]\nsignal = \"TERM\"\npid_file = {:?}\ndebounce = 0\nretries = 0",
        pid_file.display().to_string()
    );
    let hooks = Hooks::new(&[hook(&body)]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the failure", || hooks.counts(0).failed == 1).await;
    assert!(
        roots.try_wait().unwrap().is_none(),
        "root's process was not signalled"
    );
}

/// Runs a TERM hook on `pid_file` once and says whether root's `sleep` survived it, with the
/// log.
async fn roots_process_survives(pid_file: &std::path::Path) -> (bool, String) {
    let (logs, _guard) = Logs::capture();
    let mut roots = tokio::process::Command::new("sleep")
        .arg("100")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = roots.id().unwrap();
    let body = format!(
        "secrets = [\"x\"]\nsignal = \"TERM\"\npid_file = {:?}\ndebounce = 0\nretries = 0",
        pid_file.display().to_string()
    );
    // Whatever the path names by now is where the pid is written, as an attacker would.
    let _ = std::fs::write(pid_file, format!("{pid}\n"));
    let hooks = Hooks::new(&[hook(&body)]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the run", || {
        let c = hooks.counts(0);
        c.failed + c.succeeded == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    (roots.try_wait().unwrap().is_none(), logs.text())
}

/// A directory of root's whose owner is `uid`, as a user's own directory under /tmp is.
fn users_dir(parent: &std::path::Path, name: &str, uid: u32) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir(&dir).unwrap();
    nix::unistd::chown(&dir, Some(uid.into()), Some(uid.into())).unwrap();
    dir
}

#[tokio::test]
async fn a_pid_file_that_is_a_link_to_roots_file_is_not_followed() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Root's own file, 0600, that uid 65534 links to from a directory of its own.
    let roots_file = dir.path().join("rootpid.txt");
    std::fs::write(&roots_file, "").unwrap();
    let userdir = users_dir(dir.path(), "userdir", 65534);
    let link = userdir.join("app.pid");
    std::os::unix::fs::symlink(&roots_file, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let (survived, log) = roots_process_survives(&link).await;
    assert!(
        survived,
        "root's process was signalled through a link:\n{log}"
    );
    assert!(log.contains("is a symbolic link"), "{log}");
}

#[tokio::test]
async fn a_pid_file_of_roots_in_a_users_directory_names_only_that_users_processes() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The file is root's, but the user owns the directory and could have put it there.
    let userdir = users_dir(dir.path(), "userdir", 65534);
    let (survived, log) = roots_process_survives(&userdir.join("app.pid")).await;
    assert!(survived, "root's process was signalled:\n{log}");
    assert!(log.contains("uid 65534 could have written it"), "{log}");
}

#[tokio::test]
async fn a_pid_file_under_a_directory_others_may_write_is_refused() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let (survived, log) = roots_process_survives(&open.join("app.pid")).await;
    assert!(survived, "root's process was signalled:\n{log}");
    assert!(log.contains("is writable by group or others"), "{log}");
}

#[tokio::test]
async fn a_pid_file_reached_through_roots_own_link_is_signalled() {
    if !is_root() {
        return;
    }
    // As /var/run -> /run: a link of root's in a directory of root's is followed.
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("run");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink("run", dir.path().join("var-run")).unwrap();
    let (survived, log) = roots_process_survives(&dir.path().join("var-run/app.pid")).await;
    assert!(!survived, "root's own pid file through root's link:\n{log}");
}

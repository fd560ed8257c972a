//! What a hook leaves behind: processes that left its group (`setsid`), daemons that outlive
//! it, descriptors it was never meant to have.

use std::time::Duration;

use super::{change, counts, gone, quoted, sh, until};
use crate::hooks::Hooks;

fn pids(path: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn what_a_hook_daemonized_ends_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pids");
    let f = quoted(&out);
    // One leaves the group with setsid; one is double-forked (its parent exits at once).
    let script = format!(
        "setsid sleep 100 & echo $! >> {f}; sh -c 'setsid sleep 100 & echo $! >> {f}'; exit 0"
    );
    let hooks = Hooks::new(&[sh(&script, "debounce = 0\nretries = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the run", || hooks.counts(0).succeeded == 1).await;
    assert_eq!(hooks.counts(0), counts(1, 1, 0));
    let left = pids(&out);
    assert_eq!(left.len(), 2, "{left:?}");
    until("what the hook left to end", || {
        left.iter().all(|p| gone(*p))
    })
    .await;
}

#[tokio::test]
async fn a_hook_past_its_timeout_ends_with_what_it_daemonized() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pids");
    let f = quoted(&out);
    let script = format!("echo $$ >> {f}; setsid sleep 100 & echo $! >> {f}; exec sleep 100");
    let hooks = Hooks::new(&[sh(&script, "debounce = 0\ntimeout = 1\nretries = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the timeout", || hooks.counts(0).failed == 1).await;
    let left = pids(&out);
    assert_eq!(left.len(), 2, "{left:?}");
    // The supervisor ends them within its grace, before secretsfs's own ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    until("the hook and its daemon to end", || {
        left.iter().all(|p| gone(*p))
    })
    .await;
}

#[tokio::test]
async fn a_hook_gets_stdin_stdout_and_stderr_and_nothing_else() {
    // As a descriptor inherited from whoever started secretsfs: open, not close-on-exec.
    let (read, _write) = nix::unistd::pipe().unwrap();
    let stray = nix::fcntl::fcntl(&read, nix::fcntl::FcntlArg::F_DUPFD(251)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fds");
    let script = format!("ls /proc/$$/fd > {}", quoted(&out));
    let hooks = Hooks::new(&[sh(&script, "debounce = 0\nretries = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the run", || hooks.counts(0).succeeded == 1).await;
    let fds: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    // The shell keeps a descriptor of its own (dash: 10) for the redirection.
    assert!(
        ["0", "1", "2"]
            .iter()
            .all(|fd| fds.contains(&fd.to_string()))
            && !fds.contains(&"251".to_owned())
            && fds.len() <= 4,
        "the hook's shell held {fds:?}"
    );
    nix::unistd::close(stray).unwrap();
}

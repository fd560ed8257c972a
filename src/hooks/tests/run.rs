//! Running hooks: the environment they see, debounce, no overlap, users, a non-blocking fire.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use nix::unistd::Uid;

use super::{change, counts, is_root, quoted, sh, until};
use crate::hooks::action::Identity;
use crate::hooks::{HookCounts, Hooks, Notice};

#[tokio::test]
async fn exec_sees_exactly_the_listed_variables() {
    // SAFETY: no other test reads or writes this variable; it only has to be inherited by
    // nothing.
    unsafe { std::env::set_var("SECRETSFS_TEST_SENTINEL", "leaked") };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let mut spec = sh(&format!("env -0 > {}", quoted(&out)), "debounce = 0");
    spec.name = Some("envy".into());
    let hooks = Hooks::new(&[spec]).unwrap();
    hooks.fire(
        0,
        Notice {
            secret: "prod/db".into(),
            selector: "prod/*".into(),
            old_version: Some("v1".into()),
            new_version: "v2".into(),
            path: Some("/mnt/secrets/prod/db".into()),
        },
    );
    until("the run", || hooks.counts(0).succeeded == 1).await;
    let read = || -> BTreeMap<String, String> {
        std::fs::read_to_string(&out)
            .unwrap()
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            // dash exports its own PWD; the hook was not given one.
            .filter(|(k, _)| k != "PWD")
            .collect()
    };
    let want = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        [
            ("PATH", crate::hooks::HOOK_PATH),
            ("HOME", "/"),
            ("SECRETSFS_HOOK", "envy"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    assert_eq!(
        read(),
        want(&[
            ("SECRETSFS_SECRET", "prod/db"),
            ("SECRETSFS_SELECTOR", "prod/*"),
            ("SECRETSFS_OLD_VERSION", "v1"),
            ("SECRETSFS_NEW_VERSION", "v2"),
            ("SECRETSFS_PATH", "/mnt/secrets/prod/db"),
            ("SECRETSFS_CHANGED", "prod/db"),
        ])
    );
    hooks.fire(0, change("other", "v3"));
    until("the second run", || hooks.counts(0).succeeded == 2).await;
    assert_eq!(
        read(),
        want(&[
            ("SECRETSFS_SECRET", "other"),
            ("SECRETSFS_SELECTOR", "x"),
            ("SECRETSFS_OLD_VERSION", ""),
            ("SECRETSFS_NEW_VERSION", "v3"),
            ("SECRETSFS_CHANGED", "other"),
        ])
    );
    assert_eq!(hooks.counts(0), counts(2, 2, 0));
}

#[tokio::test]
async fn changes_within_the_debounce_window_fire_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let script = format!(
        "printf '%s|%s\\n--\\n' \"$SECRETSFS_SECRET\" \"$SECRETSFS_CHANGED\" >> {}",
        quoted(&out)
    );
    let hooks = Hooks::new(&[sh(&script, "debounce = 1")]).unwrap();
    for (secret, version) in [("c", "1"), ("a", "2"), ("a", "3"), ("b", "4")] {
        hooks.fire(0, change(secret, version));
    }
    until("the run", || hooks.counts(0).succeeded == 1).await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "b|a\nb\nc\n--\n");
    assert_eq!(hooks.counts(0), counts(1, 1, 0));

    hooks.fire(0, change("d", "5"));
    until("the second run", || hooks.counts(0).succeeded == 2).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "b|a\nb\nc\n--\nd|d\n--\n"
    );
    assert_eq!(hooks.counts(0), counts(2, 2, 0));
}

#[tokio::test]
async fn changes_during_a_run_wait_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let f = quoted(&out);
    let script = format!("echo start >> {f}; sleep 1; echo \"$SECRETSFS_CHANGED\" >> {f}");
    let hooks = Hooks::new(&[sh(&script, "debounce = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the first run", || hooks.counts(0).started == 1).await;
    hooks.fire(0, change("b", "2"));
    hooks.fire(0, change("c", "3"));
    until("the second run", || hooks.counts(0).succeeded == 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hooks.counts(0), counts(2, 2, 0));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "start\na\nstart\nb\nc\n"
    );
}

#[tokio::test]
async fn a_hook_runs_as_its_user_with_that_users_groups() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let out = dir.path().join("id");
    let f = quoted(&out);
    let script = format!("id -u > {f}; id -g >> {f}; id -G >> {f}; echo \"$HOME\" >> {f}");
    let hooks = Hooks::new(&[sh(&script, "debounce = 0\nuser = \"nobody\"")]).unwrap();
    hooks.fire(0, change("a", "1"));
    until("the run", || {
        hooks.counts(0).succeeded + hooks.counts(0).failed == 1
    })
    .await;
    assert_eq!(hooks.counts(0), counts(1, 1, 0));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert_eq!(lines[0], "65534", "{text}");
    assert_eq!(lines[1], nobody.gid.to_string(), "{text}");
    let groups: Vec<&str> = lines[2].split_whitespace().collect();
    assert!(groups.contains(&lines[1]), "{text}");
    assert!(!groups.contains(&"0"), "{text}");
    assert_eq!(lines[3], nobody.dir.display().to_string(), "{text}");
}

#[test]
fn only_root_may_run_hooks_as_someone_else() {
    let err = Identity::resolve_as("nobody", Uid::from_raw(4242)).unwrap_err();
    assert!(err.contains("needs secretsfs to run as root"), "{err}");
    let same = Identity::resolve_as("nobody", Uid::from_raw(65534)).unwrap();
    assert!(!same.switch);
    let root = Identity::resolve_as("nobody", Uid::from_raw(0)).unwrap();
    assert!(root.switch && root.uid == 65534 && !root.groups.contains(&0));
}

#[tokio::test]
async fn fire_returns_at_once_while_a_hook_hangs() {
    let hooks = Hooks::new(&[sh("exec sleep 100", "debounce = 0\ntimeout = 3600")]).unwrap();
    let began = Instant::now();
    hooks.fire(0, change("a", "1"));
    assert!(began.elapsed() < Duration::from_secs(1));
    until("the run", || hooks.counts(0).started == 1).await;
    let began = Instant::now();
    for i in 0..100 {
        hooks.fire(0, change("a", &i.to_string()));
    }
    assert!(began.elapsed() < Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hooks.counts(0), counts(1, 0, 0));
    assert_eq!(hooks.counts(7), HookCounts::default());
    hooks.fire(7, change("a", "1"));
}

#[test]
fn a_fire_outside_the_runtime_is_refused_not_a_panic() {
    let hooks = Hooks::new(&[sh("true", "debounce = 0")]).unwrap();
    hooks.fire(0, change("a", "1"));
    assert_eq!(hooks.counts(0), HookCounts::default());
    // The hook's task was not spawned, so a fire from the runtime still starts it.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            hooks.fire(0, change("a", "2"));
            until("the run", || hooks.counts(0).succeeded == 1).await;
        });
}

//! The daemon's lifecycle: SIGTERM, a dead mount, the foreground, bad mountpoints, and an
//! unmount from outside.

use std::time::Duration;

use crate::support::cli::{demo_source, strs};
use crate::support::mount::Mounted;

#[tokio::test]
async fn sigterm_unmounts_and_a_dead_mount_is_recovered() {
    let global = ["--source".to_owned(), demo_source()];
    let mut m = Mounted::start(&strs(&global), &[]).await;
    m.stop();
    assert!(!m.is_mounted(), "SIGTERM unmounts");
    assert!(m.log().contains("unmounted"));

    m.mount(&strs(&global), &[]).await;
    assert!(std::fs::read(m.path("api-key")).is_ok());
    m.kill_hard();
    assert!(m.is_mounted(), "a killed daemon leaves its mount behind");
    m.mount(&strs(&global), &[]).await;
    assert!(m.log().contains("detaching a dead mount"));
    assert!(std::fs::read(m.path("api-key")).unwrap() == b"demo-api-key-0123456789");
}

#[tokio::test]
async fn foreground_mode_serves_until_sigterm() {
    let dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut child = tokio::process::Command::new(crate::support::cli::SECRETSFS)
        .args(["--source", &demo_source(), "mount", "-f"])
        .arg(&mnt)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let _unmount_on_failure = DetachOnDrop(mnt.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !crate::support::mount::is_mounted(&mnt) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(std::fs::read(mnt.join("api-key")).unwrap() == b"demo-api-key-0123456789");
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(!crate::support::mount::is_mounted(&mnt));
}

struct DetachOnDrop(std::path::PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        if crate::support::mount::is_mounted(&self.0) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[tokio::test]
async fn bad_mountpoints_fail_with_one_line_and_exit_78() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let file_path = file.path().to_str().unwrap().to_owned();
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let mounted = m.mnt.to_str().unwrap().to_owned();
    for (mountpoint, needle) in [
        ("/nonexistent/secretsfs-mnt", "No such file"),
        (file_path.as_str(), "not a directory"),
        (mounted.as_str(), "already a secretsfs mount"),
    ] {
        let out =
            crate::support::cli::run(&["--source", &demo_source(), "mount", mountpoint]).await;
        let lines = crate::support::cli::stderr_lines(&out);
        assert_eq!(out.status.code(), Some(78), "{mountpoint}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(needle), "{lines:?}");
    }
}

/// Unmounts a test's own bind mount even when the test fails.
struct BindGuard(std::path::PathBuf);

impl Drop for BindGuard {
    fn drop(&mut self) {
        while crate::support::mount::is_mounted(&self.0) {
            if nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

#[tokio::test]
async fn an_unmount_from_outside_leaves_what_lies_beneath() {
    let dir = tempfile::Builder::new()
        .prefix("secretsfs-test-")
        .tempdir_in("/tmp")
        .unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let log = dir.path().join("log");
    // The mountpoint is itself a mount, as a container's hostPath or a bind mount would be.
    nix::mount::mount(
        Some(&mnt),
        &mnt,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let _bind = BindGuard(mnt.clone());
    let mnt_s = mnt.to_str().unwrap();
    let log_s = log.to_str().unwrap();
    let out = crate::support::cli::run(&[
        "--source",
        &demo_source(),
        "--log-level",
        "info",
        "--log-file",
        log_s,
        "mount",
        "--no-http",
        mnt_s,
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{:?}",
        crate::support::cli::stderr_lines(&out)
    );
    let _detach = DetachOnDrop(mnt.clone());
    assert!(std::fs::read(mnt.join("api-key")).is_ok());
    nix::mount::umount(&mnt).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("unmounted from outside")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not notice the unmount"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        crate::support::mount::is_mounted(&mnt),
        "the bind mount beneath is still there"
    );
    assert!(
        std::fs::read(mnt.join("api-key")).is_err(),
        "secretsfs is gone"
    );
}

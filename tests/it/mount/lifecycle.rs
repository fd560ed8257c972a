//! The daemon's lifecycle: SIGTERM, a dead mount, the foreground, bad mountpoints, and an
//! unmount from outside (after which the daemon ends at once).

use std::time::Duration;

use crate::support::cli::{demo_source, strs};
use crate::support::mount::{DetachOnDrop, Http, Mounted, mountpoint};

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
    let (_dir, mnt) = mountpoint();
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

#[tokio::test]
async fn bad_mountpoints_fail_with_one_line_and_exit_78() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let file_path = file.path().to_str().unwrap().to_owned();
    let full = tempfile::tempdir().unwrap();
    std::fs::write(full.path().join("data"), "kept").unwrap();
    let full_path = full.path().to_str().unwrap().to_owned();
    let m = Mounted::start(&["--source", &demo_source()], &[]).await;
    let mounted = m.mnt.to_str().unwrap().to_owned();
    let inside = m.path("prod").to_str().unwrap().to_owned();
    for (mountpoint, needle) in [
        ("/nonexistent/secretsfs-mnt", "No such file"),
        (file_path.as_str(), "not a directory"),
        (mounted.as_str(), "already a secretsfs mount"),
        (inside.as_str(), "inside the secretsfs mount at"),
        (full_path.as_str(), "not empty"),
        // Mounting over /proc/PID hid that process from ps.
        ("/proc/self", "pseudo file system (proc)"),
        ("/sys/kernel", "pseudo file system (sysfs)"),
        ("/dev", "pseudo file system (devtmpfs)"),
    ] {
        let out =
            crate::support::cli::run(&["--source", &demo_source(), "mount", mountpoint]).await;
        let lines = crate::support::cli::stderr_lines(&out);
        assert_eq!(out.status.code(), Some(78), "{mountpoint}: {lines:?}");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains(needle), "{needle:?} in {lines:?}");
    }
    // Other tests mount at the same time, but never there.
    for target in secretsfs_mount_targets() {
        let refused = [
            "/proc/",
            "/sys/",
            "/dev/",
            &format!("{full_path}/"),
            &format!("{inside}/"),
        ];
        assert!(
            !refused.iter().any(|r| format!("{target}/").starts_with(r)),
            "{target} was mounted"
        );
    }
    assert_eq!(
        std::fs::read_to_string(full.path().join("data")).unwrap(),
        "kept"
    );
}

/// Where secretsfs is mounted (paths as /proc/self/mounts escapes them).
fn secretsfs_mount_targets() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("secretsfs "))
        .filter_map(|l| l.split(' ').nth(1).map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_unmount_from_outside_leaves_what_lies_beneath() {
    let mut m = Mounted::unmounted(&[], Http::OffUnlessAsked);
    // The mountpoint is itself a mount, as a container's hostPath or a bind mount would be.
    nix::mount::mount(
        Some(&m.mnt),
        &m.mnt,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    // Dropped before `m`: the bind mount goes, and secretsfs's if it is still there; then `m`
    // stops the daemon by its pid.
    let _bind = DetachOnDrop(m.mnt.clone());
    m.mount(&["--source", &demo_source(), "--log-level", "info"], &[])
        .await;
    assert!(std::fs::read(m.path("api-key")).is_ok());
    nix::mount::umount(&m.mnt).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !m.log().contains("unmounted from outside") {
        assert!(
            std::time::Instant::now() < deadline,
            "the daemon did not notice the unmount"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(m.is_mounted(), "the bind mount beneath is still there");
    assert!(
        std::fs::read(m.path("api-key")).is_err(),
        "secretsfs is gone"
    );
}

/// `umount; mount` at once with the same HTTP port: the old process must have let the port go
/// by the time `umount` returns and the new mount asks for it.
#[tokio::test]
async fn umount_then_mount_at_once_takes_the_same_http_port() {
    let global = ["--source".to_owned(), demo_source()];
    let global: Vec<&str> = global.iter().map(String::as_str).collect();
    let (mut m, addr) = Mounted::start_with_http_api(&global).await;
    assert!(std::fs::read(m.path("api-key")).is_ok());
    let old = m.pid();
    nix::mount::umount(&m.mnt).unwrap();
    let port = addr.port().to_string();
    m.mount(&global, &["--http-port", &port]).await;
    assert_ne!(m.pid(), old, "a new daemon");
    assert!(std::fs::read(m.path("api-key")).is_ok());
    let ping = crate::support::http::get(addr, "/ping").await;
    assert_eq!(ping.status, 200, "the new daemon answers on the port");
}

/// A foreground daemon, killed by its pid when the test ends however it ends.
struct Foreground(std::process::Child);

impl Drop for Foreground {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn foreground(mnt: &std::path::Path, log: &std::path::Path) -> Foreground {
    let daemon = Foreground(
        std::process::Command::new(crate::support::cli::SECRETSFS)
            .args(["--source", &demo_source(), "--log-level", "info"])
            .args(["mount", "-f", "--no-http"])
            .arg(mnt)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::fs::read(mnt.join("api-key")).is_err() {
        assert!(std::time::Instant::now() < deadline, "not mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
}

/// Its mount detached from outside while a file kept it alive, and another daemon mounted at
/// the same path: the old one, stopped, must leave the new mount alone.
#[test]
fn an_old_daemon_whose_mount_was_detached_leaves_the_new_mount_at_its_path() {
    let (dir, mnt) = mountpoint();
    let _unmount = DetachOnDrop(mnt.clone());
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut old = foreground(&mnt, &log_a);
    let held = std::fs::File::open(mnt.join("api-key")).unwrap();
    nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
    let _new = foreground(&mnt, &log_b);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = old.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old daemon did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        std::fs::read(mnt.join("api-key")).is_ok(),
        "the new mount is still there"
    );
    let log = std::fs::read_to_string(&log_a).unwrap();
    assert!(log.contains("no longer this process's"), "{log}");
    drop(held);
}

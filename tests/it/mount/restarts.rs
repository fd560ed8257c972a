//! Restarts that readers never notice: the FUSE connection and the inode journal go to a file
//! descriptor store (played here by `FdStore`, as systemd would with FileDescriptorStoreMax=)
//! or across an exec (SIGUSR2), and the next process takes the mount over.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::cli::{DEMO_VALUES, SECRETSFS, demo_source};
use crate::support::fd_store::FdStore;
use crate::support::mount::{DetachOnDrop, mountpoint};

const READERS: usize = 8;
/// Info, for the hand-over lines, without an audit record per read: the log is read often.
const LOG_LEVEL: &str = "info,secretsfs::audit=off";
const READY: Duration = Duration::from_secs(30);

/// Reads and listings that failed, by errno, and values read wrong.
#[derive(Default)]
struct Tally {
    reads: AtomicU64,
    wrong: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn failed(&self, e: &std::io::Error) {
        let key = e.raw_os_error().map_or(e.kind().to_string(), |n| {
            nix::errno::Errno::from_raw(n).to_string()
        });
        *self.errors.lock().unwrap().entry(key).or_default() += 1;
    }
}

/// Readers that read every demo file in turn, through each of `roots`, until stopped.
struct Readers {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Readers {
    fn start(roots: &[PathBuf]) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let threads = (0..READERS)
            .map(|n| {
                let (stop, tally, roots) = (stop.clone(), tally.clone(), roots.to_vec());
                std::thread::spawn(move || {
                    let mut i = n;
                    while !stop.load(Relaxed) {
                        let root = &roots[i % roots.len()];
                        let (selector, want) = DEMO_VALUES[i % DEMO_VALUES.len()];
                        i += 1;
                        if i % 16 == 0 {
                            if let Err(e) = std::fs::read_dir(root.join("prod"))
                                .and_then(|d| d.collect::<std::io::Result<Vec<_>>>())
                            {
                                tally.failed(&e);
                            }
                            continue;
                        }
                        match std::fs::read(root.join(selector)) {
                            Ok(got) if got == want => {}
                            Ok(_) => {
                                tally.wrong.fetch_add(1, Relaxed);
                            }
                            Err(e) => tally.failed(&e),
                        }
                        tally.reads.fetch_add(1, Relaxed);
                    }
                })
            })
            .collect();
        Readers {
            stop,
            tally,
            threads,
        }
    }

    /// Waits until `n` more reads are done: some are in flight when the daemon goes.
    fn wait_for_more(&self, n: u64) {
        let before = self.tally.reads.load(Relaxed);
        while self.tally.reads.load(Relaxed) < before + n {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        self.tally
    }
}

/// How many mounts /proc/self/mountinfo shows at `path`.
fn mounts_at(path: &Path) -> usize {
    let path = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(path))
        .count()
}

/// A daemon started by the store, killed (by pid) when the test ends however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(store: &FdStore, mnt: &Path, extra: &[&str], log: &Path) -> Daemon {
    let source = demo_source();
    let mut args = vec!["--source", &source, "--log-level", LOG_LEVEL];
    args.extend(["mount", "-f", "--fd-store", "--no-http"]);
    args.extend(extra);
    args.push(mnt.to_str().unwrap());
    Daemon(store.start(SECRETSFS, &args, log))
}

fn kill_loop_through_the_store(extra: &[&str]) {
    let (dir, mnt) = mountpoint();
    let bind = dir.path().join("bind");
    std::fs::create_dir(&bind).unwrap();
    let log = dir.path().join("log");
    // Dropped last: after the daemons are stopped, both mounts go.
    let _unmount = (DetachOnDrop(mnt.clone()), DetachOnDrop(bind.clone()));
    let store = FdStore::new();
    let mut daemon = start(&store, &mnt, extra, &log);
    assert!(store.wait_ready(1, READY), "not ready: {}", read(&log));
    assert_eq!(
        store.names(),
        ["secretsfs-fuse", "secretsfs-inodes-0", "secretsfs-inodes-1"]
    );
    // As a container runtime does for `-v /secrets:/secrets` once /secrets is mounted.
    nix::mount::mount(
        Some(&mnt),
        &bind,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let readers = Readers::start(&[mnt.clone(), bind.clone()]);
    const KILLS: usize = 50;
    for n in 1..=KILLS {
        readers.wait_for_more(20);
        kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGKILL).unwrap();
        daemon.0.wait().unwrap();
        daemon = start(&store, &mnt, extra, &log);
        assert!(
            store.wait_ready(n + 1, READY),
            "restart {n}: {}",
            read(&log)
        );
    }
    let tally = readers.finish();
    let errors = tally.errors.lock().unwrap().clone();
    let reads = tally.reads.load(Relaxed);
    eprintln!("{KILLS} kills -9: {reads} reads, errors {errors:?}");
    assert_eq!(errors, BTreeMap::new(), "every read waits or succeeds");
    assert_eq!(tally.wrong.load(Relaxed), 0, "values read wrong");
    assert!(reads > (KILLS * 20) as u64);
    assert_eq!(store.stored(), 3, "only the first process stored anything");
    assert_eq!(read(&log).matches("took over the mount").count(), KILLS);
    assert_eq!((mounts_at(&mnt), mounts_at(&bind)), (1, 1));
    drop(daemon);
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[test]
fn fifty_kills_under_eight_readers_through_the_mount_and_a_bind_of_it_fail_no_read() {
    kill_loop_through_the_store(&[]);
}

#[test]
fn fifty_kills_fail_no_read_without_the_kernel_cache() {
    kill_loop_through_the_store(&["--no-kernel-cache"]);
}

fn sigterm(daemon: &mut Daemon) -> Option<i32> {
    kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGTERM).unwrap();
    daemon.0.wait().unwrap().code()
}

/// A mountpoint under a guard, a log, and a store to start daemons with.
struct Stored {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    log: PathBuf,
    store: FdStore,
    _unmount: DetachOnDrop,
}

impl Stored {
    fn new() -> Stored {
        let (dir, mnt) = mountpoint();
        Stored {
            log: dir.path().join("log"),
            _unmount: DetachOnDrop(mnt.clone()),
            store: FdStore::new(),
            dir,
            mnt,
        }
    }
}

impl Stored {
    /// The first daemon, ready.
    fn first_daemon(&self) -> Daemon {
        let daemon = start(&self.store, &self.mnt, &[], &self.log);
        assert!(self.store.wait_ready(1, READY), "{}", read(&self.log));
        daemon
    }
}

fn reads_demo(root: &Path) -> bool {
    std::fs::read(root.join("api-key")).is_ok_and(|v| v == b"demo-api-key-0123456789")
}

#[test]
fn sigterm_leaves_the_mount_to_the_store_and_an_ended_connection_is_mounted_anew() {
    let stored = Stored::new();
    let mut daemon = stored.first_daemon();
    let Stored {
        dir: _dir,
        mnt,
        log,
        store,
        _unmount,
    } = stored;
    assert!(reads_demo(&mnt));

    // A restart (systemctl restart): the mount stays, the next process takes it over.
    assert_eq!(sigterm(&mut daemon), Some(0));
    assert_eq!(
        mounts_at(&mnt),
        1,
        "SIGTERM with the store leaves the mount"
    );
    let mut daemon = start(&store, &mnt, &[], &log);
    assert!(store.wait_ready(2, READY), "{}", read(&log));
    assert!(reads_demo(&mnt));
    assert_eq!(read(&log).matches("took over the mount").count(), 1);

    // Unmounted from outside: the store's connection has ended; the next start mounts anew
    // and stores the new connection in place of the old.
    nix::mount::umount(&mnt).unwrap();
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    let mut daemon = start(&store, &mnt, &[], &log);
    assert!(store.wait_ready(3, READY), "{}", read(&log));
    assert!(read(&log).contains("the FUSE connection handed over has ended"));
    assert!(reads_demo(&mnt));
    assert_eq!(store.stored(), 6);

    // A stop for good (systemctl stop): the store lets go, the mount is dead, and the next
    // start detaches it and mounts anew.
    assert_eq!(sigterm(&mut daemon), Some(0));
    store.release();
    let dead = nix::sys::statfs::statfs(&mnt).unwrap_err();
    assert_eq!(dead, nix::errno::Errno::ENOTCONN);
    let _daemon = start(&store, &mnt, &[], &log);
    assert!(store.wait_ready(4, READY), "{}", read(&log));
    assert!(read(&log).contains("detaching a dead mount"));
    assert!(reads_demo(&mnt));
    assert_eq!(mounts_at(&mnt), 1);
}

#[test]
fn sigusr2_hands_the_mount_over_by_exec_without_a_failed_read() {
    let (dir, mnt) = mountpoint();
    let log = dir.path().join("log");
    let _unmount = DetachOnDrop(mnt.clone());
    let source = demo_source();
    let daemon = Daemon(
        std::process::Command::new(SECRETSFS)
            .args([
                "--source",
                &source,
                "--log-level",
                LOG_LEVEL,
                "mount",
                "-f",
                "--no-http",
            ])
            .args(["--no-kernel-cache"])
            .arg(&mnt)
            .stdin(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + READY;
    while !reads_demo(&mnt) {
        assert!(std::time::Instant::now() < deadline, "{}", read(&log));
        std::thread::sleep(Duration::from_millis(20));
    }
    let readers = Readers::start(std::slice::from_ref(&mnt));
    const EXECS: usize = 10;
    for n in 1..=EXECS {
        readers.wait_for_more(20);
        kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGUSR2).unwrap();
        let deadline = std::time::Instant::now() + READY;
        while read(&log).matches("took over the mount").count() < n {
            assert!(std::time::Instant::now() < deadline, "{}", read(&log));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let tally = readers.finish();
    let errors = tally.errors.lock().unwrap().clone();
    eprintln!(
        "{EXECS} execs: {} reads, errors {errors:?}",
        tally.reads.load(Relaxed)
    );
    assert_eq!(errors, BTreeMap::new());
    assert_eq!(tally.wrong.load(Relaxed), 0);
    assert_eq!(mounts_at(&mnt), 1);
    let mut daemon = daemon;
    assert_eq!(
        sigterm(&mut daemon),
        Some(0),
        "the same process, exec'd, stops as usual"
    );
    assert_eq!(mounts_at(&mnt), 0, "without the store, SIGTERM unmounts");
}

/// `secretsfs stop-post`, as the unit's ExecStopPost= runs it, with a `systemctl` that reports
/// `job` running on the unit.
fn stop_post(mnt: &Path, job: &str, bin: &Path) -> String {
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!("#!/bin/sh\necho '12 other.service start waiting'\necho '13 secretsfs.service {job} running'\n"),
    )
    .unwrap();
    std::fs::set_permissions(
        &systemctl,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = std::process::Command::new(SECRETSFS)
        .args(["stop-post", "--unit", "secretsfs.service"])
        .arg(mnt)
        .env("PATH", path)
        .env("SERVICE_RESULT", "success")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn stop_post_keeps_the_mount_for_a_restart_and_unmounts_on_a_stop() {
    let stored = Stored::new();
    let mut daemon = stored.first_daemon();
    let Stored {
        dir,
        mnt,
        log,
        store,
        _unmount,
    } = stored;
    assert_eq!(sigterm(&mut daemon), Some(0));
    let said = stop_post(&mnt, "restart", dir.path());
    assert!(said.contains("keeping the mount"), "{said}");
    assert_eq!(mounts_at(&mnt), 1);
    let mut daemon = start(&store, &mnt, &[], &log);
    assert!(store.wait_ready(2, READY), "{}", read(&log));
    assert!(reads_demo(&mnt));
    assert_eq!(sigterm(&mut daemon), Some(0));
    let said = stop_post(&mnt, "stop", dir.path());
    assert!(said.contains("unmounting"), "{said}");
    store.release();
    assert_eq!(mounts_at(&mnt), 0, "systemctl stop unmounts");
}

/// A daemon in the background, started with a path relative to the user's directory: the
/// exec repeats the arguments from there, and the new process forks into the background again.
#[test]
fn sigusr2_hands_a_background_daemon_over_with_its_relative_paths() {
    let (dir, mnt) = mountpoint();
    let log = dir.path().join("log");
    let _unmount = DetachOnDrop(mnt.clone());
    let status = std::process::Command::new(SECRETSFS)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--source",
            "file:examples/demo-secrets.json",
            "--log-level",
            LOG_LEVEL,
        ])
        .arg("--log-file")
        .arg(&log)
        .args(["mount", "--no-http"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(status.success(), "{}", read(&log));
    let pid_after = |marker: &str, n: usize| -> Option<i32> {
        read(&log)
            .lines()
            .filter(|l| l.contains(marker))
            .nth(n)?
            .split("pid=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let first = pid_after("mounted", 0).expect("the daemon logs its pid");
    kill(Pid::from_raw(first), Signal::SIGUSR2).unwrap();
    let deadline = std::time::Instant::now() + READY;
    let second = loop {
        if let Some(pid) = pid_after("took over the mount", 0) {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "{}", read(&log));
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(reads_demo(&mnt));
    assert_eq!(mounts_at(&mnt), 1);
    kill(Pid::from_raw(second), Signal::SIGTERM).unwrap();
    while mounts_at(&mnt) > 0 {
        assert!(
            std::time::Instant::now() < deadline + READY,
            "{}",
            read(&log)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

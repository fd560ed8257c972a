//! Real mounts for tests, each under a guard that unmounts and stops its daemon even when the
//! test fails. Mountpoints live in a 0755 directory under /tmp, so that a reader running as
//! another uid is decided by secretsfs's modes and policy, not by the test's own directory.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cli;
use super::http::public_tempdir;

/// Whether a mount's HTTP API is left to its arguments and environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// `--no-http` is added unless a mount argument starts with `--http-`: parallel tests must
    /// never collide on the default port.
    OffUnlessAsked,
    /// No `--no-http`: the mount decides as it would for a user (for instance that without a
    /// token it has no TCP listener, and says so).
    AsConfigured,
}

pub struct Mounted {
    _dir: tempfile::TempDir,
    pub mnt: PathBuf,
    log: PathBuf,
    pid: Option<i32>,
    /// On top of the clean environment, for every (re-)mount.
    env: Vec<(String, String)>,
    http: Http,
    /// A command line the mount command runs through (empty: none).
    wrapper: Vec<String>,
}

/// A mount command that did not mount: what it printed and what the daemon logged. The guard
/// it came from has already cleaned up.
pub struct MountFailed {
    pub out: Output,
    pub log: String,
}

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A fresh 0755 directory with a 0755 `mnt` in it, to mount on; the mountpoint goes with the
/// directory.
pub fn mountpoint() -> (tempfile::TempDir, PathBuf) {
    let dir = public_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, mnt)
}

impl Mounted {
    /// `secretsfs GLOBAL... mount MNT --log-file LOG MOUNT_ARGS...` in the background; returns
    /// once the command has exited 0, which it does only when the mount answers.
    pub async fn start(global: &[&str], mount_args: &[&str]) -> Mounted {
        Mounted::start_with_env(global, mount_args, &[]).await
    }

    /// Like [`Mounted::start`], with `env` on top of the clean environment (and on every
    /// re-mount).
    pub async fn start_with_env(
        global: &[&str],
        mount_args: &[&str],
        env: &[(&str, &str)],
    ) -> Mounted {
        Mounted::start_with(global, mount_args, env, Http::OffUnlessAsked).await
    }

    /// Like [`Mounted::start_with_env`], with `http` deciding whether `--no-http` is added.
    pub async fn start_with(
        global: &[&str],
        mount_args: &[&str],
        env: &[(&str, &str)],
        http: Http,
    ) -> Mounted {
        let mut mounted = Mounted::unmounted(env, http);
        mounted.mount(global, mount_args).await;
        mounted
    }

    /// Like [`Mounted::start_with`], but a mount that fails is handed back (once cleaned up)
    /// instead of panicking, for a test that words the failure itself (the canaries redact
    /// it); a mount that succeeds comes with the mount command's output.
    pub async fn try_start_with(
        global: &[&str],
        mount_args: &[&str],
        env: &[(&str, &str)],
        http: Http,
    ) -> Result<(Mounted, Output), MountFailed> {
        let mut mounted = Mounted::unmounted(env, http);
        match mounted.try_mount(global, mount_args).await {
            Ok(out) => Ok((mounted, out)),
            Err(out) => {
                let log = mounted.log();
                drop(mounted);
                Err(MountFailed { out, log })
            }
        }
    }

    /// The guard with its mountpoint and log, before anything is mounted: for a test that
    /// prepares the mountpoint first, then calls [`Mounted::mount`].
    pub fn unmounted(env: &[(&str, &str)], http: Http) -> Mounted {
        let (dir, mnt) = mountpoint();
        let log = dir.path().join("secretsfs.log");
        Mounted {
            _dir: dir,
            mnt,
            log,
            pid: None,
            env: env
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            http,
            wrapper: Vec::new(),
        }
    }

    /// Mounts through `wrapper` from now on (`setpriv ...`, which must exec secretsfs).
    pub fn wrapped(mut self, wrapper: &[&str]) -> Mounted {
        self.wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Mounts (again) at the same mountpoint.
    pub async fn mount(&mut self, global: &[&str], mount_args: &[&str]) {
        if let Err(out) = self.try_mount(global, mount_args).await {
            panic!(
                "mount failed (exit {:?}): {:?}\nlog:\n{}",
                out.status.code(),
                cli::stderr_lines(&out),
                self.log()
            );
        }
    }

    /// `secretsfs GLOBAL... [--log-level ..] mount MNT --log-file LOG MOUNT_ARGS...
    /// [--no-http]`: `Ok` with its output once it exited 0 and the daemon logged its pid,
    /// `Err` with its output otherwise. `--log-level` is [`cli::LOG_LEVEL`] unless `global`
    /// has its own.
    async fn try_mount(&mut self, global: &[&str], mount_args: &[&str]) -> Result<Output, Output> {
        let (mnt, log) = (
            self.mnt.to_str().unwrap().to_owned(),
            self.log.to_str().unwrap().to_owned(),
        );
        let mut args: Vec<&str> = global.to_vec();
        if !global.contains(&"--log-level") {
            args.extend(["--log-level", cli::LOG_LEVEL]);
        }
        args.extend(["mount", &mnt, "--log-file", &log]);
        args.extend(mount_args);
        // Parallel tests must never collide on the default port.
        if self.http == Http::OffUnlessAsked && !mount_args.iter().any(|a| a.starts_with("--http-"))
        {
            args.push("--no-http");
        }
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let wrapper: Vec<&str> = self.wrapper.iter().map(String::as_str).collect();
        let out = cli::run_wrapped(&wrapper, &args, &env).await;
        if out.status.code() != Some(0) {
            return Err(out);
        }
        // Only after an exit 0: the log may still name an earlier daemon, long gone.
        self.pid = self.daemon_pid();
        match self.pid {
            Some(_) => Ok(out),
            None => Err(out),
        }
    }

    /// Where the daemon's `--log-file` is.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// A mount of `global` with its HTTP API on a free port and the tests' token, and the
    /// address it listens on.
    pub async fn start_with_http_api(global: &[&str]) -> (Mounted, SocketAddr) {
        let token = [("AWS_TOKEN", crate::support::http::TOKEN)];
        let m = Mounted::start_with_env(global, &["--http-port", "0"], &token).await;
        let addr = m
            .http_addr()
            .unwrap_or_else(|| panic!("no 'HTTP API listening' line in the log:\n{}", m.log()));
        (m, addr)
    }

    /// SIGHUP: the daemon reads its config file again.
    pub fn hangup(&self) {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }

    /// Waits until `needle` is in the log `count` times (10 s at most).
    pub async fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mnt.join(relative)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The pid of the latest daemon, from its "mounted" log line.
    fn daemon_pid(&self) -> Option<i32> {
        logged_field(self.log().lines().rev(), "mounted", "pid=")
    }

    /// The TCP address of the mount's HTTP API, from its `HTTP API listening` log line.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        logged_field(self.log().lines(), "HTTP API listening", "address=")
    }

    /// The daemon's pid, for signals a test sends it.
    pub fn pid(&self) -> i32 {
        self.pid.expect("mounted")
    }

    pub fn is_mounted(&self) -> bool {
        is_mounted(&self.mnt)
    }

    /// SIGTERM, then waits until the daemon is gone and the mount with it: whether both
    /// happened in time. A daemon that outlives the wait is killed (SIGKILL), by its pid.
    pub fn stop(&mut self) -> bool {
        let Some(pid) = self.pid.take() else {
            return !self.is_mounted();
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while (alive(pid) || self.is_mounted()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stopped = !alive(pid) && !self.is_mounted();
        if alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        stopped
    }

    /// SIGKILL: leaves a dead mount behind, as a crash would.
    pub fn kill_hard(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The cache counters the daemon logs when it unmounts.
    pub fn final_stats(&self) -> serde_json::Value {
        let log = self.log();
        let line = log
            .lines()
            .rfind(|l| (l.contains("unmounted") || l.contains("stopped;")) && l.contains("stats="))
            .unwrap_or_else(|| panic!("no stats in the log:\n{log}"));
        let json = line.split("stats=").nth(1).unwrap();
        serde_json::from_str(json).unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // `stop` kills a daemon that outlives SIGTERM; a mount left behind is detached.
        self.stop();
        if self.is_mounted() {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Detaches whatever is mounted at a path, mounts stacked there included, when dropped: for a
/// mount a test makes itself (a bind mount, a foreground daemon).
pub struct DetachOnDrop(pub PathBuf);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        while is_mounted(&self.0) {
            if nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_err() {
                break;
            }
        }
    }
}

/// The first `KEY=VALUE` value that parses as a `T`, among the `lines` containing `marker`.
fn logged_field<'a, T: FromStr>(
    lines: impl Iterator<Item = &'a str>,
    marker: &str,
    key: &str,
) -> Option<T> {
    lines
        .filter(|l| l.contains(marker))
        .find_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
}

/// A process that exists and is not a zombie (a daemon whose parent is gone may linger as one).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let path = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(path))
}

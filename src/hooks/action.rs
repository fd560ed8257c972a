//! Running one attempt of a hook: a program (with a clean environment, maybe as another user,
//! in its own process group, under a timeout), a signal to the pid in a file, or systemctl.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use super::{ActionSpec, HOOK_PATH};

/// What an exec hook runs as, computed in the parent: after fork only async-signal-safe
/// calls are allowed, so nothing may be looked up or allocated there.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<nix::libc::gid_t>,
    pub home: PathBuf,
    /// False when secretsfs already is this user (unprivileged, hooks as itself).
    pub switch: bool,
}

impl Identity {
    /// Resolves `user`; an unprivileged secretsfs can only run hooks as itself.
    pub fn resolve(user: &str) -> Result<Identity, String> {
        Self::resolve_as(user, nix::unistd::geteuid())
    }

    /// As [`Identity::resolve`] for a secretsfs running as `euid`.
    pub fn resolve_as(user: &str, euid: nix::unistd::Uid) -> Result<Identity, String> {
        let found = User::from_name(user)
            .map_err(|e| format!("looking up user {user:?}: {e}"))?
            .ok_or_else(|| format!("no user named {user:?}"))?;
        if !euid.is_root() && euid != found.uid {
            return Err(format!(
                "running hooks as user {user:?} needs secretsfs to run as root (it runs as uid {euid})"
            ));
        }
        let cname = CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
        let groups = nix::unistd::getgrouplist(&cname, found.gid)
            .map_err(|e| format!("listing the groups of user {user:?}: {e}"))?;
        Ok(Identity {
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
            groups: groups.iter().map(|g| g.as_raw()).collect(),
            home: found.dir,
            switch: euid.is_root(),
        })
    }
}

/// A hook's action with everything resolved that can be at load.
#[derive(Debug)]
pub(super) struct Action {
    pub spec: ActionSpec,
    pub identity: Option<Identity>,
    pub timeout: Duration,
}

/// The environment of one run, beyond PATH and HOME.
#[derive(Debug, Clone, Default)]
pub(super) struct RunEnv {
    pub vars: Vec<(&'static str, std::ffi::OsString)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Ok,
    Failed {
        cause: String,
        stderr: Option<String>,
    },
    TimedOut {
        after: Duration,
        stderr: Option<String>,
    },
}

/// How long a process group gets between SIGTERM and SIGKILL after a timeout.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long stderr is still read after the program exited: a child it left behind may hold
/// the pipe open indefinitely, and the log line only needs what came first.
const STDERR_GRACE: Duration = Duration::from_millis(300);
const STDERR_MAX: usize = 200;

impl Action {
    pub async fn run(&self, env: &RunEnv) -> Outcome {
        match &self.spec {
            ActionSpec::Exec(argv) => self.exec(argv, env, self.identity.as_ref()).await,
            ActionSpec::SignalPid(sig, path) => signal_pid_file(*sig, path).await,
            ActionSpec::SignalUnit(sig, unit) => {
                let argv = [
                    "systemctl".to_owned(),
                    "kill".to_owned(),
                    format!("--signal={}", sig.as_str()),
                    "--".to_owned(),
                    unit.clone(),
                ];
                self.exec(&argv, env, None).await
            }
            ActionSpec::Reload(unit) => {
                let argv = ["systemctl", "reload", "--", unit].map(str::to_owned);
                self.exec(&argv, env, None).await
            }
        }
    }

    async fn exec(&self, argv: &[String], env: &RunEnv, who: Option<&Identity>) -> Outcome {
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", HOOK_PATH)
            .env("HOME", who.map_or(Path::new("/"), |w| w.home.as_path()))
            .envs(env.vars.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so a timeout reaches the hook and its supervisor (`reaper.rs`).
            .process_group(0)
            .kill_on_drop(true);
        if let Some(id) = who.filter(|w| w.switch) {
            let (uid, gid, groups) = (id.uid, id.gid, id.groups.clone());
            // SAFETY: the closure only makes three system calls on data prepared before the
            // fork; supplementary groups and gid first, while still privileged to change them.
            unsafe {
                cmd.pre_exec(move || {
                    use nix::libc;
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        // SAFETY: only system calls on the stack, between fork and exec (`reaper.rs`); after
        // the switch of user above, so the supervisor is the hook's user too.
        unsafe {
            cmd.pre_exec(|| super::reaper::split_off_supervisor());
        }
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Failed {
                    cause: format!("could not start {}: {e}", argv[0]),
                    stderr: None,
                };
            }
        };
        let first_line = Arc::new(Mutex::new(Vec::new()));
        let reader = child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(read_first_line(pipe, first_line.clone())));
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let status = tokio::time::timeout(self.timeout, child.wait()).await;
        let timed_out = status.is_err();
        let status = match status {
            Ok(status) => status,
            Err(_) => {
                if let Some(pgid) = pgid {
                    let _ = signal::killpg(pgid, Signal::SIGTERM);
                }
                let status = tokio::time::timeout(KILL_GRACE, child.wait()).await;
                // Also for members that outlived a leader which obeyed SIGTERM. The group id
                // cannot have been reused while any member is left.
                if let Some(pgid) = pgid {
                    let _ = signal::killpg(pgid, Signal::SIGKILL);
                }
                match status {
                    Ok(status) => status,
                    Err(_) => child.wait().await,
                }
            }
        };
        if let Some(reader) = reader {
            let abort = reader.abort_handle();
            if tokio::time::timeout(STDERR_GRACE, reader).await.is_err() {
                abort.abort();
            }
        }
        let stderr = {
            let bytes = first_line.lock();
            let line = String::from_utf8_lossy(&bytes);
            let line: String = line.trim().chars().take(STDERR_MAX).collect();
            (!line.is_empty()).then_some(line)
        };
        if timed_out {
            return Outcome::TimedOut {
                after: self.timeout,
                stderr,
            };
        }
        match status {
            Ok(status) if status.success() => Outcome::Ok,
            Ok(status) => Outcome::Failed {
                cause: describe(status),
                stderr,
            },
            Err(e) => Outcome::Failed {
                cause: format!("waiting for {}: {e}", argv[0]),
                stderr,
            },
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("killed by {}", sig.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// Keeps the bytes of stderr's first line (a few more than shown, so that a multi-byte
/// character cut at the limit still decodes) and drains the rest, so the hook never blocks
/// on a full pipe.
async fn read_first_line(mut pipe: tokio::process::ChildStderr, keep: Arc<Mutex<Vec<u8>>>) {
    let mut buf = [0u8; 4096];
    let mut done = false;
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if done {
            continue;
        }
        let mut kept = keep.lock();
        let chunk = &buf[..n];
        let end = chunk.iter().position(|b| *b == b'\n');
        let room = (STDERR_MAX * 4).saturating_sub(kept.len());
        let take = end.unwrap_or(n).min(room);
        kept.extend_from_slice(&chunk[..take]);
        done = end.is_some() || kept.len() >= STDERR_MAX * 4;
    }
}

async fn signal_pid_file(sig: Signal, path: &Path) -> Outcome {
    let owned = path.to_owned();
    let sent = tokio::task::spawn_blocking(move || signal_as_the_file_says(sig, &owned)).await;
    match sent {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(cause)) => Outcome::Failed {
            cause: format!("pid file {}: {cause}", path.display()),
            stderr: None,
        },
        Err(e) => Outcome::Failed {
            cause: format!("pid file {}: {e}", path.display()),
            stderr: None,
        },
    }
}

/// secretsfs may signal any process: a pid file must not let a user who could write it, or
/// redirect its path, choose which (`pid_file.rs`). The process is held by a pidfd while its
/// owner is checked, so the pid cannot be reused between the check and the signal.
fn signal_as_the_file_says(sig: Signal, path: &Path) -> Result<(), String> {
    let file = super::pid_file::read(path)?;
    let pid = file.pid;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(format!("no process {pid}"));
    }
    // SAFETY: a descriptor just returned to us and owned by nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let process_uid = std::fs::metadata(format!("/proc/{pid}"))
        .map_err(|_| format!("no process {pid}"))?
        .uid();
    super::pid_file::may_signal(&file.writers, pid, process_uid)?;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    let sent = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<nix::libc::siginfo_t>(),
            0,
        )
    };
    if sent < 0 {
        let errno = nix::errno::Errno::last();
        return Err(format!("sending {} to pid {pid}: {errno}", sig.as_str()));
    }
    Ok(())
}

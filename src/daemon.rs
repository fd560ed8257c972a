//! Going into the background like sshfs and mount-s3: the command returns only once the
//! mount answers, with the daemon's own verdict.
//!
//! The fork happens before any thread or runtime exists (forking a multi-threaded process
//! keeps only the calling thread). The parent then waits on a pipe for one line from the
//! child: `0` when the mount is ready, or an exit code and a one-line cause.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::unistd::{ForkResult, fork, pipe2, setsid};

use crate::error::{Error, ErrorKind, Result};

/// The child's end of the pipe: says once whether the mount came up.
pub struct Readiness(Option<File>);

impl Readiness {
    /// For foreground runs: nobody is waiting.
    pub fn none() -> Self {
        Readiness(None)
    }

    /// True in a daemon whose parent still waits for the verdict.
    pub fn is_waited_for(&self) -> bool {
        self.0.is_some()
    }

    pub fn ready(&mut self) {
        self.say("0\n");
    }

    pub fn failed(&mut self, code: u8, err: &Error) {
        self.say(&format!("{code} {err}\n"));
    }

    fn say(&mut self, line: &str) {
        if let Some(mut pipe) = self.0.take() {
            let _ = pipe.write_all(line.as_bytes());
        }
    }
}

/// Forks. Returns in the child (the daemon-to-be), with its end of the pipe; the parent never
/// returns: it exits with the child's verdict.
pub fn daemonize() -> Result<Readiness> {
    // Close-on-exec: every process the daemon starts (a credential_process helper, and what it
    // leaves running) would otherwise hold the pipe open, and `mount` would wait for them all.
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::new(ErrorKind::Internal, format!("pipe: {e}")))?;
    // SAFETY: no other thread exists yet (main calls this before building the runtime or
    // starting logging threads), so the child inherits a consistent process.
    match unsafe { fork() } {
        Err(e) => Err(Error::new(ErrorKind::Internal, format!("fork: {e}"))),
        Ok(ForkResult::Parent { .. }) => {
            drop(write_end);
            std::process::exit(wait_for_verdict(read_end));
        }
        Ok(ForkResult::Child) => {
            drop(read_end);
            let _ = setsid();
            let _ = nix::unistd::chdir("/");
            detach_stdio();
            Ok(Readiness(Some(File::from(write_end))))
        }
    }
}

fn wait_for_verdict(read_end: OwnedFd) -> i32 {
    let mut text = String::new();
    let _ = File::from(read_end).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("");
    match line.split_once(' ').unwrap_or((line, "")) {
        ("0", _) => 0,
        (code, cause) if !code.is_empty() => {
            eprintln!("secretsfs: {cause}");
            code.parse().unwrap_or(1)
        }
        _ => {
            eprintln!(
                "secretsfs: the mount process exited before the mount was ready (see its log)"
            );
            1
        }
    }
}

/// The daemon keeps no terminal: its logs go to syslog or `--log-file`.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Tells systemd (Type=notify) where the service is; without NOTIFY_SOCKET it does nothing.
pub fn notify_systemd(state: sd_notify::NotifyState) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(&[state])
    {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// SIGTERM and SIGINT, watched from before the service says it is ready: one that arrives
/// right after must stop it cleanly (unmounting), not kill it with a mount left behind.
pub struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let failed = |e: std::io::Error| Error::new(ErrorKind::Internal, format!("signals: {e}"));
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).map_err(failed)?,
            interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
        })
    }

    /// The next stop signal's name.
    pub async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

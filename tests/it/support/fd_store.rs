//! A stand-in for systemd's file descriptor store and notify socket: it keeps the descriptors
//! a daemon sends with `FDSTORE=1` (by `FDNAME`, dropping them on `FDSTOREREMOVE=1`), counts
//! `READY=1`, and starts the next daemon with the descriptors it keeps, as systemd passes them
//! (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`, from descriptor 3).

use std::collections::BTreeMap;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

#[derive(Default)]
struct Kept {
    fds: BTreeMap<String, OwnedFd>,
    ready: usize,
    stored: usize,
}

pub struct FdStore {
    socket_path: PathBuf,
    kept: Arc<(Mutex<Kept>, Condvar)>,
    _dir: tempfile::TempDir,
}

impl FdStore {
    pub fn new() -> FdStore {
        let dir = tempfile::tempdir().unwrap();
        let socket_path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let kept = Arc::new((Mutex::new(Kept::default()), Condvar::new()));
        let shared = kept.clone();
        std::thread::spawn(move || receive(socket, shared));
        FdStore {
            socket_path,
            kept,
            _dir: dir,
        }
    }

    /// Starts `program ARGS` as systemd would start the service again: with NOTIFY_SOCKET and
    /// the descriptors kept so far. Its stderr goes to `log`.
    pub fn start(&self, program: &str, args: &[&str], log: &Path) -> Child {
        let kept = self.kept.0.lock().unwrap();
        let names: Vec<String> = kept.fds.keys().cloned().collect();
        let raw: Vec<RawFd> = kept.fds.values().map(|fd| fd.as_raw_fd()).collect();
        let mut cmd = Command::new("/bin/sh");
        // LISTEN_PID must be the daemon's own pid: the shell's, which exec keeps.
        cmd.arg("-c")
            .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
            .arg(program)
            .args(args)
            .env("NOTIFY_SOCKET", &self.socket_path)
            .env_remove("LISTEN_PID")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .append(true)
                    .create(true)
                    .open(log)
                    .unwrap(),
            );
        if raw.is_empty() {
            cmd.env_remove("LISTEN_FDS").env_remove("LISTEN_FDNAMES");
        } else {
            cmd.env("LISTEN_FDS", raw.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"));
        }
        // SAFETY: only fcntl and dup2, which are async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let mut high = Vec::with_capacity(raw.len());
                for fd in &raw {
                    let copy = nix::libc::fcntl(*fd, nix::libc::F_DUPFD_CLOEXEC, 1000);
                    if copy < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high.push(copy);
                }
                for (target, fd) in (3..).zip(&high) {
                    if nix::libc::dup2(*fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Waits until `READY=1` has come `n` times in all.
    pub fn wait_ready(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.kept;
        let mut kept = lock.lock().unwrap();
        while kept.ready < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            kept = changed.wait_timeout(kept, left).unwrap().0;
        }
        true
    }

    /// The names of the descriptors kept.
    pub fn names(&self) -> Vec<String> {
        self.kept.0.lock().unwrap().fds.keys().cloned().collect()
    }

    /// How many `FDSTORE=1` messages came.
    pub fn stored(&self) -> usize {
        self.kept.0.lock().unwrap().stored
    }

    /// Closes every descriptor kept, as systemd does when the service stops for good.
    pub fn release(&self) {
        self.kept.0.lock().unwrap().fds.clear();
    }
}

fn receive(socket: UnixDatagram, kept: Arc<(Mutex<Kept>, Condvar)>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 16]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let Ok(msg) = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) else {
            return;
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().into_iter().flatten() {
            if let ControlMessageOwned::ScmRights(received) = c {
                // SAFETY: SCM_RIGHTS just gave this process these descriptors.
                fds.extend(
                    received
                        .into_iter()
                        .map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }),
                );
            }
        }
        let len = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..len]).into_owned();
        let fields: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let (lock, changed) = &*kept;
        let mut kept = lock.lock().unwrap();
        if fields.get("READY") == Some(&"1") {
            kept.ready += 1;
        }
        let name = fields.get("FDNAME").copied().unwrap_or("stored").to_owned();
        if fields.get("FDSTOREREMOVE") == Some(&"1") {
            kept.fds.remove(&name);
        }
        if fields.get("FDSTORE") == Some(&"1") {
            kept.stored += 1;
            if let Some(fd) = fds.into_iter().next() {
                kept.fds.insert(name, fd);
            }
        }
        changed.notify_all();
    }
}

//! Restarts that readers never notice (docs/ARCHITECTURE.md#restarts).
//!
//! A FUSE connection lives as long as some process holds its /dev/fuse descriptor. A mount
//! started with `--fd-store` gives that descriptor, and the two memory files of its inode
//! journal, to systemd's file descriptor store (`FDSTORE=1`); a new process gets them back
//! (`LISTEN_FDS`, named by `LISTEN_FDNAMES`), takes in the journal, asks the kernel to send
//! again the requests the old process read and never answered (`FUSE_NOTIFY_RESEND`), and
//! serves the same connection: readers wait through the gap instead of failing. SIGUSR2 does
//! the same by exec, for restarts outside systemd.
//!
//! All workers read one descriptor (no `clone_fd`): requests read on a cloned descriptor are
//! failed with ECONNABORTED when the process holding it dies, while those read on a descriptor
//! the store still holds stay pending for the resend.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

pub const FUSE_NAME: &str = "secretsfs-fuse";
pub const JOURNAL_NAMES: [&str; 2] = ["secretsfs-inodes-0", "secretsfs-inodes-1"];

/// What a previous process handed over: its FUSE connection and its inode journal.
#[derive(Debug)]
pub struct Handed {
    pub fuse: OwnedFd,
    pub journal: [OwnedFd; 2],
}

/// What this process started with that a hand-over needs: the descriptors a previous process
/// passed (if they are a hand-over) and the directory the command was started in (a daemon
/// works from `/`, and the arguments an exec repeats may be relative to where the user was).
/// Read once in `main`, then passed down as a value.
#[derive(Debug, Default)]
pub struct Inherited {
    pub handed: Option<Handed>,
    pub started_in: Option<PathBuf>,
}

/// Takes the descriptors passed to this process, if they are a hand-over. Must run before any
/// thread starts: it removes `LISTEN_*` from the environment so children do not see them.
pub fn take_from_env() -> Inherited {
    let started_in = std::env::current_dir().ok();
    // SAFETY: called first thing in main, before any thread is started.
    let Ok(fds) = (unsafe { sd_notify::listen_fds_with_names_and_unset_env() }) else {
        return Inherited {
            handed: None,
            started_in,
        };
    };
    let mut fuse = None;
    let mut journal: [Option<OwnedFd>; 2] = [None, None];
    for (fd, name) in fds {
        // SAFETY: the service manager passed these descriptors to this process to own.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        match name.as_str() {
            FUSE_NAME => fuse = Some(owned),
            n if n == JOURNAL_NAMES[0] => journal[0] = Some(owned),
            n if n == JOURNAL_NAMES[1] => journal[1] = Some(owned),
            _ => drop(owned),
        }
    }
    let handed = match (fuse, journal) {
        (Some(fuse), [Some(a), Some(b)]) => Some(Handed {
            fuse,
            journal: [a, b],
        }),
        _ => None,
    };
    Inherited { handed, started_in }
}

impl Handed {
    /// Whether the connection still has a mount to serve: after an unmount (`systemctl stop`,
    /// `umount`) the kernel ends it, and the descriptor only reports an error.
    pub fn is_alive(&self) -> bool {
        let mut fds = [PollFd::new(self.fuse.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => !fds[0].revents().is_some_and(|r| {
                r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL)
            }),
            Err(_) => false,
        }
    }
}

/// Gives the connection and the journal to the service manager's store, replacing what an
/// earlier, ended connection left there.
pub fn store(fuse: BorrowedFd<'_>, journal: &[OwnedFd; 2]) -> io::Result<()> {
    use sd_notify::NotifyState::{FdName, FdStore, FdStoreRemove};
    for name in [FUSE_NAME, JOURNAL_NAMES[0], JOURNAL_NAMES[1]] {
        sd_notify::notify(&[FdStoreRemove, FdName(name)])?;
    }
    sd_notify::notify_with_fds(&[FdStore, FdName(FUSE_NAME)], &[fuse])?;
    for (name, fd) in JOURNAL_NAMES.iter().zip(journal) {
        sd_notify::notify_with_fds(&[FdStore, FdName(name)], &[fd.as_fd()])?;
    }
    Ok(())
}

/// Replaces this process with the binary at the same path (a new one after an upgrade), which
/// takes over `fuse` and the journal. Returns only if the exec failed.
pub fn exec(fuse: BorrowedFd<'_>, journal: &[OwnedFd; 2], started_in: Option<&Path>) -> io::Error {
    match prepare_exec(fuse, journal, started_in) {
        Ok((path, args, env)) => match nix::unistd::execve(&path, &args, &env) {
            Err(e) => io::Error::from(e),
        },
        Err(e) => e,
    }
}

type ExecParts = (CString, Vec<CString>, Vec<CString>);

fn prepare_exec(
    fuse: BorrowedFd<'_>,
    journal: &[OwnedFd; 2],
    started_in: Option<&Path>,
) -> io::Result<ExecParts> {
    let exe = std::env::current_exe()?;
    // After an upgrade replaced the binary, /proc/self/exe names the old one "(deleted)".
    let exe = exe.as_os_str().as_bytes();
    let exe = exe.strip_suffix(b" (deleted)").unwrap_or(exe);
    let cstring =
        |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::other("a NUL in an argument"));
    let path = cstring(exe)?;
    let args = std::env::args_os()
        .map(|a: OsString| cstring(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    // Descriptors 3, 4 and 5 as sd_listen_fds(3) has them: first out of the way (3 to 5 may be
    // any of them already), then into place, without close-on-exec on exactly these three.
    let sources = [fuse, journal[0].as_fd(), journal[1].as_fd()];
    let high: Vec<OwnedFd> = sources
        .iter()
        .map(|fd| {
            let raw = nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(100))?;
            // SAFETY: fcntl just made this descriptor, for this function to own.
            Ok(unsafe { OwnedFd::from_raw_fd(raw) })
        })
        .collect::<nix::Result<_>>()?;
    for (target, fd) in (3 as RawFd..).zip(&high) {
        // SAFETY: dup2 onto 3..=5 replaces whatever is there; this process execs next, and
        // the copy is left open (no close-on-exec) for the new program.
        let placed = unsafe { nix::unistd::dup2_raw(fd, target) }?;
        std::mem::forget(placed);
    }
    if let Some(dir) = started_in {
        std::env::set_current_dir(dir)?;
    }
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !k.as_bytes().starts_with(b"LISTEN_"))
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<_>>()?;
    env.push(cstring(
        format!("LISTEN_PID={}", std::process::id()).as_bytes(),
    )?);
    env.push(cstring(b"LISTEN_FDS=3")?);
    env.push(cstring(
        format!(
            "LISTEN_FDNAMES={FUSE_NAME}:{}:{}",
            JOURNAL_NAMES[0], JOURNAL_NAMES[1]
        )
        .as_bytes(),
    )?);
    Ok((path, args, env))
}

//! Ending everything a hook started, and handing it nothing but stdin, stdout and stderr.
//!
//! A hook that daemonizes (`setsid cmd &`) leaves its process group, so killing the group at a
//! timeout does not reach what it left; nor does anything reach it after a hook that exited.
//! So each hook runs under a small supervisor of its own: the process secretsfs forks becomes
//! a child subreaper (`PR_SET_CHILD_SUBREAPER`: orphaned descendants are reparented to it, not
//! to init) and forks the hook. When the hook ends, or secretsfs asks it to stop (SIGTERM at a
//! timeout), the supervisor asks whatever is left to end (SIGTERM), kills it a second later
//! (SIGKILL), reaps it all, and exits as the hook did. secretsfs waits on the supervisor as it
//! did on the hook. No cgroup is needed (the unit would need `Delegate=yes`), and no exec: the
//! supervisor is the forked child itself, so it works the same in the tests' binary.
//!
//! Everything here runs between fork and exec in the child of a multithreaded process, so it
//! makes only system calls, on the stack: no allocation, no lock, no glibc `fork` (whose
//! handlers take malloc's locks), only the raw `clone`.

use std::io;

use nix::libc::{self, c_int, c_long, pid_t};

/// How long what a hook left gets between SIGTERM and SIGKILL. Shorter than the grace
/// secretsfs gives the whole group at a timeout, so the supervisor is done before that ends.
const LEFTOVER_GRACE_MS: i64 = 1000;
/// How often the supervisor looks again while it waits (it wakes at once on SIGCHLD too).
const TICK_MS: i64 = 100;

const LEFT_RUNNING: &[u8] = b"secretsfs: the hook left processes running; they were ended\n";

/// In the forked child, before exec: splits it into the supervisor, which never returns, and
/// the hook's process, which returns `Ok` and goes on to exec the hook with only descriptors
/// 0, 1 and 2 open.
///
/// # Safety
/// Only between fork and exec (a `pre_exec` closure).
pub(super) unsafe fn split_off_supervisor() -> io::Result<()> {
    // SAFETY: system calls on values on this stack.
    unsafe {
        // Refused only by a system call filter: then the hook still runs, and what it leaves
        // is still ended while it is a child here, but a double fork escapes to init.
        let _ = libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        let mut watched: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut watched);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGCHLD] {
            libc::sigaddset(&mut watched, sig);
        }
        let mut before: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, &watched, &mut before) != 0 {
            return Err(io::Error::last_os_error());
        }
        // A raw fork (`clone` with only SIGCHLD; the same arguments on every architecture).
        let pid = libc::syscall(
            libc::SYS_clone,
            libc::SIGCHLD as c_long,
            0 as c_long,
            0,
            0,
            0,
        );
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            libc::sigprocmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
            // Whatever secretsfs was started with (a pipe of its parent's) is not the hook's.
            mark_close_on_exec_from(3);
            return Ok(());
        }
        supervise(pid as pid_t, &watched)
    }
}

/// The supervisor's life: reap, end what is left once the hook is done or told to stop, exit
/// as the hook did.
unsafe fn supervise(hook: pid_t, watched: &libc::sigset_t) -> ! {
    // SAFETY: system calls on values on this stack.
    unsafe {
        // Among them the pipe std's spawn waits on: it must see it close when the hook execs.
        close_from(3);
        let mut hook_status: Option<c_int> = None;
        let mut ending_since: Option<i64> = None;
        let mut ended_any = false;
        loop {
            loop {
                let mut status: c_int = 0;
                let reaped = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if reaped == hook {
                    hook_status = Some(status);
                } else if reaped == 0 {
                    break;
                } else if reaped < 0 && errno() != libc::EINTR {
                    // ECHILD: nothing is left.
                    finish(hook_status, ended_any);
                }
            }
            let now = now_ms();
            if hook_status.is_some() && ending_since.is_none() {
                ended_any |= signal_children(libc::SIGTERM) > 0;
                ending_since = Some(now);
            }
            if ending_since.is_some_and(|since| now - since >= LEFTOVER_GRACE_MS) {
                signal_children(libc::SIGKILL);
            }
            let wait = libc::timespec {
                tv_sec: 0,
                tv_nsec: TICK_MS * 1_000_000,
            };
            let sig = libc::sigtimedwait(watched, std::ptr::null_mut(), &wait);
            if matches!(sig, libc::SIGTERM | libc::SIGINT | libc::SIGHUP) {
                signal_children(libc::SIGTERM);
                ending_since.get_or_insert(now);
            }
        }
    }
}

/// Exits as the hook did: its status, or its signal raised again.
unsafe fn finish(hook_status: Option<c_int>, ended_any: bool) -> ! {
    // SAFETY: system calls on values on this stack.
    unsafe {
        if ended_any {
            libc::write(2, LEFT_RUNNING.as_ptr().cast(), LEFT_RUNNING.len());
        }
        let Some(status) = hook_status else {
            libc::_exit(1)
        };
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            let mut all: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_UNBLOCK, &all, std::ptr::null_mut());
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(1)
    }
}

/// Sends `sig` to every child of this process (the hook, and what it left: reparented here);
/// returns how many. A child's own children come back here when it dies, so the rounds reach
/// them all.
unsafe fn signal_children(sig: c_int) -> usize {
    // SAFETY: system calls on values on this stack.
    unsafe {
        let path = c"/proc/thread-self/children";
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let mut buf = [0u8; 4096];
        let mut signalled = 0;
        let mut pid: pid_t = 0;
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                if b.is_ascii_digit() {
                    pid = pid.saturating_mul(10).saturating_add(pid_t::from(b - b'0'));
                } else if pid > 0 {
                    libc::kill(pid, sig);
                    signalled += 1;
                    pid = 0;
                }
            }
        }
        if pid > 0 {
            libc::kill(pid, sig);
            signalled += 1;
        }
        libc::close(fd);
        signalled
    }
}

unsafe fn close_from(first: u32) {
    // SAFETY: a system call on integers.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) != 0 {
            for fd in first as c_int..1024 {
                libc::close(fd);
            }
        }
    }
}

unsafe fn mark_close_on_exec_from(first: u32) {
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    // SAFETY: system calls on integers.
    unsafe {
        if libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            for fd in first as c_int..1024 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
    }
}

fn now_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the clock into a timespec on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
}

fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

//! Process hardening: no core dumps and no ptrace-readable memory (a core of a process that
//! holds secrets is a file of secrets), and, on request, memory locked out of swap.

use nix::errno::Errno;
use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// CAP_IPC_LOCK's bit in the capability sets of /proc/PID/status.
const CAP_IPC_LOCK: u32 = 14;

/// Something hardening could not do. Handed back rather than logged: [`harden`] runs before
/// logging is set up, where a log line would be lost, so `main` logs these once it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    what: &'static str,
    error: Option<Errno>,
}

impl Warning {
    /// Logs it at warn, to whatever logging is set up by now.
    pub fn log(&self) {
        match self.error {
            Some(e) => tracing::warn!(error = %e, "{}", self.what),
            None => tracing::warn!("{}", self.what),
        }
    }
}

/// The caller's RLIMIT_CORE (soft, hard), before [`harden`]: what a program run from here gets.
static CALLERS_CORE_LIMIT: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Core dumps off, and the process not dumpable (which also keeps other users' ptrace and
/// /proc/PID/mem out). Called first thing in `main` after parsing the command line, so no
/// secret is ever in a core; returns what it could not do, for `main` to log once it can.
///
/// `runs_a_program` (`exec`, `watch`): the program is not ours, and gets the limits its caller
/// had ([`restore_callers_limits`]); only the soft limit is lowered then, since an unprivileged
/// process cannot raise a hard limit back. Soft 0 still stops every core of this process.
pub fn harden(runs_a_program: bool) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warnings.push(Warning {
            what: "cannot clear the dumpable flag",
            error: Some(e),
        });
    }
    let callers = getrlimit(Resource::RLIMIT_CORE).unwrap_or((0, 0));
    let _ = CALLERS_CORE_LIMIT.set(callers);
    let hard = if runs_a_program { callers.1 } else { 0 };
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, hard) {
        warnings.push(Warning {
            what: "cannot disable core dumps",
            error: Some(e),
        });
    }
    warnings
}

/// Gives back the caller's RLIMIT_CORE: in a child between fork and exec (it must not
/// allocate: `CommandExt::pre_exec`), or before `exec` itself. The dumpable flag needs no
/// undoing: exec resets it.
pub fn restore_callers_limits() -> std::io::Result<()> {
    match CALLERS_CORE_LIMIT.get() {
        Some(&(soft, hard)) => {
            setrlimit(Resource::RLIMIT_CORE, soft, hard).map_err(std::io::Error::from)
        }
        None => Ok(()),
    }
}

/// `--mlock`: locks current and future memory, if it can be done without later allocations
/// failing: with CAP_IPC_LOCK, or an unlimited RLIMIT_MEMLOCK. Otherwise no lock, and the
/// warning to log. Called after the fork (locks are not inherited) and after logging is set up.
pub fn lock_memory() -> Result<(), Warning> {
    let unlimited = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map(|(soft, _)| soft == nix::sys::resource::RLIM_INFINITY)
        .unwrap_or(false);
    if !has_capability(CAP_IPC_LOCK) && !unlimited {
        return Err(Warning {
            what: "--mlock: neither CAP_IPC_LOCK nor an unlimited RLIMIT_MEMLOCK; memory is not \
                   locked",
            error: None,
        });
    }
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE).map_err(|e| Warning {
        what: "--mlock: mlockall failed; memory is not locked",
        error: Some(e),
    })
}

fn has_capability(bit: u32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_becomes_undumpable_with_no_core_limit() {
        assert_eq!(harden(false), []);
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        assert_eq!(getrlimit(Resource::RLIMIT_CORE).unwrap(), (0, 0));
        nix::sys::prctl::set_dumpable(true).unwrap();
    }

    #[test]
    fn capabilities_are_read_from_proc() {
        // Root in this sandbox has CAP_IPC_LOCK; an unprivileged run has not. Either way the
        // answer must agree with the effective uid's usual capabilities.
        let root = nix::unistd::geteuid().is_root();
        assert_eq!(has_capability(CAP_IPC_LOCK), root);
    }
}

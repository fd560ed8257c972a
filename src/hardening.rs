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

/// Core dumps off, and the process not dumpable (which also keeps other users' ptrace and
/// /proc/PID/mem out). Called first thing in `main`, so no secret is ever in a core; returns
/// what it could not do, for `main` to log once it can.
pub fn harden() -> Vec<Warning> {
    let mut warnings = Vec::new();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warnings.push(Warning {
            what: "cannot clear the dumpable flag",
            error: Some(e),
        });
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        warnings.push(Warning {
            what: "cannot disable core dumps",
            error: Some(e),
        });
    }
    warnings
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
        assert_eq!(harden(), []);
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

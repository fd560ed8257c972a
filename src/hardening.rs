//! Process hardening: no core dumps and no ptrace-readable memory (a core of a process that
//! holds secrets is a file of secrets), and, on request, memory locked out of swap.

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// CAP_IPC_LOCK's bit in the capability sets of /proc/PID/status.
const CAP_IPC_LOCK: u32 = 14;

/// Core dumps off, and the process not dumpable (which also keeps other users' ptrace and
/// /proc/PID/mem out). Called first thing in `main`.
pub fn harden() {
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot clear the dumpable flag");
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "cannot disable core dumps");
    }
}

/// `--mlock`: locks current and future memory, if it can be done without later allocations
/// failing: with CAP_IPC_LOCK, or an unlimited RLIMIT_MEMLOCK. Otherwise one warning and no
/// lock. Returns whether memory is locked.
pub fn lock_memory() -> bool {
    let unlimited = getrlimit(Resource::RLIMIT_MEMLOCK)
        .map(|(soft, _)| soft == nix::sys::resource::RLIM_INFINITY)
        .unwrap_or(false);
    if !has_capability(CAP_IPC_LOCK) && !unlimited {
        tracing::warn!(
            "--mlock: neither CAP_IPC_LOCK nor an unlimited RLIMIT_MEMLOCK; memory is not locked"
        );
        return false;
    }
    match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "--mlock: mlockall failed; memory is not locked");
            false
        }
    }
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
        harden();
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

//! Who is asking: the uid, gid and pid the kernel reports for a FUSE request or a Unix socket
//! peer, and the supplementary groups, which a FUSE request does not carry.
//!
//! The groups are looked up only when a decision needs them ([`crate::policy::permits`]), once
//! per caller, and then on the runtime's blocking pool: `/proc` and the group database (NSS,
//! which may ask LDAP or sssd) can block, and a FUSE worker polls a request's first step on its
//! own thread, where nothing may wait.

use std::ffi::CString;

use tokio::sync::OnceCell;

/// Finds the supplementary groups of a caller from its uid, gid and pid.
pub type ResolveGroups = fn(u32, u32, Option<u32>) -> Vec<u32>;

#[derive(Debug, Clone)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// `None` where the kernel did not say (a socket peer it gave no pid for).
    pub pid: Option<u32>,
    groups: OnceCell<Vec<u32>>,
    resolve: ResolveGroups,
}

impl Caller {
    /// A caller whose groups, if a decision needs them, come from [`system_groups`].
    pub fn new(uid: u32, gid: u32, pid: Option<u32>) -> Self {
        Self::with_resolver(uid, gid, pid, system_groups)
    }

    /// A caller whose groups the kernel has already given (SO_PEERGROUPS).
    pub fn with_groups(uid: u32, gid: u32, pid: Option<u32>, groups: Vec<u32>) -> Self {
        Caller {
            groups: OnceCell::new_with(Some(groups)),
            ..Self::new(uid, gid, pid)
        }
    }

    /// A caller whose groups, if a decision needs them, come from `resolve`.
    pub fn with_resolver(uid: u32, gid: u32, pid: Option<u32>, resolve: ResolveGroups) -> Self {
        Caller {
            uid,
            gid,
            pid,
            groups: OnceCell::new(),
            resolve,
        }
    }

    /// The supplementary groups, looked up on the first call, on the blocking pool of the
    /// current tokio runtime. A lookup that fails to complete (the runtime shutting down)
    /// counts as no groups: that grants nothing.
    pub async fn groups(&self) -> &[u32] {
        let (uid, gid, pid, resolve) = (self.uid, self.gid, self.pid, self.resolve);
        self.groups
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || resolve(uid, gid, pid))
                    .await
                    .unwrap_or_default()
            })
            .await
    }
}

/// The groups of a caller as the system knows them: from `/proc/PID/status`, where the process
/// there is the caller (same fs uid); otherwise, as for a caller in another pid namespace or
/// one that has exited, from the group database for the uid. Blocks.
pub fn system_groups(uid: u32, gid: u32, pid: Option<u32>) -> Vec<u32> {
    groups_from_proc(uid, pid).unwrap_or_else(|| groups_from_database(uid, gid))
}

fn groups_from_proc(uid: u32, pid: Option<u32>) -> Option<Vec<u32>> {
    let pid = pid.filter(|&pid| pid != 0)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status, uid)
}

/// The `Groups:` line of a status file whose fs uid (the fourth `Uid:` field, the one the
/// kernel checks permissions with) is `uid`.
fn parse_status(status: &str, uid: u32) -> Option<Vec<u32>> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| {
                rest.split_whitespace()
                    .map(str::parse::<u32>)
                    .collect::<Result<Vec<_>, _>>()
            })
    };
    let uids = field("Uid:")?.ok()?;
    if uids.get(3) != Some(&uid) {
        return None;
    }
    field("Groups:")?.ok()
}

fn groups_from_database(uid: u32, gid: u32) -> Vec<u32> {
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    let Some(name) = user.and_then(|u| CString::new(u.name).ok()) else {
        return Vec::new();
    };
    nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(gid))
        .map(|groups| groups.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    use std::thread::ThreadId;

    use parking_lot::Mutex;

    use super::*;

    const STATUS: &str =
        "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nGroups:\t4 24 27 \n";

    #[test]
    fn reads_groups_of_the_calling_uid_only() {
        assert_eq!(parse_status(STATUS, 1000), Some(vec![4, 24, 27]));
        assert_eq!(
            parse_status(STATUS, 1001),
            None,
            "another process at that pid"
        );
        assert_eq!(
            parse_status("Uid:\t1\t1\t1\t1\nGroups:\t\n", 1),
            Some(vec![])
        );
    }

    #[test]
    fn own_process_and_database_fallback() {
        let from_db = groups_from_database(0, 0);
        assert!(from_db.contains(&0), "root's primary group: {from_db:?}");
        assert_eq!(system_groups(0, 0, Some(u32::MAX)), from_db, "pid gone");
        assert_eq!(system_groups(0, 0, None), from_db, "no pid");
        assert_eq!(system_groups(0, 0, Some(0)), from_db, "pid 0");
        let me = (nix::unistd::geteuid(), nix::unistd::getegid());
        let mine = nix::unistd::getgroups().unwrap();
        assert_eq!(
            system_groups(me.0.as_raw(), me.1.as_raw(), Some(std::process::id())),
            mine.iter().map(|g| g.as_raw()).collect::<Vec<_>>(),
            "from /proc"
        );
    }

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static RESOLVED_ON: Mutex<Option<ThreadId>> = Mutex::new(None);

    fn recording(_: u32, _: u32, _: Option<u32>) -> Vec<u32> {
        CALLS.fetch_add(1, Relaxed);
        *RESOLVED_ON.lock() = Some(std::thread::current().id());
        vec![7]
    }

    #[tokio::test]
    async fn groups_are_looked_up_once_and_off_the_asking_thread() {
        let caller = Caller::with_resolver(1, 1, Some(1), recording);
        assert_eq!(caller.groups().await, [7]);
        assert_eq!(caller.groups().await, [7]);
        assert_eq!(CALLS.load(Relaxed), 1);
        let on = RESOLVED_ON.lock().expect("resolved");
        assert_ne!(on, std::thread::current().id());

        let known = Caller::with_groups(1, 1, None, vec![3]);
        assert_eq!(known.groups().await, [3]);
        assert_eq!(CALLS.load(Relaxed), 1, "given groups are not looked up");
    }
}

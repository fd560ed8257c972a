//! Who is calling: the uid, gid and pid the kernel puts in each FUSE request, and the
//! supplementary groups, which it does not.

use std::ffi::CString;

use crate::policy::Caller;

/// The caller's supplementary groups: from `/proc/PID/status`, where the process there is the
/// caller (same fs uid); otherwise, as for a caller in another pid namespace or one that has
/// exited, from the group database for the uid.
pub fn caller(uid: u32, gid: u32, pid: u32) -> Caller {
    let groups = groups_from_proc(uid, pid).unwrap_or_else(|| groups_from_database(uid, gid));
    Caller { uid, gid, groups }
}

fn groups_from_proc(uid: u32, pid: u32) -> Option<Vec<u32>> {
    if pid == 0 {
        return None;
    }
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
        let me = caller(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            std::process::id(),
        );
        let from_proc = me.groups.clone();
        let from_db = groups_from_database(0, 0);
        assert!(from_db.contains(&0), "root's primary group: {from_db:?}");
        let gone = caller(0, 0, u32::MAX);
        assert_eq!(gone.groups, from_db);
        let _ = from_proc;
    }
}

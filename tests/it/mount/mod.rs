//! The mount, for real: every test mounts under a guard that unmounts even when it fails.

mod access;
mod caches;
mod credential_helper;
mod fetching;
mod least_privilege;
mod lifecycle;
mod reading;
mod refresh_ahead;
mod restarts;
mod rotation;
mod secrets_list;
mod templates;
mod versions;

use std::collections::BTreeSet;
use std::path::Path;

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// The lines `ls` printed; it must have succeeded.
fn ls_lines(out: std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `ls -1 PATH` as uid 65534 in no group: the names.
fn ls_as_nobody(path: &Path) -> BTreeSet<String> {
    let out = crate::support::nobody::as_nobody(&[], "ls", &["-1".as_ref(), path.as_os_str()]);
    ls_lines(out).into_iter().collect()
}

/// `ls ARG DIR` (`-l` or `-lR`) as root, which must succeed: how many regular files it shows.
pub fn files_shown_by_ls(arg: &str, dir: &Path) -> usize {
    let out = std::process::Command::new("ls")
        .arg(arg)
        .arg(dir)
        .output()
        .unwrap();
    ls_lines(out).iter().filter(|l| l.starts_with('-')).count()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn errno_of(err: &std::io::Error) -> i32 {
    err.raw_os_error().unwrap_or(-1)
}

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const EIO: i32 = 5;
    pub const EACCES: i32 = 13;
    pub const EROFS: i32 = 30;
}

//! Another user: commands run through `setpriv` as uid and gid 65534, so that what they may
//! read is decided by secretsfs's modes and policy, not by root's privileges.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// `PROGRAM ARGS` as uid/gid 65534 in the supplementary `groups` (none when empty), with an
/// empty stdin.
pub fn as_nobody(groups: &[u32], program: &str, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid", "65534", "--regid", "65534"]);
    if groups.is_empty() {
        cmd.arg("--clear-groups");
    } else {
        let list: Vec<String> = groups.iter().map(u32::to_string).collect();
        cmd.args(["--groups", &list.join(",")]);
    }
    cmd.arg(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("setpriv")
}

/// `cat PATH` as uid 65534 in `groups`.
pub fn cat_as_nobody(path: &Path, groups: &[u32]) -> Output {
    as_nobody(groups, "cat", &[path.as_os_str()])
}

//! Bad input from the host and from upstream (issue 14, section 4): files of the host that
//! are devices, FIFOs or too big; mountpoints that must not be mounted on; settings that
//! `check-config` must refuse as `mount` does; names, stage labels and values from upstream
//! that cannot be presented or are over the service's own limits.

mod host_files;
mod settings;
mod upstream;

use std::path::{Path, PathBuf};
use std::process::Output;

/// A FIFO with no writer: opening it for reading would block, and so would reading it.
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    path
}

/// A symlink to /dev/zero, which reads without end.
pub fn zero(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    path
}

/// A sparse file of `len` bytes (no disk used).
pub fn sparse(dir: &Path, name: &str, len: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

/// Asserts `out` is exit `code` with one line on stderr that contains `cause`, and nothing on
/// stdout.
pub fn assert_refused(out: &Output, code: i32, cause: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("secretsfs: ") && stderr.contains(cause),
        "{cause:?} in {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

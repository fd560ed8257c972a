//! Mounting: recovering a mountpoint left behind by a killed daemon, the session's options,
//! waiting until the mount answers, and unmounting.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, INodeNo, MountOption, Notifier, SessionACL};
use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::statfs::{
    BPF_FS_MAGIC, CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, DEBUGFS_MAGIC, DEVPTS_SUPER_MAGIC,
    FsType, HUGETLBFS_MAGIC, NSFS_MAGIC, PROC_SUPER_MAGIC, RDTGROUP_SUPER_MAGIC, SECURITYFS_MAGIC,
    SELINUX_MAGIC, SMACK_MAGIC, SYSFS_MAGIC, TRACEFS_MAGIC, USBDEVICE_SUPER_MAGIC,
};

use super::adapter::FuseFs;
use super::fs::SecretsFs;
use secretsfs_core::error::{Error, Result};

/// The name the mount shows in /proc/mounts and `df`.
pub const FS_NAME: &str = "secretsfs";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Checks and canonicalizes the mountpoint, detaching a dead mount left there by a killed
/// daemon first. A dead FUSE mount can still answer `stat` from the kernel's attribute cache, so
/// liveness is probed with `statfs`, which always reaches the daemon.
///
/// Refused, as `mount --help` says: anything but an empty directory, a directory of a pseudo
/// file system (mounting over `/proc/PID` hides that process from `ps`), and a directory in a
/// secretsfs mount (the daemon would serve its own lookups).
pub fn prepare_mountpoint(mountpoint: &Path) -> Result<PathBuf> {
    let bad = |why: String| Error::config(format!("mountpoint {}: {why}", mountpoint.display()));
    if let Err(Errno::ENOTCONN) = nix::sys::statfs::statfs(mountpoint) {
        tracing::warn!(target: "secretsfs::fuse::mount", mountpoint = %mountpoint.display(),
            "detaching a dead mount left behind (Transport endpoint is not connected)");
        umount2(mountpoint, MntFlags::MNT_DETACH)
            .map_err(|e| bad(format!("cannot detach the dead mount there: {e}")))?;
    }
    match std::fs::metadata(mountpoint) {
        Err(e) => return Err(bad(e.to_string())),
        Ok(meta) if !meta.is_dir() => return Err(bad("not a directory".into())),
        Ok(_) => {}
    }
    let path = mountpoint.canonicalize().map_err(|e| bad(e.to_string()))?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    check_mountpoint(&path, &mounts).map_err(bad)?;
    Ok(path)
}

/// Whether a secretsfs mount is at `path` itself (for `stop-post`, which must not unmount
/// something else mounted there).
pub fn is_secretsfs_mount(path: &Path) -> bool {
    let Ok(path) = std::path::absolute(path) else {
        return false;
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    containing_mount(&mounts, &path).is_some_and(|m| m.target == path && m.is_secretsfs())
}

/// Pseudo file systems by their statfs type: what the kernel makes up, never a place for a
/// mount of secrets.
const PSEUDO_MAGIC: [FsType; 15] = [
    PROC_SUPER_MAGIC,
    SYSFS_MAGIC,
    CGROUP_SUPER_MAGIC,
    CGROUP2_SUPER_MAGIC,
    DEBUGFS_MAGIC,
    TRACEFS_MAGIC,
    SECURITYFS_MAGIC,
    DEVPTS_SUPER_MAGIC,
    BPF_FS_MAGIC,
    NSFS_MAGIC,
    SELINUX_MAGIC,
    SMACK_MAGIC,
    HUGETLBFS_MAGIC,
    RDTGROUP_SUPER_MAGIC,
    USBDEVICE_SUPER_MAGIC,
];

/// Pseudo file systems by their name in /proc/self/mounts, for those whose statfs type is
/// shared with ordinary ones (devtmpfs is a tmpfs) or that nix has no constant for.
const PSEUDO_TYPES: [&str; 20] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "cgroup",
    "cgroup2",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "configfs",
    "efivarfs",
    "mqueue",
    "fusectl",
    "binfmt_misc",
    "hugetlbfs",
    "selinuxfs",
    "rpc_pipefs",
    "nsfs",
];

/// Why the canonical `path` cannot be a mountpoint, given the mount table `mounts`.
fn check_mountpoint(path: &Path, mounts: &str) -> std::result::Result<(), String> {
    if let Some(mount) = containing_mount(mounts, path) {
        if mount.is_secretsfs() {
            return Err(if mount.target == path {
                "already a secretsfs mount".into()
            } else {
                format!("inside the secretsfs mount at {}", mount.target.display())
            });
        }
        if PSEUDO_TYPES.contains(&mount.fstype) {
            return Err(pseudo(mount.fstype));
        }
    }
    let fs = nix::sys::statfs::statfs(path).map_err(|e| e.to_string())?;
    if PSEUDO_MAGIC.contains(&fs.filesystem_type()) {
        return Err(pseudo(&format!(
            "statfs type {:#x}",
            fs.filesystem_type().0
        )));
    }
    let mut entries = std::fs::read_dir(path).map_err(|e| e.to_string())?;
    if entries.next().is_some() {
        return Err("not empty: the mount would hide what is in it".into());
    }
    Ok(())
}

fn pseudo(fstype: &str) -> String {
    format!("on a pseudo file system ({fstype}); mount on an empty directory such as /secrets")
}

/// One line of /proc/self/mounts.
#[derive(Debug, PartialEq, Eq)]
struct MountEntry<'a> {
    source: &'a str,
    target: PathBuf,
    fstype: &'a str,
}

impl MountEntry<'_> {
    fn is_secretsfs(&self) -> bool {
        self.source == FS_NAME && self.fstype.starts_with("fuse")
    }
}

/// The mount `path` is in: the one with the longest target that contains it, the last listed
/// of equals (a later mount covers an earlier one at the same place).
fn containing_mount<'a>(mounts: &'a str, path: &Path) -> Option<MountEntry<'a>> {
    let mut best: Option<MountEntry<'a>> = None;
    for line in mounts.lines() {
        let mut fields = line.split(' ');
        let (Some(source), Some(target), Some(fstype)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let target = PathBuf::from(unescape_mount_path(target));
        let longer = best
            .as_ref()
            .is_none_or(|b| target.as_os_str().len() >= b.target.as_os_str().len());
        if path.starts_with(&target) && longer {
            best = Some(MountEntry {
                source,
                target,
                fstype,
            });
        }
    }
    best
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code = u8::from_str_radix(&field[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn config(threads: usize) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(FS_NAME.into()),
        MountOption::Subtype(FS_NAME.into()),
        MountOption::DefaultPermissions,
        MountOption::NoExec,
        MountOption::NoSuid,
        MountOption::NoDev,
    ];
    // allow_other: other users and containers reach the mount; the kernel enforces modes.
    config.acl = SessionACL::All;
    config.n_threads = Some(threads);
    // One descriptor for every worker (docs/ARCHITECTURE.md#restarts).
    config.clone_fd = false;
    config
}

/// Mounts and starts serving; returns once the kernel handshake is done, with a copy of the
/// connection's descriptor for a hand-over.
pub fn mount(
    fs: Arc<SecretsFs>,
    runtime: tokio::runtime::Handle,
    mountpoint: &Path,
    threads: usize,
) -> Result<(BackgroundSession, OwnedFd)> {
    let session = fuser::Session::new(FuseFs::new(fs, runtime), mountpoint, &config(threads))
        .map_err(|e| mount_error(mountpoint, &e))?;
    start(session)
}

/// Starts serving `session`'s workers, keeping a copy of its connection for a hand-over.
fn start(session: fuser::Session<FuseFs>) -> Result<(BackgroundSession, OwnedFd)> {
    let fuse = session
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::config(format!("cannot keep the FUSE descriptor: {e}")))?;
    let session = session
        .spawn()
        .map_err(|e| Error::config(format!("cannot start the FUSE session: {e}")))?;
    Ok((session, fuse))
}

/// Serves a connection a previous process handed over: the kernel's requests that it read and
/// never answered are sent again, and those that came in the gap have been waiting.
pub fn take_over(
    fs: Arc<SecretsFs>,
    runtime: tokio::runtime::Handle,
    fuse: OwnedFd,
    threads: usize,
) -> Result<(BackgroundSession, OwnedFd)> {
    let session = fuser::Session::from_initialized_fd(
        FuseFs::new(fs, runtime),
        fuse,
        SessionACL::All,
        config(threads),
    );
    resend(session.as_fd());
    start(session)
}

/// `fuse_notify_code::FUSE_NOTIFY_RESEND` (Linux 6.9+).
const FUSE_NOTIFY_RESEND: i32 = 7;

/// Asks the kernel to queue again every request a previous process read and did not answer.
/// Kernels before 6.9 refuse (EINVAL): those requests then wait for good, so it is logged.
pub fn resend(fuse: BorrowedFd<'_>) {
    // struct fuse_out_header { u32 len; i32 error; u64 unique; }, a notification: unique 0.
    let mut header = [0u8; 16];
    header[0..4].copy_from_slice(&16u32.to_ne_bytes());
    header[4..8].copy_from_slice(&FUSE_NOTIFY_RESEND.to_ne_bytes());
    match nix::unistd::write(fuse, &header) {
        Ok(_) => {
            tracing::debug!(target: "secretsfs::fuse::handover", "asked the kernel to resend the requests left unanswered")
        }
        Err(e) => tracing::warn!(target: "secretsfs::fuse::handover", error = %e,
            "the kernel cannot resend requests the previous process left unanswered (Linux \
            6.9+); a reader caught in one waits until it is interrupted"),
    }
}

/// Tells the kernel to drop the attributes and entries it caches of every inode it holds, so
/// that the next access is judged with the policy's new owner, group and mode at once rather
/// than after each attribute's TTL. Pages are kept: a version's bytes did not change.
pub fn forget_attributes(notifier: &Notifier, fs: &SecretsFs) {
    // Attributes only (a negative offset); an inode the kernel already forgot is ENOENT.
    let _ = notifier.inval_inode(INodeNo(super::inodes::ROOT), -1, 0);
    let mut failed = 0;
    for (parent, name, ino) in fs.held_entries() {
        let attrs = notifier.inval_inode(INodeNo(ino), -1, 0);
        let entry = notifier.inval_entry(INodeNo(parent), std::ffi::OsStr::new(&name));
        let gone = |r: &io::Result<()>| {
            r.as_ref()
                .is_err_and(|e| e.raw_os_error() != Some(Errno::ENOENT as i32))
        };
        if gone(&attrs) || gone(&entry) {
            failed += 1;
        }
    }
    if failed > 0 {
        tracing::warn!(target: "secretsfs::fuse::mount",
            failed,
            "the kernel refused to drop some cached attributes; they expire with their TTL"
        );
    }
}

/// After a secret changed: makes the kernel drop its entries of the secret's files, so the
/// next open looks the name up again and gets the new version's inode (files open already keep
/// the version they opened). Must not run on a FUSE worker: the kernel may wait on one.
pub fn forget_secret(notifier: &Notifier, fs: &SecretsFs, secret: &str) {
    let mut refused = 0;
    for (parent, name, _) in fs.held_entries_of(secret) {
        let dropped = notifier.inval_entry(INodeNo(parent), std::ffi::OsStr::new(&name));
        if dropped.is_err_and(|e| e.raw_os_error() != Some(Errno::ENOENT as i32)) {
            refused += 1;
        }
    }
    if refused > 0 {
        tracing::warn!(target: "secretsfs::fuse::mount",
            secret,
            refused,
            "the kernel refused to drop some entries of a changed \
            secret; they show the old version until their TTL"
        );
    }
}

fn mount_error(mountpoint: &Path, e: &io::Error) -> Error {
    let hint = match e.raw_os_error().map(Errno::from_raw) {
        Some(Errno::EPERM | Errno::EACCES) => " (mounting needs root, or CAP_SYS_ADMIN)",
        Some(Errno::ENOENT) if !Path::new("/dev/fuse").exists() => {
            " (/dev/fuse is missing: is the fuse module loaded, or the device passed to the container?)"
        }
        _ => "",
    };
    Error::config(format!("cannot mount {}: {e}{hint}", mountpoint.display()))
}

/// Waits until the mount answers a stat of its root, so `mount` returns only when it works.
pub async fn wait_until_answering(mountpoint: &Path) -> Result<()> {
    let path = mountpoint.to_owned();
    let probe = tokio::task::spawn_blocking(move || std::fs::metadata(&path));
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(Ok(_))) => Ok(()),
        Ok(Ok(Err(e))) => Err(Error::config(format!("the mount does not answer: {e}"))),
        _ => Err(Error::config(format!(
            "the mount did not answer within {}s",
            READY_TIMEOUT.as_secs()
        ))),
    }
}

/// How long a stop waits for the session's threads once the mount is gone. They end when the
/// connection does; another mount of it (a container's bind of the mount point) keeps it, and
/// then it ends with this process.
const STOP_JOIN: Duration = Duration::from_secs(3);

/// How a stop's unmount ended.
enum Stopped {
    Unmounted,
    NotOurs,
    Failed(io::Error),
}

/// The device of the file system mounted at `path` (its root's `st_dev`), if it can be read.
pub fn device_of(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// [`device_of`], off the runtime's threads (the path is a FUSE mount).
pub async fn device_at(path: PathBuf) -> Option<u64> {
    tokio::task::spawn_blocking(move || device_of(&path))
        .await
        .ok()
        .flatten()
}

/// Unmounts the mount at `mountpoint` if it is still this process's (`ours`), and waits a
/// little for the session to end. On a thread of its own, not the runtime's blocking pool:
/// a join that never returns must not hold up the process's exit.
pub async fn unmount_ours(
    session: BackgroundSession,
    mountpoint: &Path,
    mounted_here: bool,
    ours: Option<u64>,
) {
    let path = mountpoint.to_owned();
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("unmount".into())
        .spawn(move || {
            if ours.is_some() && device_of(&path) != ours {
                // Dropping the session would unmount by path: whatever is there now.
                std::mem::forget(session);
                let _ = done.send(Stopped::NotOurs);
                return;
            }
            let result = if mounted_here {
                session.umount_and_join()
            } else {
                // A session taken over from another process has no mount of its own.
                umount2(&path, MntFlags::empty())
                    .map_err(io::Error::from)
                    .and_then(|()| session.join())
            };
            let _ = done.send(match result {
                Ok(()) => Stopped::Unmounted,
                Err(e) => Stopped::Failed(e),
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(target: "secretsfs::fuse::mount", error = %e, "cannot start the unmount; the mount ends with this process");
        return;
    }
    match tokio::time::timeout(STOP_JOIN, finished).await {
        Ok(Ok(Stopped::Unmounted)) => {}
        Ok(Ok(Stopped::NotOurs)) => {
            tracing::warn!(target: "secretsfs::fuse::mount", mountpoint = %mountpoint.display(),
            "the mount there is no longer this process's (it was detached from outside, and \
             another mounted there): left as it is")
        }
        Ok(Ok(Stopped::Failed(e))) => {
            // Busy (files open): detach now; the kernel ends the session when they close.
            tracing::warn!(target: "secretsfs::fuse::mount", error = %e, "unmount failed; detaching the mount lazily");
            let _ = umount2(mountpoint, MntFlags::MNT_DETACH);
        }
        Ok(Err(_)) => {}
        Err(_) => tracing::warn!(target: "secretsfs::fuse::mount",
            "the connection is still in use through another mount of it (a bind of the \
             mount point, as a container holds); it ends with this process, and reads there \
             fail with ENOTCONN"
        ),
    }
}

/// Resolves when the kernel ends the FUSE connection (an unmount from outside): /dev/fuse then
/// polls as an error. So the process ends, and its HTTP port is free, as soon as `umount`
/// returns; the session's threads are polled too, in case the descriptor cannot be watched.
pub async fn connection_ended(fuse: &OwnedFd) {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    let watched = fuse.try_clone().and_then(|fd| {
        // SAFETY: an OwnedFd keeps its descriptor open, and names the same one, until the
        // AsyncFd that owns it is dropped.
        unsafe { AsyncFd::register_with_interest(fd, Interest::ERROR) }.map_err(io::Error::from)
    });
    match watched {
        Ok(fd) => {
            let _ = fd.ready(Interest::ERROR).await;
        }
        Err(e) => {
            tracing::debug!(target: "secretsfs::fuse::mount", error = %e, "the FUSE connection cannot be watched; polling instead");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_unescaped() {
        assert_eq!(unescape_mount_path("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
        assert_eq!(unescape_mount_path("/x\\134y"), "/x\\y");
    }

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid 0 0
proc /proc proc rw,nosuid 0 0
udev /dev devtmpfs rw,nosuid 0 0
/dev/vda1 / ext4 rw 0 0
tmpfs /run tmpfs rw 0 0
/dev/vda1 /srv ext4 rw 0 0
secretsfs /srv/sec\\040rets fuse.secretsfs ro,nosuid 0 0
other /srv/other fuse.sshfs rw 0 0
";

    #[test]
    fn the_longest_mount_containing_a_path_is_its_mount() {
        let of = |p: &str| containing_mount(MOUNTS, Path::new(p)).map(|m| m.fstype);
        assert_eq!(of("/"), Some("ext4"));
        assert_eq!(of("/proc/1234"), Some("proc"));
        assert_eq!(of("/srv/sec rets/prod"), Some("fuse.secretsfs"));
        assert_eq!(of("/srv/sec rets2"), Some("ext4"), "components, not bytes");
        assert_eq!(of("/dev/shm"), Some("devtmpfs"));
    }

    #[test]
    fn secretsfs_mounts_and_pseudo_file_systems_are_refused() {
        let check = |p: &str| check_mountpoint(Path::new(p), MOUNTS).unwrap_err();
        assert_eq!(check("/srv/sec rets"), "already a secretsfs mount");
        assert_eq!(
            check("/srv/sec rets/prod"),
            "inside the secretsfs mount at /srv/sec rets"
        );
        assert!(check("/proc/1").contains("pseudo file system (proc)"));
        assert!(check("/dev/x").contains("pseudo file system (devtmpfs)"));
        // Without the mount table, statfs still knows /proc and /sys.
        for path in ["/proc/self", "/sys/kernel"] {
            let err = check_mountpoint(Path::new(path), "").unwrap_err();
            assert!(
                err.contains("pseudo file system (statfs type"),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn only_an_empty_directory_will_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().canonicalize().unwrap();
        assert_eq!(check_mountpoint(&path, ""), Ok(()));
        std::fs::write(path.join(".hidden"), "").unwrap();
        assert_eq!(
            check_mountpoint(&path, "").unwrap_err(),
            "not empty: the mount would hide what is in it"
        );
        let e = prepare_mountpoint(&path).unwrap_err();
        assert_eq!(
            e.message(),
            format!(
                "mountpoint {}: not empty: the mount would hide what is in it",
                path.display()
            )
        );
    }

    #[test]
    fn bad_mountpoints_are_config_errors() {
        let e = prepare_mountpoint(Path::new("/nonexistent/secretsfs")).unwrap_err();
        assert_eq!(e.kind(), secretsfs_core::error::ErrorKind::Config);
        let file = tempfile::NamedTempFile::new().unwrap();
        let e = prepare_mountpoint(file.path()).unwrap_err();
        assert!(e.message().contains("not a directory"));
    }
}

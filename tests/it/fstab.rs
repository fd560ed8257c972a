//! fstab: `mount -T FILE DIR` runs packaging/mount.secretsfs, which mount(8) finds as
//! /sbin/mount.secretsfs. The tests put a symlink to the repository's script there for their
//! duration, only where none exists, and remove only a symlink that a test made, once no test in
//! any process uses it (even when a test fails or a run was killed).

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use secretsfs::settings::readme::fstab_helper_list;

use crate::support::cli::{self, DEADLINE, SECRETSFS};
use crate::support::http::public_tempdir;
use crate::support::mount::{alive, is_mounted};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/mount.secretsfs");
const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-secrets.json");

/// Where mount(8) looks for the helper of type `secretsfs`.
const HELPER: &str = "/sbin/mount.secretsfs";
/// Held exclusively while the helper is put in place or removed.
const SETUP_LOCK: &str = "/tmp/secretsfs-test-mount-helper.lock";
/// Held shared by every test using the helper, in any process.
const USERS_LOCK: &str = "/tmp/secretsfs-test-mount-helper.users";
/// Exists while the helper is a symlink a test made; holds the symlink's target.
const MARKER: &str = "/tmp/secretsfs-test-mount-helper.created";

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

fn lock_file(path: &str) -> File {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {path}: {e}"))
}

/// Whether HELPER is the symlink a test made (the marker names its target).
fn helper_is_test_made() -> bool {
    match (std::fs::read_link(HELPER), std::fs::read_to_string(MARKER)) {
        (Ok(target), Ok(marked)) => target == Path::new(&marked),
        _ => false,
    }
}

/// /sbin/mount.secretsfs, the repository's script, for as long as this lives.
struct HelperInstalled {
    users: File,
}

impl HelperInstalled {
    fn acquire() -> HelperInstalled {
        let setup = lock_file(SETUP_LOCK);
        setup.lock().unwrap();
        let users = lock_file(USERS_LOCK);
        match std::fs::symlink_metadata(HELPER) {
            Err(e) if e.kind() == ErrorKind::NotFound => make_helper(),
            Err(e) => panic!("cannot stat {HELPER}: {e}"),
            // A symlink an earlier run made (to this or another checkout) that no test uses:
            // pointed at this checkout's script.
            Ok(_) if helper_is_test_made() && users.try_lock().is_ok() => {
                std::fs::remove_file(HELPER).unwrap();
                make_helper();
                users.unlock().unwrap();
            }
            // Installed by a package or by hand, or a test elsewhere uses it: never touched,
            // and used only when it is this very script.
            Ok(_) => {
                let installed = std::fs::read(HELPER).unwrap_or_default();
                assert!(
                    installed == std::fs::read(SCRIPT).unwrap(),
                    "{HELPER} exists and differs from {SCRIPT}; the fstab tests do not replace \
                     it: remove it (or install this version) to run them"
                );
            }
        }
        users.lock_shared().unwrap();
        HelperInstalled { users }
    }
}

fn make_helper() {
    std::os::unix::fs::symlink(SCRIPT, HELPER)
        .unwrap_or_else(|e| panic!("cannot create {HELPER} (the fstab tests run as root): {e}"));
    std::fs::write(MARKER, SCRIPT).unwrap();
}

impl Drop for HelperInstalled {
    fn drop(&mut self) {
        let setup = lock_file(SETUP_LOCK);
        let _ = setup.lock();
        let _ = self.users.unlock();
        // The last user anywhere removes what a test made, and nothing else.
        if self.users.try_lock().is_ok() {
            if helper_is_test_made() {
                let _ = std::fs::remove_file(HELPER);
            }
            let _ = std::fs::remove_file(MARKER);
            let _ = self.users.unlock();
        }
    }
}

/// A mountpoint (0755, under /tmp) and a log file; unmounts and stops the daemon when dropped.
struct FstabMount {
    dir: tempfile::TempDir,
    mnt: PathBuf,
    log: PathBuf,
}

impl FstabMount {
    fn new() -> FstabMount {
        let dir = public_tempdir();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let log = dir.path().join("secretsfs.log");
        FstabMount { dir, mnt, log }
    }

    /// An fstab file of one line for this mountpoint.
    fn fstab(&self, spec: &str, options: &str) -> PathBuf {
        let fstab = self.dir.path().join("fstab");
        let line = format!(
            "# written by tests/it/fstab.rs\n{spec} {} secretsfs {options} 0 0\n",
            self.mnt.display()
        );
        std::fs::write(&fstab, line).unwrap();
        fstab
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid, from its `mounted ... pid=N` log line.
    fn daemon_pid(&self) -> Option<i32> {
        self.log()
            .lines()
            .rev()
            .filter(|l| l.contains("mounted"))
            .find_map(|l| {
                l.split("pid=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
    }
}

impl Drop for FstabMount {
    fn drop(&mut self) {
        if is_mounted(&self.mnt) {
            // umount(8) rather than the syscall, so that libmount forgets the mount's
            // userspace options (/run/mount/utab) too.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mnt)
                .status();
            if is_mounted(&self.mnt) {
                let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        if let Some(pid) = self.daemon_pid() {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                wait_until(|| !alive(pid));
            }
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// Polls `done` for up to [`STOP_TIMEOUT`]; whether it came true.
fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// `PROGRAM ARGS` with SECRETSFS_BIN set to the built binary and, as for every secretsfs the
/// tests run, none of the developer's AWS or secretsfs settings.
async fn run(program: &str, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(program);
    cli::without_developer_settings(&mut cmd);
    cmd.args(args)
        .env("SECRETSFS_BIN", SECRETSFS)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(DEADLINE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish within {DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `mount -T FSTAB MNT`.
async fn mount_fstab(fstab: &Path, mnt: &Path) -> Output {
    run(
        "mount",
        &["-T", fstab.to_str().unwrap(), mnt.to_str().unwrap()],
    )
    .await
}

/// The options field of MNT's line in /proc/mounts.
fn mount_options(mnt: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == mnt.to_str())
        .unwrap_or_else(|| panic!("{} is not in /proc/mounts:\n{mounts}", mnt.display()));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[2], "fuse", "{line}");
    fields[3].split(',').map(str::to_owned).collect()
}

#[tokio::test]
async fn an_fstab_line_mounts_through_the_helper_and_umount_ends_the_daemon() {
    let _helper = HelperInstalled::acquire();
    let m = FstabMount::new();
    let fstab = m.fstab(
        "secretsfs",
        &format!(
            "source=file:{DEMO},ro,allow_other,_netdev,nofail,x-systemd.automount,\
             log_file={},log_level=info,no_http",
            m.log.display()
        ),
    );

    let out = mount_fstab(&fstab, &m.mnt).await;
    assert!(
        out.status.success(),
        "mount -T failed: {out:?}\nlog:\n{}",
        m.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "mount said something"
    );
    assert!(is_mounted(&m.mnt));
    let pid = m
        .daemon_pid()
        .expect("the daemon logs its pid once mounted");
    assert!(alive(pid), "the daemon runs on after mount(8) returned");

    let value = std::fs::read(m.mnt.join("prod/db:password")).unwrap();
    assert!(
        value == b"demo-Pa55:w/rd",
        "the value read through the mount differs"
    );
    let options = mount_options(&m.mnt);
    for wanted in [
        "ro",
        "nosuid",
        "nodev",
        "noexec",
        "allow_other",
        "default_permissions",
    ] {
        assert!(
            options.iter().any(|o| o == wanted),
            "{wanted} not in {options:?}"
        );
    }

    let out = run("umount", &[m.mnt.to_str().unwrap()]).await;
    assert!(out.status.success(), "umount failed: {out:?}");
    assert!(
        wait_until(|| !alive(pid)),
        "the daemon (pid {pid}) outlived the unmount; log:\n{}",
        m.log()
    );
    assert!(!is_mounted(&m.mnt));
    assert!(
        m.log().contains("unmounted"),
        "no unmount logged:\n{}",
        m.log()
    );
}

/// A line that must not mount: `mount -T` fails with exit 32 (mount failure) and the helper's
/// one line on stderr, and nothing is mounted.
async fn refused(spec: &str, options: &str) -> String {
    let _helper = HelperInstalled::acquire();
    let m = FstabMount::new();
    let fstab = m.fstab(spec, &format!("{options},log_file={}", m.log.display()));
    let out = mount_fstab(&fstab, &m.mnt).await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(32), "{options}: {out:?}");
    assert_eq!(stderr.lines().count(), 1, "{options}: {stderr}");
    assert!(!is_mounted(&m.mnt));
    assert_eq!(m.daemon_pid(), None, "{options}: a daemon started");
    stderr
}

#[tokio::test]
async fn an_unknown_option_fails_the_mount_with_one_line() {
    let stderr = refused(&format!("file:{DEMO}"), "ro,_netdev,cache_sise=10,nofail").await;
    assert_eq!(stderr, "mount.secretsfs: unknown option cache_sise\n");
}

#[tokio::test]
async fn rw_is_refused_and_so_is_a_line_without_ro() {
    let stderr = refused(&format!("file:{DEMO}"), "rw,_netdev").await;
    assert!(
        stderr.starts_with("mount.secretsfs: option rw: "),
        "{stderr}"
    );
    assert!(stderr.contains("read-only"), "{stderr}");
    // mount(8) passes `rw` when the line does not say `ro`.
    let stderr = refused(&format!("file:{DEMO}"), "defaults").await;
    assert!(
        stderr.starts_with("mount.secretsfs: option rw: "),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_value_fails_the_mount_with_the_cause_from_secretsfs() {
    let stderr = refused(&format!("file:{DEMO}"), "ro,ttl=soon").await;
    assert!(
        stderr.starts_with("secretsfs: invalid value 'soon' for '--ttl"),
        "{stderr}"
    );
    let stderr = refused("file:/nonexistent/secrets.json", "ro").await;
    assert!(
        stderr.starts_with("secretsfs: ") && stderr.contains("/nonexistent/secrets.json"),
        "{stderr}"
    );
}

/// The helper alone, with `-f`: the secretsfs command line it would run.
async fn helper_fake(spec: &str, options: &str) -> Output {
    run(SCRIPT, &[spec, "/secrets", "-f", "-o", options]).await
}

fn stdout_line(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .trim_end()
        .to_owned()
}

#[tokio::test]
async fn options_map_onto_secretsfs_flags() {
    let out = helper_fake(
        "aws",
        "ro,allow_other,_netdev,nofail,defaults,noatime,region=eu-west-1,\
         endpoint-url=http://127.0.0.1:4566,profile=ops,ttl=60,uid=0,gid=root,file_mode=0400,\
         dir_mode=0500,layout=stages,prefix=prod/,no_kernel_cache,config=/etc/s fs.toml",
    )
    .await;
    assert_eq!(
        stdout_line(&out),
        format!(
            "{SECRETSFS} mount --region eu-west-1 --endpoint-url http://127.0.0.1:4566 \
             --profile ops --ttl 60 --uid 0 --gid 0 --file-mode 0400 --dir-mode 0500 --layout \
             stages --prefix prod/ --no-kernel-cache --config '/etc/s fs.toml' --source aws -- \
             /secrets"
        )
    );
    // source= wins over SPEC, which is then a label.
    let out = helper_fake("secrets", "ro,source=file:/x.json").await;
    assert_eq!(
        stdout_line(&out),
        format!("{SECRETSFS} mount --source file:/x.json -- /secrets")
    );
    let out = helper_fake("secretsfs", "ro").await;
    assert_eq!(stdout_line(&out), format!("{SECRETSFS} mount -- /secrets"));
    // -s: an unknown option is a warning.
    let out = run(SCRIPT, &["secretsfs", "/secrets", "-fs", "-o", "ro,zap"]).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "mount.secretsfs: ignoring unknown option zap\n"
    );
    assert_eq!(stdout_line(&out), format!("{SECRETSFS} mount -- /secrets"));
    // Usage errors are exit 1.
    let out = run(SCRIPT, &["secretsfs"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// Every flag the helper maps an option onto is one `secretsfs mount` takes.
#[tokio::test]
async fn every_mapped_option_is_a_flag_of_secretsfs_mount() {
    let script = std::fs::read_to_string(SCRIPT).unwrap();
    let values = fstab_helper_list(&script, "value_options");
    let flags = fstab_helper_list(&script, "flag_options");
    assert!(values.len() > 20 && flags.len() > 2, "{values:?} {flags:?}");
    let options: Vec<String> = values
        .iter()
        .map(|n| format!("{n}=0"))
        .chain(flags.iter().cloned())
        .collect();
    let out = helper_fake("secretsfs", &options.join(",")).await;
    let command = stdout_line(&out);
    let mapped: Vec<&str> = command
        .split(' ')
        .filter(|w| w.starts_with("--") && *w != "--")
        .collect();
    assert_eq!(mapped.len(), values.len() + flags.len(), "{command}");
    let help = cli::run(&["mount", "--help"]).await;
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in mapped {
        // As a whole word: `--ttl` is not `--ttl-jitter`.
        let listed = help.match_indices(flag).any(|(at, _)| {
            !help[at + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
        });
        assert!(listed, "`secretsfs mount` has no {flag}");
    }
}

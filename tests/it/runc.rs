//! Containers for real: runc (an OCI bundle over a busybox-static root) reading the host's
//! mount, as `docker run -v` or a Kubernetes hostPath volume does. Two bind styles: the parent
//! directory (`-v /host:/host`, rslave, so mounts made later show inside) and the mount point
//! itself (`-v /secrets:/secrets` once /secrets is mounted: the container holds that one FUSE
//! connection). A non-root container user reads by its uid and supplementary groups as the
//! policy sees them; a rotation shows inside after the TTL; the daemon is killed with SIGKILL
//! and restarted from the file descriptor store, then stopped and started again (an upgrade),
//! while both containers read in a loop: no read may fail, with any errno. Finally what cannot
//! survive: a restart with no hand-over at all, which the parent bind sees as a new mount and the
//! bind of the mount point as a dead connection: ENOTCONN, or the last value the kernel cached,
//! never a rotation (docs/operations.md, "Restarts", says so).
//!
//! Needs runc and busybox-static (scripts/test.sh installs them); without them it fails with one
//! line saying so, never passes by skipping.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::cli::{LOG_LEVEL, SECRETSFS};
use crate::support::fd_store::FdStore;

const OLD: &str = "token-v1-old";
const NEW: &str = "token-v2-rotated-and-longer";
const READY: Duration = Duration::from_secs(30);
/// The container user: not root, in the group the policy grants `app/*` to.
const UID: u32 = 1000;
const TEAM_GID: u32 = 4242;

fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/sbin".into(), "/bin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{program} not found: install Debian's {package} (scripts/test.sh does)")
    })
}

fn secrets_json(rotated: bool) -> String {
    let token = if rotated { NEW } else { OLD };
    let version = if rotated {
        "c0de0000-0000-4000-8000-000000000002"
    } else {
        "c0de0000-0000-4000-8000-000000000001"
    };
    serde_json::json!({ "Secrets": [
        { "Name": "app/token", "Versions": [{ "VersionId": version,
            "VersionStages": ["AWSCURRENT"], "SecretString": token }] },
        { "Name": "private", "Versions": [{ "VersionId": "c0de0000-0000-4000-8000-0000000000ff",
            "VersionStages": ["AWSCURRENT"], "SecretString": "root only" }] },
    ]})
    .to_string()
}

fn write_secrets(path: &Path, rotated: bool) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, secrets_json(rotated)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A host directory made a shared mount of its own (the machine's `/` is private), so that a
/// container's rslave bind of it sees mounts made beneath it later. On drop, everything beneath
/// and the directory's own mount are detached.
struct SharedDir {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SharedDir {
    fn new() -> SharedDir {
        let dir = tempfile::Builder::new()
            .prefix("secretsfs-runc-")
            .tempdir_in("/tmp")
            .unwrap();
        let path = dir.path().to_owned();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            &path,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        SharedDir { path, _dir: dir }
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = umount2(&self.path.join("secrets"), MntFlags::MNT_DETACH);
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

/// The reader each container runs: reads FILE until /ctl/stop exists, counting reads of either
/// value, reads of anything else, and failures (the first failure's message kept), and writes
/// its progress every 20 reads.
const READER: &str = r#"f="$1"; n=0; e=0; w=0
while [ ! -e /ctl/stop ]; do
  if v=$(cat "$f" 2>/ctl/err); then
    case "$v" in "$OLD"|"$NEW") n=$((n+1));; *) w=$((w+1));; esac
  else
    e=$((e+1)); [ -e /ctl/first-error ] || cp /ctl/err /ctl/first-error
  fi
  [ $((n % 20)) = 0 ] && { echo "$n $e $w" > /ctl/progress.tmp; mv /ctl/progress.tmp /ctl/progress; }
done
echo "$n $e $w" > /ctl/result
"#;

/// The root file system all containers share, read-only: busybox-static and its applets.
fn rootfs(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "ctl", "host", "secrets", "etc"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(require("busybox", "busybox-static"), bin.join("busybox")).unwrap();
    for applet in ["sh", "cat", "cp", "mv", "sleep", "echo", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    root
}

/// One container reading `path` inside it, with `source` bound at `target` (rbind, ro, rslave).
/// Killed and deleted when dropped.
struct Container {
    id: String,
    ctl: PathBuf,
}

impl Container {
    fn run(dir: &Path, rootfs: &Path, name: &str, source: &Path, target: &str, path: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("secretsfs-test-{}-{n}-{name}", std::process::id());
        let bundle = dir.join(format!("bundle-{name}"));
        let ctl = dir.join(format!("ctl-{name}"));
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::create_dir_all(&ctl).unwrap();
        std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(ctl.join("reader.sh"), READER).unwrap();
        let spec = Command::new(require("runc", "runc"))
            .args(["spec", "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(spec.status.success(), "runc spec: {spec:?}");
        let file = bundle.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        config["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
        config["process"]["terminal"] = false.into();
        config["process"]["user"] =
            serde_json::json!({ "uid": UID, "gid": UID, "additionalGids": [TEAM_GID] });
        config["process"]["args"] = serde_json::json!(["/bin/sh", "/ctl/reader.sh", path]);
        config["process"]["env"] =
            serde_json::json!(["PATH=/bin", format!("OLD={OLD}"), format!("NEW={NEW}")]);
        let mounts = config["mounts"].as_array_mut().unwrap();
        mounts.push(serde_json::json!({ "destination": "/ctl", "type": "bind",
            "source": ctl, "options": ["rbind", "rw"] }));
        mounts.push(serde_json::json!({ "destination": target, "type": "bind",
            "source": source, "options": ["rbind", "ro", "rslave"] }));
        std::fs::write(&file, config.to_string()).unwrap();
        // With -d, the container keeps runc's stdio: a pipe would never see its end.
        let errors = dir.join(format!("runc-{name}.err"));
        let status = Command::new(require("runc", "runc"))
            .args(["run", "-d", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errors).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "runc run {id}: {}",
            std::fs::read_to_string(&errors).unwrap_or_default()
        );
        Container { id, ctl }
    }

    /// `CMD` inside the container as its user; its output, or why it failed.
    fn exec(&self, cmd: &[&str]) -> Result<String, String> {
        let out = Command::new(require("runc", "runc"))
            .args(["exec", "--user", &format!("{UID}:{UID}")])
            .args(["--additional-gids", &TEAM_GID.to_string()])
            .arg(&self.id)
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// (reads, failures, wrong values) so far.
    fn progress(&self) -> (u64, u64, u64) {
        counts(&std::fs::read_to_string(self.ctl.join("progress")).unwrap_or_default())
    }

    fn wait_for_reads(&self, more_than: u64) {
        let deadline = Instant::now() + READY;
        while self.progress().0 <= more_than {
            assert!(
                Instant::now() < deadline,
                "{}: no reads past {more_than}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the reader and gives its final counts and first failure.
    fn finish(&self) -> ((u64, u64, u64), String) {
        std::fs::write(self.ctl.join("stop"), "").unwrap();
        let deadline = Instant::now() + READY;
        while !self.ctl.join("result").exists() {
            assert!(
                Instant::now() < deadline,
                "{}: the reader never stopped",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let result = counts(&std::fs::read_to_string(self.ctl.join("result")).unwrap());
        let first = std::fs::read_to_string(self.ctl.join("first-error")).unwrap_or_default();
        (result, first)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let runc = require("runc", "runc");
        let _ = Command::new(&runc)
            .args(["kill", &self.id, "KILL"])
            .output();
        let _ = Command::new(&runc)
            .args(["delete", "-f", &self.id])
            .output();
    }
}

fn counts(text: &str) -> (u64, u64, u64) {
    let n: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match n.as_slice() {
        [a, b, c] => (*a, *b, *c),
        _ => (0, 0, 0),
    }
}

/// A daemon started by the store, killed by its pid when the test ends however it ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn read(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// What each test sets up: a shared host directory with the mount point `secrets` in it, and
/// elsewhere the secrets file (not rotated yet), a config holding `config`, the daemon's log.
struct Scene {
    host: SharedDir,
    work: tempfile::TempDir,
    mnt: PathBuf,
    secrets: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Scene {
    fn new(config: &str) -> Scene {
        require("runc", "runc");
        require("busybox", "busybox-static");
        let host = SharedDir::new();
        let work = tempfile::tempdir().unwrap();
        let mnt = host.path.join("secrets");
        std::fs::create_dir(&mnt).unwrap();
        let secrets = work.path().join("secrets.json");
        write_secrets(&secrets, false);
        let config_file = work.path().join("config.toml");
        std::fs::write(&config_file, config).unwrap();
        Scene {
            log: work.path().join("log"),
            host,
            work,
            mnt,
            secrets,
            config: config_file,
        }
    }
}

impl Scene {
    /// `secretsfs ... mount -f FLAGS --no-http MNT` over the file source, TTL 1 s.
    fn mount_args(&self, flags: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--source".into(),
            format!("file:{}", self.secrets.display()),
            "--config".into(),
            self.config.display().to_string(),
            "--ttl".into(),
            "1".into(),
            "--log-level".into(),
            LOG_LEVEL.into(),
            "mount".into(),
            "-f".into(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_owned()));
        args.extend(["--no-http".into(), self.mnt.display().to_string()]);
        args
    }
}

/// The two bind styles: one container binds the shared parent, the other the mount point.
fn both_bind_styles(work: &Path, host: &SharedDir, mnt: &Path) -> (Container, Container) {
    let root = rootfs(work);
    let parent = Container::run(
        work,
        &root,
        "parent",
        &host.path,
        "/host",
        "/host/secrets/app/token",
    );
    let point = Container::run(work, &root, "point", mnt, "/secrets", "/secrets/app/token");
    (parent, point)
}

#[test]
fn runc_containers_read_through_both_binds_across_a_kill_and_an_upgrade_without_a_failed_read() {
    let scene = Scene::new(&format!(
        "dir_mode = \"0555\"\n\n[[policy]]\npath = \"app/*\"\ngroup = {TEAM_GID}\nmode = \"0440\"\n"
    ));
    let args = scene.mount_args(&["--fd-store"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Scene {
        host,
        work,
        mnt,
        secrets,
        log,
        ..
    } = scene;
    let store = FdStore::new();
    let mut daemon = Daemon(store.start(SECRETSFS, &args, &log));
    assert!(store.wait_ready(1, READY), "not ready: {}", read(&log));

    let (parent, point) = both_bind_styles(work.path(), &host, &mnt);
    for c in [&parent, &point] {
        c.wait_for_reads(20);
    }
    // The container user as the policy sees it: its group reads app/*, nothing gives it
    // `private`.
    let denied = point.exec(&["cat", "/secrets/private"]).unwrap_err();
    assert!(denied.contains("Permission denied"), "{denied}");

    write_secrets(&secrets, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while point.exec(&["cat", "/secrets/app/token"]).as_deref() != Ok(NEW)
        || parent.exec(&["cat", "/host/secrets/app/token"]).as_deref() != Ok(NEW)
    {
        assert!(
            Instant::now() < deadline,
            "the rotation never showed inside"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGKILL, then the next daemon takes the connection over from the store.
    let before = [parent.progress().0, point.progress().0];
    kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGKILL).unwrap();
    daemon.0.wait().unwrap();
    daemon = Daemon(store.start(SECRETSFS, &args, &log));
    assert!(
        store.wait_ready(2, READY),
        "not ready after the kill: {}",
        read(&log)
    );
    parent.wait_for_reads(before[0] + 40);
    point.wait_for_reads(before[1] + 40);

    // An upgrade: SIGTERM leaves the mount to the store, the new binary takes it over.
    let before = [parent.progress().0, point.progress().0];
    kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(daemon.0.wait().unwrap().code(), Some(0));
    daemon = Daemon(store.start(SECRETSFS, &args, &log));
    assert!(
        store.wait_ready(3, READY),
        "not ready after the upgrade: {}",
        read(&log)
    );
    parent.wait_for_reads(before[0] + 40);
    point.wait_for_reads(before[1] + 40);

    for c in [&parent, &point] {
        let ((reads, failed, wrong), first) = c.finish();
        eprintln!("{}: {reads} reads, {failed} failed, {wrong} wrong", c.id);
        assert_eq!((failed, wrong), (0, 0), "{}: first failure: {first}", c.id);
    }
    assert_eq!(
        read(&log).matches("took over the mount").count(),
        2,
        "{}",
        read(&log)
    );
    drop((parent, point));
    drop(daemon);
}

/// A restart with no hand-over (the store lost, or a plain `umount` and `mount`): the parent
/// bind sees the new mount; the bind of the mount point keeps the old connection, and its
/// reads fail with ENOTCONN. What docs/operations.md, "Restarts", says a container sees.
#[test]
fn without_a_hand_over_only_a_bind_of_the_parent_sees_the_new_mount() {
    let scene = Scene::new("file_mode = \"0444\"\ndir_mode = \"0555\"\n");
    let args = scene.mount_args(&[]);
    let Scene {
        host,
        work,
        mnt,
        secrets,
        log,
        ..
    } = scene;
    let start = || {
        let daemon = Daemon(
            Command::new(SECRETSFS)
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + READY;
        while !std::fs::read_to_string(mnt.join("app/token")).is_ok_and(|v| v == OLD) {
            assert!(Instant::now() < deadline, "not mounted: {}", read(&log));
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    };
    let mut daemon = start();
    let (parent, point) = both_bind_styles(work.path(), &host, &mnt);
    for c in [&parent, &point] {
        c.wait_for_reads(5);
    }
    kill(Pid::from_raw(daemon.0.id() as i32), Signal::SIGTERM).unwrap();
    daemon.0.wait().unwrap();
    drop(daemon);
    let _daemon = start();
    assert_eq!(
        parent.exec(&["cat", "/host/secrets/app/token"]).as_deref(),
        Ok(OLD)
    );
    write_secrets(&secrets, true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while parent.exec(&["cat", "/host/secrets/app/token"]).as_deref() != Ok(NEW) {
        assert!(
            Instant::now() < deadline,
            "the parent bind never saw the rotation"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old connection answers nothing more: what needs the daemon fails, and a file whose
    // pages the kernel still holds reads as it was, never the rotation.
    let lost = point.exec(&["ls", "/secrets"]).unwrap_err();
    assert!(lost.contains("not connected"), "{lost}");
    let stale = point.exec(&["cat", "/secrets/app/token"]);
    assert!(
        matches!(&stale, Err(e) if e.contains("not connected")) || stale.as_deref() == Ok(OLD),
        "{stale:?}"
    );
}

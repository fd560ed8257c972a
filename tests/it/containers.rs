//! Containers, by emulation: a child mount namespace (`unshare -m --propagation slave`, what a
//! container runtime does for a volume with `rslave` / `HostToContainer` propagation) reads the
//! host's mount, sees rotations, and sees a mount made after it started; and the Kubernetes
//! manifests of packaging/kubernetes validate against the API schemas.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::support::cli::{DEADLINE, demo_source};
use crate::support::http::public_tempdir;
use crate::support::kubernetes::{MANIFESTS, validate};
use crate::support::mount::{Mounted, is_mounted};

const SECRET: &str = "app/token";
const OLD: &str = "token-v1-old";
const NEW: &str = "token-v2-rotated-and-longer";
const VID_1: &str = "e1b2c3d4-0000-4000-8000-000000000001";
const VID_2: &str = "e1b2c3d4-0000-4000-8000-000000000002";

/// The file source's JSON: `app/token` before (v1 AWSCURRENT) or after a rotation (v2
/// AWSCURRENT, v1 AWSPREVIOUS).
fn secrets_json(rotated: bool) -> String {
    let v1 = |stage: &str| {
        serde_json::json!({
            "VersionId": VID_1, "VersionStages": [stage], "SecretString": OLD,
            "CreatedDate": "2026-06-01T09:30:00Z",
        })
    };
    let versions = if rotated {
        vec![
            serde_json::json!({
                "VersionId": VID_2, "VersionStages": ["AWSCURRENT"], "SecretString": NEW,
                "CreatedDate": "2026-07-01T09:30:00Z",
            }),
            v1("AWSPREVIOUS"),
        ]
    } else {
        vec![v1("AWSCURRENT")]
    };
    serde_json::json!({ "Secrets": [{ "Name": SECRET, "Versions": versions }] }).to_string()
}

/// Replaces the file at once (write, then rename), as a deployment tool would.
fn write_secrets(path: &Path, rotated: bool) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, secrets_json(rotated)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `unshare -m --propagation slave sh -c SCRIPT sh ARGS...`: a shell in a new mount namespace
/// whose mounts are slaves of the host's (a container's view of an `rslave` volume), with
/// stdin and stdout piped; killed (by its pid) when dropped.
fn child_namespace(script: &str, args: &[&Path]) -> Child {
    tokio::process::Command::new("unshare")
        .args(["-m", "--propagation", "slave", "sh", "-c", script, "sh"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot run unshare")
}

/// `cat FILE` in a new child namespace, which also prints its mount namespace first.
async fn read_in_child_namespace(file: &Path) -> (String, String) {
    let child = child_namespace("readlink /proc/self/ns/mnt && cat \"$1\"", &[file]);
    let out = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the child namespace did not finish")
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = String::from_utf8(out.stdout).unwrap();
    let (ns, value) = out.split_once('\n').unwrap();
    (ns.to_owned(), value.to_owned())
}

fn own_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// A long-lived child namespace, driven one step at a time: the script reads a line from stdin
/// (`read -r _`) before each step; the test reads what it prints, line by line.
struct Stepped {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Stepped {
    fn start(script: &str, args: &[&Path]) -> Stepped {
        let mut child = child_namespace(script, args);
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Stepped {
            child,
            stdin,
            lines,
        }
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(DEADLINE, self.lines.next_line())
            .await
            .expect("the child namespace said nothing")
            .unwrap()
            .expect("the child namespace ended early")
    }

    async fn step(&mut self) {
        self.stdin.write_all(b"go\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn finish(mut self) {
        drop(self.stdin);
        let status = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("the child namespace did not finish")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test]
async fn a_child_namespace_reads_the_host_mount_and_sees_a_rotation() {
    let dir = public_tempdir();
    let json = dir.path().join("secrets.json");
    write_secrets(&json, false);
    let source = format!("file:{}", json.display());
    let m = Mounted::start(&["--source", &source, "--ttl", "1"], &[]).await;
    let file = m.path(SECRET);

    let (ns, value) = read_in_child_namespace(&file).await;
    assert_ne!(
        ns,
        own_namespace(),
        "the child has a mount namespace of its own"
    );
    assert_eq!(value, OLD);

    // A reader that lives across the rotation, as a container's process does.
    let mut reader = Stepped::start(
        "cat \"$1\"; echo; read -r _; cat \"$1\"; echo; cat \"$1::AWSPREVIOUS\"; echo",
        &[&file],
    );
    assert_eq!(reader.line().await, OLD);
    write_secrets(&json, true);
    // Past the TTL (1 s), the next access fetches the new version.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    reader.step().await;
    assert_eq!(reader.line().await, NEW, "the rotation reached the child");
    assert_eq!(reader.line().await, OLD, "the old version is AWSPREVIOUS");
    reader.finish().await;

    let (_, value) = read_in_child_namespace(&file).await;
    assert_eq!(value, NEW, "a new child namespace reads the new version");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), NEW);
}

/// A directory bind-mounted onto itself and made a shared mount (a peer group of its own),
/// as a node's /secrets is under a container runtime; unmounted (with whatever is mounted under
/// it) when dropped.
struct SharedDir {
    path: PathBuf,
}

impl SharedDir {
    fn new(path: &Path) -> SharedDir {
        use nix::mount::{MsFlags, mount};
        mount(
            Some(path),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let shared = SharedDir {
            path: path.to_owned(),
        };
        mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("make-shared {}: {e}", path.display()));
        shared
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        for _ in 0..4 {
            if !is_mounted(&self.path) {
                break;
            }
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
        // Gone once the bind is, unless the test failed first (then its owner removes it).
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn mountinfo_lines(text: &str, mnt: &Path) -> Vec<String> {
    let mnt = mnt.to_str().unwrap();
    text.lines()
        .filter(|l| l.split(' ').nth(4) == Some(mnt))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_mount_made_after_the_child_namespace_started_reaches_it_and_so_does_its_unmount() {
    let source = demo_source();
    let global = ["--source", source.as_str()];
    let mut m = Mounted::start(&global, &[]).await;
    // The mountpoint's directory becomes a shared mount while nothing is mounted in it.
    m.stop();
    assert!(!m.is_mounted());
    let parent = m.mnt.parent().unwrap().to_owned();
    let shared = SharedDir::new(&parent);
    let file = m.path("api-key");

    let mut container = Stepped::start(
        "echo started; \
         read -r _; cat \"$1\"; echo; \
         read -r _; if [ -e \"$1\" ]; then echo present; else echo gone; fi; \
         read -r _; cat \"$1\"; echo; grep \" $2 \" /proc/self/mountinfo",
        &[&file, &m.mnt],
    );
    assert_eq!(container.line().await, "started");
    assert!(
        !std::fs::exists(&file).unwrap(),
        "not mounted before the child started"
    );

    m.mount(&global, &[]).await;
    container.step().await;
    assert_eq!(
        container.line().await,
        "demo-api-key-0123456789",
        "the mount propagated into the child namespace"
    );

    m.stop();
    container.step().await;
    assert_eq!(
        container.line().await,
        "gone",
        "the unmount propagated too: no dead mount left in the child"
    );

    // A restart of secretsfs (a new DaemonSet pod) reaches running containers.
    m.mount(&global, &[]).await;
    container.step().await;
    assert_eq!(container.line().await, "demo-api-key-0123456789");
    let mut mountinfo = String::new();
    while let Ok(Ok(Some(line))) = tokio::time::timeout(DEADLINE, container.lines.next_line()).await
    {
        mountinfo.push_str(&line);
        mountinfo.push('\n');
    }
    container.finish().await;
    let lines = mountinfo_lines(&mountinfo, &m.mnt);
    let fuse: Vec<&String> = lines.iter().filter(|l| l.contains(" - fuse ")).collect();
    assert_eq!(fuse.len(), 1, "{mountinfo}");
    assert!(
        fuse[0].contains(" master:"),
        "a slave of the host's mount: {}",
        fuse[0]
    );

    // secretsfs unmounts first, then the shared directory goes.
    drop(m);
    drop(shared);
    assert!(!is_mounted(&parent));
}

#[test]
fn the_kubernetes_manifests_validate_strictly() {
    let (ok, text) = validate(&[]);
    assert!(ok, "{text}");
    assert!(text.contains("valid against Kubernetes"), "{text}");

    // What makes the DaemonSet and the pod work, beyond the schema.
    let daemonset = std::fs::read_to_string(format!("{MANIFESTS}/daemonset.yaml")).unwrap();
    for needed in [
        "kind: DaemonSet",
        "hostPID: true",
        "privileged: true",
        "mountPropagation: Bidirectional",
        "path: /dev/fuse",
        "secretKeyRef:",
        "name: secretsfs-token",
        "- --foreground",
        "path: /ping",
    ] {
        assert!(daemonset.contains(needed), "daemonset.yaml lacks {needed}");
    }
    let pod = std::fs::read_to_string(format!("{MANIFESTS}/pod-example.yaml")).unwrap();
    for needed in [
        "mountPropagation: HostToContainer",
        "path: /secrets",
        "/secrets/prod/db:password",
    ] {
        assert!(pod.contains(needed), "pod-example.yaml lacks {needed}");
    }
    let secret = std::fs::read_to_string(format!("{MANIFESTS}/secret.yaml")).unwrap();
    assert!(secret.contains("name: secretsfs-token") && secret.contains("token:"));
}

#[test]
fn validation_rejects_a_misspelled_field() {
    let dir = tempfile::tempdir().unwrap();
    let daemonset = std::fs::read_to_string(format!("{MANIFESTS}/daemonset.yaml")).unwrap();
    let broken = dir.path().join("daemonset.yaml");
    std::fs::write(
        &broken,
        daemonset.replacen(
            "  mountPropagation: Bidirectional",
            "  mountPropagaton: Bidirectional",
            1,
        ),
    )
    .unwrap();
    let (ok, text) = validate(&[&broken]);
    assert!(!ok, "a misspelled field passed:\n{text}");
    assert!(text.contains("'mountPropagaton' was unexpected"), "{text}");
}

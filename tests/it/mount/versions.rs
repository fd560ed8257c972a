//! One version per inode, for real: what readers see while values rotate (torn reads,
//! same-length rotations, old file descriptors), listings per caller and current, a policy
//! change reaching the kernel at once, mmap, and no log lines for routine requests.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::support::mount::Mounted;

/// A file source the test rewrites: one secret, `soak`, whose value is a JSON object with a
/// `password` key, so that both the whole value and a key are files.
struct RotatingFile {
    dir: tempfile::TempDir,
    /// Every value ever written, whole and its password, in the order written.
    written: Mutex<Written>,
}

#[derive(Default)]
struct Written {
    wholes: HashSet<Vec<u8>>,
    passwords: HashSet<Vec<u8>>,
    newest: Vec<u8>,
    /// When each password stopped being the newest.
    superseded_at: std::collections::HashMap<Vec<u8>, Instant>,
}

impl RotatingFile {
    fn new() -> Arc<RotatingFile> {
        let file = Arc::new(RotatingFile {
            dir: tempfile::tempdir().unwrap(),
            written: Mutex::new(Written::default()),
        });
        file.write(0, "pw-0-initial", "v0");
        file
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("secrets.json")
    }

    fn source_arg(&self) -> String {
        format!("file:{}", self.path().display())
    }

    /// Writes version `version_id` with `password`; the value is recorded as valid before the
    /// file changes, so that a reader never sees a value the test does not know yet.
    fn write(&self, n: u64, password: &str, version_id: &str) {
        let whole = format!(r#"{{"n":{n},"password":"{password}"}}"#);
        {
            let mut written = self.written.lock();
            written.wholes.insert(whole.clone().into_bytes());
            written.passwords.insert(password.as_bytes().to_vec());
            let before = std::mem::replace(&mut written.newest, password.as_bytes().to_vec());
            written
                .superseded_at
                .entry(before)
                .or_insert_with(Instant::now);
            written.superseded_at.remove(password.as_bytes());
        }
        let json = serde_json::json!({"Secrets": [{"Name": "soak", "Versions": [{
            "VersionId": version_id,
            "VersionStages": ["AWSCURRENT"],
            "SecretString": whole,
            // Whole seconds, as moto and the file source keep them: rotations share one.
            "CreatedDate": "2026-11-30T12:00:00Z",
        }]}]});
        let tmp = self.dir.path().join("secrets.json.tmp");
        std::fs::write(&tmp, json.to_string()).unwrap();
        std::fs::rename(&tmp, self.path()).unwrap();
    }
}

/// What the readers of a soak counted.
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    torn: AtomicU64,
    stale_reads: AtomicU64,
    staleness_ms_total: AtomicU64,
    staleness_ms_max: AtomicU64,
}

impl Counts {
    /// Counts one whole read of a file: `valid` says whether it is exactly one version.
    fn read(&self, valid: bool) {
        self.reads.fetch_add(1, Relaxed);
        if !valid {
            self.torn.fetch_add(1, Relaxed);
        }
    }
}

/// Reads `path` whole in `chunk`-byte reads, as one open file.
fn read_in_chunks(path: &Path, chunk: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Rotates the soak secret while readers of several kinds read it, for `seconds`, and
/// returns what they counted. Every third rotation keeps the length of the password and the
/// version id (an edit in place of the file source); the others change the length.
fn soak(mnt: &Path, file: &Arc<RotatingFile>, seconds: u64) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let whole = mnt.join("soak");
    let password = mnt.join("soak:password");
    let mut readers = Vec::new();
    let spawn_reader = |path: PathBuf, chunk: usize, key: bool| {
        let (counts, stop, file) = (counts.clone(), stop.clone(), file.clone());
        std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let Ok(bytes) = read_in_chunks(&path, chunk) else {
                    counts.read(false);
                    continue;
                };
                let written = file.written.lock();
                let valid = if key {
                    written.passwords.contains(&bytes)
                } else {
                    written.wholes.contains(&bytes)
                };
                // Stale: read after a newer version was written, by as long as it has been.
                if let Some(at) = written.superseded_at.get(&bytes).filter(|_| key) {
                    let ms = at.elapsed().as_millis() as u64;
                    counts.stale_reads.fetch_add(1, Relaxed);
                    counts.staleness_ms_total.fetch_add(ms, Relaxed);
                    counts.staleness_ms_max.fetch_max(ms, Relaxed);
                }
                drop(written);
                counts.read(valid);
            }
        })
    };
    // Small reads of a key file, page-sized reads, and whole-file reads (Python's f.read()).
    readers.push(spawn_reader(password.clone(), 7, true));
    readers.push(spawn_reader(whole.clone(), 1000, false));
    readers.push(spawn_reader(whole.clone(), 1 << 16, false));
    readers.push(spawn_reader(password.clone(), 1 << 16, true));
    // A long-lived descriptor read with pread: every read of it is the version it opened.
    {
        let (counts, stop, file) = (counts.clone(), stop.clone(), file.clone());
        readers.push(std::thread::spawn(move || {
            while !stop.load(Relaxed) {
                let Ok(fd) = std::fs::File::open(&password) else {
                    counts.read(false);
                    continue;
                };
                let opened_at = Instant::now();
                let mut first: Option<Vec<u8>> = None;
                while opened_at.elapsed() < Duration::from_secs(2) && !stop.load(Relaxed) {
                    let len = fd.metadata().map_or(0, |m| m.len() as usize);
                    let mut buf = vec![0u8; len];
                    let valid = match fd.read_exact_at(&mut buf, 0) {
                        Ok(()) => {
                            let known = file.written.lock().passwords.contains(&buf);
                            known && first.get_or_insert_with(|| buf.clone()) == &buf
                        }
                        Err(_) => false,
                    };
                    counts.read(valid);
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }));
    }
    let started = Instant::now();
    let mut n = 1;
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(400));
        let (password, version) = if n % 3 == 0 {
            // Same length as the one before, same version id: only the bytes differ.
            let before = file.written.lock().newest.clone();
            let same_length = format!("{:0>width$}", n, width = before.len());
            (same_length, format!("v{}", n - 1))
        } else {
            (
                format!("pw-{n}-{}", "x".repeat(n as usize % 17)),
                format!("v{n}"),
            )
        };
        file.write(n, &password, &version);
        n += 1;
    }
    stop.store(true, Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    counts
}

fn report(mode: &str, counts: &Counts) {
    let stale = counts.stale_reads.load(Relaxed);
    println!(
        "rotation soak ({mode}): {} reads, {} torn, {stale} stale reads, staleness max {} ms, \
         mean {} ms",
        counts.reads.load(Relaxed),
        counts.torn.load(Relaxed),
        counts.staleness_ms_max.load(Relaxed),
        counts
            .staleness_ms_total
            .load(Relaxed)
            .checked_div(stale)
            .unwrap_or(0),
    );
}

/// How long each soak runs: about 15 s in CI; `SECRETSFS_SOAK_SECONDS` for a longer one
/// (scripts/rotation-soak.sh runs 60 s and prints the figures).
fn soak_seconds() -> u64 {
    std::env::var("SECRETSFS_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

async fn soak_in(mode_args: &[&str], mode: &str) {
    let file = RotatingFile::new();
    let source = file.source_arg();
    let m = Mounted::start(&["--source", &source, "--ttl", "1"], mode_args).await;
    let soaked = {
        let file = file.clone();
        let mnt = m.mnt.clone();
        // The readers block on the mount: off the test's runtime.
        tokio::task::spawn_blocking(move || soak(&mnt, &file, soak_seconds()))
            .await
            .unwrap()
    };
    report(mode, &soaked);
    assert!(soaked.reads.load(Relaxed) > 1000, "too few reads to judge");
    assert_eq!(
        soaked.torn.load(Relaxed),
        0,
        "reads that were not exactly one version (log:\n{})",
        m.log()
    );
}

#[tokio::test]
async fn rotation_soak_reads_only_whole_versions_with_the_kernel_cache() {
    soak_in(&[], "kernel cache").await;
}

#[tokio::test]
async fn rotation_soak_reads_only_whole_versions_without_the_kernel_cache() {
    soak_in(&["--no-kernel-cache"], "no kernel cache").await;
}

/// Both read paths, for tests that check each.
const MODES: [&[&str]; 2] = [&[], &["--no-kernel-cache"]];

/// TTL 1 s, its jitter, and a second for the reader.
const TTL_AND_A_SECOND: Duration = Duration::from_millis(2100);

#[tokio::test]
async fn a_same_length_rotation_in_the_same_second_is_seen_within_the_ttl() {
    for mode in MODES {
        let file = RotatingFile::new();
        let source = file.source_arg();
        let m = Mounted::start(&["--source", &source, "--ttl", "1"], mode).await;
        let password = m.path("soak:password");
        assert!(std::fs::read(&password).unwrap() == b"pw-0-initial");
        // The file source keeps the VersionId and the date across this edit.
        file.write(0, "pw-0-INITIAL", "v0");
        tokio::time::sleep(TTL_AND_A_SECOND).await;
        assert!(
            std::fs::read(&password).unwrap() == b"pw-0-INITIAL",
            "{mode:?}: the same-length value is seen"
        );
    }
}

#[tokio::test]
async fn a_descriptor_opened_before_a_rotation_reads_the_old_version_to_its_end() {
    for mode in MODES {
        let file = RotatingFile::new();
        let source = file.source_arg();
        let m = Mounted::start(&["--source", &source, "--ttl", "1"], mode).await;
        let path = m.path("soak:password");
        for (n, new) in [(1, "pw-1-a-much-longer-one"), (2, "pw-2")] {
            let old = std::fs::read(&path).unwrap();
            let mut handle = std::fs::File::open(&path).unwrap();
            let mut head = [0u8; 3];
            handle.read_exact(&mut head).unwrap();
            file.write(n, new, &format!("v{n}"));
            tokio::time::sleep(TTL_AND_A_SECOND).await;
            assert!(
                std::fs::read(&path).unwrap() == new.as_bytes(),
                "{mode:?}: a new open sees the rotation"
            );
            let mut rest = Vec::new();
            handle.read_to_end(&mut rest).unwrap();
            assert!(
                head.iter().chain(&rest).copied().collect::<Vec<_>>() == old,
                "{mode:?}: the old descriptor reads its version, whole"
            );
            assert_eq!(handle.metadata().unwrap().len(), old.len() as u64);
        }
    }
}

/// Whether the running kernel has FUSE_DIRECT_IO_ALLOW_MMAP (Linux 6.6).
fn kernel_allows_direct_io_mmap() -> bool {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 6)
}

/// The first `len` bytes of `path` through a mapping of `flags`.
fn mapped(path: &Path, len: usize, flags: nix::sys::mman::MapFlags) -> nix::Result<Vec<u8>> {
    use nix::sys::mman::{ProtFlags, mmap, munmap};
    let file = std::fs::File::open(path).unwrap();
    let length = std::num::NonZeroUsize::new(len).unwrap();
    // SAFETY: a fresh read-only mapping of a file, read and unmapped here, aliasing nothing.
    unsafe {
        let at = mmap(None, length, ProtFlags::PROT_READ, flags, &file, 0)?;
        let bytes = std::slice::from_raw_parts(at.as_ptr() as *const u8, len).to_vec();
        munmap(at, len)?;
        Ok(bytes)
    }
}

#[tokio::test]
async fn mmap_reads_the_right_bytes_in_both_read_paths() {
    use nix::sys::mman::MapFlags;
    for mode in MODES {
        let m = Mounted::start(&["--source", &crate::support::cli::demo_source()], mode).await;
        let path = m.path("prod/db");
        let expected = std::fs::read(&path).unwrap();
        for flags in [MapFlags::MAP_PRIVATE, MapFlags::MAP_SHARED] {
            match mapped(&path, expected.len(), flags) {
                Ok(bytes) => assert!(bytes == expected, "{mode:?} {flags:?}: other bytes"),
                Err(nix::errno::Errno::ENODEV)
                    if !mode.is_empty()
                        && flags == MapFlags::MAP_SHARED
                        && !kernel_allows_direct_io_mmap() => {}
                Err(e) => panic!("{mode:?} {flags:?}: mmap failed: {e}"),
            }
        }
    }
}

#[tokio::test]
async fn isatty_and_other_routine_requests_add_no_log_line() {
    let m = Mounted::start(&["--source", &crate::support::cli::demo_source()], &[]).await;
    let file = std::fs::File::open(m.path("prod/db")).unwrap();
    let before = m.log().lines().count();
    for _ in 0..1000 {
        assert!(!nix::unistd::isatty(&file).unwrap_or(false));
    }
    let _ = std::fs::read(m.path("prod/db"));
    let _ = nix::sys::stat::fstat(&file);
    assert_eq!(
        m.log().lines().count(),
        before,
        "new log lines:\n{}",
        m.log()
    );
}

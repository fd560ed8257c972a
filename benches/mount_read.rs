//! Reading a cached 1 KiB secret through the mount, against the same bytes in a tmpfs file:
//! open+read+close, and pread on a handle kept open, from 1 and 2 threads, in both read paths
//! (the default, kernel page cache; and `--no-kernel-cache`, FOPEN_DIRECT_IO, where every open
//! and read reaches the daemon), and a template rendering the same bytes in the default mount
//! (whose entry is never cached: every open is a lookup). Prints a markdown table of ops/s, p50, p99 and the ratio to
//! tmpfs for the same case.
//!
//! Run: `cargo bench --bench mount_read` (needs root and /dev/fuse; each case is measured for
//! `SECRETSFS_BENCH_SECS` seconds, default 2, in rounds that alternate the three files so that
//! a burst of background load hits all three alike). Figures go in docs/performance.md ("The
//! mount").
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) every case runs for a few
//! milliseconds only: a smoke test that still mounts, checks the bytes read and unmounts.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use fuser::BackgroundSession;
use nix::mount::{MntFlags, MsFlags, umount2};
use secretsfs::Engine;
use secretsfs::cache::CacheConfig;
use secretsfs::fuse::fs::SecretsFs;
use secretsfs::fuse::mount;
use secretsfs::fuse::namespace::{Layout, Namespace};
use secretsfs::fuse::templates::Templates;
use secretsfs::policy::{Attrs, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, Defaults, Policy};
use secretsfs::source::file::FileSource;
use secretsfs::template::{OnMissing, Template, TemplateFile};

const SECRET_NAME: &str = "bench-1k";
const TEMPLATE_PATH: &str = "bench-1k.tpl";
const SECRET_LEN: usize = 1024;
/// Bigger than the secret, so that "read the whole file" is one read with data and one at EOF,
/// as `cat` does it.
const READ_BUF: usize = 4096;
const DEFAULT_SECS: f64 = 2.0;
/// A case's time is split into this many rounds, each running tmpfs and both mounts in turn.
const ROUNDS: u32 = 10;
const SMOKE_CASE: Duration = Duration::from_millis(50);
/// Not recorded: lets caches, the scheduler and the CPU clock settle before each round.
const WARMUP: Duration = Duration::from_millis(20);
const SMOKE_WARMUP: Duration = Duration::from_millis(5);
/// The targets for the default path, as fractions of tmpfs's rate.
const TARGET_OPEN_READ_CLOSE: f64 = 0.65;
const TARGET_PREAD: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    OpenReadClose,
    Pread,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::OpenReadClose => "open+read+close",
            Op::Pread => "pread (open fd)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Tmpfs,
    MountKernelCache,
    MountDirectIo,
    /// A template rendering the same bytes, in the default mount: its entry is never cached
    /// (every open is a lookup, judged per caller), so this is what that costs.
    MountTemplate,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Tmpfs => "tmpfs",
            Target::MountKernelCache => "secretsfs (default)",
            Target::MountDirectIo => "secretsfs `--no-kernel-cache`",
            Target::MountTemplate => "secretsfs template (default)",
        }
    }
}

struct Row {
    target: Target,
    op: Op,
    threads: usize,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
    /// Engine lookups (cache hits) per operation: how many requests reached the daemon's cache
    /// for each read; `None` for tmpfs.
    lookups_per_op: Option<f64>,
}

struct Settings {
    rounds: u32,
    /// Measured time of one round of one case on one file.
    round: Duration,
    warmup: Duration,
}

fn main() {
    // cargo bench passes `--bench`; cargo test runs the same binary without it.
    let full = std::env::args().any(|a| a == "--bench");
    let settings = if full {
        let secs = std::env::var("SECRETSFS_BENCH_SECS")
            .ok()
            .map(|s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .unwrap_or_else(|| panic!("SECRETSFS_BENCH_SECS={s}: not a positive number"))
            })
            .unwrap_or(DEFAULT_SECS);
        Settings {
            rounds: ROUNDS,
            round: Duration::from_secs_f64(secs) / ROUNDS,
            warmup: WARMUP,
        }
    } else {
        Settings {
            rounds: 1,
            round: SMOKE_CASE,
            warmup: SMOKE_WARMUP,
        }
    };

    let secret = secret_bytes();
    let tmpfs = TmpfsFile::create(&secret);
    let cached = Mounted::start(&secret, true);
    let direct = Mounted::start(&secret, false);
    let targets = [
        (Target::Tmpfs, tmpfs.path.clone(), None),
        (
            Target::MountKernelCache,
            cached.file(),
            Some(cached.engine.clone()),
        ),
        (
            Target::MountDirectIo,
            direct.file(),
            Some(direct.engine.clone()),
        ),
        (
            Target::MountTemplate,
            cached.template_file(),
            Some(cached.engine.clone()),
        ),
    ];
    for (_, file, _) in &targets {
        // Warm the cache and the kernel's dentries and attributes: only hits are measured.
        let first = std::fs::read(file).expect("first read");
        assert!(
            first == secret,
            "{}: other bytes than the secret",
            file.display()
        );
    }
    let misses_before = [&cached, &direct].map(|m| m.engine.stats().misses);

    let mut rows = Vec::new();
    for op in [Op::OpenReadClose, Op::Pread] {
        for threads in [1, 2] {
            let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::new(threads)).collect();
            for _ in 0..settings.rounds {
                for ((_, file, engine), tally) in targets.iter().zip(&mut tallies) {
                    let hits = || engine.as_ref().map_or(0, |e| e.stats().hits);
                    let before = hits();
                    tally.add(measure(file, op, threads, &secret, &settings));
                    tally.lookups += hits() - before;
                }
            }
            for ((target, _, engine), tally) in targets.iter().zip(tallies) {
                rows.push(tally.row(*target, op, threads, engine.is_some()));
            }
        }
    }

    let misses_after = [&cached, &direct].map(|m| m.engine.stats().misses);
    assert_eq!(
        misses_after, misses_before,
        "measured reads must all be cache hits"
    );
    cached.unmount();
    direct.unmount();
    drop(tmpfs);
    print_table(&rows, &settings, full);
}

/// 1 KiB of printable bytes, the same every run.
fn secret_bytes() -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u32 = 0x2545_f491;
    (0..SECRET_LEN)
        .map(|_| {
            // xorshift32: deterministic filler, nothing here needs to be secret.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            ALPHABET[(state as usize) % ALPHABET.len()]
        })
        .collect()
}

/// One round of one case on one file.
struct Run {
    /// Operations, warm-up included (what the lookup counter saw).
    ops: u64,
    /// Per thread: operations measured, and over how long.
    measured: Vec<(u64, Duration)>,
    /// Nanoseconds per measured operation, all threads.
    latencies: Vec<u64>,
}

/// One case on one file, summed over its rounds.
struct Tally {
    ops: u64,
    lookups: u64,
    measured: Vec<(u64, Duration)>,
    latencies: Vec<u64>,
}

impl Tally {
    fn new(threads: usize) -> Tally {
        Tally {
            ops: 0,
            lookups: 0,
            measured: vec![(0, Duration::ZERO); threads],
            latencies: Vec::new(),
        }
    }

    fn add(&mut self, run: Run) {
        self.ops += run.ops;
        for (total, (ops, time)) in self.measured.iter_mut().zip(run.measured) {
            total.0 += ops;
            total.1 += time;
        }
        self.latencies.extend(run.latencies);
    }

    fn row(mut self, target: Target, op: Op, threads: usize, counted: bool) -> Row {
        assert!(!self.latencies.is_empty(), "no operation completed");
        // Each thread's rate over its own windows, summed: the threads run side by side.
        let ops_per_sec = self
            .measured
            .iter()
            .map(|(ops, time)| *ops as f64 / time.as_secs_f64())
            .sum();
        self.latencies.sort_unstable();
        let all = &self.latencies;
        let at = |q: f64| {
            Duration::from_nanos(all[((all.len() as f64 * q) as usize).min(all.len() - 1)])
        };
        Row {
            target,
            op,
            threads,
            ops_per_sec,
            p50: at(0.50),
            p99: at(0.99),
            lookups_per_op: counted.then(|| self.lookups as f64 / self.ops as f64),
        }
    }
}

/// Runs `op` on `threads` threads, started together, each for the warm-up and then for one
/// round, timing every operation.
fn measure(path: &Path, op: Op, threads: usize, expected: &[u8], settings: &Settings) -> Run {
    let start = Barrier::new(threads);
    let per_thread: Vec<(u64, Duration, Vec<u64>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let start = &start;
                scope.spawn(move || {
                    // Pread's handle is opened outside the timed loop, one per thread.
                    let handle = match op {
                        Op::Pread => Some(File::open(path).expect("open for pread")),
                        Op::OpenReadClose => None,
                    };
                    let mut buf = [0u8; READ_BUF];
                    let mut one = || {
                        let n = read_once(path, handle.as_ref(), &mut buf);
                        // assert!, not assert_eq!: a failure must not print the bytes.
                        assert!(buf[..n] == *expected, "read other bytes than the secret");
                    };
                    start.wait();
                    let mut ops = 0u64;
                    let warm_until = Instant::now() + settings.warmup;
                    while Instant::now() < warm_until {
                        one();
                        ops += 1;
                    }
                    let mut latencies = Vec::with_capacity(1 << 18);
                    let began = Instant::now();
                    let end = began + settings.round;
                    let mut now = began;
                    while now < end {
                        let t0 = now;
                        one();
                        now = Instant::now();
                        latencies.push((now - t0).as_nanos() as u64);
                    }
                    (ops + latencies.len() as u64, now - began, latencies)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("bench thread"))
            .collect()
    });
    let mut run = Run {
        ops: 0,
        measured: Vec::new(),
        latencies: Vec::new(),
    };
    for (ops, time, latencies) in per_thread {
        run.ops += ops;
        run.measured.push((latencies.len() as u64, time));
        run.latencies.extend(latencies);
    }
    run
}

/// One operation: pread on `handle` if there is one, else open+read+close of `path`. Returns
/// the bytes read into `buf`.
fn read_once(path: &Path, handle: Option<&File>, buf: &mut [u8; READ_BUF]) -> usize {
    match handle {
        Some(file) => file.read_at(&mut buf[..SECRET_LEN], 0).expect("pread"),
        None => open_read_close(path, buf).expect("open+read+close"),
    }
}

/// `cat`'s pattern: open, read until EOF, close (when `file` drops).
fn open_read_close(path: &Path, buf: &mut [u8; READ_BUF]) -> io::Result<usize> {
    let mut file = File::open(path)?;
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..])? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

/// The secret's bytes in a file on tmpfs: /dev/shm when it is one, else a tmpfs of our own.
struct TmpfsFile {
    path: PathBuf,
    /// Set when we mounted the tmpfs ourselves; unmounted on drop.
    own_mount: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl TmpfsFile {
    fn create(bytes: &[u8]) -> TmpfsFile {
        let (dir, own_mount) = match tempfile::Builder::new()
            .prefix("secretsfs-bench-")
            .tempdir_in("/dev/shm")
        {
            Ok(dir) if is_tmpfs(dir.path()) => (dir, None),
            _ => {
                let dir = tempfile::Builder::new()
                    .prefix("secretsfs-bench-tmpfs-")
                    .tempdir_in("/tmp")
                    .expect("temp dir");
                nix::mount::mount(
                    Some("tmpfs"),
                    dir.path(),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some("size=1m,mode=0755"),
                )
                .expect("/dev/shm is not tmpfs, and mounting a tmpfs failed");
                let mounted = dir.path().to_owned();
                (dir, Some(mounted))
            }
        };
        let path = dir.path().join(SECRET_NAME);
        let file = TmpfsFile {
            path,
            own_mount,
            _dir: dir,
        };
        std::fs::write(&file.path, bytes).expect("write the tmpfs file");
        assert!(is_tmpfs(&file.path), "the baseline file is not on tmpfs");
        file
    }
}

impl Drop for TmpfsFile {
    fn drop(&mut self) {
        if let Some(mountpoint) = self.own_mount.take() {
            // Detach: nothing of ours is open, and the directory removal after this needs it gone.
            let _ = umount2(&mountpoint, MntFlags::MNT_DETACH);
        }
    }
}

/// Asks the file system holding `path` itself, which /proc/mounts can only approximate
/// (bind mounts, overmounts).
fn is_tmpfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
}

/// An in-process mount of a one-secret file source. Field order is drop order: the mount goes
/// first (its workers answer through the runtime), then the runtime, then the directories.
struct Mounted {
    guard: MountGuard,
    mountpoint: PathBuf,
    engine: Arc<Engine>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn start(secret: &[u8], kernel_cache: bool) -> Mounted {
        let dir = tempfile::Builder::new()
            .prefix("secretsfs-bench-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let source_path = dir.path().join("secrets.json");
        let document = serde_json::json!({
            "Secrets": [{
                "Name": SECRET_NAME,
                "Versions": [{
                    "VersionId": "b0b0b0b0-0000-4000-8000-000000000001",
                    "VersionStages": ["AWSCURRENT"],
                    "SecretString": std::str::from_utf8(secret).expect("printable secret"),
                }],
            }],
        });
        std::fs::write(&source_path, document.to_string()).expect("write the secrets file");
        // 0755 like a real mountpoint's parent, so the kernel's permission walk is the usual.
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mountpoint");
        for path in [dir.path(), mnt.as_path()] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 0755");
        }

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let source = FileSource::open(&source_path).expect("file source");
        // A TTL far longer than the run: every measured read is a hit, none a refresh.
        let cache = CacheConfig {
            ttl: Duration::from_secs(3600),
            ..Default::default()
        };
        let engine = Arc::new(Engine::new(Arc::new(source), cache));
        let policy = secretsfs::policy::shared(Policy::defaults_only(Defaults {
            uid: 0,
            gid: 0,
            file_mode: DEFAULT_FILE_MODE,
            dir_mode: DEFAULT_DIR_MODE,
        }));
        let namespace = Namespace::new(Layout::Flat, "").expect("namespace");
        let fs = Arc::new(
            SecretsFs::new(engine.clone(), policy, namespace, kernel_cache)
                .with_templates(Arc::new(template_of_the_secret())),
        );
        let mountpoint = mount::prepare_mountpoint(&mnt).expect("mountpoint");
        // As many FUSE workers as `secretsfs mount` starts on this machine.
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let (session, _fuse) = mount::mount(fs, runtime.handle().clone(), &mountpoint, threads)
            .unwrap_or_else(|e| panic!("mount: {e}"));
        let guard = MountGuard {
            session: Some(session),
            mountpoint: mountpoint.clone(),
        };
        runtime
            .block_on(mount::wait_until_answering(&mountpoint))
            .unwrap_or_else(|e| panic!("mount: {e}"));
        Mounted {
            guard,
            mountpoint,
            engine,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn file(&self) -> PathBuf {
        self.mountpoint.join(SECRET_NAME)
    }

    fn template_file(&self) -> PathBuf {
        self.mountpoint.join(TEMPLATE_PATH)
    }

    /// Unmounts now, failing loudly if it does not work (drop would only detach quietly).
    fn unmount(mut self) {
        let session = self.guard.session.take().expect("mounted");
        session.umount_and_join().expect("unmount");
        assert!(
            !is_mounted(&self.mountpoint),
            "still mounted after unmounting"
        );
    }
}

/// A template whose rendering is the secret's bytes, at [`TEMPLATE_PATH`], with the default
/// owner, group and mode.
fn template_of_the_secret() -> Templates {
    let text = format!("{{{{ secret(\"{SECRET_NAME}\") }}}}");
    let template = Template::compile(TEMPLATE_PATH, &text).expect("the template compiles");
    Templates::new([TemplateFile {
        path: TEMPLATE_PATH.into(),
        template,
        attrs: Attrs {
            uid: 0,
            gid: 0,
            mode: DEFAULT_FILE_MODE,
        },
        on_missing: OnMissing::Eio,
    }])
}

/// Unmounts on drop, so that a panic or an early return leaves no mount behind.
struct MountGuard {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
        if is_mounted(&self.mountpoint) {
            // Last resort (busy, or the session failed): the kernel ends it when it is unused.
            let _ = umount2(&self.mountpoint, MntFlags::MNT_DETACH);
        }
    }
}

fn is_mounted(path: &Path) -> bool {
    let Some(path) = path.to_str() else {
        return false;
    };
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(path))
}

fn print_table(rows: &[Row], settings: &Settings, full: bool) {
    let baseline = |op: Op, threads: usize| {
        rows.iter()
            .find(|r| r.target == Target::Tmpfs && r.op == op && r.threads == threads)
            .map(|r| r.ops_per_sec)
            .expect("a tmpfs row for every case")
    };
    let ratio = |r: &Row| r.ops_per_sec / baseline(r.op, r.threads);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    if !full {
        println!("(smoke run: one short round per case; `cargo bench` for figures)");
    }
    println!(
        "A cached {SECRET_LEN}-byte secret, {} s per case on each file, in {} rounds \
         alternating the files; {cpus} CPUs, Linux {}:\n",
        (settings.round * settings.rounds).as_secs_f64(),
        settings.rounds,
        kernel.trim()
    );
    println!("| file | operation | threads | ops/s | p50 | p99 | vs tmpfs | cache lookups/op |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for op in [Op::OpenReadClose, Op::Pread] {
        for threads in [1, 2] {
            for r in rows.iter().filter(|r| r.op == op && r.threads == threads) {
                println!(
                    "| {} | {} | {} | {} | {} | {} | {:.2} | {} |",
                    r.target.label(),
                    r.op.label(),
                    r.threads,
                    thousands(r.ops_per_sec),
                    latency(r.p50),
                    latency(r.p99),
                    ratio(r),
                    r.lookups_per_op.map_or("-".into(), |l| format!("{l:.2}")),
                );
            }
        }
    }
    println!("\nTargets for the default path (ops/s as a fraction of tmpfs's):");
    for r in rows.iter().filter(|r| r.target == Target::MountKernelCache) {
        let target = match r.op {
            Op::OpenReadClose => TARGET_OPEN_READ_CLOSE,
            Op::Pread => TARGET_PREAD,
        };
        let got = ratio(r);
        println!(
            "- {}, {} thread{}: {got:.2} (target {target}): {}",
            r.op.label(),
            r.threads,
            if r.threads == 1 { "" } else { "s" },
            if got >= target { "met" } else { "MISSED" }
        );
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn latency(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.2} µs", ns as f64 / 1e3)
    } else {
        format!("{:.2} ms", ns as f64 / 1e6)
    }
}

//! The units in `systemd/`. `systemd-analyze verify` checks copies of all three, verified
//! together (the services require the token unit), whose ExecStart points at the freshly built
//! binary: verify fails on a missing executable. Broken copies (a missing binary, a misspelt
//! directive, a bad value, a missing dependency) must fail the same check, which proves it can
//! fail. The mount unit must not get a mount namespace of its own (its mount would be invisible
//! to the host) and must carry the hardening that works without one; the exposure scores of
//! `systemd-analyze security` are pinned, so loosening a sandbox fails here.
//!
//! These tests need `systemd-analyze` (systemd 252 or later). Without it they fail rather than
//! skip: a silently skipped tier would look like a passing one.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MOUNT_UNIT: &str = "secretsfs.service";
const HTTP_UNIT: &str = "secretsfs-http.service";
const TOKEN_UNIT: &str = "secretsfs-token.service";
const UNITS: [&str; 3] = [MOUNT_UNIT, HTTP_UNIT, TOKEN_UNIT];

/// Where the units expect the binary; the copies under test point at the built one instead.
const INSTALLED_BINARY: &str = "/usr/bin/secretsfs";
const BUILT_BINARY: &str = env!("CARGO_BIN_EXE_secretsfs");

const TOKEN_DIR: &str = "/run/secretsfs";
const TOKEN_ENV: &str = "AWS_TOKEN=file:///run/secretsfs/token";

/// `systemd-analyze security --offline=true` as measured with systemd 252 (docs/operations.md,
/// "Why the mount unit cannot use ProtectSystem= and the like", quotes them). A unit whose exposure rises above its figure has lost some of its sandbox; after a
/// deliberate change (or on a systemd that scores differently), measure again and update both.
const MAX_EXPOSURE: [(&str, f64); 3] = [(MOUNT_UNIT, 4.3), (HTTP_UNIT, 1.5), (TOKEN_UNIT, 1.1)];

/// Options that give a unit a mount namespace of its own (or imply one), hiding a mount made
/// inside it from the rest of the host.
const MOUNT_NAMESPACE_OPTIONS: &[&str] = &[
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateUsers",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
    "ReadOnlyPaths",
    "ReadWritePaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "ReadOnlyDirectories",
    "ReadWriteDirectories",
    "InaccessibleDirectories",
    "BindPaths",
    "BindReadOnlyPaths",
    "TemporaryFileSystem",
    "MountFlags",
    "MountAPIVFS",
    "MountImages",
    "ExtensionImages",
    "ExtensionDirectories",
    "RootDirectory",
    "RootImage",
    "DynamicUser",
    "LogNamespace",
    "NetworkNamespacePath",
    "IPCNamespacePath",
    "JoinsNamespaceOf",
];

fn source(unit: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("systemd")
        .join(unit);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A unit's directives as (section, key, value), comments dropped and continuation lines joined
/// as systemd joins them.
fn directives(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let logical = std::mem::take(&mut pending);
        let logical = logical.trim();
        if logical.is_empty() {
            continue;
        }
        if logical.starts_with('[') && logical.ends_with(']') {
            section = logical[1..logical.len() - 1].to_owned();
        } else if let Some((key, value)) = logical.split_once('=') {
            out.push((
                section.clone(),
                key.trim().to_owned(),
                value.trim().to_owned(),
            ));
        } else {
            panic!("not a directive: {logical:?}");
        }
    }
    out
}

struct Unit {
    name: &'static str,
    directives: Vec<(String, String, String)>,
}

impl Unit {
    fn load(name: &'static str) -> Self {
        Self {
            name,
            directives: directives(&source(name)),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.directives.iter().any(|(_, k, _)| k == key)
    }

    fn values(&self, key: &str) -> Vec<&str> {
        self.directives
            .iter()
            .filter(|(_, k, _)| k == key)
            .map(|(_, _, v)| v.as_str())
            .collect()
    }

    /// The value of a directive that must appear exactly once.
    fn one(&self, key: &str) -> &str {
        match self.values(key)[..] {
            [value] => value,
            ref other => panic!("{}: {key}= should appear once, found {other:?}", self.name),
        }
    }

    /// The words of every occurrence of a list directive, together.
    fn words(&self, key: &str) -> BTreeSet<&str> {
        self.values(key)
            .into_iter()
            .flat_map(str::split_whitespace)
            .collect()
    }

    fn expect(&self, key: &str, value: &str) {
        assert_eq!(self.one(key), value, "{}: {key}=", self.name);
    }
}

fn set<'a>(words: &[&'a str]) -> BTreeSet<&'a str> {
    words.iter().copied().collect()
}

/// All three units copied into a fresh directory, ExecStart pointing at the built binary, each
/// text then passed through `edit` (the negative cases break one unit there).
struct Copies {
    dir: tempfile::TempDir,
}

impl Copies {
    fn new(edit: impl Fn(&str, String) -> String) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("secretsfs-units.")
            .tempdir()
            .unwrap();
        for unit in UNITS {
            let text = source(unit).replace(INSTALLED_BINARY, BUILT_BINARY);
            std::fs::write(dir.path().join(unit), edit(unit, text)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, unit: &str) -> PathBuf {
        self.dir.path().join(unit)
    }

    fn paths(&self) -> Vec<PathBuf> {
        UNITS.iter().map(|unit| self.path(unit)).collect()
    }
}

fn systemd_analyze(args: &[&str], units: &[PathBuf]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .args(units)
        // Diagnostics on stderr, uncoloured, whatever the environment says; no man page
        // lookups (the units name man:secretsfs(1), which is not installed here).
        .env("SYSTEMD_LOG_TARGET", "console")
        .env("SYSTEMD_LOG_LEVEL", "info")
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "systemd-analyze: {e} (these tests need systemd's systemd-analyze, 252 or later)"
            )
        })
}

struct Verdict {
    ok: bool,
    /// Diagnostics about our units. systemd 252 only warns about an unknown directive or a bad
    /// value ("..., ignoring.") and still exits 0, so any of them counts as a failure; lines
    /// about other units on this host are not ours to judge.
    findings: Vec<String>,
    report: String,
}

fn verify(units: &[PathBuf]) -> Verdict {
    let out = systemd_analyze(&["verify", "--man=no"], units);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let findings: Vec<String> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|line| line.contains("secretsfs"))
        .map(str::to_owned)
        .collect();
    Verdict {
        ok: out.status.success() && findings.is_empty(),
        findings,
        report: format!("{}\n{stdout}{stderr}", out.status),
    }
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    for unit in [MOUNT_UNIT, HTTP_UNIT] {
        let exec = Unit::load(unit).one("ExecStart").to_owned();
        assert!(
            exec.starts_with(&format!("{INSTALLED_BINARY} ")),
            "{unit}: ExecStart={exec} should run {INSTALLED_BINARY}, which the copies rewrite"
        );
    }
    let copies = Copies::new(|_, text| text);
    let verdict = verify(&copies.paths());
    assert!(verdict.ok, "verify failed:\n{}", verdict.report);
}

#[test]
fn systemd_analyze_verify_rejects_broken_units() {
    type Edit = fn(&str) -> String;
    // (what is broken, which unit, how, a word the diagnostics must name)
    let cases: [(&str, &str, Edit, &str); 9] = [
        (
            "ExecStart= a missing binary",
            MOUNT_UNIT,
            |t| t.replace(BUILT_BINARY, "/nonexistent/secretsfs"),
            "/nonexistent/secretsfs",
        ),
        (
            "ExecStart= a missing binary",
            HTTP_UNIT,
            |t| t.replace(BUILT_BINARY, "/nonexistent/secretsfs"),
            "/nonexistent/secretsfs",
        ),
        (
            "a misspelt directive",
            MOUNT_UNIT,
            |t| t.replace("\nRestart=", "\nRestrat="),
            "Restrat",
        ),
        (
            "a misspelt directive",
            HTTP_UNIT,
            |t| t.replace("\nNoNewPrivileges=", "\nNoNewPrivilege="),
            "NoNewPrivilege",
        ),
        (
            "a misspelt directive",
            TOKEN_UNIT,
            |t| t.replace("\nRemainAfterExit=", "\nRemainAfterExt="),
            "RemainAfterExt",
        ),
        (
            "a bad value",
            MOUNT_UNIT,
            |t| t.replace("\nType=notify", "\nType=notfy"),
            "notfy",
        ),
        (
            "a bad value",
            TOKEN_UNIT,
            |t| t.replace("\nType=oneshot", "\nType=oneshoot"),
            "oneshoot",
        ),
        (
            "an unknown system call group",
            HTTP_UNIT,
            |t| t.replace("=@system-service\n", "=@system-servce\n"),
            "@system-servce",
        ),
        (
            "a required unit that does not exist",
            MOUNT_UNIT,
            |t| {
                t.replace(
                    "Requires=secretsfs-token.service",
                    "Requires=secretsfs-no-such-token.service",
                )
            },
            "secretsfs-no-such-token.service",
        ),
    ];
    for (what, broken, edit, needle) in cases {
        let copies = Copies::new(|unit, text| {
            if unit != broken {
                return text;
            }
            let edited = edit(&text);
            assert!(
                edited != text,
                "{broken}: the edit for {what} changed nothing"
            );
            edited
        });
        let verdict = verify(&copies.paths());
        assert!(
            !verdict.ok,
            "{broken} with {what} passed verify:\n{}",
            verdict.report
        );
        assert!(
            verdict.findings.iter().any(|line| line.contains(needle)),
            "{broken} with {what}: no diagnostic names {needle:?}:\n{}",
            verdict.report
        );
    }
}

#[test]
fn exec_start_command_lines_parse() {
    for (unit, subcommand) in [(MOUNT_UNIT, "mount"), (HTTP_UNIT, "serve")] {
        let exec = Unit::load(unit).one("ExecStart").to_owned();
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some(INSTALLED_BINARY), "{unit}");
        let args: Vec<&str> = words.collect();
        assert!(args.contains(&subcommand), "{unit}: {exec}");
        // --help last: every flag and value before it is parsed and checked first.
        let out = Command::new(BUILT_BINARY)
            .args(&args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{unit}: the binary rejects ExecStart={exec}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_mount_unit_keeps_the_host_mount_namespace() {
    let unit = Unit::load(MOUNT_UNIT);
    let found: Vec<&str> = MOUNT_NAMESPACE_OPTIONS
        .iter()
        .copied()
        .filter(|key| unit.has(key))
        .collect();
    assert!(
        found.is_empty(),
        "{MOUNT_UNIT} sets {found:?}: each gives it a mount namespace of its own, and the \
         mount at /secrets would be invisible to the host"
    );
}

#[test]
fn the_mount_unit_is_hardened_without_a_namespace() {
    let unit = Unit::load(MOUNT_UNIT);
    assert!(
        unit.one("ExecStart")
            .ends_with(" mount -f --fd-store /secrets"),
        "{}",
        unit.one("ExecStart")
    );
    unit.expect("Type", "notify");
    unit.expect("NotifyAccess", "main");
    unit.expect("Restart", "on-failure");
    unit.expect("KillSignal", "SIGTERM");
    // The store keeps the connection across restarts; stop-post unmounts on a stop only.
    unit.expect("FileDescriptorStoreMax", "4");
    unit.expect(
        "ExecStopPost",
        "+/usr/bin/secretsfs stop-post --unit %n /secrets",
    );
    unit.expect("Environment", TOKEN_ENV);
    assert!(!unit.has("User"), "mount(2) needs root");
    // mount(2) and umount2(2); --mlock beyond RLIMIT_MEMLOCK; hooks as another user and
    // signals to another user's process. Nothing else.
    assert_eq!(
        unit.words("CapabilityBoundingSet"),
        set(&[
            "CAP_SYS_ADMIN",
            "CAP_IPC_LOCK",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_KILL"
        ])
    );
    assert!(unit.values("AmbientCapabilities").is_empty());
    unit.expect("NoNewPrivileges", "yes");
    unit.expect("DevicePolicy", "closed");
    unit.expect("DeviceAllow", "/dev/fuse rw");
    assert_eq!(
        unit.words("RestrictAddressFamilies"),
        set(&["AF_UNIX", "AF_INET", "AF_INET6"])
    );
    let allowed = unit.values("SystemCallFilter");
    assert_eq!(
        allowed.first().copied(),
        Some("@system-service @mount"),
        "the allow list comes first: {allowed:?}"
    );
    unit.expect("SystemCallArchitectures", "native");
    for key in [
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
    ] {
        unit.expect(key, "yes");
    }
    for key in ["Requires", "After"] {
        assert!(unit.words(key).contains(TOKEN_UNIT), "{key}=");
    }
    assert!(unit.words("After").contains("network-online.target"));
    assert!(unit.words("Wants").contains("network-online.target"));
}

#[test]
fn the_http_unit_is_fully_sandboxed() {
    let unit = Unit::load(HTTP_UNIT);
    assert!(
        unit.one("ExecStart").ends_with(" serve"),
        "{}",
        unit.one("ExecStart")
    );
    unit.expect("Type", "notify");
    unit.expect("NotifyAccess", "main");
    unit.expect("Restart", "on-failure");
    unit.expect("Environment", TOKEN_ENV);
    unit.expect("DynamicUser", "yes");
    unit.expect("SupplementaryGroups", "secretsfs-token");
    unit.expect("CapabilityBoundingSet", "");
    unit.expect("ProtectSystem", "strict");
    unit.expect("ProtectHome", "yes");
    unit.expect("ProtectProc", "invisible");
    unit.expect("ProcSubset", "pid");
    for key in [
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "PrivateIPC",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectHostname",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictRealtime",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
    ] {
        unit.expect(key, "yes");
    }
    assert_eq!(
        unit.words("RestrictAddressFamilies"),
        set(&["AF_UNIX", "AF_INET", "AF_INET6"])
    );
    assert_eq!(
        unit.values("SystemCallFilter").first().copied(),
        Some("@system-service")
    );
    for key in ["Requires", "After"] {
        assert!(unit.words(key).contains(TOKEN_UNIT), "{key}=");
    }
}

/// Runs the token unit's script against a scratch directory standing in for /run/secretsfs.
fn run_token_script(dir: &Path) -> Output {
    let unit = Unit::load(TOKEN_UNIT);
    let exec = unit.one("ExecStart");
    let script = exec
        .strip_prefix("/bin/sh -euc '")
        .and_then(|s| s.strip_suffix('\''))
        .unwrap_or_else(|| panic!("ExecStart=/bin/sh -euc '...' expected: {exec}"));
    assert!(!script.contains('\''), "one single-quoted script: {script}");
    assert!(
        !script.contains('%'),
        "% would be a systemd specifier: {script}"
    );
    // What systemd hands the shell: $$ is a literal $.
    let script = script
        .replace("$$", "$")
        .replace(TOKEN_DIR, dir.to_str().unwrap());
    Command::new("/bin/sh")
        .args(["-euc", &script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

#[test]
fn the_token_unit_makes_a_random_token_once() {
    let unit = Unit::load(TOKEN_UNIT);
    unit.expect("Type", "oneshot");
    unit.expect("RemainAfterExit", "yes");
    unit.expect("Group", "secretsfs-token");
    unit.expect("RuntimeDirectory", "secretsfs");
    unit.expect("RuntimeDirectoryMode", "0750");
    unit.expect("RuntimeDirectoryPreserve", "yes");
    unit.expect("CapabilityBoundingSet", "");
    assert!(
        TOKEN_ENV.ends_with(&format!("{TOKEN_DIR}/token")),
        "the services read the file this unit writes"
    );

    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    let out = run_token_script(dir.path());
    assert!(out.status.success(), "{out:?}");
    let token = std::fs::read_to_string(&token_path).unwrap();
    let mode = std::fs::metadata(&token_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o640, "token mode {mode:o}");
    let token = token.trim_end();
    assert_eq!(token.len(), 44, "32 bytes in base64: {}", token.len());
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)),
        "base64"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temporary file left behind");

    // A second start keeps the token: clients holding it keep working.
    let out = run_token_script(dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&token_path).unwrap().trim_end(),
        token
    );

    // Another boot (an empty /run) makes another token.
    std::fs::remove_file(&token_path).unwrap();
    let out = run_token_script(dir.path());
    assert!(out.status.success(), "{out:?}");
    assert_ne!(
        std::fs::read_to_string(&token_path).unwrap().trim_end(),
        token
    );
}

#[test]
fn exposure_scores_do_not_rise() {
    for (unit, max) in MAX_EXPOSURE {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit);
        let out = systemd_analyze(&["security", "--offline=true", "--man=no"], &[path]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = format!(
            "{}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{unit}:\n{report}");
        let prefix = format!("Overall exposure level for {unit}: ");
        let level: f64 = stdout
            .lines()
            .find_map(|line| line.split_once(&prefix))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{unit}: no overall exposure level in:\n{report}"));
        assert!(
            level <= max,
            "{unit}: exposure {level} is above {max}, so it lost some of its sandbox:\n{report}"
        );
    }
}

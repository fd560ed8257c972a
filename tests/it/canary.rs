//! Canaries: high-entropy values seeded into a secrets file and into the fake Secrets Manager,
//! read through `get`, the mount and the HTTP API, error paths included, at the most verbose
//! log level (`--log-level trace`, `RUST_LOG=trace`); then every log those processes wrote
//! (stderr, `--log-file`, `--audit-log`, and the `/metrics` and error bodies over HTTP) is
//! searched for each canary raw, in base64 (standard and URL-safe, padded or not, and as it
//! sits inside the base64 of a longer payload), JSON-escaped, as Rust `Debug` of the bytes and
//! of the string, in hex and a few more forms. None may appear.
//!
//! Stdout of `get` and 200 bodies over HTTP carry values on purpose: they are checked for the
//! right bytes, never searched. A failure names the log, the canary by index and kind, and the
//! encoding; never the canary itself.
//!
//! Also: a secrets file broken in the ways people break them, with canaries where values go,
//! must not have them quoted by the parse errors `get` prints and the file source logs; and a
//! self-check that the search finds a canary written into a scratch log in every encoding.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::GeneralPurpose;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use futures::StreamExt as _;
use futures::future::join_all;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

use crate::support::cli::{self, DEADLINE, SECRETSFS};
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};
use crate::support::http::{Conn, Response, TOKEN_HEADER, public_tempdir};
use crate::support::mount::is_mounted;

// ---------------------------------------------------------------------------------------------
// The canaries of one run.

/// One canary: what it stands for (named in failures) and its bytes (never named).
struct Canary {
    kind: String,
    bytes: Vec<u8>,
}

const JSON_KEY: usize = 0;
const PLAIN: usize = 1;
const BINARY: usize = 2;
const ESCAPED: usize = 3;
const PREVIOUS: usize = 4;
const CURRENT: usize = 5;
const ROTATED_IN: usize = 6;
const SSRF_TOKEN: usize = 7;

/// Fresh canaries, indexed by the constants above.
fn main_canaries() -> Vec<Canary> {
    let text = |kind: &str, value: String| Canary {
        kind: kind.to_owned(),
        bytes: value.into_bytes(),
    };
    let canaries = vec![
        text("the password key of a JSON secret", random_alnum(32)),
        text("a plain string secret", random_alnum(32)),
        Canary {
            kind: "a binary secret (SecretBinary)".to_owned(),
            bytes: random_bytes(24),
        },
        text(
            "a string with a quote, a backslash and a newline inside",
            format!(
                "{}\"{}\\{}\n{}",
                random_alnum(12),
                random_alnum(12),
                random_alnum(12),
                random_alnum(12)
            ),
        ),
        text("an older version (AWSPREVIOUS)", random_alnum(32)),
        text(
            "the current version of the secret with an AWSPREVIOUS",
            random_alnum(32),
        ),
        text("the value a rotation brings in", random_alnum(32)),
        text("the HTTP API's SSRF token (AWS_TOKEN)", random_alnum(32)),
    ];
    assert_eq!(canaries.len(), SSRF_TOKEN + 1);
    canaries
}

fn text_of(canaries: &[Canary], i: usize) -> &str {
    std::str::from_utf8(&canaries[i].bytes).expect("a text canary")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("reading /dev/urandom");
    buf
}

/// `n` characters of `A-Z a-z 0-9`, uniformly (bytes of 248 and over are rejected).
fn random_alnum(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes(n) {
            if b < 248 && out.len() < n {
                out.push(char::from(ALPHABET[usize::from(b) % ALPHABET.len()]));
            }
        }
    }
    out
}

/// `n` decimal digits, the first not 0 (a valid JSON number).
fn random_digits(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes(n) {
            if b < 250 && out.len() < n {
                let digit = b % 10;
                if !(out.is_empty() && digit == 0) {
                    out.push(char::from(b'0' + digit));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Encodings and the search.

/// Needles shorter than this are not searched: even the shortest form of a canary is longer,
/// and a short needle could match by chance.
const MIN_NEEDLE: usize = 12;

/// Every form in which a careless log line could carry `value`, labelled.
fn encodings(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("raw bytes".to_owned(), value.to_vec())];
    if value.len() >= 32 {
        out.push(("raw, its first 16 bytes".to_owned(), value[..16].to_vec()));
        out.push((
            "raw, its last 16 bytes".to_owned(),
            value[value.len() - 16..].to_vec(),
        ));
    }
    let runs: Vec<&[u8]> = value
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|run| run.len() >= MIN_NEEDLE)
        .collect();
    if runs.len() > 1 {
        for (k, run) in runs.iter().enumerate() {
            out.push((format!("raw, its alphanumeric run #{k}"), run.to_vec()));
        }
    }
    let engines: [(&str, &GeneralPurpose, &GeneralPurpose); 2] = [
        ("standard base64", &STANDARD, &STANDARD_NO_PAD),
        ("URL-safe base64", &URL_SAFE, &URL_SAFE_NO_PAD),
    ];
    for (name, padded, unpadded) in engines {
        out.push((name.to_owned(), padded.encode(value).into_bytes()));
        out.push((
            format!("{name}, unpadded"),
            unpadded.encode(value).into_bytes(),
        ));
        // Inside the base64 of a longer payload the canary's bytes fall on any of three
        // alignments; for each, the groups that lie wholly within the canary are fixed.
        for offset in 0..3 {
            let tail = &value[offset..];
            let whole = tail.len() / 3 * 3;
            out.push((
                format!("{name} inside a longer payload (alignment {offset})"),
                unpadded.encode(&tail[..whole]).into_bytes(),
            ));
        }
    }
    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
    out.push(("hex".to_owned(), hex.clone().into_bytes()));
    out.push((
        "hex, upper case".to_owned(),
        hex.to_uppercase().into_bytes(),
    ));
    // `[12, 34, ..]` without the brackets, so that it is found inside a longer array too.
    let debug_bytes = format!("{value:?}");
    out.push(("Rust Debug of the bytes".to_owned(), inner(&debug_bytes)));
    let json_array = serde_json::to_string(value).unwrap();
    out.push(("a JSON array of the bytes".to_owned(), inner(&json_array)));
    match std::str::from_utf8(value) {
        Ok(text) => {
            let json = serde_json::to_string(text).unwrap();
            out.push(("JSON-escaped".to_owned(), inner(&json)));
            let debug = format!("{text:?}");
            out.push(("Rust Debug of the string".to_owned(), inner(&debug)));
        }
        Err(_) => {
            if let Cow::Owned(lossy) = String::from_utf8_lossy(value) {
                out.push(("lossy UTF-8".to_owned(), lossy.into_bytes()));
            }
        }
    }
    out.push((
        "Rust Debug of bytes::Bytes (b\"..\" escapes)".to_owned(),
        value.escape_ascii().to_string().into_bytes(),
    ));
    out.push((
        "percent-encoded".to_owned(),
        percent_encoding::percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into_bytes(),
    ));
    out
}

/// `text` without its first and last character (brackets or quotes).
fn inner(text: &str) -> Vec<u8> {
    text.as_bytes()[1..text.len() - 1].to_vec()
}

/// One form of one canary, as the search looks for it.
struct Needle {
    canary: usize,
    encoding: String,
    /// The bytes, one char per byte (see [`latin1`]).
    text: String,
}

/// Bytes as a string of one char per byte (U+0000..U+00FF): a byte string occurs in another
/// exactly when their images do, and `str::contains` (std's optimised two-way search) finds
/// it even in a debug build and in logs that are not UTF-8.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn needles(canaries: &[Canary]) -> Vec<Needle> {
    let mut out: Vec<Needle> = Vec::new();
    for (i, canary) in canaries.iter().enumerate() {
        for (encoding, bytes) in encodings(&canary.bytes) {
            if bytes.len() < MIN_NEEDLE {
                continue;
            }
            let text = latin1(&bytes);
            if !out.iter().any(|n| n.canary == i && n.text == text) {
                out.push(Needle {
                    canary: i,
                    encoding,
                    text,
                });
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
struct Hit {
    log: String,
    canary: usize,
    encoding: String,
}

fn search(logs: &[(String, Vec<u8>)], needles: &[Needle]) -> Vec<Hit> {
    let mut hits = Vec::new();
    for (log, bytes) in logs {
        let haystack = latin1(bytes);
        for n in needles {
            if haystack.contains(n.text.as_str()) {
                hits.push(Hit {
                    log: log.clone(),
                    canary: n.canary,
                    encoding: n.encoding.clone(),
                });
            }
        }
    }
    hits
}

/// `bytes` for a failure message, every canary form replaced by a placeholder.
fn redacted(bytes: &[u8], needles: &[Needle]) -> String {
    let mut text = latin1(bytes);
    let mut by_length: Vec<&Needle> = needles.iter().collect();
    by_length.sort_by_key(|n| std::cmp::Reverse(n.text.len()));
    for n in by_length {
        text = text.replace(
            n.text.as_str(),
            &format!("<canary #{} as {}>", n.canary, n.encoding),
        );
    }
    text
}

/// The logs of one test: captured outputs and files written by the processes.
#[derive(Default)]
struct Logs {
    captured: Vec<(String, Vec<u8>)>,
    files: Vec<(String, PathBuf)>,
}

impl Logs {
    fn capture(&mut self, label: impl Into<String>, bytes: &[u8]) {
        self.captured.push((label.into(), bytes.to_vec()));
    }

    fn file(&mut self, label: impl Into<String>, path: &Path) {
        self.files.push((label.into(), path.to_owned()));
    }

    /// Everything to search; every log file must have been written.
    fn load(&self) -> Vec<(String, Vec<u8>)> {
        let mut all = self.captured.clone();
        for (label, path) in &self.files {
            let bytes = std::fs::read(path)
                .unwrap_or_else(|e| panic!("{label} ({}) was not written: {e}", path.display()));
            all.push((format!("{label} ({})", path.display()), bytes));
        }
        all
    }

    /// Panics, naming log, canary and encoding, if any canary is in any log.
    fn assert_clean(&self, canaries: &[Canary], needles: &[Needle]) {
        let all = self.load();
        let searched: usize = all.iter().map(|(_, b)| b.len()).sum();
        assert!(searched > 0, "no log was written at all");
        // Shown with the test's output: what was searched, the larger logs by name.
        println!("searched {} logs, {searched} bytes", all.len());
        for (label, bytes) in all.iter().filter(|(_, b)| b.len() > 2000) {
            println!("  {label}: {} bytes", bytes.len());
        }
        let hits = search(&all, needles);
        if hits.is_empty() {
            return;
        }
        let lines: Vec<String> = hits
            .iter()
            .map(|h| {
                format!(
                    "  {}: canary #{} ({}) as {}",
                    h.log, h.canary, canaries[h.canary].kind, h.encoding
                )
            })
            .collect();
        panic!(
            "{} canary hit(s) in {} logs ({searched} bytes searched; the canaries are not \
             shown):\n{}",
            hits.len(),
            all.len(),
            lines.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The secrets: the same in the secrets file and in the fake Secrets Manager.

const V_JSON: &str = "c1000000-0000-4000-8000-000000000001";
const V_PLAIN: &str = "c1000000-0000-4000-8000-000000000002";
const V_BINARY: &str = "c1000000-0000-4000-8000-000000000003";
const V_ESCAPED: &str = "c1000000-0000-4000-8000-000000000004";
const V_ESCAPED_PLAIN: &str = "c1000000-0000-4000-8000-000000000005";
const V_PREVIOUS: &str = "c1000000-0000-4000-8000-000000000006";
const V_CURRENT: &str = "c1000000-0000-4000-8000-000000000007";
const V_ROTATED: &str = "c1000000-0000-4000-8000-000000000008";
const V_UNKNOWN: &str = "c1000000-0000-4000-8000-0000000000ff";

const NAMES: [&str; 6] = [
    "binary",
    "escaped",
    "escaped-plain",
    "json",
    "plain",
    "versions",
];

/// A policy that keeps `canary/**` from uid 65534 unless it is in group 4242.
const POLICY: &str = "[[policy]]\npath = \"canary/**\"\ngroup = 4242\nmode = \"0440\"\n";

struct FixtureVersion {
    id: &'static str,
    stages: &'static [&'static str],
    data: SecretData,
}

struct FixtureSecret {
    name: &'static str,
    versions: Vec<FixtureVersion>,
}

fn version(id: &'static str, stages: &'static [&'static str], data: SecretData) -> FixtureVersion {
    FixtureVersion { id, stages, data }
}

/// `{KEY: value, "username": "app"}`.
fn json_with(key: &str, value: &str) -> String {
    let mut object = serde_json::Map::new();
    object.insert("username".to_owned(), Value::from("app"));
    object.insert(key.to_owned(), Value::from(value));
    Value::Object(object).to_string()
}

fn fixture(c: &[Canary], rotated: bool) -> Vec<FixtureSecret> {
    let string = |i: usize| SecretData::String(text_of(c, i).to_owned());
    let plain = if rotated {
        vec![
            version(V_PLAIN, &["AWSPREVIOUS"], string(PLAIN)),
            version(V_ROTATED, &["AWSCURRENT"], string(ROTATED_IN)),
        ]
    } else {
        vec![version(V_PLAIN, &["AWSCURRENT"], string(PLAIN))]
    };
    vec![
        FixtureSecret {
            name: "canary/json",
            versions: vec![version(
                V_JSON,
                &["AWSCURRENT"],
                SecretData::String(json_with("password", text_of(c, JSON_KEY))),
            )],
        },
        FixtureSecret {
            name: "canary/plain",
            versions: plain,
        },
        FixtureSecret {
            name: "canary/binary",
            versions: vec![version(
                V_BINARY,
                &["AWSCURRENT"],
                SecretData::Binary(c[BINARY].bytes.clone()),
            )],
        },
        FixtureSecret {
            name: "canary/escaped",
            versions: vec![version(
                V_ESCAPED,
                &["AWSCURRENT"],
                SecretData::String(json_with("token", text_of(c, ESCAPED))),
            )],
        },
        FixtureSecret {
            name: "canary/escaped-plain",
            versions: vec![version(V_ESCAPED_PLAIN, &["AWSCURRENT"], string(ESCAPED))],
        },
        FixtureSecret {
            name: "canary/versions",
            versions: vec![
                version(
                    V_PREVIOUS,
                    &["AWSPREVIOUS"],
                    SecretData::String(json_with("password", text_of(c, PREVIOUS))),
                ),
                version(
                    V_CURRENT,
                    &["AWSCURRENT"],
                    SecretData::String(json_with("password", text_of(c, CURRENT))),
                ),
            ],
        },
    ]
}

/// The secrets file (README, "The file source") holding `secrets`.
fn file_json(secrets: &[FixtureSecret]) -> String {
    let secrets: Vec<Value> = secrets
        .iter()
        .map(|s| {
            let versions: Vec<Value> = s
                .versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut version = json!({
                        "VersionId": v.id,
                        "VersionStages": v.stages,
                        "CreatedDate": 1_780_000_000.0 + i as f64,
                    });
                    match &v.data {
                        SecretData::String(s) => version["SecretString"] = Value::from(s.as_str()),
                        SecretData::Binary(b) => {
                            version["SecretBinary"] = Value::from(STANDARD.encode(b))
                        }
                    }
                    version
                })
                .collect();
            json!({ "Name": s.name, "Versions": versions })
        })
        .collect();
    json!({ "Secrets": secrets }).to_string()
}

/// Replaces `path` at once (a new inode: the file source sees the change).
fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Selectors that read a value, and the bytes each must give.
fn reads(c: &[Canary]) -> Vec<(String, Vec<u8>)> {
    let bytes = |i: usize| c[i].bytes.clone();
    let json_of = |key: &str, i: usize| json_with(key, text_of(c, i)).into_bytes();
    vec![
        ("canary/json".to_owned(), json_of("password", JSON_KEY)),
        ("canary/json:password".to_owned(), bytes(JSON_KEY)),
        ("canary/plain".to_owned(), bytes(PLAIN)),
        ("canary/plain::AWSCURRENT".to_owned(), bytes(PLAIN)),
        ("canary/binary".to_owned(), bytes(BINARY)),
        ("canary/escaped".to_owned(), json_of("token", ESCAPED)),
        ("canary/escaped:token".to_owned(), bytes(ESCAPED)),
        ("canary/escaped-plain".to_owned(), bytes(ESCAPED)),
        ("canary/versions".to_owned(), json_of("password", CURRENT)),
        ("canary/versions:password".to_owned(), bytes(CURRENT)),
        (
            "canary/versions::AWSPREVIOUS".to_owned(),
            json_of("password", PREVIOUS),
        ),
        (
            "canary/versions:password:AWSPREVIOUS".to_owned(),
            bytes(PREVIOUS),
        ),
        (
            format!("canary/versions:::{V_PREVIOUS}"),
            json_of("password", PREVIOUS),
        ),
        (
            format!("canary/versions:password::{V_PREVIOUS}"),
            bytes(PREVIOUS),
        ),
    ]
}

/// Selectors (also valid file names) that must fail: missing keys, a key of a value that is
/// not a JSON object (plain, binary, with quotes), missing secrets, stages and versions, and
/// invalid selectors.
fn error_selectors() -> Vec<String> {
    let mut v: Vec<String> = [
        "canary/json:nokey",
        "canary/plain:password",
        "canary/binary:password",
        "canary/escaped-plain:token",
        "canary/escaped:token:AWSPENDING",
        "canary/missing",
        "canary/missing:password",
        "canary/versions::AWSPENDING",
        "canary/json:a:b:c:d",
        "canary/json:%ZZ",
    ]
    .map(str::to_owned)
    .to_vec();
    v.push(format!("canary/versions:::{V_UNKNOWN}"));
    v
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    Fake,
}

/// Where the secrets come from: a secrets file or the fake Secrets Manager, seeded alike.
enum Source {
    File {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Fake(FakeSecretsManager),
}

impl Source {
    fn new(kind: Kind, c: &[Canary]) -> Source {
        let secrets = fixture(c, false);
        match kind {
            Kind::File => {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("secrets.json");
                write_atomically(&path, file_json(&secrets).as_bytes());
                Source::File { path, _dir: dir }
            }
            Kind::Fake => {
                let fake = FakeSecretsManager::start();
                for s in &secrets {
                    for v in &s.versions {
                        fake.put_version(s.name, v.id, v.stages, v.data.clone());
                    }
                }
                Source::Fake(fake)
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Source::File { .. } => "file source",
            Source::Fake(_) => "fake Secrets Manager",
        }
    }

    /// The global flags for this source.
    fn args(&self) -> Vec<String> {
        match self {
            Source::File { path, .. } => {
                vec!["--source".into(), format!("file:{}", path.display())]
            }
            Source::Fake(fake) => {
                let mut args = cli::aws_args(&fake.endpoint_url());
                args.extend(["--timeout".into(), "5".into()]);
                args
            }
        }
    }

    fn fake(&self) -> Option<&FakeSecretsManager> {
        match self {
            Source::Fake(fake) => Some(fake),
            Source::File { .. } => None,
        }
    }

    fn arn(&self, name: &str) -> String {
        match self {
            Source::Fake(fake) => fake.arn(name),
            Source::File { .. } => {
                format!("arn:aws:secretsmanager:local:000000000000:secret:{name}")
            }
        }
    }

    /// Rotates `canary/plain`: the rotation canary becomes AWSCURRENT, the old value
    /// AWSPREVIOUS.
    fn rotate(&self, c: &[Canary]) {
        match self {
            Source::File { path, .. } => {
                write_atomically(path, file_json(&fixture(c, true)).as_bytes())
            }
            Source::Fake(fake) => {
                let string = |i| SecretData::String(text_of(c, i).to_owned());
                fake.put_version(
                    "canary/plain",
                    V_ROTATED,
                    &["AWSCURRENT"],
                    string(ROTATED_IN),
                );
                fake.put_version("canary/plain", V_PLAIN, &["AWSPREVIOUS"], string(PLAIN));
            }
        }
    }

    /// The secrets file cut off in the middle of the plain canary (file source only): the
    /// source must log that it is invalid and keep serving its last good contents.
    fn break_file(&self, c: &[Canary]) {
        if let Source::File { path, .. } = self {
            let text = file_json(&fixture(c, false));
            let at = text
                .find(text_of(c, PLAIN))
                .expect("the plain canary is in the file");
            write_atomically(path, &text.as_bytes()[..at + 16]);
        }
    }
}

/// Injected, one at a time, into the calls that fetch values.
const FAULTS: [Fault; 5] = [
    Fault::AccessDenied,
    Fault::Throttling,
    Fault::Internal,
    Fault::DropConnection,
    Fault::Decryption,
];

fn inject_everywhere(fake: &FakeSecretsManager, fault: Fault) {
    fake.inject(Op::GetSecretValue, fault, usize::MAX);
    fake.inject(Op::BatchGetSecretValue, fault, usize::MAX);
}

/// The TTL every suite runs with, and a wait that outlasts it.
const TTL: &str = "1";
const PAST_TTL: Duration = Duration::from_millis(1300);

/// Retries `check` every 200 ms until it holds or `limit` has passed.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn differs(what: &str, got: &[u8], want: &[u8]) -> Option<String> {
    (got != want).then(|| {
        format!(
            "{what}: {} bytes that differ from the expected {}",
            got.len(),
            want.len()
        )
    })
}

// ---------------------------------------------------------------------------------------------
// `secretsfs get`.

/// `secretsfs SOURCE --log-level trace get SELECTOR` twice, at once: logging to stderr, and
/// with `--log-file` and `--audit-log` (shared by all runs, appended).
async fn get_twice(source: &Source, selector: &str, log: &Path, audit: &Path) -> [Output; 2] {
    let mut to_stderr = source.args();
    to_stderr.extend(["--log-level".into(), "trace".into()]);
    let mut to_file = to_stderr.clone();
    to_file.extend([
        "--log-file".into(),
        log.display().to_string(),
        "--audit-log".into(),
        audit.display().to_string(),
    ]);
    for args in [&mut to_stderr, &mut to_file] {
        args.extend(["get".into(), selector.into()]);
    }
    let env = [("RUST_LOG", "trace")];
    let (to_stderr, to_file) = (cli::strs(&to_stderr), cli::strs(&to_file));
    let (a, b) = tokio::join!(
        cli::run_with_env(&to_stderr, &env),
        cli::run_with_env(&to_file, &env)
    );
    [a, b]
}

/// Records both runs' stderr as logs and checks their stdout against `want` (a value, or a
/// failure with nothing on stdout).
fn check_get(
    source: &Source,
    selector: &str,
    outs: &[Output; 2],
    want: Option<&[u8]>,
    logs: &mut Logs,
    failures: &mut Vec<String>,
) {
    for (out, how) in outs.iter().zip(["to stderr", "to --log-file"]) {
        let what = format!("`get {selector}` ({}, logging {how})", source.name());
        logs.capture(format!("stderr of {what}"), &out.stderr);
        match want {
            Some(value) => {
                if out.status.code() != Some(0) {
                    failures.push(format!("{what}: exit {:?}", out.status.code()));
                } else if let Some(f) = differs(&what, &out.stdout, value) {
                    failures.push(f);
                }
            }
            None => {
                if out.status.success() || !out.stdout.is_empty() {
                    failures.push(format!(
                        "{what}: exit {:?} with {} bytes on stdout, want a failure",
                        out.status.code(),
                        out.stdout.len()
                    ));
                }
            }
        }
    }
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_get() {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Logs::default();
    let mut failures = Vec::new();
    for kind in [Kind::File, Kind::Fake] {
        let source = Source::new(kind, &canaries);
        let log = dir.path().join(format!("get-{kind:?}.log"));
        let audit = dir.path().join(format!("get-{kind:?}-audit.jsonl"));
        logs.file(format!("--log-file of get ({})", source.name()), &log);
        logs.file(format!("--audit-log of get ({})", source.name()), &audit);

        let mut cases: Vec<(String, Option<Vec<u8>>)> = reads(&canaries)
            .into_iter()
            .map(|(selector, value)| (selector, Some(value)))
            .collect();
        cases.push((
            source.arn("canary/plain"),
            Some(canaries[PLAIN].bytes.clone()),
        ));
        cases.push((
            format!("{}:password", source.arn("canary/json")),
            Some(canaries[JSON_KEY].bytes.clone()),
        ));
        cases.extend(error_selectors().into_iter().map(|s| (s, None)));
        cases.push(("bad name!".to_owned(), None));
        // A few at a time: dozens of SDK clients starting at once on a small machine can miss
        // the call deadline.
        let runs: Vec<[Output; 2]> = futures::stream::iter(&cases)
            .map(|(selector, _)| get_twice(&source, selector, &log, &audit))
            .buffered(4)
            .collect()
            .await;
        for ((selector, want), outs) in cases.iter().zip(&runs) {
            check_get(
                &source,
                selector,
                outs,
                want.as_deref(),
                &mut logs,
                &mut failures,
            );
        }

        if let Some(fake) = source.fake() {
            for fault in FAULTS {
                fake.inject(Op::GetSecretValue, fault, usize::MAX);
                let selectors = ["canary/json:password", "canary/binary", "canary/escaped"];
                let runs = join_all(selectors.map(|s| get_twice(&source, s, &log, &audit))).await;
                fake.clear_faults();
                for (selector, outs) in selectors.iter().zip(&runs) {
                    let label = format!("{selector} under {fault:?}");
                    check_get(&source, &label, outs, None, &mut logs, &mut failures);
                }
            }
            let traced = runs
                .iter()
                .any(|[out, _]| String::from_utf8_lossy(&out.stderr).contains("TRACE"));
            assert!(traced, "--log-level trace logged no TRACE line to stderr");
        }
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The mount.

/// A background mount under a guard that stops its daemon by pid (SIGTERM, then SIGKILL) and
/// detaches the mountpoint, even when the test fails.
struct Mount {
    mnt: PathBuf,
    pid: Option<i32>,
}

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Mount {
    /// `secretsfs GLOBAL mount MNT MOUNT_ARGS`; returns once it exited 0, with its output.
    async fn start(
        global: &[String],
        mnt: &Path,
        log: &Path,
        mount_args: &[&str],
        env: &[(&str, &str)],
        needles: &[Needle],
    ) -> (Mount, Output) {
        let mut args = global.to_vec();
        args.extend([
            "mount".into(),
            mnt.display().to_string(),
            "--log-file".into(),
            log.display().to_string(),
        ]);
        args.extend(mount_args.iter().map(|a| (*a).to_owned()));
        let out = cli::run_with_env(&cli::strs(&args), env).await;
        let text = std::fs::read(log).unwrap_or_default();
        let mount = Mount {
            mnt: mnt.to_owned(),
            pid: logged(&text, " mounted mountpoint=", " pid="),
        };
        assert!(
            out.status.success() && mount.pid.is_some(),
            "mount: exit {:?}, stderr {}\nlog:\n{}",
            out.status.code(),
            redacted(&out.stderr, needles),
            redacted(&text, needles)
        );
        (mount, out)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.mnt.join(relative)
    }

    /// SIGTERM; true once the daemon is gone and the mount with it.
    fn stop(&mut self) -> bool {
        let Some(pid) = self.pid.take() else {
            return !is_mounted(&self.mnt);
        };
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while (alive(pid) || is_mounted(&self.mnt)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let stopped = !alive(pid) && !is_mounted(&self.mnt);
        if alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        stopped
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.stop();
        if is_mounted(&self.mnt) {
            let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// The value of `key` (up to whitespace) on the last log line containing `marker`.
fn logged<T: std::str::FromStr>(log: &[u8], marker: &str, key: &str) -> Option<T> {
    String::from_utf8_lossy(log)
        .lines()
        .rev()
        .filter(|l| l.contains(marker))
        .find_map(|l| l.split(key).nth(1)?.split_whitespace().next()?.parse().ok())
}

/// `setpriv` as uid/gid 65534, in `groups` (or none), running `program args`.
fn as_nobody(groups: &[u32], program: &str, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = std::process::Command::new("setpriv");
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

/// Every entry under `dir`, stat'ed as `ls -lR` would.
fn walk(dir: &Path, seen: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        *seen += 1;
        if let Ok(meta) = std::fs::symlink_metadata(entry.path())
            && meta.is_dir()
        {
            walk(&entry.path(), seen);
        }
    }
}

fn read_as_root(path: &Path) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}

async fn mount_suite(kind: Kind, kernel_cache: bool) {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let token = text_of(&canaries, SSRF_TOKEN).to_owned();
    let source = Source::new(kind, &canaries);
    let dir = public_tempdir();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::set_permissions(&mnt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("secretsfs.log");
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, POLICY).unwrap();

    let mut global = source.args();
    global.extend(
        [
            "--log-level",
            "trace",
            "--ttl",
            TTL,
            "--dir-mode",
            "0555",
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    if matches!(kind, Kind::File) && !kernel_cache {
        // Evictions (and their log lines) all along.
        global.extend(["--cache-size".to_owned(), "3".to_owned()]);
    }
    let mut mount_args = vec!["--http-port", "0"];
    if !kernel_cache {
        mount_args.push("--no-kernel-cache");
    }
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token.as_str())];
    let mut logs = Logs::default();
    logs.file("--log-file of the mount", &log);
    logs.file("--audit-log of the mount", &audit);
    let (mut mount, out) = Mount::start(&global, &mnt, &log, &mount_args, &env, &needles).await;
    logs.capture("stderr of `mount`", &out.stderr);
    logs.capture("stdout of `mount`", &out.stdout);
    let mut failures = Vec::new();

    // Every canary file and selector, as root.
    let read_all = |failures: &mut Vec<String>| {
        for (selector, want) in reads(&canaries) {
            match read_as_root(&mount.path(&selector)) {
                Ok(got) => failures.extend(differs(&selector, &got, &want)),
                Err(e) => failures.push(format!("reading {selector}: {e}")),
            }
        }
    };
    read_all(&mut failures);

    // Listings: the directory of canaries, and everything stat'ed as `ls -lR` does.
    let listed: BTreeSet<String> = std::fs::read_dir(mount.path("canary"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let expected: BTreeSet<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    if listed != expected {
        failures.push(format!("canary/ lists {listed:?}, want {expected:?}"));
    }
    let mut seen = 0;
    walk(&mount.mnt, &mut seen);
    if seen < NAMES.len() + 1 {
        failures.push(format!("walking the mount saw {seen} entries"));
    }

    // Error paths: missing keys, secrets, stages and versions, invalid selectors, a write.
    for selector in error_selectors() {
        if read_as_root(&mount.path(&selector)).is_ok() {
            failures.push(format!("reading {selector} succeeded, want an error"));
        }
    }
    if std::fs::OpenOptions::new()
        .write(true)
        .open(mount.path("canary/plain"))
        .is_ok()
    {
        failures.push("opening canary/plain for writing succeeded".to_owned());
    }

    // uid 65534: denied (EACCES), then allowed through group 4242. Names root looked up are
    // denied by the kernel from their cached attributes; fresh ones reach secretsfs, whose
    // policy check denies (and audits) them.
    for selector in [
        "canary/json",
        "canary/json:password",
        "canary/binary",
        "canary/json:username",
        "canary/binary::AWSCURRENT",
        "canary/escaped-plain::AWSCURRENT",
        "canary/versions:password:AWSCURRENT",
    ] {
        let out = as_nobody(&[], "cat", &[mount.path(selector).as_os_str()]);
        if out.status.success() {
            failures.push(format!("uid 65534 read {selector}, want EACCES"));
        }
    }
    as_nobody(&[], "ls", &["-lR".as_ref(), mount.mnt.as_os_str()]);
    let out = as_nobody(&[4242], "cat", &[mount.path("canary/plain").as_os_str()]);
    if out.status.success() {
        failures.extend(differs(
            "canary/plain as uid 65534 in group 4242",
            &out.stdout,
            &canaries[PLAIN].bytes,
        ));
    } else {
        failures.push(format!(
            "uid 65534 in group 4242 could not read canary/plain: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }

    // The mount's own HTTP API.
    let addr: Option<SocketAddr> = logged(
        &std::fs::read(&log).unwrap_or_default(),
        "HTTP API listening",
        "address=",
    );
    match addr {
        Some(addr) => {
            let mut bodies = Vec::new();
            http_canaries(&Front::Tcp(addr), &token, &canaries, &mut failures).await;
            http_errors(&Front::Tcp(addr), &token, &mut bodies, &mut failures).await;
            for (label, body) in bodies {
                logs.capture(format!("{label} (the mount's HTTP API)"), &body);
            }
        }
        None => failures.push("no 'HTTP API listening' line in the mount's log".to_owned()),
    }

    // Upstream faults (stale values, then errors), or a broken secrets file.
    if let Some(fake) = source.fake() {
        for fault in [
            Fault::Throttling,
            Fault::DropConnection,
            Fault::AccessDenied,
            Fault::Decryption,
        ] {
            inject_everywhere(fake, fault);
            tokio::time::sleep(PAST_TTL).await;
            for (selector, want) in reads(&canaries).into_iter().step_by(3) {
                if let Ok(got) = read_as_root(&mount.path(&selector)) {
                    let what = format!("{selector} under {fault:?}");
                    failures.extend(differs(&what, &got, &want));
                }
            }
            walk(&mount.mnt, &mut seen);
            fake.clear_faults();
        }
    } else {
        source.break_file(&canaries);
        tokio::time::sleep(PAST_TTL).await;
        match read_as_root(&mount.path("canary/plain")) {
            Ok(got) => failures.extend(differs(
                "canary/plain with the file broken",
                &got,
                &canaries[PLAIN].bytes,
            )),
            Err(e) => failures.push(format!("canary/plain with the file broken: {e}")),
        }
    }
    read_all(&mut failures);

    // A rotation: the new value within a few TTLs, the old one as AWSPREVIOUS.
    source.rotate(&canaries);
    let rotated = eventually(Duration::from_secs(8), || {
        read_as_root(&mount.path("canary/plain")).is_ok_and(|v| v == canaries[ROTATED_IN].bytes)
    })
    .await;
    if !rotated {
        failures.push("canary/plain never showed the rotated value".to_owned());
    }
    match read_as_root(&mount.path("canary/plain::AWSPREVIOUS")) {
        Ok(got) => failures.extend(differs(
            "canary/plain::AWSPREVIOUS",
            &got,
            &canaries[PLAIN].bytes,
        )),
        Err(e) => failures.push(format!("canary/plain::AWSPREVIOUS: {e}")),
    }

    if !mount.stop() {
        failures.push("the daemon did not stop and unmount on SIGTERM".to_owned());
    }
    let tally = audit_sanity(&audit, &mut failures);
    if !tally.keys().any(|k| k.starts_with("mount/denied/")) {
        failures.push("no denial by the mount in the audit log".to_owned());
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The audit log holds records, each a JSON line at the audit target. Returns the records
/// counted by `front/decision/served`.
fn audit_sanity(
    audit: &Path,
    failures: &mut Vec<String>,
) -> std::collections::BTreeMap<String, usize> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    if text.lines().count() == 0 {
        failures.push("the audit log is empty".to_owned());
    }
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for (n, line) in text.lines().enumerate() {
        match serde_json::from_str::<Value>(line) {
            Ok(record) if record["target"] == "secretsfs::audit" => {
                let fields = &record["fields"];
                let key = format!(
                    "{}/{}/{}",
                    fields["front"].as_str().unwrap_or("?"),
                    fields["decision"].as_str().unwrap_or("?"),
                    fields["served"].as_str().unwrap_or("?")
                );
                *tally.entry(key).or_default() += 1;
            }
            _ => failures.push(format!("audit line {n} is not a JSON audit record")),
        }
    }
    println!("audit records by front/decision/served: {tally:?}");
    tally
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_a_kernel_cached_mount_of_a_file() {
    mount_suite(Kind::File, true).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_an_uncached_mount_of_a_file() {
    mount_suite(Kind::File, false).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_a_kernel_cached_mount_of_secrets_manager() {
    mount_suite(Kind::Fake, true).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_an_uncached_mount_of_secrets_manager() {
    mount_suite(Kind::Fake, false).await;
}

// ---------------------------------------------------------------------------------------------
// The HTTP API.

/// Where requests go: TCP (with the token) or the Unix socket (as root, no token).
enum Front {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Front {
    async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut conn = match self {
            Front::Tcp(addr) => Conn::tcp(*addr).await,
            Front::Unix(path) => Conn::unix(path).await,
        };
        conn.send(method, target, headers)
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }
}

/// The value in a 200 answer: SecretString's bytes, or SecretBinary decoded.
fn value_of(r: &Response) -> Option<Vec<u8>> {
    if r.status != 200 {
        return None;
    }
    let json: Value = serde_json::from_slice(&r.body).ok()?;
    match (json["SecretString"].as_str(), json["SecretBinary"].as_str()) {
        (Some(s), _) => Some(s.as_bytes().to_vec()),
        (None, Some(b)) => STANDARD.decode(b).ok(),
        (None, None) => None,
    }
}

fn check_value(what: &str, r: &Response, want: &[u8], failures: &mut Vec<String>) {
    match value_of(r) {
        Some(got) => failures.extend(differs(what, &got, want)),
        None => failures.push(format!("{what}: status {}, want a value", r.status)),
    }
}

/// (secret id, extra query parameters, the value) of every canary the API serves.
fn http_cases(c: &[Canary]) -> Vec<(&'static str, String, Vec<u8>)> {
    let json_of = |key: &str, i: usize| json_with(key, text_of(c, i)).into_bytes();
    vec![
        ("canary/json", String::new(), json_of("password", JSON_KEY)),
        ("canary/plain", String::new(), c[PLAIN].bytes.clone()),
        ("canary/binary", String::new(), c[BINARY].bytes.clone()),
        ("canary/escaped", String::new(), json_of("token", ESCAPED)),
        (
            "canary/escaped-plain",
            String::new(),
            c[ESCAPED].bytes.clone(),
        ),
        (
            "canary/versions",
            String::new(),
            json_of("password", CURRENT),
        ),
        (
            "canary/versions",
            "versionStage=AWSPREVIOUS".to_owned(),
            json_of("password", PREVIOUS),
        ),
        (
            "canary/versions",
            format!("versionId={V_PREVIOUS}"),
            json_of("password", PREVIOUS),
        ),
        (
            "canary/json",
            "refreshNow=true".to_owned(),
            json_of("password", JSON_KEY),
        ),
        (
            "canary/binary",
            "refreshNow=1".to_owned(),
            c[BINARY].bytes.clone(),
        ),
    ]
}

fn query_route(id: &str, params: &str) -> String {
    if params.is_empty() {
        format!("/secretsmanager/get?secretId={id}")
    } else {
        format!("/secretsmanager/get?secretId={id}&{params}")
    }
}

fn path_route(id: &str, params: &str) -> String {
    if params.is_empty() {
        format!("/v1/{id}")
    } else {
        format!("/v1/{id}?{params}")
    }
}

/// Every canary through both routes.
async fn http_canaries(front: &Front, token: &str, c: &[Canary], failures: &mut Vec<String>) {
    let headers: &[(&str, &str)] = match front {
        Front::Tcp(_) => &[(TOKEN_HEADER, token)],
        Front::Unix(_) => &[],
    };
    for (id, params, want) in http_cases(c) {
        for target in [query_route(id, &params), path_route(id, &params)] {
            let r = front.send("GET", &target, headers).await;
            check_value(&format!("GET {target}"), &r, &want, failures);
        }
    }
}

/// A label, a method, a target and headers.
type Request<'a> = (&'a str, &'a str, String, Vec<(&'a str, &'a str)>);

/// Requests that must fail; their bodies are kept (as `(label, body)`), to be searched.
async fn http_errors(
    front: &Front,
    token: &str,
    bodies: &mut Vec<(String, Vec<u8>)>,
    failures: &mut Vec<String>,
) {
    let with_token: Vec<(&str, &str)> = match front {
        Front::Tcp(_) => vec![(TOKEN_HEADER, token)],
        Front::Unix(_) => vec![],
    };
    let mut forwarded = with_token.clone();
    forwarded.push(("X-Forwarded-For", "203.0.113.9"));
    let json = query_route("canary/json", "");
    // A wrong token one character off the real one (a stale or mistyped token).
    let last = if token.ends_with('x') { "y" } else { "x" };
    let near_miss = format!("{}{last}", &token[..token.len() - 1]);
    let cases: Vec<Request> = vec![
        (
            "a bad token",
            "GET",
            json.clone(),
            vec![(TOKEN_HEADER, near_miss.as_str())],
        ),
        ("no token", "GET", json.clone(), vec![]),
        (
            "a missing secret",
            "GET",
            query_route("canary/missing", ""),
            with_token.clone(),
        ),
        (
            "a missing secret, path route",
            "GET",
            path_route("canary/missing", ""),
            with_token.clone(),
        ),
        (
            "an unknown parameter",
            "GET",
            query_route("canary/json", "bogus=1"),
            with_token.clone(),
        ),
        (
            "no secretId",
            "GET",
            "/secretsmanager/get".to_owned(),
            with_token.clone(),
        ),
        (
            "a bad refreshNow",
            "GET",
            query_route("canary/json", "refreshNow=maybe"),
            with_token.clone(),
        ),
        (
            "an unknown stage",
            "GET",
            query_route("canary/versions", "versionStage=AWSPENDING"),
            with_token.clone(),
        ),
        (
            "an unknown version id",
            "GET",
            query_route("canary/versions", &format!("versionId={V_UNKNOWN}")),
            with_token.clone(),
        ),
        ("X-Forwarded-For", "GET", json.clone(), forwarded),
        ("POST", "POST", json.clone(), with_token.clone()),
        (
            "an unknown route",
            "GET",
            "/nope".to_owned(),
            with_token.clone(),
        ),
    ];
    for (label, method, target, headers) in cases {
        // The Unix socket asks for no token (the policy decides: root is allowed), and its
        // callers are local by construction.
        if matches!(front, Front::Unix(_))
            && (label.contains("token") || label.contains("Forwarded"))
        {
            continue;
        }
        let r = front.send(method, &target, &headers).await;
        if r.status == 200 {
            failures.push(format!("{label} ({method} {target}): 200, want an error"));
        }
        bodies.push((
            format!("body of the {} answer to {label}", r.status),
            r.body,
        ));
    }
}

/// `GET TARGET` over the Unix socket as uid 65534 in `groups`, through python3: the status
/// and the body.
fn get_as_nobody(socket: &Path, target: &str, groups: &[u32]) -> (u16, Vec<u8>) {
    const CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" % sys.argv[2]).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
sys.stdout.buffer.write(head.split(b" ")[1] + b"\n" + body)
"#;
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = as_nobody(
        groups,
        python,
        &[
            "-c".as_ref(),
            CLIENT.as_ref(),
            socket.as_os_str(),
            target.as_ref(),
        ],
    );
    assert!(
        out.status.success(),
        "the client as uid 65534 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let newline = out.stdout.iter().position(|&b| b == b'\n').unwrap();
    let status = std::str::from_utf8(&out.stdout[..newline])
        .unwrap()
        .parse()
        .unwrap();
    (status, out.stdout[newline + 1..].to_vec())
}

/// `secretsfs ... serve` under a guard that kills exactly this child.
struct Serve {
    child: Child,
    addr: SocketAddr,
    _stdout: BufReader<ChildStdout>,
}

impl Serve {
    async fn start(
        args: &[String],
        env: &[(&str, &str)],
        stderr: &Path,
        needles: &[Needle],
    ) -> Serve {
        let file = std::fs::File::create(stderr).unwrap();
        let mut child = cli::command(&cli::strs(args), env)
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {SECRETSFS}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, stdout.read_line(&mut line)).await;
        let addr = line
            .trim_end()
            .rsplit("http://")
            .next()
            .and_then(|a| a.parse().ok());
        match (read, addr) {
            (Ok(Ok(n)), Some(addr)) if n > 0 => Serve {
                child,
                addr,
                _stdout: stdout,
            },
            _ => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(STOP_TIMEOUT, child.wait()).await;
                panic!(
                    "serve did not say where it listens; stderr:\n{}",
                    redacted(&std::fs::read(stderr).unwrap_or_default(), needles)
                );
            }
        }
    }

    /// SIGTERM by pid; the exit code.
    async fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id()?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM).ok()?;
        let status = tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .ok()?
            .ok()?;
        status.code()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.start_kill();
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

async fn serve_suite(kind: Kind, log_to_file: bool) {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let token = text_of(&canaries, SSRF_TOKEN).to_owned();
    let source = Source::new(kind, &canaries);
    let dir = public_tempdir();
    let socket = dir.path().join("api.sock");
    let log = dir.path().join("serve.log");
    let stderr = dir.path().join("stderr.log");
    let audit = dir.path().join("audit.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, POLICY).unwrap();

    let mut args = source.args();
    args.extend(
        [
            "--log-level",
            "trace",
            "--ttl",
            TTL,
            "--config",
            config.to_str().unwrap(),
            "--audit-log",
            audit.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    if matches!(kind, Kind::File) {
        // Evictions (and their log lines) all along.
        args.extend(["--cache-size".to_owned(), "3".to_owned()]);
    }
    let mut logs = Logs::default();
    if log_to_file {
        args.extend(["--log-file".to_owned(), log.display().to_string()]);
        logs.file("--log-file of serve", &log);
    }
    args.extend(
        [
            "serve",
            "--http-port",
            "0",
            "--http-socket",
            socket.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    logs.file("stderr of serve", &stderr);
    logs.file("--audit-log of serve", &audit);
    // From a file (`file://PATH`, trimmed) in one variant, from the variable in the other.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let token_env = match kind {
        Kind::File => format!("file://{}", token_file.display()),
        Kind::Fake => token.clone(),
    };
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token_env.as_str())];
    let mut served = Serve::start(&args, &env, &stderr, &needles).await;
    let auth = [(TOKEN_HEADER, token.as_str())];
    let tcp = Front::Tcp(served.addr);
    let unix = Front::Unix(socket.clone());
    let mut failures = Vec::new();
    let mut bodies = Vec::new();

    http_canaries(&tcp, &token, &canaries, &mut failures).await;
    http_canaries(&unix, &token, &canaries, &mut failures).await;
    http_errors(&tcp, &token, &mut bodies, &mut failures).await;
    http_errors(&unix, &token, &mut bodies, &mut failures).await;

    // uid 65534 on the socket: denied by the policy, then allowed through group 4242.
    for target in [
        query_route("canary/json", ""),
        path_route("canary/binary", ""),
    ] {
        let (status, body) = get_as_nobody(&socket, &target, &[]);
        if status != 403 {
            failures.push(format!("{target} as uid 65534: {status}, want 403"));
        }
        bodies.push((format!("body of the {status} answer to uid 65534"), body));
    }
    let (status, body) = get_as_nobody(&socket, &path_route("canary/plain", ""), &[4242]);
    let allowed = Response {
        status,
        headers: Vec::new(),
        body,
    };
    check_value(
        "canary/plain as uid 65534 in group 4242",
        &allowed,
        &canaries[PLAIN].bytes,
        &mut failures,
    );

    // Upstream faults: a stale value while throttled, then each fault answered as an error.
    if let Some(fake) = source.fake() {
        inject_everywhere(fake, Fault::Throttling);
        tokio::time::sleep(PAST_TTL).await;
        let r = tcp
            .send("GET", &query_route("canary/plain", ""), &auth)
            .await;
        check_value(
            "canary/plain served stale",
            &r,
            &canaries[PLAIN].bytes,
            &mut failures,
        );
        fake.clear_faults();
        for fault in FAULTS {
            inject_everywhere(fake, fault);
            let targets = [
                query_route("canary/json", "refreshNow=true"),
                path_route("canary/binary", "refreshNow=true"),
                path_route("canary/escaped", "refreshNow=true"),
            ];
            let answers = join_all(targets.iter().map(|t| tcp.send("GET", t, &auth))).await;
            fake.clear_faults();
            for (target, r) in targets.iter().zip(answers) {
                if r.status == 200 {
                    failures.push(format!("{target} under {fault:?}: 200, want an error"));
                }
                bodies.push((
                    format!(
                        "body of the {} answer to {target} under {fault:?}",
                        r.status
                    ),
                    r.body,
                ));
            }
        }
    } else {
        source.break_file(&canaries);
        let r = tcp
            .send(
                "GET",
                &query_route("canary/plain", "refreshNow=true"),
                &auth,
            )
            .await;
        check_value(
            "canary/plain with the file broken",
            &r,
            &canaries[PLAIN].bytes,
            &mut failures,
        );
    }

    // A rotation: the new value within a few TTLs, the old one as AWSPREVIOUS.
    source.rotate(&canaries);
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let r = tcp
            .send("GET", &path_route("canary/plain", ""), &auth)
            .await;
        if value_of(&r).is_some_and(|v| v == canaries[ROTATED_IN].bytes) {
            break;
        }
        if Instant::now() > deadline {
            failures.push("canary/plain never showed the rotated value".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = unix
        .send(
            "GET",
            &path_route("canary/plain", "versionStage=AWSPREVIOUS"),
            &[],
        )
        .await;
    check_value(
        "canary/plain AWSPREVIOUS",
        &r,
        &canaries[PLAIN].bytes,
        &mut failures,
    );

    let metrics = tcp.send("GET", "/metrics", &[]).await;
    if metrics.status != 200 {
        failures.push(format!("/metrics: {}", metrics.status));
    }
    logs.capture("the /metrics body", &metrics.body);
    for (label, body) in bodies {
        logs.capture(label, &body);
    }

    let code = served.stop().await;
    if code != Some(0) {
        failures.push(format!("serve exited {code:?} on SIGTERM, want 0"));
    }
    let tally = audit_sanity(&audit, &mut failures);
    if !tally.keys().any(|k| k.starts_with("http-socket/denied/")) {
        failures.push("no denial on the Unix socket in the audit log".to_owned());
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn canaries_stay_out_of_the_logs_of_serve_from_secrets_manager() {
    serve_suite(Kind::Fake, false).await;
}

#[tokio::test]
async fn canaries_stay_out_of_the_log_file_of_serve_from_a_file() {
    serve_suite(Kind::File, true).await;
}

// ---------------------------------------------------------------------------------------------
// A malformed secrets file: its parse errors must not quote the values in it.

#[tokio::test]
async fn canaries_in_a_malformed_secrets_file_stay_out_of_the_logs() {
    let version = |payload: &str| {
        format!(
            r#"{{"Secrets":[{{"Name":"canary/bad","Versions":[{{"VersionId":"{V_JSON}","VersionStages":["AWSCURRENT"],{payload}}}]}}]}}"#
        )
    };
    let mut canaries = Vec::new();
    let mut files = Vec::new();
    let mut variant = |kind: &str, value: String, file: String| {
        canaries.push(Canary {
            kind: format!("in a secrets file with {kind}"),
            bytes: value.into_bytes(),
        });
        files.push(file);
    };
    let digits = random_digits(18);
    variant(
        "a SecretString that is a JSON number",
        digits.clone(),
        version(&format!(r#""SecretString":{digits}"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretString that is a JSON object",
        c.clone(),
        version(&format!(r#""SecretString":{{"password":"{c}"}}"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretString that is a JSON array",
        c.clone(),
        version(&format!(r#""SecretString":["{c}"]"#)),
    );
    let c = random_alnum(32);
    variant(
        "a SecretBinary that is not base64",
        c.clone(),
        version(&format!(r#""SecretBinary":"{c}*""#)),
    );
    let c = random_alnum(32);
    variant(
        "a raw newline inside a SecretString (a pasted PEM key)",
        c.clone(),
        version(&format!("\"SecretString\":\"{c}\n{c}\"")),
    );
    let c = random_alnum(32);
    variant(
        "both SecretString and SecretBinary",
        c.clone(),
        version(&format!(r#""SecretString":"{c}","SecretBinary":"AAEC""#)),
    );
    let c = random_alnum(32);
    variant(
        "a misspelt SecretString field",
        c.clone(),
        version(&format!(r#""SecretStrng":"{c}""#)),
    );
    let c = random_alnum(32);
    variant(
        "SecretString given twice",
        c.clone(),
        version(&format!(r#""SecretString":"ok","SecretString":"{c}""#)),
    );
    let c = random_alnum(32);
    let truncated = version(&format!(r#""SecretString":"{c}""#));
    variant(
        "its end cut off inside a SecretString",
        c.clone(),
        truncated[..truncated.find(&c).unwrap() + 20].to_owned(),
    );
    let needles = needles(&canaries);
    let dir = public_tempdir();
    let mut logs = Logs::default();
    let mut failures = Vec::new();

    // `get` refuses each file, on stderr or in its --log-file.
    let log = dir.path().join("get.log");
    let audit = dir.path().join("get-audit.jsonl");
    logs.file("--log-file of get", &log);
    logs.file("--audit-log of get", &audit);
    for (i, text) in files.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&path, text).unwrap();
        let source = Source::File {
            path,
            _dir: tempfile::tempdir().unwrap(),
        };
        let outs = get_twice(&source, "canary/bad", &log, &audit).await;
        let label = format!("canary/bad from the file of canary #{i}");
        check_get(&source, &label, &outs, None, &mut logs, &mut failures);
    }

    // `serve` keeps its last good contents when the file changes into each of them, and says
    // so in its log.
    let path = dir.path().join("secrets.json");
    let good = version(r#""SecretString":"fine""#);
    write_atomically(&path, good.as_bytes());
    let stderr = dir.path().join("serve-stderr.log");
    let serve_audit = dir.path().join("serve-audit.jsonl");
    logs.file("stderr of serve", &stderr);
    logs.file("--audit-log of serve", &serve_audit);
    let token = random_alnum(32);
    let args: Vec<String> = [
        "--source",
        &format!("file:{}", path.display()),
        "--log-level",
        "trace",
        "--audit-log",
        serve_audit.to_str().unwrap(),
        "serve",
        "--http-port",
        "0",
    ]
    .map(str::to_owned)
    .to_vec();
    let env = [("RUST_LOG", "trace"), ("AWS_TOKEN", token.as_str())];
    let mut served = Serve::start(&args, &env, &stderr, &needles).await;
    let auth = [(TOKEN_HEADER, token.as_str())];
    let tcp = Front::Tcp(served.addr);
    for (i, text) in files.iter().enumerate() {
        write_atomically(&path, text.as_bytes());
        let r = tcp
            .send("GET", &query_route("canary/bad", "refreshNow=true"), &auth)
            .await;
        check_value(
            &format!("canary/bad after the file of canary #{i}"),
            &r,
            b"fine",
            &mut failures,
        );
    }
    let code = served.stop().await;
    if code != Some(0) {
        failures.push(format!("serve exited {code:?} on SIGTERM, want 0"));
    }
    let warned = std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("invalid"))
        .count();
    if warned < files.len() {
        failures.push(format!(
            "serve logged {warned} invalid-file warnings for {} broken files",
            files.len()
        ));
    }
    logs.assert_clean(&canaries, &needles);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The search itself: it must find what it looks for.

/// A scratch log line carrying `payload` amid ordinary log text.
fn scratch_line(payload: &[u8]) -> Vec<u8> {
    let mut line = b"2026-06-01T09:30:00.000000Z TRACE secretsfs::scratch: value=".to_vec();
    line.extend_from_slice(payload);
    line.extend_from_slice(b" selector=canary/json\n");
    line
}

/// Forms made independently of [`encodings`]: how a canary would look inside the longer
/// things a log line could print (a response body, a struct, a buffer).
fn independent_leaks(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for prefix in ["", "x", "xy", "xyz"] {
        let mut payload = format!("{{\"{prefix}\":\"").into_bytes();
        payload.extend_from_slice(value);
        payload.extend_from_slice(b"\"}");
        out.push((
            format!("standard base64 of a body, {} byte prefix", payload.len()),
            STANDARD.encode(&payload).into_bytes(),
        ));
        out.push((
            format!("URL-safe base64 of a body, {} byte prefix", payload.len()),
            URL_SAFE_NO_PAD.encode(&payload).into_bytes(),
        ));
        out.push((
            "Rust Debug of a longer buffer".to_owned(),
            format!("{payload:?}").into_bytes(),
        ));
        out.push((
            "hex of a longer buffer".to_owned(),
            payload
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<String>()
                .into_bytes(),
        ));
        out.push((
            "a JSON array of a longer buffer".to_owned(),
            serde_json::to_vec(&payload).unwrap(),
        ));
        out.push((
            "b\"..\" escapes of a longer buffer".to_owned(),
            format!("b\"{}\"", payload.escape_ascii()).into_bytes(),
        ));
        out.push((
            "lossy UTF-8 of a longer buffer".to_owned(),
            String::from_utf8_lossy(&payload).into_owned().into_bytes(),
        ));
    }
    if let Ok(text) = std::str::from_utf8(value) {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Leaky<'a> {
            value: &'a str,
        }
        out.push((
            "a JSON body".to_owned(),
            json!({ "SecretString": text }).to_string().into_bytes(),
        ));
        out.push((
            "a JSON body inside a JSON log line".to_owned(),
            json!({ "fields": { "body": json!({ "SecretString": text }).to_string() } })
                .to_string()
                .into_bytes(),
        ));
        out.push((
            "Rust Debug of a struct".to_owned(),
            format!("{:?}", Leaky { value: text }).into_bytes(),
        ));
        out.push((
            "a query string".to_owned(),
            format!(
                "a=b&c={}",
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC)
            )
            .into_bytes(),
        ));
    }
    out
}

#[test]
fn the_search_finds_every_canary_in_every_encoding() {
    let canaries = main_canaries();
    let needles = needles(&canaries);
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("scratch.log");
    let mut missed = Vec::new();
    for (i, canary) in canaries.iter().enumerate() {
        let mut forms = encodings(&canary.bytes);
        forms.extend(independent_leaks(&canary.bytes));
        for (encoding, bytes) in forms {
            if bytes.len() < MIN_NEEDLE {
                continue;
            }
            std::fs::write(&scratch, scratch_line(&bytes)).unwrap();
            let mut logs = Logs::default();
            logs.file("scratch", &scratch);
            let hits = search(&logs.load(), &needles);
            if !hits.iter().any(|h| h.canary == i) {
                missed.push(format!("canary #{i} as {encoding}"));
            }
            if hits.iter().any(|h| h.canary != i) {
                missed.push(format!("canary #{i} as {encoding} was taken for another"));
            }
        }
        // Every canary has its distinct forms among the needles, each found by its name.
        for encoding in [
            "raw bytes",
            "standard base64",
            "hex",
            "Rust Debug of the bytes",
        ] {
            let needle = needles
                .iter()
                .find(|n| n.canary == i && n.encoding == encoding);
            match needle {
                Some(n) => {
                    let log = vec![("scratch".to_owned(), scratch_line(&latin1_bytes(&n.text)))];
                    let hit = Hit {
                        log: "scratch".to_owned(),
                        canary: i,
                        encoding: encoding.to_owned(),
                    };
                    if !search(&log, &needles).contains(&hit) {
                        missed.push(format!("canary #{i} as {encoding}, by name"));
                    }
                }
                None => missed.push(format!("canary #{i} has no {encoding} needle")),
            }
        }
    }
    // The escaping canary: its JSON escape and Debug differ from its raw form, and each is
    // among the needles (under whichever name came first, when two forms are the same).
    let text = text_of(&canaries, ESCAPED);
    let json = serde_json::to_string(text).unwrap();
    let debug = format!("{text:?}");
    for (form, bytes) in [
        ("JSON-escaped", &json[1..json.len() - 1]),
        ("Rust Debug of the string", &debug[1..debug.len() - 1]),
        ("an alphanumeric run", &text[text.len() - 12..]),
    ] {
        assert_ne!(bytes, text);
        if !needles
            .iter()
            .any(|n| n.canary == ESCAPED && n.text == latin1(bytes.as_bytes()))
        {
            missed.push(format!("the escaping canary has no {form} needle"));
        }
    }
    assert!(
        missed.is_empty(),
        "the search missed:\n{}",
        missed.join("\n")
    );

    // Another run's canaries, in every form, are not taken for these.
    let mut clean = Vec::new();
    for other in main_canaries() {
        for (_, bytes) in encodings(&other.bytes) {
            clean.extend(scratch_line(&bytes));
        }
    }
    let hits = search(&[("clean".to_owned(), clean)], &needles);
    assert!(hits.is_empty(), "false positives: {hits:?}");

    // A hit fails the check, and the failure names the log, the canary and the encoding but
    // shows no canary.
    std::fs::write(
        &scratch,
        scratch_line(&STANDARD.encode(&canaries[BINARY].bytes).into_bytes()),
    )
    .unwrap();
    let mut logs = Logs::default();
    logs.file("scratch", &scratch);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        logs.assert_clean(&canaries, &needles)
    }));
    let payload = outcome.expect_err("a canary in a log must fail the check");
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("scratch") && message.contains("canary #2") && message.contains("base64"),
        "the failure names log, canary and encoding: {message}"
    );
    let shown = search(&[("message".to_owned(), message.into_bytes())], &needles);
    assert!(
        shown.is_empty(),
        "the failure message shows a canary: {shown:?}"
    );
}

/// The inverse of [`latin1`].
fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u8).collect()
}

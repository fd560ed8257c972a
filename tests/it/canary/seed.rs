//! The canaries of one run, and the secrets that carry them: the same in a secrets file and
//! in the fake Secrets Manager, with the selectors that must read them and those that must
//! fail.

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::cli;
use crate::support::fake_sm::{FakeSecretsManager, Fault, Op, SecretData};

/// One canary: what it stands for (named in failures) and its bytes (never named).
pub(super) struct Canary {
    pub(super) kind: String,
    pub(super) bytes: Vec<u8>,
}

pub(super) const JSON_KEY: usize = 0;
pub(super) const PLAIN: usize = 1;
pub(super) const BINARY: usize = 2;
pub(super) const ESCAPED: usize = 3;
pub(super) const PREVIOUS: usize = 4;
pub(super) const CURRENT: usize = 5;
pub(super) const ROTATED_IN: usize = 6;
pub(super) const SSRF_TOKEN: usize = 7;

/// Fresh canaries, indexed by the constants above.
pub(super) fn main_canaries() -> Vec<Canary> {
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

pub(super) fn text_of(canaries: &[Canary], i: usize) -> &str {
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
pub(super) fn random_alnum(n: usize) -> String {
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
pub(super) fn random_digits(n: usize) -> String {
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
// The secrets: the same in the secrets file and in the fake Secrets Manager.

pub(super) const V_JSON: &str = "c1000000-0000-4000-8000-000000000001";
const V_PLAIN: &str = "c1000000-0000-4000-8000-000000000002";
const V_BINARY: &str = "c1000000-0000-4000-8000-000000000003";
const V_ESCAPED: &str = "c1000000-0000-4000-8000-000000000004";
const V_ESCAPED_PLAIN: &str = "c1000000-0000-4000-8000-000000000005";
pub(super) const V_PREVIOUS: &str = "c1000000-0000-4000-8000-000000000006";
const V_CURRENT: &str = "c1000000-0000-4000-8000-000000000007";
const V_ROTATED: &str = "c1000000-0000-4000-8000-000000000008";
pub(super) const V_UNKNOWN: &str = "c1000000-0000-4000-8000-0000000000ff";

pub(super) const NAMES: [&str; 6] = [
    "binary",
    "escaped",
    "escaped-plain",
    "json",
    "plain",
    "versions",
];

/// A policy that keeps `canary/**` from uid 65534 unless it is in group 4242.
pub(super) const POLICY: &str = "[[policy]]\npath = \"canary/**\"\ngroup = 4242\nmode = \"0440\"\n";

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
pub(super) fn json_with(key: &str, value: &str) -> String {
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

/// The secrets file (docs/sources.md, "The `file` source") holding `secrets`.
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
pub(super) fn write_atomically(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Selectors that read a value, and the bytes each must give.
pub(super) fn reads(c: &[Canary]) -> Vec<(String, Vec<u8>)> {
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
pub(super) fn error_selectors() -> Vec<String> {
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
pub(super) enum Kind {
    File,
    Fake,
}

/// Where the secrets come from: a secrets file or the fake Secrets Manager, seeded alike.
pub(super) enum Source {
    File {
        path: PathBuf,
        _dir: tempfile::TempDir,
    },
    Fake(FakeSecretsManager),
}

impl Source {
    pub(super) fn new(kind: Kind, c: &[Canary]) -> Source {
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

    pub(super) fn name(&self) -> &'static str {
        match self {
            Source::File { .. } => "file source",
            Source::Fake(_) => "fake Secrets Manager",
        }
    }

    /// The global flags for this source.
    pub(super) fn args(&self) -> Vec<String> {
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

    pub(super) fn fake(&self) -> Option<&FakeSecretsManager> {
        match self {
            Source::Fake(fake) => Some(fake),
            Source::File { .. } => None,
        }
    }

    pub(super) fn arn(&self, name: &str) -> String {
        match self {
            Source::Fake(fake) => fake.arn(name),
            Source::File { .. } => {
                format!("arn:aws:secretsmanager:local:000000000000:secret:{name}")
            }
        }
    }

    /// Rotates `canary/plain`: the rotation canary becomes AWSCURRENT, the old value
    /// AWSPREVIOUS.
    pub(super) fn rotate(&self, c: &[Canary]) {
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
    pub(super) fn break_file(&self, c: &[Canary]) {
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
pub(super) const FAULTS: [Fault; 5] = [
    Fault::AccessDenied,
    Fault::Throttling,
    Fault::Internal,
    Fault::DropConnection,
    Fault::Decryption,
];

pub(super) fn inject_everywhere(fake: &FakeSecretsManager, fault: Fault) {
    fake.inject(Op::GetSecretValue, fault, usize::MAX);
    fake.inject(Op::BatchGetSecretValue, fault, usize::MAX);
}

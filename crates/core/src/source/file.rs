//! A source backed by a local JSON file, for laptops, CI, air-gapped hosts and the quickstart.
//!
//! The file is re-read when its size, mtime or inode changes (checked on each upstream call,
//! which the cache already makes rare). A file that fails to parse after a change is logged
//! and the previous contents keep being served: an editor's half-written save must not take
//! every secret away.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use aws_sdk_secretsmanager::primitives::{DateTime, DateTimeFormat};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::checked::MAX_VALUE_BYTES;
use super::{BatchItem, Payload, SecretDescription, SecretListing, SecretSource, SecretValue};
use crate::error::{Error, Result, one_line};
use crate::selector::{self, AWSCURRENT, VersionRef};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FileDoc {
    secrets: Vec<FileSecret>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FileSecret {
    name: String,
    #[serde(rename = "ARN")]
    arn: Option<String>,
    #[serde(default)]
    description: Option<String>,
    versions: Vec<FileVersion>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FileVersion {
    version_id: String,
    #[serde(default)]
    version_stages: Vec<String>,
    secret_string: Option<String>,
    secret_binary: Option<String>,
    created_date: Option<Timestamp>,
}

/// CreatedDate as the AWS CLI prints it (RFC 3339) or as the API sends it (epoch seconds).
#[derive(Deserialize)]
#[serde(untagged)]
enum Timestamp {
    Epoch(f64),
    Rfc3339(String),
}

struct Version {
    id: String,
    stages: Vec<String>,
    created: Option<SystemTime>,
    payload: Payload,
}

struct Secret {
    arn: String,
    name: String,
    versions: Vec<Version>,
}

impl Secret {
    fn find(&self, want: &VersionRef) -> Option<&Version> {
        let stage = match (&want.stage, &want.version_id) {
            (None, None) => Some(AWSCURRENT),
            (stage, _) => stage.as_deref(),
        };
        self.versions.iter().find(|v| {
            want.version_id.as_ref().is_none_or(|id| *id == v.id)
                && stage.is_none_or(|s| v.stages.iter().any(|t| t == s))
        })
    }

    fn last_changed(&self) -> Option<SystemTime> {
        self.versions.iter().filter_map(|v| v.created).max()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ino: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        Stamp {
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

struct Loaded {
    stamp: Stamp,
    secrets: Arc<BTreeMap<String, Secret>>,
}

pub struct FileSource {
    path: PathBuf,
    loaded: Mutex<Loaded>,
}

impl FileSource {
    /// Loads the file now, so that a missing or malformed file is a configuration error at
    /// start-up rather than a failure on the first read.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let (stamp, secrets) = load(&path)?;
        Ok(FileSource {
            path,
            loaded: Mutex::new(Loaded {
                stamp,
                secrets: Arc::new(secrets),
            }),
        })
    }

    fn secrets(&self) -> Arc<BTreeMap<String, Secret>> {
        let mut loaded = self.loaded.lock();
        let changed = match fs::metadata(&self.path) {
            Ok(meta) => Stamp::of(&meta) != loaded.stamp,
            Err(e) => {
                tracing::warn!(target: "secretsfs::source::file", path = %self.path.display(), error = %e,
                    "secrets file unreadable; serving its last contents");
                false
            }
        };
        if changed {
            match load(&self.path) {
                Ok((stamp, secrets)) => {
                    tracing::info!(target: "secretsfs::source::file", path = %self.path.display(), secrets = secrets.len(),
                        "secrets file changed; reloaded");
                    *loaded = Loaded {
                        stamp,
                        secrets: Arc::new(secrets),
                    };
                }
                Err(e) => {
                    tracing::warn!(target: "secretsfs::source::file", path = %self.path.display(), error = %e,
                    "secrets file changed but is invalid; serving its last good contents")
                }
            }
        }
        loaded.secrets.clone()
    }

    fn lookup<'a>(secrets: &'a BTreeMap<String, Secret>, id: &str) -> Result<&'a Secret> {
        secrets
            .get(id)
            .or_else(|| secrets.values().find(|s| s.arn == id))
            .ok_or_else(|| Error::not_found(format!("secret {id} not found")))
    }

    fn value_of(secret: &Secret, version: &Version) -> SecretValue {
        SecretValue {
            arn: secret.arn.clone(),
            name: secret.name.clone(),
            version_id: version.id.clone(),
            stages: version.stages.clone(),
            created: version.created,
            payload: match &version.payload {
                Payload::String(s) => Payload::String(Zeroizing::new(s.as_str().to_owned())),
                Payload::Binary(b) => Payload::Binary(Zeroizing::new(b.to_vec())),
            },
            answer: Default::default(),
        }
    }

    fn get_sync(&self, secret_id: &str, want: &VersionRef) -> Result<SecretValue> {
        let secrets = self.secrets();
        let secret = Self::lookup(&secrets, secret_id)?;
        let version = secret.find(want).ok_or_else(|| {
            Error::not_found(format!("secret {secret_id} has no version with {want}"))
        })?;
        Ok(Self::value_of(secret, version))
    }
}

fn load(path: &Path) -> Result<(Stamp, BTreeMap<String, Secret>)> {
    let bad = |why: String| Error::config(format!("secrets file {}: {why}", path.display()));
    let (text, meta) = crate::host_file::read(path, crate::host_file::SECRETS_FILE).map_err(bad)?;
    let secrets = parse(&text, meta.modified().ok()).map_err(bad)?;
    Ok((Stamp::of(&meta), secrets))
}

/// The file's secrets by name; `mtime` dates the versions without a CreatedDate.
fn parse(
    text: &[u8],
    mtime: Option<SystemTime>,
) -> std::result::Result<BTreeMap<String, Secret>, String> {
    let doc: FileDoc = serde_json::from_slice(text).map_err(|e| safe_json_error(&e))?;
    let mut secrets = BTreeMap::new();
    for raw in doc.secrets {
        let secret = convert(raw, mtime)?;
        if secrets.contains_key(&secret.name) {
            return Err(format!("secret {} appears twice", secret.name));
        }
        secrets.insert(secret.name.clone(), secret);
    }
    Ok(secrets)
}

/// What the file-source fuzz target drives: parses `text` as a secrets file and looks every
/// version of every secret up again by each of its stages and by its id, as GetSecretValue
/// would: each lookup with what it found. The error, when the file is refused, is the one its
/// log line and `check-config` would show.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn parse_and_read_back(
    text: &[u8],
) -> std::result::Result<Vec<(VersionRef, Option<SecretValue>)>, String> {
    let secrets = parse(text, None)?;
    let mut read = Vec::new();
    for secret in secrets.values() {
        for version in &secret.versions {
            let by_id = VersionRef {
                stage: None,
                version_id: Some(version.id.clone()),
            };
            for want in version
                .stages
                .iter()
                .map(|s| VersionRef::stage(s))
                .chain([by_id])
            {
                let found = secret.find(&want).map(|v| FileSource::value_of(secret, v));
                read.push((want, found));
            }
        }
    }
    Ok(read)
}

/// serde_json's message, unless it could quote a value: a type mismatch names the value it
fn safe_json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let names_only = [
        "unknown field",
        "missing field",
        "duplicate field",
        "EOF",
        "expected",
    ]
    .iter()
    .any(|start| message.starts_with(start));
    if names_only {
        // A field name is the file's text, and may hold a newline.
        one_line(&message).into_owned()
    } else {
        format!(
            "a value of the wrong type or shape at line {} column {} (not shown)",
            e.line(),
            e.column()
        )
    }
}

fn convert(raw: FileSecret, file_mtime: Option<SystemTime>) -> std::result::Result<Secret, String> {
    let name = raw.name;
    selector::validate_name(&name).map_err(|why| format!("secret {name:?}: {why}"))?;
    let _ = raw.description;
    let arn = raw
        .arn
        .unwrap_or_else(|| format!("arn:aws:secretsmanager:local:000000000000:secret:{name}"));
    let mut versions = Vec::with_capacity(raw.versions.len());
    let mut seen_stages = BTreeMap::new();
    for v in raw.versions {
        // Names are checked above; version ids and stages are any text, a newline included.
        let at = format!("secret {name}, version {}", one_line(&v.version_id));
        if versions.iter().any(|o: &Version| o.id == v.version_id) {
            return Err(format!("{at}: version id appears twice"));
        }
        for stage in &v.version_stages {
            selector::validate_stage(stage)
                .map_err(|why| format!("{at}: stage {stage:?}: {why}"))?;
            if let Some(other) = seen_stages.insert(stage.clone(), v.version_id.clone()) {
                return Err(format!(
                    "{at}: stage {} is also on version {}",
                    one_line(stage),
                    one_line(&other)
                ));
            }
        }
        let payload = match (v.secret_string, v.secret_binary) {
            (Some(s), None) => Payload::String(Zeroizing::new(s)),
            (None, Some(b64)) => {
                let b64 = Zeroizing::new(b64);
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| format!("{at}: SecretBinary is not valid base64"))?;
                Payload::Binary(Zeroizing::new(bytes))
            }
            _ => {
                return Err(format!(
                    "{at}: needs exactly one of SecretString and SecretBinary"
                ));
            }
        };
        if payload.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "{at}: the value is {} bytes, over the limit of {MAX_VALUE_BYTES} \
                 (Secrets Manager's own)",
                payload.len()
            ));
        }
        let created = match v.created_date {
            None => file_mtime,
            Some(Timestamp::Epoch(secs)) => {
                SystemTime::try_from(DateTime::from_secs_f64(secs)).ok()
            }
            Some(Timestamp::Rfc3339(text)) => Some(
                DateTime::from_str(&text, DateTimeFormat::DateTimeWithOffset)
                    .ok()
                    .and_then(|d| SystemTime::try_from(d).ok())
                    .ok_or_else(|| format!("{at}: CreatedDate {text:?} is not RFC 3339"))?,
            ),
        };
        versions.push(Version {
            id: v.version_id,
            stages: v.version_stages,
            created,
            payload,
        });
    }
    Ok(Secret {
        arn,
        name,
        versions,
    })
}

#[async_trait]
impl SecretSource for FileSource {
    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue> {
        self.get_sync(secret_id, version)
    }

    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription> {
        let secrets = self.secrets();
        let secret = Self::lookup(&secrets, secret_id)?;
        Ok(SecretDescription {
            arn: secret.arn.clone(),
            name: secret.name.clone(),
            versions: secret
                .versions
                .iter()
                .map(|v| (v.id.clone(), v.stages.clone()))
                .collect(),
            created: secret.versions.iter().filter_map(|v| v.created).min(),
            last_changed: secret.last_changed(),
        })
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>> {
        let secrets = self.secrets();
        Ok(secrets
            .values()
            .filter(|s| prefix.is_none_or(|p| s.name.starts_with(p)))
            .map(|s| SecretListing {
                arn: s.arn.clone(),
                name: s.name.clone(),
                last_changed: s.last_changed(),
            })
            .collect())
    }

    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>> {
        let current = VersionRef::current();
        Ok(secret_ids
            .iter()
            .map(|id| (id.clone(), self.get_sync(id, &current)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::io::Write;

    const DOC: &str = r#"{"Secrets": [
      {"Name": "prod/db", "Versions": [
        {"VersionId": "11111111-1111-1111-1111-111111111111", "VersionStages": ["AWSCURRENT"],
         "SecretString": "{\"user\":\"admin\"}", "CreatedDate": "2026-01-02T03:04:05Z"},
        {"VersionId": "22222222-2222-2222-2222-222222222222", "VersionStages": ["AWSPREVIOUS", "blue"],
         "SecretString": "old", "CreatedDate": 1700000000.5}]},
      {"Name": "bin", "Versions": [
        {"VersionId": "33333333-3333-3333-3333-333333333333", "VersionStages": ["AWSCURRENT"],
         "SecretBinary": "AAEC/w=="}]}
    ]}"#;

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("s.json");
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        path
    }

    fn stage(s: &str) -> VersionRef {
        VersionRef::stage(s)
    }

    #[tokio::test]
    async fn reads_stages_versions_and_binary() {
        let dir = tempfile::tempdir().unwrap();
        let src = FileSource::open(write(&dir, DOC)).unwrap();
        let cur = src
            .get_secret_value("prod/db", &VersionRef::current())
            .await
            .unwrap();
        assert_eq!(cur.payload.as_bytes(), br#"{"user":"admin"}"#);
        assert_eq!(
            cur.created,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1767323045))
        );
        let old = src
            .get_secret_value("prod/db", &stage("blue"))
            .await
            .unwrap();
        assert_eq!(old.payload.as_bytes(), b"old");
        assert_eq!(old.version_id, "22222222-2222-2222-2222-222222222222");
        let by_id = VersionRef {
            stage: None,
            version_id: Some("22222222-2222-2222-2222-222222222222".into()),
        };
        assert_eq!(
            src.get_secret_value("prod/db", &by_id)
                .await
                .unwrap()
                .payload
                .as_bytes(),
            b"old"
        );
        let bin = src
            .get_secret_value("bin", &VersionRef::current())
            .await
            .unwrap();
        assert_eq!(bin.payload.as_bytes(), &[0, 1, 2, 255]);
        let by_arn = src
            .get_secret_value(&cur.arn, &VersionRef::current())
            .await
            .unwrap();
        assert_eq!(by_arn.name, "prod/db");
    }

    #[tokio::test]
    async fn missing_things_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let src = FileSource::open(write(&dir, DOC)).unwrap();
        let e = src
            .get_secret_value("nope", &VersionRef::current())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = src
            .get_secret_value("prod/db", &stage("AWSPENDING"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let mismatch = VersionRef {
            stage: Some("AWSCURRENT".into()),
            version_id: Some("22222222-2222-2222-2222-222222222222".into()),
        };
        let e = src
            .get_secret_value("prod/db", &mismatch)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn describe_list_and_batch() {
        let dir = tempfile::tempdir().unwrap();
        let src = FileSource::open(write(&dir, DOC)).unwrap();
        let d = src.describe_secret("prod/db").await.unwrap();
        assert_eq!(
            d.stages().get("blue"),
            Some(&"22222222-2222-2222-2222-222222222222")
        );
        let all = src.list_secrets(None).await.unwrap();
        assert_eq!(
            all.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["bin", "prod/db"]
        );
        let prod = src.list_secrets(Some("prod/")).await.unwrap();
        assert_eq!(prod.len(), 1);
        let batch = src
            .batch_get_secret_value(&["bin".into(), "nope".into()])
            .await
            .unwrap();
        assert!(batch[0].1.is_ok());
        assert_eq!(batch[1].1.as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn reloads_on_change_and_keeps_last_good_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, DOC);
        let src = FileSource::open(&path).unwrap();
        let changed = DOC.replace("\"old\"", "\"older value\"");
        write(&dir, &changed);
        let v = src
            .get_secret_value("prod/db", &stage("AWSPREVIOUS"))
            .await
            .unwrap();
        assert_eq!(v.payload.as_bytes(), b"older value");
        write(&dir, "{ not json");
        let v = src
            .get_secret_value("prod/db", &stage("AWSPREVIOUS"))
            .await
            .unwrap();
        assert_eq!(v.payload.as_bytes(), b"older value");
        // Replaced by a FIFO: a re-read must neither block nor lose the contents.
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let v = src
            .get_secret_value("prod/db", &stage("AWSPREVIOUS"))
            .await
            .unwrap();
        assert_eq!(v.payload.as_bytes(), b"older value");
    }

    #[test]
    fn bad_files_are_config_errors_that_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!(
            r#"{{"Secrets": [{{"Name": "a", "Versions": [{{"VersionId": "v", "SecretString": "{}"}}]}}]}}"#,
            "s".repeat(MAX_VALUE_BYTES + 1)
        );
        let cases = [
            ("{", "EOF"),
            (
                r#"{"Secrets": [{"Name": "a", "Versions": [{"VersionId": "v", "SecretString": 8347293847}]}]}"#,
                "not shown",
            ),
            (
                r#"{"Secrets": [{"Name": "a b", "Versions": []}]}"#,
                "not allowed",
            ),
            (r#"{"Secrets": [], "Extra": 1}"#, "unknown field"),
            (
                r#"{"Secrets": [{"Name": "a", "Versions": [{"VersionId": "v", "SecretString": "x", "SecretBinary": "eA=="}]}]}"#,
                "exactly one",
            ),
            (
                r#"{"Secrets": [{"Name": "a", "Versions": [{"VersionId": "v", "SecretBinary": "!!"}]}]}"#,
                "base64",
            ),
            (
                r#"{"Secrets": [{"Name": "a", "Versions": [
                    {"VersionId": "v", "VersionStages": ["AWSCURRENT"], "SecretString": "x"},
                    {"VersionId": "w", "VersionStages": ["AWSCURRENT"], "SecretString": "y"}]}]}"#,
                "also on version",
            ),
            (
                r#"{"Secrets": [{"Name": "a", "Versions": [
                    {"VersionId": "v", "VersionStages": ["new\nline"], "SecretString": "x"}]}]}"#,
                "stage \"new\\nline\": a version stage may not contain control characters",
            ),
            (&big, "the value is 65537 bytes, over the limit of 65536"),
        ];
        for (text, needle) in cases {
            let e = FileSource::open(write(&dir, text)).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.message().contains(needle), "{needle}: {e}");
        }
        let e = FileSource::open(dir.path().join("missing.json"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    /// Found by the fuzzer (secrets_file target): serde_json names an unknown field as the file
    /// writes it, and a newline in it split the error over two lines.
    #[test]
    fn an_unknown_field_with_a_newline_is_named_on_one_line() {
        let why = parse(br#"{"\nSe\u0007": 1}"#, None).err().unwrap();
        assert_eq!(
            why,
            r"unknown field `\nSe\u{7}`, expected `Secrets` at line 1 column 13"
        );
    }

    /// Found by the fuzzer (secrets_file target): a version id is any text, and one with a
    /// newline split the error over two lines (a stage with one is refused on its own).
    #[test]
    fn a_version_id_with_a_newline_is_named_on_one_line() {
        let why = parse(
            br#"{"Secrets": [{"Name": "a", "Versions": [
                {"VersionId": "v\n1", "VersionStages": ["S"], "SecretString": "x"},
                {"VersionId": "v\n2", "VersionStages": ["S"], "SecretString": "y"}]}]}"#,
            None,
        )
        .err()
        .unwrap();
        assert_eq!(
            why,
            r"secret a, version v\n2: stage S is also on version v\n1"
        );
    }

    #[test]
    fn the_demo_file_loads() {
        let demo = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/demo-secrets.json"
        );
        let src = FileSource::open(demo).unwrap();
        let secrets = src.secrets();
        let kinds = |f: &dyn Fn(&Secret) -> bool| secrets.values().any(f);
        assert!(kinds(&|s| s.name.contains('/')), "a name with slashes");
        assert!(
            kinds(&|s| matches!(s.versions[0].payload, Payload::Binary(_))),
            "a binary one"
        );
        assert!(
            kinds(&|s| s
                .versions
                .iter()
                .any(|v| { matches!(&v.payload, Payload::String(t) if !t.starts_with('{')) })),
            "a plain string"
        );
        assert!(
            kinds(&|s| s
                .versions
                .iter()
                .any(|v| { v.stages.iter().any(|t| t == "AWSPREVIOUS") && v.stages.len() > 1 })),
            "AWSPREVIOUS and a custom label"
        );
    }
}

//! Where secrets come from: the [`SecretSource`] trait and its implementations.
//!
//! A source is a thin, uncached view of one Secrets Manager API surface: the four operations
//! secretsfs needs. Caching, coalescing and staleness live above it, in the cache, so that
//! every source gets them alike.

pub mod aws;
pub mod checked;
pub mod file;
#[cfg(any(test, feature = "memory-source"))]
pub mod memory;
mod response_limit;
mod sdk_error;
pub mod ssm;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::selector::VersionRef;

/// The value of one secret version, held in buffers that are zeroed when dropped.
pub enum Payload {
    String(Zeroizing<String>),
    Binary(Zeroizing<Vec<u8>>),
}

impl Payload {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Payload::String(s) => s.as_bytes(),
            Payload::Binary(b) => b,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Never prints the value: Debug output ends up in logs and panic messages.
impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::String(s) => write!(f, "String(<{} bytes redacted>)", s.len()),
            Payload::Binary(b) => write!(f, "Binary(<{} bytes redacted>)", b.len()),
        }
    }
}

/// What GetSecretValue answers.
#[derive(Debug)]
pub struct SecretValue {
    pub arn: String,
    pub name: String,
    pub version_id: String,
    pub stages: Vec<String>,
    pub created: Option<SystemTime>,
    pub payload: Payload,
    /// The HTTP API's answer for this version, rendered on its first request and shared by
    /// every later one; it goes (zeroed) with the value.
    pub answer: std::sync::OnceLock<bytes::Bytes>,
}

/// What DescribeSecret answers, reduced to what the front ends present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretDescription {
    pub arn: String,
    pub name: String,
    /// Version id -> the stage labels attached to it.
    pub versions: BTreeMap<String, Vec<String>>,
    pub created: Option<SystemTime>,
    pub last_changed: Option<SystemTime>,
}

impl SecretDescription {
    /// Stage label -> version id, the map the stages layout presents.
    pub fn stages(&self) -> BTreeMap<&str, &str> {
        self.versions
            .iter()
            .flat_map(|(id, stages)| stages.iter().map(move |s| (s.as_str(), id.as_str())))
            .collect()
    }
}

/// One entry of ListSecrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretListing {
    pub arn: String,
    pub name: String,
    pub last_changed: Option<SystemTime>,
}

impl SecretListing {
    /// An entry that says only the name (a configured list, tests).
    pub fn named(name: &str) -> SecretListing {
        SecretListing {
            arn: String::new(),
            name: name.to_owned(),
            last_changed: None,
        }
    }

    /// Entries that say only these names.
    pub fn all_named(names: &[&str]) -> Vec<SecretListing> {
        names.iter().map(|n| SecretListing::named(n)).collect()
    }
}

/// The per-secret outcome of a BatchGetSecretValue call: the id as asked, and its value or why
/// it could not be read.
pub type BatchItem = (String, Result<SecretValue>);

/// At most this many ids go into one BatchGetSecretValue call (the API's limit).
pub const BATCH_LIMIT: usize = 20;

/// The four Secrets Manager operations secretsfs uses.
#[async_trait]
pub trait SecretSource: Send + Sync + 'static {
    /// GetSecretValue by stage and/or version id.
    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue>;

    /// DescribeSecret: metadata and the version -> stages map, no value.
    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription>;

    /// ListSecrets, all pages, optionally only names that start with `prefix` (case-sensitive,
    /// although the API's own name filter is not).
    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>>;

    /// BatchGetSecretValue of the AWSCURRENT values of at most [`BATCH_LIMIT`] secrets. An id
    /// the batch could not read is answered with its own error, and an id the answer cannot be
    /// matched to is left out (the caller asks for it alone); the call fails as a whole only
    /// when the batch itself failed.
    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>>;

    /// At most this many ids go into one [`SecretSource::batch_get_secret_value`] call: the
    /// engine cuts its batches to it (GetParameters takes 10 names, BatchGetSecretValue 20).
    fn batch_limit(&self) -> usize {
        BATCH_LIMIT
    }

    /// The service's name of the call behind each of the engine's operations, for `/metrics`.
    fn operation_name(&self, op: crate::cache::Op) -> &'static str {
        op.name()
    }
}

/// How `--source` names a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Aws,
    /// Parameter Store: parameters by their hierarchical names (`/app/db` as `app/db`).
    Ssm,
    File(std::path::PathBuf),
}

impl std::str::FromStr for SourceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            _ if s == "aws" => Ok(SourceSpec::Aws),
            _ if s == "ssm" => Ok(SourceSpec::Ssm),
            Some(("file", path)) if !path.is_empty() => Ok(SourceSpec::File(path.into())),
            _ => Err(Error::config(format!(
                "invalid source {s:?}: expected 'aws', 'ssm' or 'file:PATH'"
            ))),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Aws => f.write_str("aws"),
            SourceSpec::Ssm => f.write_str("ssm"),
            SourceSpec::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

pub type DynSource = Arc<dyn SecretSource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_debug_redacts() {
        let p = Payload::String(Zeroizing::new("hunter2".into()));
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("7 bytes"));
    }

    #[test]
    fn source_spec_parses() {
        assert_eq!("aws".parse::<SourceSpec>().unwrap(), SourceSpec::Aws);
        assert_eq!(
            "file:/x/y.json".parse::<SourceSpec>().unwrap(),
            SourceSpec::File("/x/y.json".into())
        );
        assert_eq!("ssm".parse::<SourceSpec>().unwrap(), SourceSpec::Ssm);
        assert_eq!(SourceSpec::Ssm.to_string(), "ssm");
        assert!("file:".parse::<SourceSpec>().is_err());
        assert!("s3".parse::<SourceSpec>().is_err());
    }
}

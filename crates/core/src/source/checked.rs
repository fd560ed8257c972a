//! What every source's answers must satisfy before the engine takes them, checked once for all
//! sources (the engine wraps each in [`Checked`]):
//!
//! - A value is at most [`MAX_VALUE_BYTES`], the service's own limit: a bigger one (an endpoint
//!   that is not Secrets Manager, a proxy gone wrong) is refused as an answer that cannot be
//!   read, so it is never cached, charged to the budget or copied into the mount's inodes.
//! - Names in a listing and stage labels in a description must be presentable: a name with a
//!   `:` would be taken for a selector (`a:b` reads the key `b` of `a`), a NUL cannot be a file
//!   name, and a newline would split a log line or a `watch` line. The service allows none of
//!   them in names (letters, digits and `/_+=.@-` only); stage labels may hold anything but
//!   control characters. Such entries are skipped, the rest of the answer kept, with a line
//!   per name a minute.

use async_trait::async_trait;

use super::{BatchItem, DynSource, SecretDescription, SecretListing, SecretSource, SecretValue};
use crate::error::{Error, ErrorKind, Result, Upstream};
use crate::log_throttle::LogThrottle;
use crate::selector::{self, VersionRef};

/// The largest SecretString or SecretBinary Secrets Manager stores (64 KiB); Parameter Store's
/// advanced parameters hold 8 KiB, so the one bound covers both.
pub const MAX_VALUE_BYTES: usize = 64 << 10;

/// A source whose answers are checked (see the module's documentation).
pub struct Checked {
    inner: DynSource,
    skipped: LogThrottle,
}

impl Checked {
    pub fn wrap(inner: DynSource) -> DynSource {
        std::sync::Arc::new(Checked {
            inner,
            skipped: LogThrottle::default(),
        })
    }

    fn skip(&self, key: String, what: &str, why: &str) {
        if let Some(left_out) = self.skipped.due(&key) {
            tracing::warn!(target: "secretsfs::source::checked",
                entry = %key,
                why,
                left_out,
                "{what} from upstream cannot be presented; skipped"
            );
        }
    }
}

/// Refuses a value over [`MAX_VALUE_BYTES`]; the error names the secret and the size, never
/// the value, and is what an unreadable answer is: HTTP 500, exit 71, `EIO`.
fn bounded(what: &str, value: SecretValue) -> Result<SecretValue> {
    let size = value.payload.len();
    if size <= MAX_VALUE_BYTES {
        return Ok(value);
    }
    drop(value);
    Err(Error::upstream(
        ErrorKind::Internal,
        format!(
            "{what}: the value is {size} bytes, over the limit of {MAX_VALUE_BYTES} \
             (Secrets Manager's own); not used"
        ),
        Upstream {
            code: "InternalFailure".into(),
            status: None,
            message: None,
        },
    ))
}

#[async_trait]
impl SecretSource for Checked {
    async fn get_secret_value(&self, secret_id: &str, version: &VersionRef) -> Result<SecretValue> {
        let value = self.inner.get_secret_value(secret_id, version).await?;
        bounded(&format!("GetSecretValue {secret_id} ({version})"), value)
    }

    async fn describe_secret(&self, secret_id: &str) -> Result<SecretDescription> {
        let mut described = self.inner.describe_secret(secret_id).await?;
        for (id, labels) in &mut described.versions {
            labels.retain(|label| match selector::validate_stage(label) {
                Ok(()) => true,
                Err(why) => {
                    self.skip(
                        format!("{secret_id:?} version {id:?} stage {label:?}"),
                        "a stage label",
                        &why,
                    );
                    false
                }
            });
        }
        Ok(described)
    }

    async fn list_secrets(&self, prefix: Option<&str>) -> Result<Vec<SecretListing>> {
        let mut listing = self.inner.list_secrets(prefix).await?;
        listing.retain(|entry| match selector::validate_name_chars(&entry.name) {
            Ok(()) => true,
            Err(why) => {
                self.skip(format!("{:?}", entry.name), "a secret name", &why);
                false
            }
        });
        Ok(listing)
    }

    async fn batch_get_secret_value(&self, secret_ids: &[String]) -> Result<Vec<BatchItem>> {
        let items = self.inner.batch_get_secret_value(secret_ids).await?;
        Ok(items
            .into_iter()
            .map(|(id, value)| {
                let value = value.and_then(|v| bounded(&format!("BatchGetSecretValue {id}"), v));
                (id, value)
            })
            .collect())
    }

    fn batch_limit(&self) -> usize {
        self.inner.batch_limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::memory::MemorySource;

    #[tokio::test]
    async fn names_that_cannot_be_presented_are_skipped_and_the_rest_listed() {
        let memory = MemorySource::default();
        for name in ["ok/a", "a:b", "nul\0x", "new\nline", "tab\tx", "ok/b"] {
            memory.put(name, "v");
        }
        let checked = Checked::wrap(std::sync::Arc::new(memory));
        let mut names: Vec<String> = checked
            .list_secrets(None)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        assert_eq!(names, ["ok/a", "ok/b"]);
    }

    #[tokio::test]
    async fn stage_labels_with_control_characters_are_skipped() {
        let memory = std::sync::Arc::new(MemorySource::default());
        let id = memory.put("db", "v");
        memory.set_stage("db", "blue:green", &id);
        memory.set_stage("db", "bad\nlabel", &id);
        let checked = Checked::wrap(memory);
        let described = checked.describe_secret("db").await.unwrap();
        let stages: Vec<&str> = described.stages().into_keys().collect();
        assert_eq!(stages, ["AWSCURRENT", "blue:green"]);
    }

    #[tokio::test]
    async fn values_over_the_service_limit_are_refused_naming_secret_and_size() {
        let memory = std::sync::Arc::new(MemorySource::default());
        let big = "s".repeat(MAX_VALUE_BYTES + 1);
        memory.put("big", &big);
        memory.put_binary("edge", &vec![7; MAX_VALUE_BYTES]);
        let checked = Checked::wrap(memory);
        let current = VersionRef::current();
        let edge = checked.get_secret_value("edge", &current).await.unwrap();
        assert_eq!(
            edge.payload.len(),
            MAX_VALUE_BYTES,
            "the limit itself is fine"
        );
        let err = checked.get_secret_value("big", &current).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(
            err.message(),
            "GetSecretValue big (stage AWSCURRENT): the value is 65537 bytes, over the limit of \
             65536 (Secrets Manager's own); not used"
        );
        assert!(!err.to_string().contains("sss"));
        let items = checked
            .batch_get_secret_value(&["big".into(), "edge".into()])
            .await
            .unwrap();
        let outcome = |name: &str| &items.iter().find(|(id, _)| id == name).unwrap().1;
        assert!(outcome("edge").is_ok());
        let err = outcome("big").as_ref().unwrap_err();
        assert!(
            err.message()
                .starts_with("BatchGetSecretValue big: the value is 65537 bytes")
        );
    }
}

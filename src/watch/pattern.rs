//! What a hook or `secretsfs watch` watches: a selector whose name may be a glob
//! (`certs/*`, `*` stopping at `/` as in the policy and the secrets list).

use std::hash::Hasher;

use globset::{GlobBuilder, GlobMatcher};

use crate::error::{Error, Result};
use crate::extract;
use crate::selector::{Selector, VersionRef};
use crate::source::SecretValue;

#[derive(Debug, Clone)]
pub struct WatchPattern {
    /// As written, for logs and the hook's environment.
    pub text: String,
    name: Name,
    json_key: Option<String>,
    /// Stage and version id as written (none for AWSCURRENT by default).
    stage: Option<String>,
    version_id: Option<String>,
    version: VersionRef,
}

#[derive(Debug, Clone)]
enum Name {
    Exact(String),
    /// The glob, and the literal start of it that a listing can be asked for.
    Glob(GlobMatcher, String),
}

/// A name that passes the selector grammar, put in place of a glob to parse the other parts.
const PLACEHOLDER: &str = "placeholder";

impl WatchPattern {
    pub fn parse(text: &str) -> Result<Self> {
        let (name, rest) = match text.find(':') {
            Some(at) if !text.starts_with("arn:") => text.split_at(at),
            _ => (text, ""),
        };
        let is_glob = crate::secrets_list::is_glob(name);
        let selector = if is_glob {
            Selector::parse(&format!("{PLACEHOLDER}{rest}"))
        } else {
            Selector::parse(text)
        }
        .map_err(|e| Error::invalid_selector(format!("watch {text:?}: {}", e.message())))?;
        let name = if is_glob {
            let glob = GlobBuilder::new(name)
                .literal_separator(true)
                .build()
                .map_err(|e| {
                    Error::invalid_selector(format!("watch {text:?}: invalid glob: {e}"))
                })?;
            let literal = name
                .find(['*', '?', '[', '{'])
                .map_or(name, |at| &name[..at]);
            Name::Glob(glob.compile_matcher(), literal.to_owned())
        } else {
            Name::Exact(selector.secret_id.clone())
        };
        Ok(WatchPattern {
            text: text.to_owned(),
            name,
            version: selector.version_ref(),
            json_key: selector.json_key,
            stage: selector.version_stage,
            version_id: selector.version_id,
        })
    }

    /// The pattern of exactly `selector` (an environment variable's: no glob).
    pub fn of_selector(selector: &Selector) -> WatchPattern {
        let text = match &selector.json_key {
            Some(key) => format!("{}:{key}", selector.secret_id),
            None => selector.secret_id.clone(),
        };
        WatchPattern {
            text,
            name: Name::Exact(selector.secret_id.clone()),
            version: selector.version_ref(),
            json_key: selector.json_key.clone(),
            stage: selector.version_stage.clone(),
            version_id: selector.version_id.clone(),
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.name {
            Name::Exact(exact) => exact == name,
            Name::Glob(glob, _) => glob.is_match(name),
        }
    }

    /// The name watched, when it is not a glob.
    pub fn exact_name(&self) -> Option<&str> {
        match &self.name {
            Name::Exact(name) => Some(name),
            Name::Glob(..) => None,
        }
    }

    /// For a glob, the prefix a listing is asked for (possibly empty).
    pub fn listing_prefix(&self) -> Option<&str> {
        match &self.name {
            Name::Exact(_) => None,
            Name::Glob(_, prefix) => Some(prefix),
        }
    }

    pub fn version(&self) -> &VersionRef {
        &self.version
    }

    /// The selector this pattern makes of one secret it matches.
    pub fn selector_for(&self, name: &str) -> Selector {
        Selector {
            secret_id: name.to_owned(),
            json_key: self.json_key.clone(),
            version_stage: self.stage.clone(),
            version_id: self.version_id.clone(),
        }
    }

    /// What this pattern sees of one value: a whole secret is its version (and bytes, since the
    /// file source may edit a value under the same id); a JSON key is that key's value alone,
    /// so that a change of another key is not one of this pattern's.
    pub fn seen_in(&self, value: &SecretValue) -> Seen {
        match &self.json_key {
            None => Seen {
                version_id: Some(value.version_id.clone()),
                digest: digest(value.payload.as_bytes()),
            },
            Some(key) => Seen {
                version_id: None,
                digest: extract::json_key(&value.payload, key, &value.name)
                    .ok()
                    .and_then(|bytes| digest(&bytes)),
            },
        }
    }
}

/// What a pattern saw of a value last; never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    version_id: Option<String>,
    /// `None` for a JSON key the value does not have.
    digest: Option<(usize, u64)>,
}

fn digest(bytes: &[u8]) -> Option<(usize, u64)> {
    // SipHash with fixed keys: stable within the process, and nothing outside it sees it.
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    Some((bytes.len(), hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Payload;
    use zeroize::Zeroizing;

    fn value(version: &str, text: &str) -> SecretValue {
        SecretValue {
            arn: String::new(),
            name: "db".into(),
            version_id: version.into(),
            stages: vec!["AWSCURRENT".into()],
            created: None,
            payload: Payload::String(Zeroizing::new(text.into())),
            answer: Default::default(),
        }
    }

    #[test]
    fn names_globs_keys_and_stages_parse() {
        let exact = WatchPattern::parse("prod/db").unwrap();
        assert!(exact.matches("prod/db") && !exact.matches("prod/db2"));
        assert_eq!(exact.exact_name(), Some("prod/db"));
        assert!(exact.version().is_current());
        let glob = WatchPattern::parse("certs/*:pem").unwrap();
        assert!(glob.matches("certs/a") && !glob.matches("certs/a/b"));
        assert_eq!(glob.listing_prefix(), Some("certs/"));
        assert_eq!(glob.selector_for("certs/a").to_string(), "certs/a:pem");
        let stage = WatchPattern::parse("db::AWSPENDING").unwrap();
        assert_eq!(stage.version(), &VersionRef::stage("AWSPENDING"));
        for bad in ["", "db:::not-a-version-id", "certs/[", "a b"] {
            let err = WatchPattern::parse(bad).unwrap_err();
            assert!(err.message().starts_with("watch "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_key_pattern_sees_only_its_key() {
        let key = WatchPattern::parse("db:password").unwrap();
        let whole = WatchPattern::parse("db").unwrap();
        let v1 = value("v1", r#"{"password":"a","host":"h1"}"#);
        let v2 = value("v2", r#"{"password":"a","host":"h2"}"#);
        let v3 = value("v3", r#"{"password":"b","host":"h2"}"#);
        assert_eq!(key.seen_in(&v1), key.seen_in(&v2), "another key changed");
        assert_ne!(key.seen_in(&v2), key.seen_in(&v3));
        assert_ne!(whole.seen_in(&v1), whole.seen_in(&v2));
        let same_id_new_bytes = value("v1", r#"{"password":"z"}"#);
        assert_ne!(whole.seen_in(&v1), whole.seen_in(&same_id_new_bytes));
    }
}

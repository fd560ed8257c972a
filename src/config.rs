//! The configuration file (TOML): every flag as a key of the same name (`_` for `-`), the
//! access policy's `[[policy]]` rules, and the flat keys of an AWS Secrets Manager Agent v2
//! config, accepted as they are so that secretsfs can replace the agent with its config.
//!
//! Numbers may be quoted (`ttl = "300"`), as in the agent's documented examples; booleans may
//! be written as the agent's config library takes them (`true`, `"yes"`, `"off"`, 1, 0).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::policy::{Mode, RuleSpec};

/// Where the file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/secretsfs/config.toml";

/// A number, quoted or not.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Num {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A boolean the way the agent's config library reads one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Int(i64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub source: Option<String>,
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    pub timeout: Option<Num>,
    pub ttl: Option<Num>,
    pub ttl_jitter: Option<Num>,
    pub cache_size: Option<Num>,
    pub cache_bytes: Option<Num>,
    pub max_stale: Option<Num>,
    pub negative_ttl: Option<Num>,
    pub uid: Option<Num>,
    pub gid: Option<Num>,
    pub file_mode: Option<Mode>,
    pub dir_mode: Option<Mode>,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    pub mlock: Option<Flag>,
    pub validate_credentials: Option<Flag>,
    pub credentials_file_path: Option<PathBuf>,
    pub layout: Option<String>,
    pub prefix: Option<String>,
    pub no_kernel_cache: Option<Flag>,
    pub no_http: Option<Flag>,
    pub http_port: Option<Num>,
    pub http_listen: Option<String>,
    pub http_socket: Option<PathBuf>,
    pub http_socket_mode: Option<Mode>,
    pub max_conn: Option<Num>,
    pub path_prefix: Option<String>,
    pub ssrf_headers: Option<Vec<String>>,
    pub ssrf_env_variables: Option<Vec<String>>,
    pub http_header_timeout: Option<Num>,
    pub http_request_timeout: Option<Num>,
    /// The agent's name for `log_file`: true logs to [`AGENT_LOG_FILE`].
    pub log_to_file: Option<Flag>,
    /// The agent's name for `ttl`.
    pub ttl_seconds: Option<Num>,
    /// The agent's switch for stale-if-error: false is `max_stale = 0`.
    pub ignore_transient_errors: Option<Flag>,
    #[serde(default)]
    pub policy: Vec<RuleSpec>,
}

/// Where `log_to_file = true` sends the logs (the agent writes ./logs/; a daemon's working
/// directory is `/`, so a fixed path is the useful equivalent).
pub const AGENT_LOG_FILE: &str = "/var/log/secretsfs/secretsfs.log";

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| file_error(path, &e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_error(path, &one_line(&e.to_string())))
    }
}

pub fn file_error(path: &Path, why: &str) -> Error {
    Error::config(format!("config file {}: {why}", path.display()))
}

/// toml's messages quote the offending line over several lines; errors here are one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(|l| {
            l.trim_start_matches(|c: char| c.is_ascii_digit() || c == ' ' || c == '|')
                .trim()
        })
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^'))
        .collect::<Vec<_>>()
        .join(": ")
}

impl Num {
    /// The value as a whole number in `range`; `key` and `path` name it in errors.
    pub fn whole(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> std::result::Result<u64, String> {
        let parsed = match self {
            Num::Int(n) => u64::try_from(*n).ok(),
            Num::Float(f) if f.fract() == 0.0 && *f >= 0.0 => Some(*f as u64),
            Num::Float(_) => None,
            Num::Text(t) => t.trim_start_matches('+').parse::<u64>().ok(),
        };
        match parsed {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "key `{key}`: expected a whole number from {} to {}, got {}",
                range.start(),
                range.end(),
                self.shown()
            )),
        }
    }

    fn shown(&self) -> String {
        match self {
            Num::Int(n) => n.to_string(),
            Num::Float(f) => f.to_string(),
            Num::Text(t) => format!("{t:?}"),
        }
    }
}

impl Flag {
    pub fn value(&self, key: &str) -> std::result::Result<bool, String> {
        match self {
            Flag::Bool(b) => Ok(*b),
            Flag::Int(n) => Ok(*n != 0),
            Flag::Text(t) => match t.to_ascii_lowercase().as_str() {
                "1" | "true" | "on" | "yes" => Ok(true),
                "0" | "false" | "off" | "no" => Ok(false),
                _ => Err(format!("key `{key}`: expected true or false, got {t:?}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<ConfigFile> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile::load(&path)
    }

    #[test]
    fn policy_rules_and_numbers_quoted_or_not() {
        let file = load(
            "ttl = \"300\"\ncache_size = 10\n[[policy]]\npath = \"prod/**\"\nmode = \"0400\"\n",
        )
        .unwrap();
        assert_eq!(file.policy.len(), 1);
        assert_eq!(file.ttl.unwrap().whole("ttl", 0..=3600), Ok(300));
        assert_eq!(
            file.cache_size.unwrap().whole("cache_size", 1..=1000),
            Ok(10)
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors_naming_the_key() {
        let err = load("ttl_typo = 3\n").unwrap_err();
        assert!(err.message().contains("ttl_typo"), "{err}");
        assert!(!err.message().contains('\n'));
        let err = load("ttl = [1]\n").unwrap_err();
        assert!(
            err.message().contains("ttl") && !err.message().contains('\n'),
            "{err}"
        );
        assert!(load("").is_ok());
        assert_eq!(
            Num::Text("abc".into()).whole("ttl", 0..=10),
            Err("key `ttl`: expected a whole number from 0 to 10, got \"abc\"".into())
        );
        assert!(Num::Int(11).whole("ttl", 0..=10).is_err());
        assert_eq!(Flag::Text("Yes".into()).value("k"), Ok(true));
        assert!(Flag::Text("maybe".into()).value("k").is_err());
    }
}

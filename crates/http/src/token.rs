//! The SSRF token of the TCP listener, as the agent has it: the first set variable of a list
//! (`AWS_TOKEN`, `AWS_SESSION_TOKEN`, `AWS_CONTAINER_AUTHORIZATION_TOKEN`), where a
//! `file://PATH` value names a file holding the token.
//!
//! Two improvements on the agent: a token file is re-read when it changes (rotating the token
//! needs no restart), and the comparison takes the same time however much of a guess matches.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use parking_lot::Mutex;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use secretsfs_core::error::{Error, Result};
use secretsfs_core::log_throttle::LogThrottle;

pub const DEFAULT_ENV_VARIABLES: [&str; 3] = [
    "AWS_TOKEN",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];
pub const DEFAULT_HEADERS: [&str; 2] = ["X-Aws-Parameters-Secrets-Token", "X-Vault-Token"];

/// Where the token comes from.
/// What identifies one version of the token file: size, mtime (s, ns), inode.
type Stamp = (u64, i64, i64, u64);

#[derive(Debug)]
enum Origin {
    Value,
    File { path: PathBuf, stamp: Mutex<Stamp> },
}

#[derive(Debug)]
pub struct Token {
    /// Which variable set it, for logs (never the value).
    pub variable: String,
    origin: Origin,
    value: Mutex<Zeroizing<Vec<u8>>>,
    failures: LogThrottle,
}

impl Token {
    /// Reads the token from the first set variable of `variables`; `None` when none is set.
    pub fn from_env(variables: &[String]) -> Result<Option<Token>> {
        Self::from_lookup(variables, |name| std::env::var(name).ok())
    }

    pub fn from_lookup(
        variables: &[String],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Token>> {
        let Some((variable, raw)) = variables.iter().find_map(|v| {
            lookup(v)
                .filter(|s| !s.is_empty())
                .map(|s| (v.clone(), Zeroizing::new(s)))
        }) else {
            return Ok(None);
        };
        match raw.strip_prefix("file://") {
            Some(path) => {
                let path = PathBuf::from(path);
                let (value, stamp) = read_file(&path, &variable)?;
                Ok(Some(Token {
                    variable,
                    origin: Origin::File {
                        path,
                        stamp: Mutex::new(stamp),
                    },
                    value: Mutex::new(value),
                    failures: LogThrottle::default(),
                }))
            }
            None => Ok(Some(Token {
                variable,
                origin: Origin::Value,
                value: Mutex::new(Zeroizing::new(raw.as_bytes().to_vec())),
                failures: LogThrottle::default(),
            })),
        }
    }

    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        self.refresh();
        let value = self.value.lock();
        !value.is_empty() && bool::from(value.as_slice().ct_eq(presented))
    }

    fn refresh(&self) {
        let Origin::File { path, stamp } = &self.origin else {
            return;
        };
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let now = stamp_of(&meta);
        let mut stamp = stamp.lock();
        if *stamp == now {
            return;
        }
        match read_file(path, &self.variable) {
            Ok((value, new_stamp)) => {
                *self.value.lock() = value;
                *stamp = new_stamp;
                tracing::info!(target: "secretsfs::http::token", variable = %self.variable, "token file changed; re-read it");
            }
            // Every request would say it again until the file is fixed.
            Err(e) => {
                if let Some(left_out) = self.failures.due("") {
                    tracing::warn!(target: "secretsfs::http::token", error = %e, left_out,
                        "token file changed but cannot be read; keeping the old token");
                }
            }
        }
    }
}

fn stamp_of(meta: &std::fs::Metadata) -> Stamp {
    (meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino())
}

fn read_file(path: &std::path::Path, variable: &str) -> Result<(Zeroizing<Vec<u8>>, Stamp)> {
    let bad = |why: String| {
        Error::config(format!(
            "token file {} (from {variable}): {why}",
            path.display()
        ))
    };
    let (text, meta) =
        secretsfs_core::host_file::read(path, secretsfs_core::host_file::TOKEN).map_err(bad)?;
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    Ok((Zeroizing::new(trimmed.to_vec()), stamp_of(&meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_first_set_variable_wins() {
        let env = |name: &str| match name {
            "B" => Some("bee".to_owned()),
            "C" => Some("sea".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let token = Token::from_lookup(&vars(&["A", "EMPTY", "B", "C"]), env)
            .unwrap()
            .unwrap();
        assert_eq!(token.variable, "B");
        assert!(token.matches(b"bee"));
        assert!(!token.matches(b"sea"));
        assert!(!token.matches(b""));
        assert!(Token::from_lookup(&vars(&["A"]), env).unwrap().is_none());
    }

    #[test]
    fn a_token_file_is_trimmed_and_re_read_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let value = format!("file://{}", path.display());
        let token = Token::from_lookup(&vars(&["T"]), |_| Some(value.clone()))
            .unwrap()
            .unwrap();
        assert!(token.matches(b"first-token"));
        std::fs::write(&path, "  second-token-longer  \n").unwrap();
        assert!(token.matches(b"second-token-longer"));
        assert!(!token.matches(b"first-token"));
        std::fs::remove_file(&path).unwrap();
        assert!(
            token.matches(b"second-token-longer"),
            "a vanished file keeps the old token"
        );
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(
            token.matches(b"second-token-longer"),
            "a token file that became a device keeps the old token"
        );
        let missing = format!("file://{}/nope", dir.path().display());
        let err = Token::from_lookup(&vars(&["T"]), |_| Some(missing.clone())).unwrap_err();
        assert!(err.message().contains("nope"));
    }

    #[test]
    fn a_token_file_that_is_not_a_small_regular_file_is_refused_in_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "x".repeat(4097)).unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        for (path, why) in [
            (&big, "larger than the limit of 4 KiB"),
            (&zero, "a character device, not a regular file"),
        ] {
            let value = format!("file://{}", path.display());
            let err = Token::from_lookup(&vars(&["T"]), |_| Some(value.clone())).unwrap_err();
            assert_eq!(err.kind(), secretsfs_core::error::ErrorKind::Config);
            assert_eq!(
                err.message(),
                format!("token file {} (from T): {why}", path.display())
            );
        }
    }
}

//! The configuration file (TOML, `--config PATH`). For now it carries the access policy's
//! rules (design.md section 5); every other setting is a flag.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::policy::RuleSpec;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[[policy]]` tables, first match wins.
    #[serde(default)]
    pub policy: Vec<RuleSpec>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |why: String| Error::config(format!("config file {}: {why}", path.display()));
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        toml::from_str(&text).map_err(|e| bad(one_line(&e.to_string())))
    }
}

/// toml's messages quote the offending line over several lines; errors here are one line.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_policy_rules_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[[policy]]\npath = \"prod/**\"\nmode = \"0400\"\n").unwrap();
        assert_eq!(ConfigFile::load(&path).unwrap().policy.len(), 1);
        std::fs::write(&path, "ttl_typo = 3\n").unwrap();
        let err = ConfigFile::load(&path).unwrap_err();
        assert!(err.message().contains("ttl_typo"), "{err}");
        assert!(!err.message().contains('\n'));
        assert!(ConfigFile::load(&dir.path().join("missing.toml")).is_err());
    }
}

//! The config file's `secrets` list: the names a mount presents instead of everything
//! ListSecrets shows, fetched at start (what the AWS agent v2.1 calls prefetch). Exact names
//! need no listing at all, so a role without ListSecrets gets a complete tree; globs
//! (`team/*`, `*` stopping at `/` as in the policy) pick names from the listing where it is
//! allowed.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::selector;
use crate::source::SecretListing;

#[derive(Debug, Clone)]
pub struct SecretsList {
    names: Vec<String>,
    globs: Option<GlobSet>,
}

/// Whether an entry of the list (or any name pattern: a watched selector's, a variable's) is
/// a glob rather than a name.
pub fn is_glob(entry: &str) -> bool {
    entry.contains(['*', '?', '[', '{'])
}

impl SecretsList {
    /// The list as the config file gives it; `None` when it is empty (every name is
    /// presented). Each entry is a valid secret name or a glob.
    pub fn new(entries: &[String]) -> Result<Option<SecretsList>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut names = Vec::new();
        let mut globs = GlobSetBuilder::new();
        let mut any_glob = false;
        for entry in entries {
            if is_glob(entry) {
                let glob = GlobBuilder::new(entry)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| Error::config(format!("secrets: invalid glob {entry:?}: {e}")))?;
                globs.add(glob);
                any_glob = true;
            } else {
                selector::validate_name(entry).map_err(|why| {
                    Error::config(format!("secrets: invalid name {entry:?}: {why}"))
                })?;
                names.push(entry.clone());
            }
        }
        let globs = any_glob
            .then(|| globs.build())
            .transpose()
            .map_err(|e| Error::config(format!("secrets: {e}")))?;
        names.sort();
        names.dedup();
        Ok(Some(SecretsList { names, globs }))
    }

    /// The exact names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether the list needs a listing to know what it presents.
    pub fn has_globs(&self) -> bool {
        self.globs.is_some()
    }

    /// What the mount presents: the exact names, and the listed names a glob matches.
    pub fn presented(&self, listing: &[SecretListing]) -> Vec<SecretListing> {
        let mut out: Vec<SecretListing> =
            self.names.iter().map(|n| SecretListing::named(n)).collect();
        if let Some(globs) = &self.globs {
            out.extend(
                listing
                    .iter()
                    .filter(|l| {
                        globs.is_match(&l.name) && self.names.binary_search(&l.name).is_err()
                    })
                    .cloned(),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<Option<SecretsList>> {
        SecretsList::new(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn names_and_globs_pick_what_is_presented() {
        assert!(list(&[]).unwrap().is_none());
        let only = list(&["prod/db", "team/*", "prod/db"]).unwrap().unwrap();
        assert_eq!(only.names(), ["prod/db"]);
        assert!(only.has_globs());
        let shown: Vec<String> = only
            .presented(&SecretListing::all_named(&[
                "prod/db",
                "prod/other",
                "team/a",
                "team/x/deep",
            ]))
            .into_iter()
            .map(|l| l.name)
            .collect();
        assert_eq!(shown, ["prod/db", "team/a"]);
    }

    #[test]
    fn bad_entries_are_config_errors() {
        for bad in [&["bad name!"][..], &["team/[*"][..], &[""][..]] {
            let err = list(bad).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::Config, "{bad:?}");
            assert!(err.message().starts_with("secrets: "), "{err}");
        }
    }
}

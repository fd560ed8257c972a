//! The config file's templates as the mount shows them (docs/ARCHITECTURE.md#templates): a
//! file at each template's path, and the directories those paths imply, beside the secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

use secretsfs_core::template::TemplateFile;

use crate::namespace::EntryKind;

#[derive(Debug, Default)]
pub struct Templates {
    by_path: BTreeMap<String, Arc<TemplateFile>>,
}

impl Templates {
    pub fn new(files: impl IntoIterator<Item = TemplateFile>) -> Self {
        let by_path = files
            .into_iter()
            .map(|file| (file.path.trim_matches('/').to_owned(), Arc::new(file)))
            .collect();
        Templates { by_path }
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Arc<TemplateFile>> {
        self.by_path.get(path)
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<TemplateFile>)> {
        self.by_path.iter().map(|(p, t)| (p.as_str(), t))
    }

    /// What `path` is to the templates: one of them, a directory above one, or nothing.
    pub fn entry(&self, path: &str) -> Option<EntryKind> {
        if self.by_path.contains_key(path) {
            return Some(EntryKind::Secret);
        }
        let below = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        self.by_path
            .range(below.clone()..)
            .next()
            .filter(|(p, _)| p.starts_with(&below))
            .map(|_| EntryKind::Dir)
    }

    /// The names in the directory `dir` that templates put there, each with its kind.
    pub fn children(&self, dir: &str) -> Vec<(String, EntryKind)> {
        let below = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut children: Vec<(String, EntryKind)> = Vec::new();
        for path in self.by_path.keys().filter(|p| p.starts_with(&below)) {
            let rest = &path[below.len()..];
            let child = match rest.split_once('/') {
                Some((name, _)) => (name.to_owned(), EntryKind::Dir),
                None => (rest.to_owned(), EntryKind::Secret),
            };
            if !children.iter().any(|(name, _)| *name == child.0) {
                children.push(child);
            }
        }
        children
    }
}

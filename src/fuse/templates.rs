//! The config file's templates as the mount shows them (docs/ARCHITECTURE.md#templates): a
//! file at each template's path, and the directories those paths imply, beside the secrets.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::Result;
use crate::fuse::namespace::EntryKind;
use crate::policy::{Attrs, Defaults, Directory};
use crate::template::{OnMissing, Template, TemplateSpec};

/// One template of the mount: what it renders, what it presents, what a missing input is.
#[derive(Debug)]
pub struct MountedTemplate {
    pub template: Template,
    pub attrs: Attrs,
    pub on_missing: OnMissing,
}

#[derive(Debug, Default)]
pub struct Templates {
    by_path: BTreeMap<String, Arc<MountedTemplate>>,
}

impl Templates {
    /// The templates the config file declared (`specs`) and compiled (`compiled`, in the same
    /// order), their owners and groups resolved now.
    pub fn new(
        specs: &[TemplateSpec],
        compiled: &[Template],
        defaults: &Defaults,
        directory: &dyn Directory,
    ) -> Result<Self> {
        let mut by_path = BTreeMap::new();
        for (spec, template) in specs.iter().zip(compiled) {
            let template = template.clone();
            let attrs = spec.attrs(defaults, directory)?;
            let mounted = MountedTemplate {
                template,
                attrs,
                on_missing: spec.on_missing(),
            };
            by_path.insert(spec.path.trim_matches('/').to_owned(), Arc::new(mounted));
        }
        Ok(Templates { by_path })
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Arc<MountedTemplate>> {
        self.by_path.get(path)
    }

    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<MountedTemplate>)> {
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

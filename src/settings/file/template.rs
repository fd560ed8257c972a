//! One `[[template]]` entry as the configuration file writes it, and its validation.
//!
//! Entries are deserialized one at a time (`parse_specs`, as `[[hook]]` does) so that every
//! error, serde's own included, names the template by its path.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{self, Attrs, Defaults, Directory, Mode, Principal};
use crate::template::{OnMissing, Template, TemplateFile};

/// The longest file name a component may be, as in the mount (`fuse::namespace`).
const NAME_MAX: usize = 255;

/// A `[[template]]` entry. Optional keys stay `None` when the file leaves them out, so that
/// `check-config` shows the entry as written; the accessors give the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Where the rendered file appears in the mount, relative to its root.
    pub path: String,
    /// The template text on disk; absolute.
    pub source: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Principal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Principal>,
    /// The file's mode; the settings' `file_mode` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_missing: Option<OnMissing>,
}

impl TemplateSpec {
    /// How errors name the template: `template "app/database.yml"`.
    pub fn label(&self) -> String {
        format!("template {:?}", self.path)
    }

    pub fn on_missing(&self) -> OnMissing {
        self.on_missing.unwrap_or_default()
    }

    /// The owner, group and mode the file presents: the entry's, the defaults for what it
    /// leaves out. Names resolve through `directory`, as policy rules' do.
    pub fn attrs(&self, defaults: &Defaults, directory: &dyn Directory) -> Result<Attrs> {
        let named = |why: String| Error::config(format!("{}: {why}", self.label()));
        let uid = match &self.owner {
            Some(who) => policy::resolve(who, |n| directory.uid_of(n), "user").map_err(named)?,
            None => defaults.uid,
        };
        let gid = match &self.group {
            Some(who) => policy::resolve(who, |n| directory.gid_of(n), "group").map_err(named)?,
            None => defaults.gid,
        };
        Ok(Attrs {
            uid,
            gid,
            mode: self.mode.unwrap_or(defaults.file_mode),
        })
    }

    /// Reads `source` and compiles it; errors name the template by its path, and a source
    /// that cannot be read by its file name (never by its contents).
    pub fn load(&self) -> Result<Template> {
        let (text, _) = crate::host_file::read_text(&self.source, crate::host_file::CONFIG)
            .map_err(|e| {
                Error::config(format!(
                    "{}: cannot read source {}: {e}",
                    self.label(),
                    self.source.display()
                ))
            })?;
        Template::compile(&self.path, &text)
    }

    /// The file a front end presents: `template` (this entry's, compiled) with the owner,
    /// group and mode resolved now.
    pub fn file(
        &self,
        template: &Template,
        defaults: &Defaults,
        directory: &dyn Directory,
    ) -> Result<TemplateFile> {
        Ok(TemplateFile {
            path: self.path.trim_matches('/').to_owned(),
            template: template.clone(),
            attrs: self.attrs(defaults, directory)?,
            on_missing: self.on_missing(),
        })
    }

    /// Checks what needs no file: the path and the source's form. The error does not name the
    /// template; `parse_specs` adds that.
    pub fn check(&self) -> std::result::Result<(), String> {
        let path = &self.path;
        if path.is_empty() {
            return Err("`path` is empty".into());
        }
        if path.starts_with('/') {
            return Err("`path` must be relative to the mount, without a leading '/'".into());
        }
        if path.contains(':') {
            return Err(
                "`path` cannot contain ':' (the mount reads such names as selectors)".into(),
            );
        }
        // The rule of fuse::namespace::valid_component, which this layer must not import.
        let bad = path.split('/').find(|c| {
            c.is_empty() || *c == "." || *c == ".." || c.len() > NAME_MAX || c.contains('\0')
        });
        if let Some(component) = bad {
            return Err(format!(
                "`path` has an invalid component {component:?} (empty, '.', '..' or over {NAME_MAX} bytes)"
            ));
        }
        if !self.source.is_absolute() {
            return Err(format!(
                "`source` {} must be an absolute path",
                self.source.display()
            ));
        }
        Ok(())
    }
}

/// The `template` table array of the config file, each entry deserialized, checked and its
/// source compiled, with one-line errors naming the template (`template "app/db.yml": ...`).
pub fn parse_specs(
    value: Option<toml::Value>,
) -> std::result::Result<Vec<(TemplateSpec, Template)>, String> {
    let entries = super::table_entries::<TemplateSpec>(value, "template", "path")?;
    let mut specs: Vec<(TemplateSpec, Template)> = Vec::with_capacity(entries.len());
    for (label, spec) in entries {
        spec.check().map_err(|why| format!("{label}: {why}"))?;
        for (other, _) in &specs {
            if other.path == spec.path {
                return Err(format!("{label}: another template has the same path"));
            }
            // A file cannot also be a directory of the mount.
            let (short, long) = if other.path.len() < spec.path.len() {
                (&other.path, &spec.path)
            } else {
                (&spec.path, &other.path)
            };
            if long
                .strip_prefix(short.as_str())
                .is_some_and(|r| r.starts_with('/'))
            {
                return Err(format!(
                    "{label}: template {short:?} is a file, so it cannot also be a directory of {long:?}"
                ));
            }
        }
        // Compiled once, here: check-config and the start of the daemon see a syntax error
        // (its message names the template already), and the mount takes the compiled one.
        let template = spec.load().map_err(|e| e.message().to_owned())?;
        specs.push((spec, template));
    }
    Ok(specs)
}

#[cfg(test)]
mod tests;

//! Secrets as environment variables of a program (`secretsfs watch --env`, `secretsfs exec`):
//! which variable holds which value, from `--env NAME=SELECTOR`, `--env-file` lines or an ECS
//! task definition's `secrets` list ([`ecs`]), and reading them all ([`read`]).
//!
//! docs/environment.md says what a variable costs in secrecy, and when a file is better.

pub mod ecs;
pub mod read;

use std::path::Path;

use crate::error::{Error, Result};
use crate::selector::Selector;

/// Which source an entry is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum From {
    /// `--source`'s (Secrets Manager by default): `--env` and `NAME=SELECTOR` lines.
    Configured,
    /// Secrets Manager, whatever `--source` says: an ECS entry's secret ARN.
    SecretsManager,
    /// Parameter Store: an ECS entry's parameter name or ARN.
    ParameterStore,
}

/// One variable: its name, and the value it is set to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub from: From,
    pub selector: Selector,
}

/// What the environment's variable names may be: a letter or `_`, then letters, digits and
/// `_` (POSIX's portable names; a shell cannot name anything else).
fn check_name(name: &str, whence: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::config(format!(
            "{whence}: invalid variable name {name:?}: a letter or '_', then letters, digits and '_'"
        )));
    }
    Ok(())
}

/// `NAME=SELECTOR`, from `--env` or a line of an `--env-file`. No globs: one variable holds one
/// value.
pub fn parse_assignment(text: &str, whence: &str) -> Result<Entry> {
    let Some((name, selector)) = text.split_once('=') else {
        return Err(Error::config(format!(
            "{whence}: {text:?} is not NAME=SELECTOR"
        )));
    };
    check_name(name, whence)?;
    if crate::secrets_list::is_glob(selector) && !selector.starts_with("arn:") {
        return Err(Error::invalid_selector(format!(
            "{whence}: {name}: a variable holds one value: no glob in {selector:?}"
        )));
    }
    let selector = Selector::parse(selector)
        .map_err(|e| Error::invalid_selector(format!("{whence}: {name}: {}", e.message())))?;
    Ok(Entry {
        name: name.to_owned(),
        from: From::Configured,
        selector,
    })
}

/// Every entry of `--env` and `--env-file`, in order; a name given twice is refused.
pub fn entries(assignments: &[String], files: &[impl AsRef<Path>]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for text in assignments {
        entries.push(parse_assignment(text, "--env")?);
    }
    for file in files {
        entries.extend(read_file(file.as_ref())?);
    }
    let mut seen = std::collections::HashSet::new();
    for entry in &entries {
        if !seen.insert(entry.name.as_str()) {
            return Err(Error::config(format!(
                "the variable {} is given twice",
                entry.name
            )));
        }
    }
    Ok(entries)
}

/// An `--env-file`: `NAME=SELECTOR` lines (blank lines and `#` comments aside), or JSON: an
/// ECS task definition, or its `secrets` list.
fn read_file(path: &Path) -> Result<Vec<Entry>> {
    let shown = path.display();
    let (text, _) = crate::host_file::read_text(path, crate::host_file::CONFIG)
        .map_err(|e| Error::config(format!("--env-file {shown}: cannot read it: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') || trimmed.starts_with('{') {
        return ecs::entries(&text, &format!("--env-file {shown}"));
    }
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let whence = format!("--env-file {shown}, line {}", number + 1);
        entries.push(parse_assignment(line, &whence)?);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests;

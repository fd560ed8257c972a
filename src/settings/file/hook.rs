//! One `[[hook]]` entry as the configuration file writes it, and its validation.
//!
//! Entries are deserialized one at a time (`parse_specs`) so that every error, serde's own
//! included, names the hook it is about: with a single `Vec<HookSpec>` serde would only say
//! "unknown field" without saying where.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// The PATH a hook runs with, and on which a bare `exec` name is found.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub const DEFAULT_TIMEOUT: u64 = 30;
pub const DEFAULT_DEBOUNCE: u64 = 2;
pub const DEFAULT_RETRIES: u32 = 5;
const TIMEOUT_RANGE: (u64, u64) = (1, 3600);
const DEBOUNCE_RANGE: (u64, u64) = (0, 3600);
const RETRIES_RANGE: (u32, u32) = (0, 100);

/// A `[[hook]]` entry. Optional keys stay `None` when the file leaves them out, so that
/// `check-config` shows the entry as written; the accessors give the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Selectors, kept as written: the change detection parses and matches them.
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// Seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
}

/// What a hook does, checked; the user is resolved later, by `Hooks::new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    Exec(Vec<String>),
    SignalPid(Signal, PathBuf),
    SignalUnit(Signal, String),
    Reload(String),
}

impl HookSpec {
    /// The name logs and metrics use: `name`, or "hook N" for the entry at `index` (0-based).
    pub fn display_name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("hook {}", index + 1))
    }

    /// How errors name the hook: `hook "nginx-cert"`, or `hook 2` for an unnamed one.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => format!("hook {name:?}"),
            None => format!("hook {}", index + 1),
        }
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(DEFAULT_TIMEOUT))
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_secs(self.debounce.unwrap_or(DEFAULT_DEBOUNCE))
    }

    pub fn retries(&self) -> u32 {
        self.retries.unwrap_or(DEFAULT_RETRIES)
    }

    /// Checks everything that needs no privilege (the user must exist; whether secretsfs may
    /// become it is `Hooks::new`'s question, since check-config may run unprivileged). The
    /// error does not name the hook; `parse_specs` and `Hooks::new` add that.
    pub fn check(&self) -> Result<ActionSpec, String> {
        if let Some(name) = &self.name
            && (name.trim().is_empty() || name.chars().any(char::is_control))
        {
            return Err("`name` must be non-empty text on one line".into());
        }
        if self.secrets.is_empty() {
            return Err("`secrets` must list at least one selector".into());
        }
        if self.secrets.iter().any(|s| s.trim().is_empty()) {
            return Err("`secrets` has an empty selector".into());
        }
        if let Some(err) = self
            .secrets
            .iter()
            .find_map(|s| crate::watch::WatchPattern::parse(s).err())
        {
            return Err(err.message().to_owned());
        }
        in_range("timeout", self.timeout, TIMEOUT_RANGE)?;
        in_range("debounce", self.debounce, DEBOUNCE_RANGE)?;
        in_range("retries", self.retries, RETRIES_RANGE)?;
        let action = self.action()?;
        if let Some(user) = &self.user {
            if !matches!(action, ActionSpec::Exec(_)) {
                return Err("`user` applies only to `exec`".into());
            }
            match nix::unistd::User::from_name(user) {
                Ok(Some(_)) => {}
                Ok(None) => return Err(format!("no user named {user:?}")),
                Err(e) => return Err(format!("looking up user {user:?}: {e}")),
            }
        }
        Ok(action)
    }

    fn action(&self) -> Result<ActionSpec, String> {
        let actions = [
            self.exec.is_some(),
            self.signal.is_some(),
            self.reload.is_some(),
        ];
        if actions.iter().filter(|a| **a).count() != 1 {
            return Err("give exactly one of `exec`, `signal` or `reload`".into());
        }
        if self.signal.is_none() && (self.pid_file.is_some() || self.unit.is_some()) {
            return Err("`pid_file` and `unit` go only with `signal`".into());
        }
        if let Some(argv) = &self.exec {
            let Some(program) = argv.first() else {
                return Err("`exec` needs at least the program".into());
            };
            // A relative path would depend on the working directory; a bare name is looked
            // up on the hooks' fixed PATH.
            if program.is_empty() || (program.contains('/') && !program.starts_with('/')) {
                return Err(format!(
                    "`exec` program {program:?} must be an absolute path or a bare name found on PATH"
                ));
            }
            return Ok(ActionSpec::Exec(argv.clone()));
        }
        if let Some(unit) = &self.reload {
            return Ok(ActionSpec::Reload(unit_name(unit)?));
        }
        let name = self.signal.as_deref().unwrap_or_default();
        let signal =
            crate::signal_name::parse(name).ok_or_else(|| format!("unknown signal {name:?}"))?;
        match (&self.pid_file, &self.unit) {
            (Some(path), None) if path.is_absolute() => {
                Ok(ActionSpec::SignalPid(signal, path.clone()))
            }
            (Some(path), None) => Err(format!(
                "`pid_file` {} must be an absolute path",
                path.display()
            )),
            (None, Some(unit)) => Ok(ActionSpec::SignalUnit(signal, unit_name(unit)?)),
            _ => Err("`signal` needs exactly one of `pid_file` or `unit`".into()),
        }
    }
}

fn unit_name(unit: &str) -> Result<String, String> {
    if unit.trim().is_empty() || unit.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{unit:?} is not a systemd unit name"));
    }
    Ok(unit.to_owned())
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    key: &str,
    value: Option<T>,
    (min, max): (T, T),
) -> Result<(), String> {
    match value {
        Some(v) if v < min || v > max => Err(format!(
            "`{key}` must be a whole number from {min} to {max}, got {v}"
        )),
        _ => Ok(()),
    }
}

/// The `hook` table array of the config file, each entry deserialized and checked, with
/// one-line errors that name the hook (`hook "nginx-cert": ...` or `hook 2: ...`).
pub fn parse_specs(value: Option<toml::Value>) -> Result<Vec<HookSpec>, String> {
    let entries = super::table_entries::<HookSpec>(value, "hook", "name")?;
    let mut specs: Vec<HookSpec> = Vec::with_capacity(entries.len());
    for (i, (label, spec)) in entries.into_iter().enumerate() {
        spec.check().map_err(|why| format!("{label}: {why}"))?;
        let name = spec.display_name(i);
        if specs
            .iter()
            .enumerate()
            .any(|(j, s)| s.display_name(j) == name)
        {
            return Err(format!("{label}: another hook has the same name"));
        }
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests;

//! The configuration file (TOML): every setting as a key of its name (`_` for `-`, see
//! src/settings/options.rs), the file-only tables (`[[policy]]` rules, `[[hook]]`s,
//! `[[template]]`s), and the flat keys of an AWS Secrets Manager Agent v2 config, accepted as
//! they are so that secretsfs can replace the agent with its config.
//!
//! A scalar key is checked here, by its setting's own clap value parser, and kept as the text
//! the command line would have carried; resolution (src/settings) puts it under the flags.
//! Numbers may be quoted (`ttl = "300"`), as in the agent's documented examples; booleans may
//! be written as the agent's config library takes them (`true`, `"yes"`, `"off"`, 1, 0).

pub mod hook;
pub mod template;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;

use clap::{Arg, CommandFactory};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::RuleSpec;
use crate::secrets_list::SecretsList;
use crate::settings::keys::{self, AgentKey};
use crate::settings::options::{Options, in_range};
use hook::HookSpec;
use template::TemplateSpec;

/// Where the file is looked for when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/secretsfs/config.toml";

/// The file-only tables, each validated by its own type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Sections {
    /// The names (and globs) a mount presents, fetched at start; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<RuleSpec>,
    /// Change hooks, checked one by one by `hook::parse_specs` so errors name the hook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hook: Vec<HookSpec>,
    /// Files rendered from secrets, checked and compiled one by one by
    /// `template::parse_specs` so errors name the template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template: Vec<TemplateSpec>,
}

#[derive(Debug, Default)]
pub struct ConfigFile {
    /// Each setting the file gives, as the values a flag would carry, already checked.
    pub values: BTreeMap<String, Vec<String>>,
    pub sections: Sections,
    /// `sections.secrets`, checked and compiled.
    pub secrets: Option<SecretsList>,
    /// `sections.template`'s templates, compiled, in the same order.
    pub templates: Vec<crate::template::Template>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self> {
        let (text, _) = crate::host_file::read_text(path, crate::host_file::CONFIG)
            .map_err(|why| file_error(path, &why))?;
        Self::parse(&text).map_err(|why| file_error(path, &why))
    }

    /// The file's text, with errors that name the key (and never quote a value that could be a
    /// secret's: settings hold none, but a typo could put one there). An error is one line:
    /// the names and values it repeats have their control characters escaped.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        Self::parse_text(text).map_err(|why| crate::error::one_line(&why).into_owned())
    }

    fn parse_text(text: &str) -> std::result::Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        let command = Options::command().mut_args(|a| a.env(None::<&str>));
        let settings = keys::settings();
        let mut file = ConfigFile::default();
        let mut sections = toml::Table::new();
        let mut aliased: Vec<(&'static str, &'static str)> = Vec::new();
        let given: Vec<String> = table.keys().cloned().collect();
        for (key, value) in table {
            if let Some(arg) = settings.iter().find(|a| keys::key(a) == key) {
                let texts = setting_texts(&command, arg, &value)
                    .map_err(|why| format!("key `{key}`: {why}"))?;
                file.values.insert(key, texts);
            } else if let Some(alias) = keys::agent_alias(&key) {
                let text =
                    alias_text(alias, &value).map_err(|why| format!("key `{key}`: {why}"))?;
                if let Some(text) = text {
                    aliased.push((alias.ours(), alias.agent()));
                    file.values.insert(alias.ours().to_owned(), vec![text]);
                }
            } else {
                sections.insert(key, value);
            }
        }
        for (ours, agents) in aliased {
            if given.iter().any(|key| key == ours) {
                return Err(format!(
                    "keys `{ours}` and `{agents}` (the agent's name for it) are both set; keep one"
                ));
            }
        }
        let hooks = sections.remove("hook");
        let templates = sections.remove("template");
        file.sections = sections
            .try_into()
            .map_err(|e: toml::de::Error| one_line(&e.to_string()))?;
        file.sections.hook = hook::parse_specs(hooks)?;
        (file.sections.template, file.templates) =
            template::parse_specs(templates)?.into_iter().unzip();
        file.secrets =
            SecretsList::new(&file.sections.secrets).map_err(|e| e.message().to_owned())?;
        Ok(file)
    }
}

/// A setting's value as the texts a flag would carry, each checked by the setting's parser.
fn setting_texts(
    command: &clap::Command,
    arg: &Arg,
    value: &toml::Value,
) -> std::result::Result<Vec<String>, String> {
    let texts = match value {
        toml::Value::Array(items) if keys::is_list(arg) => {
            if items.is_empty() {
                return Err("the list can't be empty".into());
            }
            items
                .iter()
                .map(scalar_text)
                .collect::<Result<Vec<_>, _>>()?
        }
        toml::Value::Array(_) => return Err("expected one value, not a list".into()),
        _ if keys::is_list(arg) => return Err("expected a list, like [\"A\", \"B\"]".into()),
        toml::Value::Integer(n) if keys::is_octal(arg) => {
            return Err(format!(
                "write the mode as an octal string, like \"0{n:o}\" or \"{n}\", not a number"
            ));
        }
        _ => vec![scalar_text(value)?],
    };
    for text in &texts {
        check(command, arg, text).map_err(|why| format!("{why}, got {}", shown(value)))?;
    }
    Ok(texts)
}

fn scalar_text(value: &toml::Value) -> std::result::Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(63) => {
            Ok((*f as u64).to_string())
        }
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Datetime(_) | toml::Value::Array(_) | toml::Value::Table(_) => {
            Err("expected a number, a string or a boolean".into())
        }
    }
}

/// A value as an error repeats it: a string quoted on one line (toml writes one with a
/// newline over several).
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Runs the setting's own value parser on `text` (a command line of that one flag); the
/// error is the parser's reason.
fn check(command: &clap::Command, arg: &Arg, text: &str) -> std::result::Result<(), String> {
    let long = arg.get_long().expect("settings are long flags");
    let mut flag = std::ffi::OsString::from(format!("--{long}="));
    flag.push(text);
    command
        .clone()
        .try_get_matches_from([flag])
        .map(drop)
        .map_err(|e| {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|p| p.get_name().to_owned())
                .collect();
            match std::error::Error::source(&e) {
                Some(reason) => reason.to_string(),
                None if !possible.is_empty() => format!("expected {}", possible.join(" or ")),
                None => e.kind().to_string(),
            }
        })
}

/// An agent key's value as the text of the setting it stands for (None: it sets nothing).
fn alias_text(
    alias: &AgentKey,
    value: &toml::Value,
) -> std::result::Result<Option<String>, String> {
    match *alias {
        AgentKey::Same { .. } => unreachable!("a key of our own name is a setting"),
        AgentKey::Number { min, max, .. } => {
            let n = in_range::<u64>(min, max)(&scalar_text(value)?)
                .map_err(|why| format!("{why}, got {}", shown(value)))?;
            Ok(Some(n.to_string()))
        }
        AgentKey::Switch {
            on_true, on_false, ..
        } => {
            let text = scalar_text(value)?;
            use clap::builder::TypedValueParser;
            let on = clap::builder::BoolishValueParser::new()
                .parse_ref(&clap::Command::new("secretsfs"), None, OsStr::new(&text))
                .map_err(|_| format!("expected true or false, got {}", shown(value)))?;
            Ok(if on { on_true } else { on_false }.map(str::to_owned))
        }
    }
}

pub fn file_error(path: &Path, why: &str) -> Error {
    Error::config(format!("config file {}: {why}", path.display()))
}

/// The entries of a table array of the file (`[[hook]]`, `[[template]]`), each deserialized,
/// with the label its errors start with: `KIND "VALUE"` where the entry has a `label_key`,
/// else `KIND N` (1-based).
pub fn table_entries<T: serde::de::DeserializeOwned>(
    value: Option<toml::Value>,
    kind: &str,
    label_key: &str,
) -> std::result::Result<Vec<(String, T)>, String> {
    let entries = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(entries)) => entries,
        Some(_) => return Err(format!("`{kind}` must be a table array: write [[{kind}]]")),
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let label = match entry.get(label_key).and_then(toml::Value::as_str) {
                Some(value) => format!("{kind} {value:?}"),
                None => format!("{kind} {}", i + 1),
            };
            let parsed = entry
                .try_into()
                .map_err(|e: toml::de::Error| format!("{label}: {}", one_line(&e.to_string())))?;
            Ok((label, parsed))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rules_and_numbers_quoted_or_not() {
        let file = ConfigFile::parse(
            "ttl = \"300\"\ncache_size = 10\ncache_bytes = 2048.0\n[[policy]]\npath = \"prod/**\"\nmode = \"0400\"\n",
        )
        .unwrap();
        assert_eq!(file.sections.policy.len(), 1);
        assert_eq!(file.values["ttl"], ["300"]);
        assert_eq!(file.values["cache_size"], ["10"]);
        assert_eq!(file.values["cache_bytes"], ["2048"]);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_one_line_errors_naming_the_key() {
        let err = ConfigFile::parse("ttl_typo = 3\n").unwrap_err();
        assert!(err.contains("ttl_typo"), "{err}");
        assert!(!err.contains('\n'));
        let err = ConfigFile::parse("ttl = [1]\n").unwrap_err();
        assert!(err.contains("ttl") && !err.contains('\n'), "{err}");
        assert!(ConfigFile::parse("").is_ok());
        assert_eq!(
            ConfigFile::parse("ttl = \"abc\"\n").unwrap_err(),
            "key `ttl`: expected a whole number from 0 to 86400, got \"abc\""
        );
        assert!(ConfigFile::parse("ttl = 86401\n").is_err());
        assert!(ConfigFile::parse("mlock = \"Yes\"\n").is_ok());
        assert!(ConfigFile::parse("mlock = \"maybe\"\n").is_err());
        let err = ConfigFile::parse("file_mode = 288\n").unwrap_err();
        assert!(err.contains("\"0440\""), "{err}");
    }

    /// Found by the fuzzer (config target): a value with a newline was repeated as it was,
    /// over two lines.
    #[test]
    fn a_bad_value_with_a_newline_is_refused_on_one_line() {
        for text in [
            "file_mode = \"0tt\\nx\"\n",
            "ttl_seconds = \"6\\n0\"\n",
            "[[hook]]\nsecrets = [\"a\"]\nsignal = \"HUP\\nX\"\npid_file = \"/run/p\"\n",
        ] {
            let err = ConfigFile::parse(text).unwrap_err();
            assert!(!err.contains('\n'), "{err:?}");
            assert!(err.contains(r"\n"), "{err:?}");
        }
    }

    #[test]
    fn agent_aliases_become_our_keys() {
        let file = ConfigFile::parse(
            "ttl_seconds = \"60\"\nignore_transient_errors = false\nlog_to_file = false\n",
        )
        .unwrap();
        assert_eq!(file.values["ttl"], ["60"]);
        assert_eq!(file.values["max_stale"], ["0"]);
        assert!(!file.values.contains_key("log_file"));
        let err = ConfigFile::parse("ttl = 5\nttl_seconds = 5\n").unwrap_err();
        assert!(err.contains("`ttl` and `ttl_seconds`"), "{err}");
    }
}

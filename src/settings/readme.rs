//! The table of settings in docs/configuration.md, generated from their declaration so that it
//! cannot drift: a test compares it with the page and, with `SECRETSFS_BLESS=1`, writes it
//! there.

use clap::{Arg, Args};

use super::keys::{self, AgentKey};
use super::options::{GlobalOptions, MountOptions};

/// The lines around the generated table in docs/configuration.md.
pub const BEGIN: &str =
    "<!-- settings table: generated from src/settings/options.rs by `cargo test readme_table` -->";
pub const END: &str = "<!-- end of settings table -->";

/// The table, in Markdown, one row per setting in the order of declaration.
pub fn table() -> String {
    let global = GlobalOptions::augment_args(clap::Command::new("g"));
    let mount = MountOptions::augment_args(clap::Command::new("m"));
    let has = |c: &clap::Command, id: &str| c.get_arguments().any(|a| a.get_id() == id);
    let mut out = String::from(
        "| key | flag | environment | default | what it does | the agent's key | SIGHUP |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    out.push_str(
        "| (the file itself) | `--config` | `SECRETSFS_CONFIG` | `/etc/secretsfs/config.toml` if present | the config file | `--config` | |\n",
    );
    for arg in keys::settings() {
        let key = keys::key(&arg);
        let scope = if has(&global, key) {
            ""
        } else if has(&mount, key) {
            "mount "
        } else {
            "mount, serve: "
        };
        let (help, default) = help_and_default(&arg);
        out.push_str(&format!(
            "| `{key}` | {scope}`{}` | {} | {default} | {help} | {} | {} |\n",
            flag(&arg),
            environment(&arg),
            agent(key),
            if keys::RELOADED_ON_SIGHUP.contains(&key) {
                "yes"
            } else {
                ""
            },
        ));
    }
    out.push_str("| `[[policy]]` | | | none | access rules, see Access policy | | yes |\n");
    out.push_str("| `secrets` | | | all | the names (and globs) a mount presents and fetches at start | | |\n");
    out.push_str("| `[[hook]]` | | | none | change hooks, see Rotation | | |\n");
    out.push_str(
        "| `[[template]]` | | | none | files rendered from several secrets, see Templates | | |\n",
    );
    out
}

fn flag(arg: &Arg) -> String {
    let long = arg.get_long().unwrap_or_default();
    if keys::is_switch(arg) {
        format!("--{long}[=BOOL]")
    } else if keys::is_list(arg) {
        format!("--{long} A,B")
    } else {
        format!("--{long}")
    }
}

fn environment(arg: &Arg) -> String {
    let key = keys::key(arg);
    // Ours first (it wins), then the SDK's or the Lambda extension's.
    let names: Vec<String> = arg
        .get_env()
        .map(|e| e.to_string_lossy().into_owned())
        .into_iter()
        .chain(
            keys::SDK_VARIABLES
                .iter()
                .filter(|(k, _)| *k == key)
                .flat_map(|(_, names)| names.iter().map(|n| n.to_string())),
        )
        .collect();
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

/// The help without its `[default: ...]`, and the default: clap's, else the help's words.
fn help_and_default(arg: &Arg) -> (String, String) {
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let (help, stated) = match help.split_once(" [default: ") {
        Some((before, rest)) => {
            let (default, after) = rest.split_once(']').unwrap_or((rest, ""));
            (format!("{before}{after}"), Some(default.to_owned()))
        }
        None => (help, None),
    };
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| format!("`{}`", v.to_string_lossy()))
        .collect();
    let default = match (defaults.is_empty(), stated) {
        (false, _) if defaults.iter().all(|d| d == "``") => "empty".to_owned(),
        (false, _) => defaults.join(", "),
        (true, Some(stated)) => stated,
        (true, None) => "none".to_owned(),
    };
    (help.replace('|', "\\|"), default)
}

fn agent(key: &str) -> String {
    keys::AGENT_KEYS
        .iter()
        .filter(|k| k.ours() == key)
        .map(|k| match *k {
            AgentKey::Same {
                agent_range: "", ..
            } => format!("`{key}`"),
            AgentKey::Same { agent_range, .. } => format!("`{key}` ({agent_range})"),
            AgentKey::Number {
                agent, min, max, ..
            } => format!("`{agent}` ({min}-{max})"),
            AgentKey::Switch {
                agent,
                on_true,
                on_false,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(v) = on_true {
                    parts.push(format!("true: `{v}`"));
                }
                if let Some(v) = on_false {
                    parts.push(format!("false: `{v}`"));
                }
                format!("`{agent}` ({})", parts.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The words of the fstab helper's `NAME='...'` list (packaging/mount.secretsfs), which
/// tests compare with the settings and with what `secretsfs mount` takes.
pub fn fstab_helper_list(script: &str, name: &str) -> Vec<String> {
    let start = format!("\n{name}='");
    script
        .split(&start)
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in the fstab helper"))
        .split('\'')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    const FSTAB_HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/mount.secretsfs");

    /// docs/configuration.md's table is this module's; `SECRETSFS_BLESS=1 cargo test
    /// readme_table` writes it there after a change to a setting.
    #[test]
    fn readme_table_is_generated_from_the_declaration() {
        let page = std::fs::read_to_string(PAGE).unwrap();
        let (before, rest) = page
            .split_once(BEGIN)
            .unwrap_or_else(|| panic!("docs/configuration.md lacks the line {BEGIN}"));
        let (current, after) = rest
            .split_once(END)
            .unwrap_or_else(|| panic!("docs/configuration.md lacks the line {END}"));
        let expected = format!("\n{}", table());
        if current == expected {
            return;
        }
        if std::env::var_os("SECRETSFS_BLESS").is_some() {
            std::fs::write(PAGE, format!("{before}{BEGIN}{expected}{END}{after}")).unwrap();
            return;
        }
        panic!(
            "docs/configuration.md's table of settings is out of date: run \
             `SECRETSFS_BLESS=1 cargo test --lib readme_table` and commit it. Expected:\n{expected}"
        );
    }

    /// mount(8) options are the settings (and `config`): switches as bare words, values as
    /// NAME=VALUE. Lists are left out: `-o` splits on the commas they are written with.
    #[test]
    fn the_fstab_helper_maps_every_setting() {
        let script = std::fs::read_to_string(FSTAB_HELPER).unwrap();
        let mut switches = Vec::new();
        let mut values = vec!["config".to_owned()];
        for arg in keys::settings() {
            let key = keys::key(&arg).to_owned();
            if keys::is_switch(&arg) {
                switches.push(key);
            } else if !keys::is_list(&arg) {
                values.push(key);
            }
        }
        switches.sort();
        values.sort();
        let sorted = |mut words: Vec<String>| {
            words.sort();
            words
        };
        assert_eq!(sorted(fstab_helper_list(&script, "flag_options")), switches);
        assert_eq!(sorted(fstab_helper_list(&script, "value_options")), values);
    }
}

//! What a setting's clap declaration cannot say, in small tables keyed by the setting's name,
//! and the list of settings itself, read off the declaration. Tests check that every name in
//! these tables is a declared setting.

use clap::{Arg, CommandFactory};

use super::options::Options;

/// The settings SIGHUP changes in a running `mount` or `serve` (with the `[[policy]]` rules);
/// a change to any other key is logged as taking effect at the next start.
pub const RELOADED_ON_SIGHUP: &[&str] = &["uid", "gid", "file_mode", "dir_mode"];

/// The SDK's own environment variables, which stand between the flag and the file (first set
/// wins), as the SDK itself would read them.
pub const SDK_VARIABLES: &[(&str, &[&str])] = &[
    ("region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("profile", &["AWS_PROFILE"]),
    (
        "endpoint_url",
        &["AWS_ENDPOINT_URL_SECRETS_MANAGER", "AWS_ENDPOINT_URL"],
    ),
    ("use_fips_endpoint", &["AWS_USE_FIPS_ENDPOINT"]),
    ("use_dualstack_endpoint", &["AWS_USE_DUALSTACK_ENDPOINT"]),
    // The AWS Parameters and Secrets Lambda Extension's variables, where they mean something
    // here. `_MILLIS` values are turned into whole seconds (rounded up; 0, the extension's
    // "no timeout", is the longest allowed); see `extension_value`.
    ("http_port", &["PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"]),
    ("cache_size", &["PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE"]),
    (
        "max_conn",
        &["PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS"],
    ),
    ("log_level", &["PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL"]),
    ("ttl", &["SECRETS_MANAGER_TTL"]),
    ("ssm_ttl", &["SSM_PARAMETER_STORE_TTL"]),
    ("timeout", &["SECRETS_MANAGER_TIMEOUT_MILLIS"]),
    ("ssm_timeout", &["SSM_PARAMETER_STORE_TIMEOUT_MILLIS"]),
];

/// The longest timeout a setting allows, what the extension's `_MILLIS` 0 ("none") becomes.
const LONGEST_TIMEOUT_SECONDS: u64 = 300;

/// The text a variable of [`SDK_VARIABLES`] gives its setting: as it is, except the
/// extension's milliseconds, which become whole seconds rounded up (text that is not a number
/// is passed on for the setting's parser to refuse).
pub fn extension_value(variable: &str, value: String) -> String {
    if !variable.ends_with("_MILLIS") {
        return value;
    }
    match value.trim().parse::<u64>() {
        Ok(0) => LONGEST_TIMEOUT_SECONDS.to_string(),
        Ok(millis) => millis.div_ceil(1000).to_string(),
        Err(_) => value,
    }
}

/// How a key of the AWS Secrets Manager Agent's config file maps onto ours.
#[derive(Debug, Clone, Copy)]
pub enum AgentKey {
    /// The agent's key has our name (and its own range, which ours contains).
    Same {
        key: &'static str,
        agent_range: &'static str,
    },
    /// The agent's name for one of our settings: a whole number in `min..=max`, as is.
    Number {
        agent: &'static str,
        ours: &'static str,
        min: u64,
        max: u64,
    },
    /// An agent boolean that stands for a value of ours: `on_true` / `on_false` (None: unset).
    Switch {
        agent: &'static str,
        ours: &'static str,
        on_true: Option<&'static str>,
        on_false: Option<&'static str>,
    },
}

/// Where `log_to_file = true` sends the logs (the agent writes ./logs/; a daemon's working
/// directory is `/`, so a fixed path is the useful equivalent).
pub const AGENT_LOG_FILE: &str = "/var/log/secretsfs/secretsfs.log";

/// The agent v2's config keys, accepted as they are so that its config file works unchanged.
pub const AGENT_KEYS: &[AgentKey] = &[
    AgentKey::Same {
        key: "region",
        agent_range: "",
    },
    AgentKey::Same {
        key: "validate_credentials",
        agent_range: "",
    },
    AgentKey::Same {
        key: "credentials_file_path",
        agent_range: "",
    },
    AgentKey::Number {
        agent: "ttl_seconds",
        ours: "ttl",
        min: 0,
        max: 3600,
    },
    AgentKey::Same {
        key: "cache_size",
        agent_range: "1-1000",
    },
    AgentKey::Switch {
        agent: "ignore_transient_errors",
        ours: "max_stale",
        on_true: Some(DEFAULT_MAX_STALE_TEXT),
        on_false: Some("0"),
    },
    AgentKey::Same {
        key: "http_port",
        agent_range: "",
    },
    AgentKey::Same {
        key: "max_conn",
        agent_range: "",
    },
    AgentKey::Same {
        key: "path_prefix",
        agent_range: "",
    },
    AgentKey::Same {
        key: "ssrf_headers",
        agent_range: "",
    },
    AgentKey::Same {
        key: "ssrf_env_variables",
        agent_range: "",
    },
    AgentKey::Same {
        key: "log_level",
        agent_range: "DEBUG..ERROR, NONE",
    },
    AgentKey::Switch {
        agent: "log_to_file",
        ours: "log_file",
        on_true: Some(AGENT_LOG_FILE),
        on_false: None,
    },
];

/// `ignore_transient_errors = true` is our default `max_stale`.
const DEFAULT_MAX_STALE_TEXT: &str = "3600";
const _: () = assert!(crate::cache::DEFAULT_MAX_STALE.as_secs() == 3600);

impl AgentKey {
    /// The agent's name of the key.
    pub fn agent(&self) -> &'static str {
        match *self {
            AgentKey::Same { key, .. } => key,
            AgentKey::Number { agent, .. } | AgentKey::Switch { agent, .. } => agent,
        }
    }

    /// Our setting it stands for.
    pub fn ours(&self) -> &'static str {
        match *self {
            AgentKey::Same { key, .. } => key,
            AgentKey::Number { ours, .. } | AgentKey::Switch { ours, .. } => ours,
        }
    }

    /// An alias, as opposed to a key of the same name.
    pub fn is_alias(&self) -> bool {
        !matches!(self, AgentKey::Same { .. })
    }
}

/// The agent's alias of that name, if it is one.
pub fn agent_alias(name: &str) -> Option<&'static AgentKey> {
    AGENT_KEYS
        .iter()
        .find(|k| k.is_alias() && k.agent() == name)
}

/// Every setting, in the order of its declaration (which is the order `check-config` shows).
pub fn settings() -> Vec<Arg> {
    Options::command()
        .get_arguments()
        .filter(|a| a.get_long().is_some())
        .cloned()
        .collect()
}

/// The config key of a setting: its field name.
pub fn key(arg: &Arg) -> &str {
    arg.get_id().as_str()
}

/// A flag that is given alone or with `=BOOL`.
pub fn is_switch(arg: &Arg) -> bool {
    arg.get_num_args().is_some_and(|n| n.min_values() == 0)
}

/// A setting that takes a list (comma-separated as a flag, an array in the file).
pub fn is_list(arg: &Arg) -> bool {
    arg.get_value_delimiter().is_some()
}

/// A mode is written as an octal string: a TOML number would be read in decimal.
pub fn is_octal(arg: &Arg) -> bool {
    arg.get_value_names()
        .is_some_and(|names| names.iter().any(|n| n.as_str() == "OCTAL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        settings().iter().map(|a| key(a).to_owned()).collect()
    }

    #[test]
    fn every_table_names_a_declared_setting() {
        let names = names();
        let declared = |k: &str| names.iter().any(|n| n == k);
        for k in RELOADED_ON_SIGHUP {
            assert!(declared(k), "RELOADED_ON_SIGHUP: {k}");
        }
        assert_eq!(
            extension_value("SSM_PARAMETER_STORE_TIMEOUT_MILLIS", "1500".into()),
            "2"
        );
        assert_eq!(
            extension_value("SECRETS_MANAGER_TIMEOUT_MILLIS", "0".into()),
            "300"
        );
        assert_eq!(
            extension_value("SECRETS_MANAGER_TIMEOUT_MILLIS", "x".into()),
            "x"
        );
        assert_eq!(
            extension_value("SECRETS_MANAGER_TTL", "1500".into()),
            "1500"
        );
        for (k, _) in SDK_VARIABLES {
            assert!(declared(k), "SDK_VARIABLES: {k}");
        }
        for agent_key in AGENT_KEYS {
            assert!(declared(agent_key.ours()), "AGENT_KEYS: {agent_key:?}");
            assert_eq!(
                agent_key.is_alias(),
                !declared(agent_key.agent()),
                "an alias must not shadow a setting: {agent_key:?}"
            );
        }
    }

    /// The range a help text states is the one its parser enforces: the parser's message for
    /// an absurd number names its bounds, and the help must name the same.
    #[test]
    fn help_texts_state_the_ranges_their_parsers_enforce() {
        let command = Options::command();
        let mut ranged = 0;
        for arg in settings() {
            let long = arg.get_long().unwrap();
            let err = command
                .clone()
                .mut_args(|a| a.env(None::<&str>))
                .try_get_matches_from([format!("--{long}=99999999999999999999999")])
                .err();
            let Some(reason) =
                err.and_then(|e| std::error::Error::source(&e).map(|s| s.to_string()))
            else {
                continue;
            };
            let Some(bounds) = reason.strip_prefix("expected a whole number from ") else {
                continue;
            };
            let (min, max) = bounds.split_once(" to ").unwrap();
            let help = arg.get_help().unwrap().to_string();
            assert!(
                help.contains(&format!("{min}-{max}")),
                "--{long}: the help does not say {min}-{max}: {help}"
            );
            ranged += 1;
        }
        assert!(ranged >= 11, "only {ranged} ranged settings found");
    }
}

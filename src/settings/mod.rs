//! The effective settings (docs/ARCHITECTURE.md#settings): each setting from the first of
//! flag, environment, config file and default that has it. The settings are declared once, in
//! [`options`]; this module only layers the sources over each other, through clap itself: the
//! chosen texts become one command line of [`options::Options`], parsed once, so that every
//! value goes through its setting's own parser. `check-config` prints the result, and SIGHUP
//! resolves it again.

pub mod file;
pub mod keys;
pub mod options;
pub mod readme;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cache::CacheConfig;
use crate::error::{Error, Result};
use crate::fuse::namespace::Layout;
use crate::http::HttpSettings;
use crate::policy::Defaults;
use crate::source::SourceSpec;
use crate::source::aws::AwsOptions;
use file::ConfigFile;

pub use options::{GlobalOptions, HttpOptions, MountOptions, Options};

/// Where a value came from, for `check-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Command,
    File,
    Default,
}

impl Origin {
    fn label(self) -> &'static str {
        match self {
            Origin::Command => "flag or environment",
            Origin::File => "config file",
            Origin::Default => "default",
        }
    }
}

/// The settings given on the command line or by their environment variables, as the texts
/// clap saw: the top layer of the resolution.
#[derive(Debug, Clone, Default)]
pub struct Given(BTreeMap<String, Vec<OsString>>);

impl Given {
    /// What `matches` (and its subcommand's) holds from the command line or the environment.
    pub fn from_matches(matches: &ArgMatches) -> Given {
        let mut given = BTreeMap::new();
        let mut layer = Some(matches);
        while let Some(m) = layer {
            for id in m.ids() {
                let explicit = matches!(
                    m.value_source(id.as_str()),
                    Some(ValueSource::CommandLine | ValueSource::EnvVariable)
                );
                if let (true, Ok(Some(raw))) = (explicit, m.try_get_raw(id.as_str())) {
                    given.insert(id.to_string(), raw.map(ToOwned::to_owned).collect());
                }
            }
            layer = m.subcommand().map(|(_, sub)| sub);
        }
        Given(given)
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub source: SourceSpec,
    pub aws: AwsOptions,
    pub validate_credentials: bool,
    pub cache: CacheConfig,
    /// Parameter Store's client options (its own timeout) and cache (its own TTL).
    pub ssm_aws: AwsOptions,
    pub ssm_cache: CacheConfig,
    pub defaults: Defaults,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    pub mlock: bool,
    pub layout: Layout,
    pub prefix: String,
    pub kernel_cache: bool,
    /// The config file's `secrets` list: what the mount presents and fetches at start.
    pub secrets: Option<crate::secrets_list::SecretsList>,
    /// `sections.template`'s templates, compiled when the file was read, in the same order.
    pub templates: Vec<crate::template::Template>,
    pub wait_for_secrets: bool,
    pub http_enabled: bool,
    pub http: HttpOptions,
    /// Every setting as resolved, for `check-config` and SIGHUP.
    pub options: Options,
    /// Where each setting came from, in the order of their declaration.
    pub origins: Vec<(String, Origin)>,
    pub sections: file::Sections,
}

impl HttpOptions {
    /// The listeners these settings ask for (TCP only where `tcp`, i.e. with a token).
    pub fn listeners(&self, tcp: bool) -> HttpSettings {
        HttpSettings {
            tcp: tcp.then(|| {
                std::net::SocketAddr::new(
                    self.http_listen,
                    self.http_port.unwrap_or(crate::http::DEFAULT_PORT),
                )
            }),
            socket: self
                .http_socket
                .clone()
                .map(|p| (p, self.http_socket_mode.0)),
            max_conn: self.max_conn,
            header_timeout: Duration::from_secs(self.http_header_timeout),
            request_timeout: Duration::from_secs(self.http_request_timeout),
            path_prefix: self.path_prefix.clone(),
            token_headers: self.ssrf_headers.clone(),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// The config file: `--config`, else the default path when it exists, else none.
    pub fn config_path(config: Option<&Path>) -> Option<PathBuf> {
        config.map(Path::to_owned).or_else(|| {
            Path::new(file::DEFAULT_PATH)
                .exists()
                .then(|| file::DEFAULT_PATH.into())
        })
    }

    pub fn resolve(given: &Given, config: Option<&Path>) -> Result<Settings> {
        let path = Self::config_path(config);
        let file = match &path {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        Self::resolve_with(given, path, &file)
    }

    pub fn resolve_with(
        given: &Given,
        path: Option<PathBuf>,
        file: &ConfigFile,
    ) -> Result<Settings> {
        let mut argv: Vec<OsString> = Vec::new();
        let mut origins = Vec::new();
        for arg in keys::settings() {
            let key = keys::key(&arg).to_owned();
            let sdk_variable = || {
                let (_, names) = keys::SDK_VARIABLES.iter().find(|(k, _)| *k == key)?;
                names
                    .iter()
                    .find_map(|n| env(n).map(|v| keys::extension_value(n, v)))
                    .map(|v| vec![OsString::from(v)])
            };
            let (texts, origin) = if let Some(texts) = given.0.get(&key) {
                (texts.clone(), Origin::Command)
            } else if let Some(texts) = sdk_variable() {
                (texts, Origin::Command)
            } else if let Some(texts) = file.values.get(&key) {
                (texts.iter().map(OsString::from).collect(), Origin::File)
            } else {
                (Vec::new(), Origin::Default)
            };
            let long = arg.get_long().expect("settings are long flags");
            for text in texts {
                let mut flag = OsString::from(format!("--{long}="));
                flag.push(text);
                argv.push(flag);
            }
            origins.push((key, origin));
        }
        // Every text was checked by its parser already (by clap on the command line, by the
        // file layer for the file); conflicts between flags were clap's to report, and the
        // environment was read by the first parse.
        let matches = Options::command()
            .ignore_errors(true)
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(argv)
            .and_then(|m| Options::from_arg_matches(&m))
            .map_err(|e| Error::config(format!("resolving the settings: {}", e.kind())));
        let mut options = matches?;
        let g = &mut options.global;
        g.uid.get_or_insert_with(|| nix::unistd::getuid().as_raw());
        g.gid.get_or_insert_with(|| nix::unistd::getgid().as_raw());
        Ok(Self::from_options(options, origins, path, file))
    }

    fn from_options(
        options: Options,
        origins: Vec<(String, Origin)>,
        config_path: Option<PathBuf>,
        file: &ConfigFile,
    ) -> Settings {
        let g = &options.global;
        let m = &options.mount;
        let aws = AwsOptions {
            region: g.region.clone(),
            profile: g.profile.clone(),
            endpoint_url: g.endpoint_url.clone(),
            timeout: Some(Duration::from_secs(g.timeout)),
            credentials: None,
            credentials_file: g.credentials_file_path.clone(),
            use_fips: g.use_fips_endpoint,
            use_dual_stack: g.use_dualstack_endpoint,
            role_arn: g.role_arn.clone(),
        };
        let cache = CacheConfig {
            ttl: Duration::from_secs(g.ttl),
            ttl_jitter: f64::from(g.ttl_jitter) / 100.0,
            max_stale: Duration::from_secs(g.max_stale),
            negative_ttl: Duration::from_secs(g.negative_ttl),
            list_ttl: Duration::from_secs(g.list_ttl),
            max_entries: g.cache_size,
            max_bytes: g.cache_bytes,
            ..CacheConfig::default()
        };
        Settings {
            config_path,
            source: g.source.clone(),
            // Parameter Store is read as `role_arn` too: another account's parameters.
            ssm_aws: AwsOptions {
                timeout: Some(Duration::from_secs(g.ssm_timeout)),
                ..aws.clone()
            },
            ssm_cache: CacheConfig {
                ttl: Duration::from_secs(g.ssm_ttl),
                ..cache
            },
            aws,
            validate_credentials: g.validate_credentials,
            cache,
            defaults: Defaults {
                uid: g.uid.unwrap_or_default(),
                gid: g.gid.unwrap_or_default(),
                file_mode: g.file_mode,
                dir_mode: g.dir_mode,
            },
            log_level: g.log_level.clone(),
            log_file: g.log_file.clone(),
            audit_log: g.audit_log.clone(),
            mlock: g.mlock,
            layout: m.layout.into(),
            prefix: m.prefix.clone(),
            kernel_cache: !m.no_kernel_cache,
            secrets: file.secrets.clone(),
            templates: file.templates.clone(),
            wait_for_secrets: m.wait_for_secrets,
            http_enabled: !m.no_http,
            http: options.http.clone(),
            options,
            origins,
            sections: file.sections.clone(),
        }
    }

    /// The cache of the source the mount and `get` read: Parameter Store's TTL for
    /// `--source ssm`.
    pub fn source_cache(&self) -> CacheConfig {
        match self.source {
            SourceSpec::Ssm => self.ssm_cache,
            _ => self.cache,
        }
    }

    /// Each setting's value as `check-config` shows it, in the order of declaration.
    pub fn shown(&self) -> Vec<(&str, String, Origin)> {
        let values = serde_json::to_value(&self.options).unwrap_or_default();
        self.origins
            .iter()
            .map(|(key, origin)| (key.as_str(), shown_value(&values[key]), *origin))
            .collect()
    }

    /// The settings whose value differs from `other`'s and that SIGHUP cannot change.
    pub fn changed_at_restart(&self, other: &Settings) -> Vec<String> {
        self.shown()
            .into_iter()
            .zip(other.shown())
            .filter(|(new, old)| new.1 != old.1)
            .map(|(new, _)| new.0.to_owned())
            .filter(|key| !keys::RELOADED_ON_SIGHUP.contains(&key.as_str()))
            .chain((self.sections.hook != other.sections.hook).then(|| "hook".to_owned()))
            .chain((self.sections.secrets != other.sections.secrets).then(|| "secrets".to_owned()))
            .chain(
                (self.sections.template != other.sections.template).then(|| "template".to_owned()),
            )
            .collect()
    }

    /// The effective settings as TOML-like lines, each with where it came from. Holds no
    /// secret: the token is named by the variable it comes from, never shown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(path) = &self.config_path {
            out.push_str(&format!("# config file: {}\n", path.display()));
        }
        for (key, value, origin) in self.shown() {
            out.push_str(&format!("{key} = {value}    # {}\n", origin.label()));
        }
        out.push_str(&format!(
            "# {} policy rule(s)\n",
            self.sections.policy.len()
        ));
        // The file's tables as TOML: what the file says once its own validation passed.
        match toml::to_string(&self.sections) {
            Ok(tables) if !tables.is_empty() => {
                out.push('\n');
                out.push_str(&tables);
            }
            Ok(_) => {}
            Err(e) => out.push_str(&format!("# the tables cannot be shown: {e}\n")),
        }
        // What each template reads, found when it was compiled: what a reader needs the
        // policy to allow, and what one render fetches.
        for (spec, template) in self.sections.template.iter().zip(&self.templates) {
            let inputs: Vec<String> = template.inputs().iter().map(|s| s.to_string()).collect();
            out.push_str(&format!(
                "# template {} reads: {}\n",
                spec.path,
                inputs.join(", ")
            ));
        }
        out
    }
}

fn shown_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "(none)".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| format!("{:?}", shown_value(i)))
                .collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;

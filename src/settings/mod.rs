//! The effective settings: each key from the first of flag, environment, config file and
//! default that has it (design.md section 8), validated with one-line errors that name the
//! key and the file. `check-config` prints the result, and SIGHUP resolves it again.

use std::fmt::Display;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::{self, CacheConfig};
use crate::cli::{GlobalArgs, HttpArgs, MountArgs};
use crate::config::{self, ConfigFile};
use crate::error::{Error, Result};
use crate::fuse::namespace::Layout;
use crate::http::{self, HttpSettings};
use crate::policy::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, Defaults, Mode, RuleSpec};
use crate::source::SourceSpec;
use crate::source::aws::AwsOptions;

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

#[derive(Debug, Clone)]
pub struct Settings {
    pub config_path: Option<PathBuf>,
    pub source: SourceSpec,
    pub aws: AwsOptions,
    pub validate_credentials: bool,
    pub cache: CacheConfig,
    pub defaults: Defaults,
    pub rules: Vec<RuleSpec>,
    pub log_level: Option<String>,
    pub log_file: Option<PathBuf>,
    pub audit_log: Option<PathBuf>,
    pub mlock: bool,
    pub layout: Layout,
    pub prefix: String,
    pub kernel_cache: bool,
    pub http_enabled: bool,
    pub http: HttpKeys,
    /// Every key with its value as shown, and where it came from.
    pub shown: Vec<(&'static str, String, Origin)>,
}

/// The HTTP keys; the listeners' [`HttpSettings`] follow from them.
#[derive(Debug, Clone)]
pub struct HttpKeys {
    /// Set when given at all (flag, environment or file), as that insists on a TCP listener.
    pub port: Option<u16>,
    pub listen: IpAddr,
    pub socket: Option<PathBuf>,
    pub socket_mode: Mode,
    pub max_conn: usize,
    pub path_prefix: String,
    pub ssrf_headers: Vec<String>,
    pub ssrf_env_variables: Vec<String>,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

impl HttpKeys {
    pub fn settings(&self, tcp: bool) -> HttpSettings {
        HttpSettings {
            tcp: tcp.then(|| {
                std::net::SocketAddr::new(self.listen, self.port.unwrap_or(http::DEFAULT_PORT))
            }),
            socket: self.socket.clone().map(|p| (p, self.socket_mode.0)),
            max_conn: self.max_conn,
            header_timeout: self.header_timeout,
            request_timeout: self.request_timeout,
            path_prefix: self.path_prefix.clone(),
            token_headers: self.ssrf_headers.clone(),
        }
    }
}

/// Resolves one key at a time and records where each came from.
struct Resolver<'a> {
    file: &'a ConfigFile,
    path: Option<&'a Path>,
    shown: Vec<(&'static str, String, Origin)>,
}

impl Resolver<'_> {
    fn bad(&self, why: String) -> Error {
        match self.path {
            Some(path) => config::file_error(path, &why),
            None => Error::config(why),
        }
    }

    /// The first of `command` and `file` that is set, else `default`.
    fn pick<T: Clone + Display>(
        &mut self,
        key: &'static str,
        command: Option<T>,
        file: Option<T>,
        default: T,
    ) -> T {
        let (value, origin) = match (command, file) {
            (Some(v), _) => (v, Origin::Command),
            (None, Some(v)) => (v, Origin::File),
            (None, None) => (default, Origin::Default),
        };
        self.shown.push((key, value.to_string(), origin));
        value
    }

    fn pick_opt<T: Clone + Display>(
        &mut self,
        key: &'static str,
        command: Option<T>,
        file: Option<T>,
    ) -> Option<T> {
        let (value, origin) = match (command, file) {
            (Some(v), _) => (Some(v), Origin::Command),
            (None, Some(v)) => (Some(v), Origin::File),
            (None, None) => (None, Origin::Default),
        };
        let text = value
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), ToString::to_string);
        self.shown.push((key, text, origin));
        value
    }

    fn whole(
        &self,
        key: &str,
        num: &Option<config::Num>,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>> {
        num.as_ref()
            .map(|n| n.whole(key, range))
            .transpose()
            .map_err(|e| self.bad(e))
    }

    fn flag(&self, key: &str, flag: &Option<config::Flag>) -> Result<Option<bool>> {
        flag.as_ref()
            .map(|f| f.value(key))
            .transpose()
            .map_err(|e| self.bad(e))
    }

    /// An agent key and ours for the same setting: one of them at most.
    fn one_of<T>(
        &self,
        ours: &'static str,
        a: Option<T>,
        agents: &'static str,
        b: Option<T>,
    ) -> Result<Option<T>> {
        match (a, b) {
            (Some(_), Some(_)) => Err(self.bad(format!(
                "keys `{ours}` and `{agents}` (the agent's name for it) are both set; keep one"
            ))),
            (a, b) => Ok(a.or(b)),
        }
    }
}

#[derive(Clone)]
struct Shown<T>(T);

impl<T: std::fmt::Debug> Display for Shown<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// The config file: `--config`, else the default path when it exists, else none.
    pub fn config_path(global: &GlobalArgs) -> Option<PathBuf> {
        global.config.clone().or_else(|| {
            Path::new(config::DEFAULT_PATH)
                .exists()
                .then(|| config::DEFAULT_PATH.into())
        })
    }

    pub fn resolve(
        global: &GlobalArgs,
        mount: Option<&MountArgs>,
        http: Option<&HttpArgs>,
    ) -> Result<Settings> {
        let path = Self::config_path(global);
        let file = match &path {
            Some(p) => ConfigFile::load(p)?,
            None => ConfigFile::default(),
        };
        Self::resolve_with(global, mount, http, path, &file)
    }

    pub fn resolve_with(
        global: &GlobalArgs,
        mount: Option<&MountArgs>,
        http_args: Option<&HttpArgs>,
        path: Option<PathBuf>,
        file: &ConfigFile,
    ) -> Result<Settings> {
        let mut r = Resolver {
            file,
            path: path.as_deref(),
            shown: Vec::new(),
        };
        let f = r.file;
        let file_source = f
            .source
            .as_deref()
            .map(str::parse::<SourceSpec>)
            .transpose()
            .map_err(|e| r.bad(format!("key `source`: {}", e.message())))?;
        let source = r.pick(
            "source",
            global.source.clone(),
            file_source,
            SourceSpec::Aws,
        );

        // The SDK's own variables stand between the flag and the file.
        let region = r.pick_opt(
            "region",
            global
                .region
                .clone()
                .or_else(|| env("AWS_REGION"))
                .or_else(|| env("AWS_DEFAULT_REGION")),
            f.region.clone(),
        );
        let profile = r.pick_opt(
            "profile",
            global.profile.clone().or_else(|| env("AWS_PROFILE")),
            f.profile.clone(),
        );
        let endpoint_url = r.pick_opt(
            "endpoint_url",
            global
                .endpoint_url
                .clone()
                .or_else(|| env("AWS_ENDPOINT_URL_SECRETS_MANAGER"))
                .or_else(|| env("AWS_ENDPOINT_URL")),
            f.endpoint_url.clone(),
        );
        let timeout = r.whole("timeout", &f.timeout, 1..=300)?;
        let timeout = r.pick("timeout", global.timeout, timeout, 10);
        let credentials_file_path = r.pick_opt(
            "credentials_file_path",
            global
                .credentials_file_path
                .clone()
                .map(|p| p.display().to_string()),
            f.credentials_file_path
                .clone()
                .map(|p| p.display().to_string()),
        );
        let validate = r.flag("validate_credentials", &f.validate_credentials)?;
        let validate_credentials = r.pick(
            "validate_credentials",
            global.validate_credentials,
            validate,
            true,
        );

        let ttl_ours = r.whole("ttl", &f.ttl, 0..=86400)?;
        let ttl_agent = r.whole("ttl_seconds", &f.ttl_seconds, 0..=3600)?;
        let ttl_file = r.one_of("ttl", ttl_ours, "ttl_seconds", ttl_agent)?;
        let ttl = r.pick("ttl", global.ttl, ttl_file, cache::DEFAULT_TTL.as_secs());
        let jitter = r
            .whole("ttl_jitter", &f.ttl_jitter, 0..=50)?
            .map(|n| n as u8);
        let ttl_jitter = r.pick(
            "ttl_jitter",
            global.ttl_jitter,
            jitter,
            cache::DEFAULT_TTL_JITTER_PERCENT,
        );
        let size = r
            .whole("cache_size", &f.cache_size, 1..=1_000_000)?
            .map(|n| n as usize);
        let cache_size = r.pick(
            "cache_size",
            global.cache_size,
            size,
            cache::DEFAULT_MAX_ENTRIES,
        );
        let bytes = r
            .whole("cache_bytes", &f.cache_bytes, 1024..=1 << 40)?
            .map(|n| n as usize);
        let cache_bytes = r.pick(
            "cache_bytes",
            global.cache_bytes,
            bytes,
            cache::DEFAULT_MAX_BYTES,
        );
        let stale_ours = r.whole("max_stale", &f.max_stale, 0..=604800)?;
        let stale_agent = r
            .flag("ignore_transient_errors", &f.ignore_transient_errors)?
            .map(|ignore| {
                if ignore {
                    cache::DEFAULT_MAX_STALE.as_secs()
                } else {
                    0
                }
            });
        let stale_file = r.one_of(
            "max_stale",
            stale_ours,
            "ignore_transient_errors",
            stale_agent,
        )?;
        let max_stale = r.pick(
            "max_stale",
            global.max_stale,
            stale_file,
            cache::DEFAULT_MAX_STALE.as_secs(),
        );
        let negative = r.whole("negative_ttl", &f.negative_ttl, 0..=3600)?;
        let negative_ttl = r.pick(
            "negative_ttl",
            global.negative_ttl,
            negative,
            cache::DEFAULT_NEGATIVE_TTL.as_secs(),
        );

        let file_uid = r
            .whole("uid", &f.uid, 0..=u32::MAX as u64)?
            .map(|n| n as u32);
        let uid = r.pick("uid", global.uid, file_uid, nix::unistd::getuid().as_raw());
        let file_gid = r
            .whole("gid", &f.gid, 0..=u32::MAX as u64)?
            .map(|n| n as u32);
        let gid = r.pick("gid", global.gid, file_gid, nix::unistd::getgid().as_raw());
        let file_mode = r.pick(
            "file_mode",
            global.file_mode,
            f.file_mode,
            DEFAULT_FILE_MODE,
        );
        let dir_mode = r.pick("dir_mode", global.dir_mode, f.dir_mode, DEFAULT_DIR_MODE);

        let level_file = f
            .log_level
            .as_deref()
            .map(|l| agent_log_level(l).unwrap_or_else(|| l.to_owned()));
        let log_level = r.pick_opt("log_level", global.log_level.clone(), level_file);
        let log_to_file = r
            .flag("log_to_file", &f.log_to_file)?
            .and_then(|on| on.then(|| PathBuf::from(config::AGENT_LOG_FILE)));
        let log_file_file = r.one_of("log_file", f.log_file.clone(), "log_to_file", log_to_file)?;
        let log_file = r
            .pick_opt(
                "log_file",
                global.log_file.clone().map(|p| p.display().to_string()),
                log_file_file.map(|p| p.display().to_string()),
            )
            .map(PathBuf::from);
        let audit_log = r
            .pick_opt(
                "audit_log",
                global.audit_log.clone().map(|p| p.display().to_string()),
                f.audit_log.clone().map(|p| p.display().to_string()),
            )
            .map(PathBuf::from);
        let mlock_file = r.flag("mlock", &f.mlock)?;
        let mlock = r.pick("mlock", global.mlock, mlock_file, false);

        let file_layout = f
            .layout
            .as_deref()
            .map(|l| <Layout as clap::ValueEnum>::from_str(l, true))
            .transpose()
            .map_err(|_| r.bad("key `layout`: expected flat or stages".into()))?;
        let layout = r.pick(
            "layout",
            mount.and_then(|m| m.layout),
            file_layout,
            Layout::Flat,
        );
        let prefix = r
            .pick(
                "prefix",
                mount.and_then(|m| m.prefix.clone()).map(Shown),
                f.prefix.clone().map(Shown),
                Shown(String::new()),
            )
            .0;
        let nkc = r.flag("no_kernel_cache", &f.no_kernel_cache)?;
        let no_kernel_cache = r.pick(
            "no_kernel_cache",
            mount.and_then(|m| m.no_kernel_cache),
            nkc,
            false,
        );
        let nh = r.flag("no_http", &f.no_http)?;
        let no_http = r.pick("no_http", mount.and_then(|m| m.no_http), nh, false);

        let h = http_args.cloned().unwrap_or_default();
        let port = r
            .whole("http_port", &f.http_port, 0..=65535)?
            .map(|n| n as u16);
        let http_port = r.pick_opt("http_port", h.http_port, port);
        let listen_file = f
            .http_listen
            .as_deref()
            .map(str::parse::<IpAddr>)
            .transpose()
            .map_err(|_| r.bad("key `http_listen`: expected an IP address".into()))?;
        let listen = r.pick(
            "http_listen",
            h.http_listen,
            listen_file,
            IpAddr::from([127, 0, 0, 1]),
        );
        let socket = r
            .pick_opt(
                "http_socket",
                h.http_socket.map(|p| p.display().to_string()),
                f.http_socket.clone().map(|p| p.display().to_string()),
            )
            .map(PathBuf::from);
        let socket_mode = r.pick(
            "http_socket_mode",
            h.http_socket_mode,
            f.http_socket_mode,
            Mode(0o666),
        );
        let conns = r
            .whole("max_conn", &f.max_conn, 1..=1000)?
            .map(|n| n as usize);
        let max_conn = r.pick("max_conn", h.max_conn, conns, http::DEFAULT_MAX_CONN);
        let path_prefix = r.pick(
            "path_prefix",
            h.path_prefix.clone(),
            f.path_prefix.clone(),
            http::DEFAULT_PATH_PREFIX.to_owned(),
        );
        if !path_prefix.starts_with('/') {
            return Err(r.bad(format!(
                "key `path_prefix`: {path_prefix:?} must begin with /"
            )));
        }
        let default_headers: Vec<String> = http::token::DEFAULT_HEADERS.map(String::from).to_vec();
        let ssrf_headers = r
            .pick(
                "ssrf_headers",
                h.ssrf_headers.clone().map(Shown),
                f.ssrf_headers.clone().map(Shown),
                Shown(default_headers),
            )
            .0;
        let default_vars: Vec<String> = http::token::DEFAULT_ENV_VARIABLES
            .map(String::from)
            .to_vec();
        let ssrf_env_variables = r
            .pick(
                "ssrf_env_variables",
                h.ssrf_env_variables.clone().map(Shown),
                f.ssrf_env_variables.clone().map(Shown),
                Shown(default_vars),
            )
            .0;
        for (key, list) in [
            ("ssrf_headers", &ssrf_headers),
            ("ssrf_env_variables", &ssrf_env_variables),
        ] {
            if list.is_empty() {
                return Err(r.bad(format!("key `{key}`: the list can't be empty")));
            }
        }
        let hto = r.whole("http_header_timeout", &f.http_header_timeout, 1..=300)?;
        let header_timeout = r.pick(
            "http_header_timeout",
            h.http_header_timeout,
            hto,
            http::DEFAULT_HEADER_TIMEOUT.as_secs(),
        );
        let rto = r.whole("http_request_timeout", &f.http_request_timeout, 1..=3600)?;
        let request_timeout = r.pick(
            "http_request_timeout",
            h.http_request_timeout,
            rto,
            http::DEFAULT_REQUEST_TIMEOUT.as_secs(),
        );
        let shown = std::mem::take(&mut r.shown);
        Ok(Settings {
            config_path: path,
            source,
            aws: AwsOptions {
                region,
                profile,
                endpoint_url,
                timeout: Some(Duration::from_secs(timeout)),
                credentials: None,
                credentials_file: credentials_file_path.map(PathBuf::from),
            },
            validate_credentials,
            cache: CacheConfig {
                ttl: Duration::from_secs(ttl),
                ttl_jitter: f64::from(ttl_jitter) / 100.0,
                max_stale: Duration::from_secs(max_stale),
                negative_ttl: Duration::from_secs(negative_ttl),
                max_entries: cache_size,
                max_bytes: cache_bytes,
                ..CacheConfig::default()
            },
            defaults: Defaults {
                uid,
                gid,
                file_mode,
                dir_mode,
            },
            rules: file.policy.clone(),
            log_level,
            log_file,
            audit_log,
            mlock,
            layout,
            prefix,
            kernel_cache: !no_kernel_cache,
            http_enabled: !no_http,
            http: HttpKeys {
                port: http_port,
                listen,
                socket,
                socket_mode,
                max_conn,
                path_prefix,
                ssrf_headers,
                ssrf_env_variables,
                header_timeout: Duration::from_secs(header_timeout),
                request_timeout: Duration::from_secs(request_timeout),
            },
            shown,
        })
    }

    /// The effective settings as TOML-like lines, each with where it came from. Holds no
    /// secret: the token is named by the variable it comes from, never shown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(path) = &self.config_path {
            out.push_str(&format!("# config file: {}\n", path.display()));
        }
        for (key, value, origin) in &self.shown {
            out.push_str(&format!("{key} = {value}    # {}\n", origin.label()));
        }
        out.push_str(&format!("# {} policy rule(s)\n", self.rules.len()));
        out
    }
}

/// The agent's log levels (DEBUG, INFO, WARN, ERROR, NONE, any case) as tracing filters.
fn agent_log_level(level: &str) -> Option<String> {
    match level.to_ascii_lowercase().as_str() {
        "none" => Some("off".into()),
        l @ ("debug" | "info" | "warn" | "error") => Some(l.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;

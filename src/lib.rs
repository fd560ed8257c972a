//! secretsfs, the binary's library: settings, the config file, the service's life, hooks and
//! `watch`, over the workspace's crates (docs/ARCHITECTURE.md#layers):
//!
//! - `secretsfs-core` ([`secretsfs_core`]): selectors, sources, cache, engine, policy,
//!   templates, audit; re-exported here under its module names.
//! - `secretsfs-fuse` ([`fuse`]), `secretsfs-http` ([`http`]) and `secretsfs-csi` ([`csi`]): the
//!   front ends, each on the core alone.
//! - here: [`cli`], [`settings`] (with the config file and its `[[template]]` and `[[hook]]`
//!   entries),
//!   [`run`] (each command), [`service`] (the life of `mount` and `serve`: prepare, build,
//!   serve, stop), [`handover`] and [`daemon`] (the process), [`hooks`] and [`watch`] (what a
//!   change sets off).

pub mod cli;
pub mod daemon;
pub mod environment;
pub mod exec;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handover;
pub mod hardening;
pub mod hooks;
pub mod lambda;
pub mod log_format;
pub mod panic_log;
pub mod run;
pub mod service;
pub mod settings;
pub mod signal_name;
pub mod stop_post;
pub mod supervisor;
pub mod watch;

pub use secretsfs_core::{
    Engine, Error, ErrorKind, Resolved, Result, Selector, audit, cache, caller, engine, error,
    extract, host_file, log_throttle, policy, secrets_list, selector, source, template,
};
pub use secretsfs_csi as csi;
pub use secretsfs_fuse as fuse;
pub use secretsfs_http as http;

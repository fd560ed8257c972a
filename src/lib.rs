//! secretsfs: AWS Secrets Manager secrets as read-only files and over an HTTP API compatible
//! with the AWS Secrets Manager Agent, served from one shared cache.
//!
//! The layers, each depending only on the ones below it (docs/ARCHITECTURE.md#layers):
//!
//! - [`cli`], [`settings`], [`config`], [`run`]: parse flags and the config file (with its
//!   [`secrets_list`]), build everything, run a command.
//! - front ends (the FUSE mount, the HTTP API): thin adapters over the engine.
//! - [`engine`]: selectors ([`selector`]) resolved through the [`cache`], JSON keys
//!   ([`extract`]), and who may read what ([`policy`]; the one asking is a [`caller`], the same
//!   type for both front ends).
//! - [`source`]: the [`source::SecretSource`] trait with its `aws` and `file` implementations.
//! - [`hooks`]: what runs when a watched secret changes upstream (`[[hook]]` entries), with
//!   debounce, timeout and retries; the change detection fires them.
//! - [`template`]: files rendered from several secrets (`[[template]]` entries): compile,
//!   inputs, render over values handed in.
//!
//! Files of the host that a user names are read through [`host_file`]: regular files only,
//! each kind under its own size limit.
//!
//! Errors ([`error`]) are classified once, where they arise, and each front end maps the
//! classification onto its own answer: an exit code, an errno, an HTTP status.

pub mod audit;
pub mod cache;
pub mod caller;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod engine;
pub mod error;
pub mod extract;
pub mod fuse;
#[cfg(any(test, feature = "memory-source"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod hooks;
pub mod host_file;
pub mod http;
pub mod log_format;
pub mod log_throttle;
pub mod panic_log;
pub mod policy;
pub mod run;
pub mod secrets_list;
pub mod selector;
pub mod settings;
pub mod source;
pub mod stop_post;
pub mod template;
pub mod watch;

pub use engine::{Engine, Resolved};
pub use error::{Error, ErrorKind, Result};
pub use selector::Selector;

//! secretsfs's core: everything the front ends share, and nothing of theirs
//! (docs/ARCHITECTURE.md#layers). It depends on no front end, no fuser, no clap and no HTTP
//! server, and knows no settings, config file or process: the binary builds what it needs
//! here and hands it to the front ends.
//!
//! - [`engine`]: selectors ([`selector`]) resolved through the [`cache`], JSON keys
//!   ([`extract`]), templates rendered ([`template`]); refresh ahead, changes, roles.
//! - [`source`]: the [`source::SecretSource`] trait and its sources (Secrets Manager,
//!   Parameter Store, a file).
//! - [`policy`]: who may read what; the one asking is a [`caller`], the same type for every
//!   front end. Decisions are written by [`audit`].
//! - [`error`]: classified once, where they arise; each front end maps the classification onto
//!   its own answer (an errno, an HTTP status, an exit code).
//!
//! Files of the host that a user names are read through [`host_file`]: regular files only,
//! each kind under its own size limit.

pub mod audit;
pub mod cache;
pub mod caller;
pub mod engine;
pub mod error;
pub mod extract;
pub mod host_file;
pub mod log_throttle;
pub mod policy;
pub mod secrets_list;
pub mod selector;
pub mod source;
pub mod template;

pub use engine::{Engine, Resolved};
pub use error::{Error, ErrorKind, Result};
pub use selector::Selector;

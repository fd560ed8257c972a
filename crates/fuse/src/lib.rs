//! The FUSE front end (docs/ARCHITECTURE.md#mount-layout): secrets and templates as read-only
//! files, over the core's engine and policy. It knows no settings, no config file and no
//! process: the binary builds a [`fs::SecretsFs`] and runs the mount's life.
//!
//! - [`namespace`]: what a path means, and the directories a listing implies;
//! - [`fs`]: the operations' semantics ([`fs::SecretsFs`]), FUSE-free and async;
//! - [`inodes`]: numbers for the paths the kernel holds;
//! - [`adapter`]: the fuser `Filesystem`, a thin translation onto [`fs`];
//! - [`mount`]: mounting, taking a connection over, and unmounting;
//! - [`templates`]: the templates at their paths.

pub mod adapter;
pub mod fs;
pub mod inodes;
pub mod mount;
pub mod namespace;
pub mod templates;

//! The FUSE front end (docs/ARCHITECTURE.md#mount-layout): secrets as read-only files.
//!
//! - [`namespace`]: what a path means, and the directories a listing implies;
//! - [`fs`]: the operations' semantics ([`fs::SecretsFs`]), FUSE-free and async;
//! - [`inodes`]: numbers for the paths the kernel holds;
//! - [`adapter`]: the fuser `Filesystem`, a thin translation onto [`fs`];
//! - [`mount`]: mounting and unmounting.

pub mod adapter;
pub mod fs;
pub mod handover;
pub mod inodes;
pub mod mount;
pub mod namespace;
pub mod templates;

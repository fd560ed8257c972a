//! Listing directories: per caller (names the caller may not read are left out), and per
//! open directory, so that a listing read in several calls is one listing.

use std::sync::Arc;

use nix::errno::Errno;
use tokio::time::Instant;

use super::{DirEntry, FsResult, Kind, SecretsFs, UNKNOWN_INO};
use crate::inodes::{NodeKind, ROOT};
use crate::namespace::{EntryKind, Layout, join, valid_component};
use secretsfs_core::caller::Caller;

impl SecretsFs {
    /// The entries of a directory, `.` and `..` first, hiding secrets the caller may not read.
    pub async fn readdir(&self, caller: &Caller, ino: u64) -> FsResult<Vec<DirEntry>> {
        let node = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        let mut entries = vec![
            DirEntry {
                ino,
                name: ".".into(),
                kind: Kind::Dir,
            },
            DirEntry {
                ino: if ino == ROOT { ROOT } else { UNKNOWN_INO },
                name: "..".into(),
                kind: Kind::Dir,
            },
        ];
        match node.kind {
            NodeKind::File(_) | NodeKind::Template(_) => return Err(Errno::ENOTDIR.into()),
            NodeKind::SecretDir(secret) => {
                let described = self.engine.describe(&secret).await?;
                for stage in described.value.stages().into_keys() {
                    if valid_component(stage) {
                        let path = join(&node.path, stage);
                        entries.push(self.entry(&path, stage, Kind::File));
                    }
                }
            }
            NodeKind::Dir => {
                self.listed
                    .lock()
                    .insert(node.path.to_string(), Instant::now());
                for (name, kind) in self.templates.children(&node.path) {
                    let path = join(&node.path, &name);
                    let kind = match kind {
                        EntryKind::Dir => Kind::Dir,
                        EntryKind::Secret => {
                            let template = self.templates.get(&path).expect("listed").clone();
                            if !self.may_read_template(caller, &template).await {
                                continue;
                            }
                            Kind::File
                        }
                    };
                    entries.push(self.entry(&path, &name, kind));
                }
                let Some((tree, _)) = self.tree().await else {
                    return Ok(entries);
                };
                for (name, kind) in tree.children(&node.path) {
                    // A template's path shadows a secret's; its directories are listed once.
                    if self.templates.entry(&join(&node.path, &name)).is_some() {
                        continue;
                    }
                    let path = join(&node.path, &name);
                    let kind = match kind {
                        EntryKind::Dir => Kind::Dir,
                        EntryKind::Secret => {
                            let secret = self.namespace.secret_name(&path);
                            if !self.may_read_secret(caller, &secret).await {
                                continue;
                            }
                            match self.namespace.layout() {
                                Layout::Flat => Kind::File,
                                Layout::Stages => Kind::Dir,
                            }
                        }
                    };
                    entries.push(self.entry(&path, &name, kind));
                }
            }
        }
        Ok(entries)
    }

    pub fn opendir(&self, ino: u64) -> FsResult<u64> {
        match self.inodes.get(ino).ok_or(Errno::ENOENT)?.kind {
            NodeKind::File(_) | NodeKind::Template(_) => Err(Errno::ENOTDIR.into()),
            _ => Ok(self.new_handle()),
        }
    }

    /// The entries of an open directory from `offset` on: listed (and filtered for this
    /// caller) afresh at offset 0, from the handle's listing after.
    pub async fn readdir_at(
        &self,
        caller: &Caller,
        ino: u64,
        fh: u64,
        offset: u64,
    ) -> FsResult<Vec<DirEntry>> {
        let taken = (offset > 0)
            .then(|| self.dir_handles.lock().get(&fh).cloned())
            .flatten();
        let entries = match taken {
            Some(entries) => entries,
            None => {
                let entries = Arc::new(self.readdir(caller, ino).await?);
                self.dir_handles.lock().insert(fh, entries.clone());
                entries
            }
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(entries.iter().skip(skip).cloned().collect())
    }

    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.lock().remove(&fh);
    }

    fn entry(&self, path: &str, name: &str, kind: Kind) -> DirEntry {
        DirEntry {
            ino: self.inodes.peek(path).unwrap_or(UNKNOWN_INO),
            name: name.to_owned(),
            kind,
        }
    }
}

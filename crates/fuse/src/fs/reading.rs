//! Reading files: an open file and an inode read their own version, held or fetched again by
//! its version id (docs/ARCHITECTURE.md#read-paths).

use std::sync::Arc;

use nix::errno::Errno;

use super::{FsError, FsResult, SecretsFs, audit};
use crate::inodes::{Identity, Node, NodeKind};
use secretsfs_core::caller::Caller;
use secretsfs_core::engine::Resolved;
use secretsfs_core::selector::Selector;

impl SecretsFs {
    /// Opens the file (only under `--no-kernel-cache`): checked and audited per open, and
    /// pinned to its inode's version, which the handle reads whole to its close.
    pub async fn open(&self, caller: &Caller, ino: u64) -> FsResult<u64> {
        let node = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
        if let NodeKind::Template(path) = &node.kind {
            return self.open_template(caller, &node, path).await;
        }
        let NodeKind::File(selector) = &node.kind else {
            return Err(Errno::EISDIR.into());
        };
        self.may_read(caller, selector).await?;
        let resolved = match self.version_bytes(&node).await {
            Ok(resolved) => resolved,
            Err(e) => {
                audit(caller, &selector.to_string(), None, Some(&e.reason()));
                return Err(e);
            }
        };
        audit(caller, &selector.to_string(), Some(&resolved), None);
        let fh = self.new_handle();
        self.handles.lock().insert(fh, resolved);
        Ok(fh)
    }

    async fn open_template(&self, caller: &Caller, node: &Node, path: &str) -> FsResult<u64> {
        let template = self.templates.get(path).ok_or(Errno::ENOENT)?.clone();
        if !self.may_read_template(caller, &template).await {
            audit(caller, path, None, Some(super::DENIED));
            return Err(Errno::EACCES.into());
        }
        let resolved = self.version_bytes(node).await.inspect_err(|e| {
            audit(caller, path, None, Some(&e.reason()));
        })?;
        audit(caller, path, Some(&resolved), None);
        let fh = self.new_handle();
        self.handles.lock().insert(fh, resolved);
        Ok(fh)
    }

    pub fn release(&self, fh: u64) {
        self.handles.lock().remove(&fh);
    }

    /// The bytes at `offset`, from the open handle or the inode's own version.
    pub async fn read(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> FsResult<(Arc<Resolved>, std::ops::Range<usize>)> {
        let snapshot = self.handles.lock().get(&fh).cloned();
        let resolved = match snapshot {
            Some(snapshot) => snapshot,
            None => {
                let node = self.inodes.get(ino).ok_or(Errno::ENOENT)?;
                self.version_bytes(&node).await?
            }
        };
        let len = resolved.bytes().len();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(size as usize).min(len);
        Ok((resolved, start..end))
    }

    /// The bytes of the version `node` is: held, or fetched again by its version id when the
    /// byte budget dropped them. A version whose bytes changed in place upstream (the file
    /// source keeps a VersionId across an edit) is ESTALE: a new open finds the new inode.
    async fn version_bytes(&self, node: &Node) -> FsResult<Arc<Resolved>> {
        if let NodeKind::Template(_) = &node.kind {
            return self.template_bytes(node).await;
        }
        let (NodeKind::File(selector), Some(version)) = (&node.kind, &node.version) else {
            return Err(FsError::answer(Errno::EISDIR).with_reason("not a file"));
        };
        if let Some(bytes) = version.bytes() {
            self.inodes.touch(version);
            return Ok(bytes);
        }
        // Most often the version is still what its selector names, cached: no call then.
        if let Some(Ok(cached)) = self.engine.get_cached(selector)
            && Identity::of(&cached) == version.identity
        {
            let cached = Arc::new(cached);
            self.inodes.restore_bytes(version, &cached);
            return Ok(cached);
        }
        let pinned = Selector {
            version_stage: None,
            version_id: Some(version.identity.version_id.to_string()),
            ..(**selector).clone()
        };
        // The file and its version, as the log names them (built only on a failure).
        let at = || format!("{} (version {})", node.path, version.identity.version_id);
        let resolved = self.engine.get(&pinned).await.map_err(|e| {
            FsError::of_engine(e, "an open file's version could not be fetched again")
                .with_path(at())
        })?;
        let resolved = Arc::new(resolved);
        if Identity::of(&resolved) != version.identity {
            return Err(FsError::failure(
                Errno::ESTALE,
                "this version's bytes changed in place upstream; open the file again to read them",
            )
            .with_path(at())
            .with_reason("the version changed in place"));
        }
        self.inodes.restore_bytes(version, &resolved);
        Ok(resolved)
    }
}

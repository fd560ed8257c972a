//! Template files of the mount (docs/ARCHITECTURE.md#templates): rendered from the cache when
//! looked up, each rendering a version with an inode of its own, like a secret's.
//!
//! A caller reads a template only if its own owner, group and mode allow it and the policy
//! allows that caller every secret it reads, checked before any upstream call.

use std::sync::Arc;

use nix::errno::Errno;

use super::{Attr, DENIED, FsError, FsResult, SecretsFs, audit};
use crate::inodes::{Identity, Node, NodeKind};
use secretsfs_core::caller::Caller;
use secretsfs_core::engine::Resolved;
use secretsfs_core::policy;
use secretsfs_core::template::OnMissing;
use secretsfs_core::template::TemplateFile;

impl SecretsFs {
    /// Whether `caller` may read the template: its own mode, then every input's policy.
    pub(super) async fn may_read_template(&self, caller: &Caller, template: &TemplateFile) -> bool {
        if !policy::permits(caller, &template.attrs, policy::READ).await {
            return false;
        }
        for input in template.template.inputs() {
            if !self.may_read_secret(caller, &input.secret_id).await {
                return false;
            }
        }
        true
    }

    pub(super) async fn lookup_template(&self, caller: &Caller, path: &str) -> FsResult<Attr> {
        let template = self.templates.get(path).ok_or(Errno::ENOENT)?.clone();
        if !self.may_read_template(caller, &template).await {
            audit(caller, path, None, Some(DENIED));
            return Err(Errno::EACCES.into());
        }
        let resolved = Arc::new(self.render(path, &template).await?);
        let kind = NodeKind::Template(Arc::from(path));
        let (ino, node) = self.inodes.intern_version(path, kind, &resolved);
        Ok(self.template_attr(ino, &template, &node, resolved.fresh_until))
    }

    /// A template's attributes, whose entry has no time to live: the kernel checks only the
    /// presented owner, group and mode when it opens a file through a cached entry, and those
    /// cannot say "and may read every input". An entry that is never valid makes every path
    /// walk to the template, by any caller, look it up here again, where the inputs are judged
    /// for that caller. The attributes themselves (one version's, fixed) keep their time, so a
    /// read costs no GETATTR. Opens of secrets keep costing no round trip
    /// (docs/ARCHITECTURE.md#templates).
    pub(super) fn template_attr(
        &self,
        ino: u64,
        template: &TemplateFile,
        node: &Node,
        fresh_until: tokio::time::Instant,
    ) -> Attr {
        let mut attr = self.file_attr_as(ino, template.attrs, node, fresh_until);
        attr.entry_ttl = std::time::Duration::ZERO;
        attr
    }

    /// Renders the template; a failure is EIO, or ENOENT for a missing input where the
    /// template says so, and a warning either way (template, input, cause; never a value).
    pub(super) async fn render(&self, path: &str, template: &TemplateFile) -> FsResult<Resolved> {
        self.engine
            .render(&template.template)
            .await
            .map_err(|failure| {
                let errno = if failure.missing && template.on_missing == OnMissing::Enoent {
                    Errno::ENOENT
                } else {
                    Errno::EIO
                };
                FsError::failure(errno, "template could not be rendered")
                    .with_path(path)
                    .with_source(failure)
                    .with_reason("the template could not be rendered")
            })
    }

    /// The bytes of a template version: held, or rendered again when that gives the same
    /// version (else ESTALE: a new open finds the new one).
    pub(super) async fn template_bytes(&self, node: &Node) -> FsResult<Arc<Resolved>> {
        let (NodeKind::Template(path), Some(version)) = (&node.kind, &node.version) else {
            return Err(FsError::answer(Errno::EISDIR).with_reason("not a template"));
        };
        if let Some(bytes) = version.bytes() {
            self.inodes.touch(version);
            return Ok(bytes);
        }
        let template = self
            .templates
            .get(path)
            .ok_or_else(|| FsError::answer(Errno::ENOENT).with_reason("no such template"))?
            .clone();
        let rendered = Arc::new(self.render(path, &template).await?);
        if Identity::of(&rendered) != version.identity {
            return Err(FsError::failure(
                Errno::ESTALE,
                "the template's inputs changed since it was opened; open it again",
            )
            .with_path(path.as_ref())
            .with_reason("the template's inputs changed"));
        }
        self.inodes.restore_bytes(version, &rendered);
        Ok(rendered)
    }
}

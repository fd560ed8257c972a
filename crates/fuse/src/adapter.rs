//! The fuser `Filesystem`: each request becomes a call on [`SecretsFs`], each result a reply.
//!
//! Requests never block a FUSE worker on the network. A worker polls the operation once, on
//! its own thread: a cache hit completes right there and is answered inline; anything that
//! must wait (a fetch, a lookup of the caller's groups) is handed to the tokio runtime, which
//! replies when it completes.

use std::ffi::OsStr;
use std::future::Future;

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, PollEvents, PollFlags, PollNotifier,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request,
    TimeOrNow, WriteFlags,
};

use super::fs::{Attr, FsError, Kind, SecretsFs};
use secretsfs_core::caller::Caller;
use secretsfs_core::log_throttle::LogThrottle;

pub struct FuseFs {
    fs: Arc<SecretsFs>,
    runtime: tokio::runtime::Handle,
    failures: Arc<Failures>,
}

/// Where every error of the mount ends (docs/ARCHITECTURE.md#errors): counted
/// (`secretsfs_fuse_errors_total` by operation and errno), logged in one line with its cause
/// (a failure as a warning, at most once a minute for the same failure of the same path, with
/// how many were left out; an ordinary answer at debug level) and turned into the reply's errno.
#[derive(Default)]
struct Failures {
    reported: LogThrottle,
}

impl Failures {
    fn fail(&self, operation: &'static str, error: FsError) -> Errno {
        let errno = error.errno();
        metrics::counter!("secretsfs_fuse_errors_total",
            "operation" => operation, "errno" => errno_name(errno))
        .increment(1);
        let path = error.path().unwrap_or("");
        let cause = error.source_text().unwrap_or_default();
        if error.level() <= tracing::Level::WARN {
            let key = format!("{}\0{path}", error.message());
            if let Some(left_out) = self.reported.due(&key) {
                tracing::warn!(target: "secretsfs::fuse", operation, path, errno = %errno,
                    cause, left_out, "{}", error.message());
            }
        } else {
            tracing::debug!(target: "secretsfs::fuse", operation, path, errno = %errno, cause,
                "{}", error.message());
        }
        Errno::from_i32(errno as i32)
    }
}

/// The errno's name as a metric label; the common ones without an allocation.
fn errno_name(errno: nix::errno::Errno) -> std::borrow::Cow<'static, str> {
    use nix::errno::Errno as E;
    match errno {
        E::ENOENT => "ENOENT".into(),
        E::EACCES => "EACCES".into(),
        E::EIO => "EIO".into(),
        E::ENOTDIR => "ENOTDIR".into(),
        E::EISDIR => "EISDIR".into(),
        E::ESTALE => "ESTALE".into(),
        other => format!("{other:?}").into(),
    }
}

impl FuseFs {
    pub fn new(fs: Arc<SecretsFs>, runtime: tokio::runtime::Handle) -> Self {
        FuseFs {
            fs,
            runtime,
            failures: Arc::default(),
        }
    }

    /// Runs `op` to completion inline if it needs no waiting, else on the runtime; `reply`
    /// gets the result either way.
    fn dispatch<T, F, R>(&self, op: F, reply: R)
    where
        F: Future<Output = T> + Send + 'static,
        R: FnOnce(T) + Send + 'static,
        T: Send + 'static,
    {
        // Inside the runtime's context so that a fetch the poll starts can be spawned.
        let _context = self.runtime.enter();
        let mut op = Box::pin(op);
        match op.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(result) => reply(result),
            Poll::Pending => {
                self.runtime.spawn(async move { reply(op.await) });
            }
        }
    }

    fn fs(&self) -> Arc<SecretsFs> {
        self.fs.clone()
    }
}

/// The caller as the kernel gives it; its groups, which the request does not carry, are looked
/// up only if the policy needs them, and not on this worker.
fn caller(req: &Request) -> Caller {
    Caller::new(req.uid(), req.gid(), Some(req.pid()))
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.mtime,
        kind: file_type(attr.kind),
        perm: (attr.mode & 0o7777) as u16,
        nlink: if attr.kind == Kind::Dir { 2 } else { 1 },
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // No FUSE_AUTO_INVAL_DATA: an inode is one version, its size and mtime never change.
        // No FUSE_NO_OPENDIR_SUPPORT: it would make the kernel cache every listing for every
        // user and never refresh it; opendir is answered, so each readdir reaches us.
        let mut wanted = InitFlags::FUSE_PARALLEL_DIROPS | InitFlags::FUSE_NO_OPEN_SUPPORT;
        if !self.fs.kernel_cache() {
            // Shared mmap of FOPEN_DIRECT_IO files (Linux 6.6+); elsewhere it fails, ENODEV.
            wanted |= InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP;
        }
        if let Err(missing) = config.add_capabilities(wanted) {
            tracing::warn!(target: "secretsfs::fuse::adapter",
                ?missing,
                "the kernel lacks FUSE capabilities; continuing without them"
            );
            let _ = config.add_capabilities(wanted & !missing);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return reply.error(Errno::ENOENT);
        };
        let (fs, caller) = (self.fs(), caller(req));
        let failures = self.failures.clone();
        self.dispatch(
            async move { fs.lookup(&caller, parent.0, &name).await },
            move |r| match r {
                Ok(attr) => reply.entry_with_ttls(
                    &attr.ttl,
                    &attr.entry_ttl,
                    &file_attr(&attr),
                    Generation(0),
                ),
                Err(e) => reply.error(failures.fail("lookup", e)),
            },
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = self.fs();
        let failures = self.failures.clone();
        self.dispatch(async move { fs.getattr(ino.0).await }, move |r| match r {
            Ok(attr) => reply.attr(&attr.ttl, &file_attr(&attr)),
            Err(e) => reply.error(failures.fail("getattr", e)),
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if !self.fs.kernel_cache() && flags.acc_mode() != fuser::OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        if self.fs.kernel_cache() {
            // No open round trip at all: the kernel stops asking and keeps the page cache.
            return reply.error(Errno::ENOSYS);
        }
        let (fs, caller) = (self.fs(), caller(req));
        let failures = self.failures.clone();
        self.dispatch(
            async move { fs.open(&caller, ino.0).await },
            move |r| match r {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
                Err(e) => reply.error(failures.fail("open", e)),
            },
        );
    }

    /// Answered without FOPEN_CACHE_DIR or FOPEN_KEEP_CACHE: listings are per caller and
    /// current, so the kernel must not keep one for everybody.
    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(self.failures.fail("opendir", e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs();
        let failures = self.failures.clone();
        self.dispatch(
            async move { fs.read(ino.0, fh.0, offset, size).await },
            move |r| match r {
                Ok((resolved, range)) => reply.data(&resolved.bytes()[range]),
                Err(e) => reply.error(failures.fail("read", e)),
            },
        );
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (fs, caller) = (self.fs(), caller(req));
        let failures = self.failures.clone();
        self.dispatch(
            async move { fs.readdir_at(&caller, ino.0, fh.0, offset).await },
            move |r| match r {
                Ok(entries) => {
                    for (i, entry) in entries.iter().enumerate() {
                        if reply.add(
                            INodeNo(entry.ino),
                            offset + i as u64 + 1,
                            file_type(entry.kind),
                            &entry.name,
                        ) {
                            break;
                        }
                    }
                    reply.ok();
                }
                Err(e) => reply.error(failures.fail("readdir", e)),
            },
        );
    }

    /// Nothing to flush on a read-only file system: ENOSYS makes the kernel stop sending
    /// FLUSH at all, which would otherwise cost a round trip on every close().
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    // No extended attributes: answered here so that `ls -l` and friends do not log a warning.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::NO_XATTR);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    /// isatty() and friends: not a terminal. Answered here because fuser's default logs a
    /// warning for each, and programs send them routinely (Python's open() does).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    /// ENOSYS: the kernel stops asking and treats files as always ready, as they are.
    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// ENOSYS: the kernel seeks by itself (SEEK_DATA and SEEK_HOLE see one extent).
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, self.fs.inode_count() as u64, 0, 4096, 255, 4096);
    }

    // Every mutation: read-only file system. The mount is `ro` too, so most never get here.

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }
}

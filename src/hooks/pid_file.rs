//! Reading a signal hook's `pid_file` so that nobody but its rightful writers chooses which
//! process secretsfs, often root, signals.
//!
//! Whoever can write the file, replace it, or redirect a path component to another file
//! chooses the pid. So the path is walked one component at a time from `/`, each directory
//! opened without following links and judged by its descriptor (no race with a rename):
//!
//! - a directory that group or others may write, without the sticky bit, lets anyone swap the
//!   file: refused;
//! - the owner of every directory, of every symlink followed on the way (`/var/run` -> `/run`),
//!   and of the file itself could have chosen the pid: those that are not root are its
//!   *writers*;
//! - the file is opened with `O_NOFOLLOW` (a link there is refused), and refused if group or
//!   others may write it.
//!
//! No writers but root: any process. One writer: only that user's processes. More than one:
//! refused, since neither alone can be trusted to have chosen.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat};

use crate::host_file::PID_FILE;

/// Symlinks followed before the walk gives up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

/// A pid file as read, with the users who could have chosen what it says.
#[derive(Debug)]
pub(super) struct PidFile {
    pub pid: i32,
    /// Owners of the file and of the path to it, root left out.
    pub writers: BTreeSet<u32>,
}

/// Reads the pid in the file at `path` (absolute), judging the path on the way (module doc).
/// The error is the cause alone, one line.
pub(super) fn read(path: &Path) -> Result<PidFile, String> {
    let mut writers = BTreeSet::new();
    let mut pending: Vec<PathBuf> = components(path)?;
    pending.reverse();
    let mut dir = open_dir_at(None, OsStr::new("/"))?;
    let mut dir_name = PathBuf::from("/");
    judge_dir(&dir, &dir_name, &mut writers)?;
    let mut links = 0;
    while let Some(name) = pending.pop() {
        let last = pending.is_empty();
        let stat = fstatat(&dir, name.as_path(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(|e| format!("{}: {}", dir_name.join(&name).display(), e.desc()))?;
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFLNK {
            if last {
                return Err(format!(
                    "{} is a symbolic link; a pid file is opened without following links",
                    dir_name.join(&name).display()
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err("too many levels of symbolic links".to_owned());
            }
            // Whoever made the link chose where it leads.
            if stat.st_uid != 0 {
                writers.insert(stat.st_uid);
            }
            let target = readlinkat(&dir, name.as_path())
                .map_err(|e| format!("{}: {}", dir_name.join(&name).display(), e.desc()))?;
            let target = PathBuf::from(target);
            let mut more = components_relative(&target)?;
            more.reverse();
            pending.extend(more);
            if target.is_absolute() {
                dir = open_dir_at(None, OsStr::new("/"))?;
                dir_name = PathBuf::from("/");
                judge_dir(&dir, &dir_name, &mut writers)?;
            }
            continue;
        }
        if last {
            return read_file(&dir, &dir_name.join(&name), &name, writers);
        }
        if name.as_os_str() == ".." {
            // Walking up from a directory already judged leads to one judged before it, or to
            // one judged now: judge it like any other.
            dir = open_dir_at(Some(&dir), name.as_os_str())?;
            dir_name.pop();
        } else {
            dir = open_dir_at(Some(&dir), name.as_os_str())?;
            dir_name.push(&name);
        }
        judge_dir(&dir, &dir_name, &mut writers)?;
    }
    Err("not a file path".to_owned())
}

/// The names after `/` in an absolute path (`.` dropped, `..` kept).
fn components(path: &Path) -> Result<Vec<PathBuf>, String> {
    if !path.is_absolute() {
        return Err("not an absolute path".to_owned());
    }
    components_relative(path)
}

fn components_relative(path: &Path) -> Result<Vec<PathBuf>, String> {
    Ok(path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect())
}

fn open_dir_at(dir: Option<&OwnedFd>, name: &OsStr) -> Result<OwnedFd, String> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let opened = match dir {
        Some(dir) => openat(dir, name, flags, Mode::empty()),
        None => openat(nix::fcntl::AT_FDCWD, name, flags, Mode::empty()),
    };
    opened.map_err(|e| format!("{}: {}", Path::new(name).display(), e.desc()))
}

fn judge_dir(dir: &OwnedFd, name: &Path, writers: &mut BTreeSet<u32>) -> Result<(), String> {
    let stat = nix::sys::stat::fstat(dir.as_fd()).map_err(|e| e.desc().to_owned())?;
    let mode = stat.st_mode;
    let sticky = mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(format!(
            "directory {} is writable by group or others (mode {:04o}): anyone of them could swap the pid file",
            name.display(),
            mode & 0o7777
        ));
    }
    if stat.st_uid != 0 {
        writers.insert(stat.st_uid);
    }
    Ok(())
}

fn read_file(
    dir: &OwnedFd,
    shown: &Path,
    name: &Path,
    mut writers: BTreeSet<u32>,
) -> Result<PidFile, String> {
    let flags = OFlag::O_RDONLY
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let fd = openat(dir, name.as_os_str(), flags, Mode::empty()).map_err(|e| match e {
        nix::errno::Errno::ELOOP => format!(
            "{} is a symbolic link; a pid file is opened without following links",
            shown.display()
        ),
        e => format!("{}: {}", shown.display(), e.desc()),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "{}, not a regular file",
            crate::host_file::kind_of(&meta)
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:04o})",
            shown.display(),
            meta.mode() & 0o7777
        ));
    }
    if meta.uid() != 0 {
        writers.insert(meta.uid());
    }
    let mut text = Vec::new();
    (&file)
        .take(PID_FILE.bytes + 1)
        .read_to_end(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > PID_FILE.bytes {
        return Err(format!("larger than the limit of {}", PID_FILE.shown));
    }
    let pid = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|pid| *pid > 0)
        .ok_or_else(|| "no pid in it".to_owned())?;
    Ok(PidFile { pid, writers })
}

/// Whether a process running as `process_uid` may be signalled on the word of `writers`.
pub(super) fn may_signal(
    writers: &BTreeSet<u32>,
    pid: i32,
    process_uid: u32,
) -> Result<(), String> {
    match writers.iter().collect::<Vec<_>>().as_slice() {
        [] => Ok(()),
        [only] if **only == process_uid => Ok(()),
        [only] => Err(format!(
            "uid {only} could have written it, but pid {pid} runs as uid {process_uid}: not signalled"
        )),
        many => Err(format!(
            "uids {} could each have written it: not signalled",
            many.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

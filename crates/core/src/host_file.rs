//! Reading a file of the host (the config file, the `file` source, the token file, a pid
//! file, a template) whose path a user gives: only a regular file, and only up to a size
//! that says what the file is for.
//!
//! A path is whatever the user typed or a symlink left behind: `/dev/zero` would be read until
//! memory runs out, and a FIFO with no writer would block the open and then the read forever.
//! So the file is opened non-blocking (a FIFO's open returns at once), its type is taken from
//! the open descriptor (no race with a rename between a check and the open), and the read
//! stops one byte past the limit. /dev/null is the one device read (as empty).

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use nix::fcntl::OFlag;
use zeroize::Zeroizing;

/// What a file may hold, and the words its refusal uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    /// The limit as the docs write it ("4 KiB").
    pub shown: &'static str,
}

/// A token is a line of random text; a few KiB leaves room for a JWT.
pub const TOKEN: Limit = Limit {
    bytes: 4 << 10,
    shown: "4 KiB",
};
/// A pid file holds one number.
pub const PID_FILE: Limit = TOKEN;
/// The config file, a template, an AWS credentials file: text a person writes.
pub const CONFIG: Limit = Limit {
    bytes: 4 << 20,
    shown: "4 MiB",
};
/// The `file` source: a thousand secrets at the service's 64 KiB each, with room for JSON's
/// escapes and base64.
pub const SECRETS_FILE: Limit = Limit {
    bytes: 64 << 20,
    shown: "64 MiB",
};

/// The bytes of the regular file at `path` (symlinks followed), and its metadata from the
/// descriptor read. The error is the cause alone, one line, for the caller to prefix with what
/// the file is; it never quotes the file.
pub fn read(path: &Path, limit: Limit) -> Result<(Zeroizing<Vec<u8>>, Metadata), String> {
    let file = File::options()
        .read(true)
        // std adds O_CLOEXEC; O_NOCTTY keeps a terminal named by mistake from becoming ours.
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if is_null_device(&meta) {
        // `--config /dev/null` is how scripts (and the tests) say "no config file".
        return Ok((Zeroizing::new(Vec::new()), meta));
    }
    if !meta.file_type().is_file() {
        return Err(format!("{}, not a regular file", kind_of(&meta)));
    }
    if meta.len() > limit.bytes {
        return Err(too_big(limit));
    }
    // Sized up front so that the buffer is not reallocated, leaving copies behind, as it fills.
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    (&file)
        .take(limit.bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    // The size said by fstat can be wrong (a file still growing, /proc): the read decides.
    if bytes.len() as u64 > limit.bytes {
        return Err(too_big(limit));
    }
    Ok((bytes, meta))
}

/// Like [`read`], for text: the file must be UTF-8.
pub fn read_text(path: &Path, limit: Limit) -> Result<(String, Metadata), String> {
    let (bytes, meta) = read(path, limit)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        format!(
            "not UTF-8 text (an invalid byte at offset {})",
            e.valid_up_to()
        )
    })?;
    Ok((text.to_owned(), meta))
}

/// Opens (creating it, mode 0600 by the umask) a file that a log is appended to: a regular file,
/// or a character device (/dev/null, /dev/stderr, a terminal). A FIFO would block the open
/// until a reader comes, and then every log line, and so the daemon, whenever its reader
/// stalls; so it is refused, as are sockets and directories, with the cause on one line.
pub fn open_log(path: &Path) -> Result<File, String> {
    let file = File::options()
        .create(true)
        .append(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // The one answer of a non-blocking open for writing of a FIFO without a reader.
            Some(nix::libc::ENXIO) => "a FIFO, not a regular file".to_owned(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let kind = meta.file_type();
    if !kind.is_file() && !kind.is_char_device() {
        return Err(format!("{}, not a regular file", kind_of(&meta)));
    }
    // Writes block as they would have: a full disk is not a reason to drop lines.
    nix::fcntl::fcntl(&file, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_APPEND))
        .map_err(|e| e.to_string())?;
    Ok(file)
}

/// What [`open_log`] would refuse at `path`, judged without opening or creating it (for
/// `check-config`, which writes nothing): a path that does not exist yet is fine.
pub fn check_log(path: &Path) -> Result<(), String> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err("Is a directory (os error 21)".to_owned());
    }
    if !kind.is_file() && !kind.is_char_device() {
        return Err(format!("{}, not a regular file", kind_of(&meta)));
    }
    Ok(())
}

/// Linux's /dev/null is character device 1:3, wherever its node is.
fn is_null_device(meta: &Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.file_type().is_char_device() && meta.rdev() == nix::sys::stat::makedev(1, 3)
}

fn too_big(limit: Limit) -> String {
    format!("larger than the limit of {}", limit.shown)
}

/// What a file that is not a regular one is, in words ("a FIFO").
pub fn kind_of(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_opens_on_a_file_or_a_device_and_never_waits_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("new.log");
        let mut file = open_log(&log).unwrap();
        std::io::Write::write_all(&mut file, b"line\n").unwrap();
        assert_eq!(std::fs::read(&log).unwrap(), b"line\n");
        open_log(Path::new("/dev/null")).unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        assert_eq!(open_log(&fifo).unwrap_err(), "a FIFO, not a regular file");
        // With a reader the open would succeed, but the log would still hang on it.
        let _reader = File::options()
            .read(true)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(&fifo)
            .unwrap();
        assert_eq!(open_log(&fifo).unwrap_err(), "a FIFO, not a regular file");
        assert_eq!(
            open_log(dir.path()).unwrap_err(),
            "Is a directory (os error 21)"
        );
        for path in [&fifo, &dir.path().to_owned()] {
            assert_eq!(check_log(path).unwrap_err(), open_log(path).unwrap_err());
        }
        for path in [dir.path().join("not-yet.log"), log, "/dev/null".into()] {
            check_log(&path).unwrap();
        }
    }

    const SMALL: Limit = Limit {
        bytes: 8,
        shown: "8 bytes",
    };

    #[test]
    fn a_regular_file_up_to_the_limit_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "12345678").unwrap();
        let (bytes, meta) = read(&path, SMALL).unwrap();
        assert_eq!(bytes.as_slice(), b"12345678");
        assert_eq!(meta.len(), 8);
        std::fs::write(&path, "123456789").unwrap();
        assert_eq!(
            read(&path, SMALL).unwrap_err(),
            "larger than the limit of 8 bytes"
        );
    }

    #[test]
    fn devices_fifos_directories_and_sockets_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (path, kind) in [
            (&fifo, "a FIFO"),
            (&zero, "a character device"),
            (&dir.path().to_owned(), "a directory"),
        ] {
            let err = read(path, CONFIG).unwrap_err();
            assert_eq!(err, format!("{kind}, not a regular file"), "{path:?}");
        }
        let (bytes, _) = read(Path::new("/dev/null"), SMALL).unwrap();
        assert!(bytes.is_empty(), "/dev/null is an empty file");
        // A socket cannot be opened at all; either way it is not read.
        assert!(read(&socket, CONFIG).is_err());
        assert!(read(&dir.path().join("missing"), CONFIG).is_err());
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"ab\xffcd").unwrap();
        assert_eq!(
            read_text(&path, SMALL).unwrap_err(),
            "not UTF-8 text (an invalid byte at offset 2)"
        );
    }
}

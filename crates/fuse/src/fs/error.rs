//! The mount's one error type (docs/ARCHITECTURE.md#errors), after mountpoint-s3's: the errno
//! the kernel gets and, for the log, what failed, its cause and how loud to say it. An
//! operation makes one where it knows why; the adapter replies with it, logs it and counts it
//! in one place (`adapter::Failures::fail`). Neither the message nor the cause ever holds a value.

use std::borrow::Cow;
use std::fmt;

use nix::errno::Errno;
use secretsfs_core::ErrorKind;
use tracing::Level;

pub type FsResult<T> = Result<T, FsError>;

/// Why an operation of the mount failed.
#[derive(Debug)]
pub struct FsError {
    errno: Errno,
    message: Cow<'static, str>,
    /// The path in the mount it concerns, when the operation knows it.
    path: Option<String>,
    /// What an audit record says of it, when not the message or the cause.
    reason: Option<&'static str>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    level: Level,
}

impl FsError {
    /// An ordinary answer (no such file, not permitted, not a directory): the errno is the
    /// whole story, and the log has it only at debug level.
    pub fn answer(errno: Errno) -> Self {
        FsError {
            errno,
            message: Cow::Borrowed(errno.desc()),
            path: None,
            reason: None,
            source: None,
            level: Level::DEBUG,
        }
    }

    /// A failure the reader did not cause and an operator must hear of: one warning line
    /// (at most one a minute for the same failure of the same path).
    pub fn failure(errno: Errno, message: impl Into<Cow<'static, str>>) -> Self {
        FsError {
            errno,
            message: message.into(),
            path: None,
            reason: None,
            source: None,
            level: Level::WARN,
        }
    }

    /// A failure of the engine that is worth a warning of the mount's own (a fetch by version id
    /// of an open file, which the cache's failure line also reports): the engine's error is
    /// its cause.
    pub fn of_engine(error: secretsfs_core::Error, message: impl Into<Cow<'static, str>>) -> Self {
        FsError::failure(errno_of(&error), message).with_source(error)
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// What the audit record's reason says in place of the cause (or the message).
    pub fn with_reason(mut self, reason: &'static str) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn errno(&self) -> Errno {
        self.errno
    }

    /// What failed, without the cause: what an audit record's reason says.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The reason an audit record gives: set by the operation, else the cause, else the
    /// message. Never a value.
    pub fn reason(&self) -> String {
        match (self.reason, &self.source) {
            (Some(reason), _) => reason.to_owned(),
            (None, Some(source)) => source.to_string(),
            (None, None) => self.message.to_string(),
        }
    }

    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    pub fn source_text(&self) -> Option<String> {
        self.source.as_ref().map(|s| s.to_string())
    }

    pub fn level(&self) -> Level {
        self.level
    }
}

impl From<Errno> for FsError {
    fn from(errno: Errno) -> Self {
        FsError::answer(errno)
    }
}

/// The mount's one mapping of an error's kind to an errno (docs/ARCHITECTURE.md#errors).
pub fn errno_of(error: &secretsfs_core::Error) -> Errno {
    match error.kind() {
        ErrorKind::NotFound | ErrorKind::InvalidSelector => Errno::ENOENT,
        ErrorKind::AccessDenied => Errno::EACCES,
        ErrorKind::Decryption
        | ErrorKind::InvalidRequest
        | ErrorKind::Unavailable
        | ErrorKind::Config
        | ErrorKind::Io
        | ErrorKind::Internal => Errno::EIO,
    }
}

/// An engine's error, as the mount answers it ([`errno_of`]). At debug level: the cache has
/// logged an upstream failure already, once a minute per key with what readers got
/// (`FlightCache::report`), and the rest (no such secret, a bad selector) are answers.
impl From<secretsfs_core::Error> for FsError {
    fn from(error: secretsfs_core::Error) -> Self {
        FsError {
            errno: errno_of(&error),
            message: Cow::Owned(error.message().to_owned()),
            path: None,
            reason: None,
            source: None,
            level: Level::DEBUG,
        }
    }
}

/// Equal when the kernel is answered the same errno: what a caller of the mount can tell.
impl PartialEq for FsError {
    fn eq(&self, other: &Self) -> bool {
        self.errno == other.errno
    }
}

impl PartialEq<Errno> for FsError {
    fn eq(&self, errno: &Errno) -> bool {
        self.errno == *errno
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_says_what_failed_then_why() {
        let cause = secretsfs_core::Error::new(ErrorKind::Unavailable, "GetSecretValue: timed out");
        let e = FsError::of_engine(cause, "an open file's version could not be fetched again")
            .with_path("prod/db");
        assert_eq!(e.errno(), Errno::EIO);
        assert_eq!(e.level(), Level::WARN);
        assert_eq!(e.path(), Some("prod/db"));
        assert_eq!(
            e.to_string(),
            "an open file's version could not be fetched again: GetSecretValue: timed out"
        );
        assert_eq!(
            e.message(),
            "an open file's version could not be fetched again"
        );
    }

    #[test]
    fn answers_and_engine_errors_are_quiet_and_keep_their_errno() {
        let e = FsError::from(Errno::ENOENT);
        assert_eq!((e.errno(), e.level()), (Errno::ENOENT, Level::DEBUG));
        let denied = secretsfs_core::Error::new(ErrorKind::AccessDenied, "no");
        let e = FsError::from(denied);
        assert_eq!((e.errno(), e.level()), (Errno::EACCES, Level::DEBUG));
    }

    #[test]
    fn kinds_map_onto_the_documented_errnos() {
        let errno = |kind| errno_of(&secretsfs_core::Error::new(kind, "x"));
        assert_eq!(errno(ErrorKind::NotFound), Errno::ENOENT);
        assert_eq!(errno(ErrorKind::InvalidSelector), Errno::ENOENT);
        assert_eq!(errno(ErrorKind::AccessDenied), Errno::EACCES);
        for kind in [
            ErrorKind::Decryption,
            ErrorKind::InvalidRequest,
            ErrorKind::Unavailable,
            ErrorKind::Config,
            ErrorKind::Io,
            ErrorKind::Internal,
        ] {
            assert_eq!(errno(kind), Errno::EIO, "{kind:?}");
        }
    }
}

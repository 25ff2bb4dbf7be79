//! [`AuditError`].

use std::io;
use std::path::PathBuf;

/// What can go wrong setting up, writing or reading an audit log.
///
/// Problems *inside* a log being verified (tampering, bad lines) are not errors: they are
/// [`Verdict`](crate::audit::Verdict)s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// [`audit::init`](crate::audit::init) was called when the process-wide logger already
    /// exists.
    #[error("the process-wide audit logger is already initialised")]
    AlreadyInitialized,

    /// The configuration cannot work.
    #[error("invalid audit configuration: {0}")]
    InvalidConfig(String),

    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`"open"`, `"read"`, `"write"`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Another logger (in this or another process) holds the log file.
    #[error("audit log {} is in use by another logger (it is locked)", path.display())]
    LogInUse {
        /// The log file.
        path: PathBuf,
    },

    /// An existing log cannot be continued: its last record is damaged or incomplete.
    #[error(
        "audit log {} cannot be continued: {reason} (run `secure audit verify` on it and move it \
         aside to start a new log)",
        path.display()
    )]
    DamagedLog {
        /// The log file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An anchor file cannot be read as an anchor.
    #[error("anchor {} is malformed: {reason}", path.display())]
    MalformedAnchor {
        /// The anchor file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// An audit key cannot be used: missing, not a key, or not the key of this log.
    #[error("audit key ({origin}): {reason}")]
    BadKey {
        /// Where the key came from (`key file …`, `environment variable …`).
        origin: String,
        /// What is wrong.
        reason: String,
    },

    /// Writing or syncing events to a sink failed; the events are kept in memory and retried.
    #[error("audit sink {} failed: {message} ({pending} bytes of records waiting to be written)", path.display())]
    SinkFailed {
        /// The file.
        path: PathBuf,
        /// The operating system's error message.
        message: String,
        /// Bytes of records not yet written.
        pending: usize,
    },
}

impl AuditError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        AuditError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

//! Errors of the manifest service.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::format::LineError;
use super::name::NameError;

/// Where in a manifest a problem was found: `FILE:LINE`, or `line N` for text not read from a
/// file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The manifest file, when the text came from one.
    pub file: Option<PathBuf>,
    /// One-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file.display(), self.line),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Everything that can go wrong reading, writing or creating a manifest.
///
/// Verification itself does not fail with this type: per-file problems (mismatch, missing,
/// unreadable) are results in a [`VerifyReport`](super::VerifyReport).
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The manifest file could not be written.
    #[error("cannot write manifest {}: {source}", path.display())]
    Write {
        /// The manifest file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A line is not in `sha256sum` format.
    #[error("{at}: improperly formatted SHA-256 checksum line: {reason}")]
    Malformed {
        /// Where.
        at: Location,
        /// What is wrong with the line.
        reason: LineError,
    },
    /// An entry names a path that cannot be accepted (absolute, escapes the root, ...).
    #[error("{at}: refusing entry {name:?}: {reason}")]
    UnsafeName {
        /// Where.
        at: Location,
        /// The name as written (lossily decoded).
        name: String,
        /// Why it is refused.
        reason: NameError,
    },
    /// The same file is listed twice.
    #[error("{at}: duplicate entry for {name:?} (first listed on line {first_line})")]
    Duplicate {
        /// Where the second listing is.
        at: Location,
        /// The normalised name.
        name: String,
        /// Line of the first listing (0 when it was added through the API).
        first_line: usize,
    },
    /// The manifest lists no file at all; an empty manifest would verify anything.
    #[error("{origin}: no properly formatted SHA-256 checksum lines found")]
    NoEntries {
        /// The manifest file, or `<input>`.
        origin: String,
    },
    /// A path given to [`Manifest::create`](super::Manifest::create), or a file under it,
    /// could not be examined or read.
    #[error("cannot read {}: {source}", path.display())]
    Walk {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Following symbolic links led back into a directory being walked.
    #[error("symbolic link loop: {} leads back to {}", path.display(), ancestor.display())]
    SymlinkLoop {
        /// The link (or directory reached through links) that closes the loop.
        path: PathBuf,
        /// The directory it leads back to.
        ancestor: PathBuf,
    },
    /// A path given to [`Manifest::create`](super::Manifest::create) is not under the root.
    #[error("{} is outside the manifest root {} (choose a root that contains it)", path.display(), root.display())]
    OutsideRoot {
        /// The path given.
        path: PathBuf,
        /// The manifest root.
        root: PathBuf,
    },
    /// A file found while creating a manifest has a name no manifest entry can hold.
    #[error("cannot list {}: {reason}", path.display())]
    InvalidName {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: NameError,
    },
}

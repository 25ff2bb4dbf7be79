//! Verification results.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::digest::Digest;
use super::name::display_name;
use super::resolve::{escapes_root, EscapesRoot};

/// The result of checking one listed file.
#[derive(Debug)]
pub enum Outcome {
    /// The file's digest matches the manifest.
    Ok,
    /// The file was read but its digest differs.
    Mismatch {
        /// Digest listed in the manifest.
        expected: Digest,
        /// Digest of the file as read.
        actual: Digest,
    },
    /// The file does not exist.
    Missing,
    /// The file exists but could not be read (permissions, a directory, a FIFO, ...).
    Unreadable(io::Error),
    /// The name leads out of the manifest root through a symbolic link (and links are not
    /// [followed](super::VerifyOptions::follow_symlinks)): nothing outside was opened.
    OutsideRoot(EscapesRoot),
}

impl Outcome {
    /// Whether this is [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// Classifies the result of hashing a listed file.
    pub(crate) fn from_hash(expected: Digest, result: io::Result<Digest>) -> Outcome {
        match result {
            Ok(actual) if actual == expected => Outcome::Ok,
            Ok(actual) => Outcome::Mismatch { expected, actual },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Outcome::Missing,
            Err(e) => match escapes_root(&e) {
                Some(why) => Outcome::OutsideRoot(why.clone()),
                None => Outcome::Unreadable(e),
            },
        }
    }
}

impl fmt::Display for Outcome {
    /// A short description: `OK`, `digest mismatch (expected X, got Y)`, `missing`,
    /// `unreadable: OS error`, `refused: L is a symbolic link to T, outside the manifest root`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok => f.write_str("OK"),
            Outcome::Mismatch { expected, actual } => {
                write!(f, "digest mismatch (expected {expected}, got {actual})")
            }
            Outcome::Missing => f.write_str("missing"),
            Outcome::Unreadable(e) => write!(f, "unreadable: {e}"),
            Outcome::OutsideRoot(e) => write!(f, "refused: {e}"),
        }
    }
}

/// One listed file and what verification found.
#[derive(Debug)]
pub struct FileCheck {
    /// The entry name (relative to the manifest root).
    pub name: PathBuf,
    /// What was found.
    pub outcome: Outcome,
}

/// The result of [`Manifest::verify`](super::Manifest::verify).
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Every listed file, in manifest order.
    pub files: Vec<FileCheck>,
    /// Strict mode only: files under the root that the manifest does not list, sorted.
    pub extra: Vec<PathBuf>,
    /// Strict mode only: directories under the root that could not be listed, so extra files
    /// there may have been missed. A non-empty list makes the report fail.
    pub walk_errors: Vec<(PathBuf, io::Error)>,
    /// Whether the strict check (unlisted files) was made.
    pub strict: bool,
}

/// Counts of a [`VerifyReport`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Files whose digest matched.
    pub ok: usize,
    /// Files whose digest did not match.
    pub mismatched: usize,
    /// Listed files that do not exist.
    pub missing: usize,
    /// Listed files that could not be read.
    pub unreadable: usize,
    /// Listed files refused because their path leads out of the root through a link.
    pub outside_root: usize,
    /// Unlisted files (strict mode).
    pub extra: usize,
    /// Directories that could not be listed (strict mode).
    pub walk_errors: usize,
}

impl VerifyReport {
    /// True when every listed file matched and, in strict mode, nothing else is present.
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(|f| f.outcome.is_ok())
            && self.extra.is_empty()
            && self.walk_errors.is_empty()
    }

    /// The listed files that did not verify.
    pub fn failures(&self) -> impl Iterator<Item = &FileCheck> {
        self.files.iter().filter(|f| !f.outcome.is_ok())
    }

    /// How many of each outcome.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            extra: self.extra.len(),
            walk_errors: self.walk_errors.len(),
            ..Counts::default()
        };
        for f in &self.files {
            match f.outcome {
                Outcome::Ok => c.ok += 1,
                Outcome::Mismatch { .. } => c.mismatched += 1,
                Outcome::Missing => c.missing += 1,
                Outcome::Unreadable(_) => c.unreadable += 1,
                Outcome::OutsideRoot(_) => c.outside_root += 1,
            }
        }
        c
    }

    /// A one-paragraph description of every problem, one per line (empty when
    /// [`is_ok`](Self::is_ok)). Names are escaped as `sha256sum` does.
    pub fn describe_failures(&self) -> String {
        let mut out = String::new();
        for f in self.failures() {
            out.push_str(&format!("{}: {}\n", display_name(&f.name), f.outcome));
        }
        for e in &self.extra {
            out.push_str(&format!(
                "{}: not listed in the manifest\n",
                display_name(e)
            ));
        }
        for (d, e) in &self.walk_errors {
            let d = if d.as_os_str().is_empty() {
                ".".to_string()
            } else {
                display_name(d)
            };
            out.push_str(&format!("{d}: cannot list directory: {e}\n"));
        }
        out
    }
}

//! What an integrity violation is, and the error that carries it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{display_name, Digest, Outcome, VerifyReport};

/// When the violation was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// [`IntegrityLock::verify_or_halt`](super::IntegrityLock::verify_or_halt) at start-up.
    Startup,
    /// The background re-verification of
    /// [`IntegrityLock::start_periodic`](super::IntegrityLock::start_periodic).
    Periodic,
    /// [`IntegrityLock::check`](super::IntegrityLock::check) before a critical operation.
    Check,
    /// A verified read ([`read_verified`](super::read_verified)).
    VerifiedRead,
    /// The running executable checked against its manifest entry.
    SelfCheck,
}

impl Context {
    /// A short lowercase name (`startup`, `periodic`, `check`, `verified_read`, `self_check`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Context::Startup => "startup",
            Context::Periodic => "periodic",
            Context::Check => "check",
            Context::VerifiedRead => "verified_read",
            Context::SelfCheck => "self_check",
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Context::Startup => "at startup",
            Context::Periodic => "during periodic re-verification",
            Context::Check => "in a pre-operation check",
            Context::VerifiedRead => "in a verified read",
            Context::SelfCheck => "in the executable self-check",
        })
    }
}

/// What was wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Its digest differs from the manifest's.
    Mismatch {
        /// Listed digest.
        expected: Digest,
        /// Digest of what was read.
        actual: Digest,
    },
    /// It does not exist.
    Missing,
    /// It could not be read (the OS error, as text).
    Unreadable(String),
    /// Its path leads out of the manifest root through a symbolic link (the link and its
    /// target, as text); nothing outside the root was read.
    OutsideRoot(String),
    /// Strict mode: it is under the root but not in the manifest.
    Unlisted,
    /// Strict mode: a directory under the root could not be listed (the OS error).
    Unlistable(String),
    /// A verified read or self-check asked for a file the manifest does not list.
    NotInManifest,
    /// A lockout marker from an earlier violation exists; nothing runs until it is cleared.
    LockedOut {
        /// A summary of what the marker records.
        recorded: String,
    },
}

impl Problem {
    /// A short lowercase name (`mismatch`, `missing`, `unreadable`, `outside_root`,
    /// `unlisted`, `unlistable`, `not_in_manifest`, `locked_out`), as written in audit events
    /// and lockout markers.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Problem::Mismatch { .. } => "mismatch",
            Problem::Missing => "missing",
            Problem::Unreadable(_) => "unreadable",
            Problem::OutsideRoot(_) => "outside_root",
            Problem::Unlisted => "unlisted",
            Problem::Unlistable(_) => "unlistable",
            Problem::NotInManifest => "not_in_manifest",
            Problem::LockedOut { .. } => "locked_out",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Mismatch { expected, actual } => {
                write!(f, "digest mismatch (expected {expected}, got {actual})")
            }
            Problem::Missing => f.write_str("missing"),
            Problem::Unreadable(e) => write!(f, "unreadable: {e}"),
            Problem::OutsideRoot(e) => write!(f, "refused: {e}"),
            Problem::Unlisted => f.write_str("not listed in the manifest"),
            Problem::Unlistable(e) => write!(f, "cannot list directory: {e}"),
            Problem::NotInManifest => f.write_str("not listed in the manifest"),
            Problem::LockedOut { recorded } => {
                write!(f, "lockout marker from an earlier violation: {recorded}")
            }
        }
    }
}

/// One failed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The file: its manifest name, or a file system path when it has none.
    pub path: PathBuf,
    /// What was wrong.
    pub problem: Problem,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", display_name(&self.path), self.problem)
    }
}

/// An integrity violation: what failed, when, against which manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When it was detected.
    pub context: Context,
    /// What failed (at least one entry).
    pub failures: Vec<Failure>,
    /// Number of files that were checked (0 when not applicable).
    pub checked: usize,
    /// The manifest file, when the manifest was loaded from one.
    pub manifest: Option<PathBuf>,
    /// The manifest root.
    pub root: PathBuf,
    /// When it was detected (RFC 3339, UTC).
    pub time: String,
}

impl Violation {
    pub(crate) fn new(
        context: Context,
        failures: Vec<Failure>,
        checked: usize,
        manifest: Option<&Path>,
        root: &Path,
    ) -> Violation {
        Violation {
            context,
            failures,
            checked,
            manifest: manifest.map(Path::to_path_buf),
            root: root.to_path_buf(),
            time: crate::audit::now_rfc3339(),
        }
    }

    /// The failures of a verification report (empty when it passed).
    pub(crate) fn failures_of(report: &VerifyReport) -> Vec<Failure> {
        let mut failures: Vec<Failure> = report
            .files
            .iter()
            .filter_map(|f| {
                let problem = match &f.outcome {
                    Outcome::Ok => return None,
                    Outcome::Mismatch { expected, actual } => Problem::Mismatch {
                        expected: *expected,
                        actual: *actual,
                    },
                    Outcome::Missing => Problem::Missing,
                    Outcome::Unreadable(e) => Problem::Unreadable(e.to_string()),
                    Outcome::OutsideRoot(e) => Problem::OutsideRoot(e.to_string()),
                };
                Some(Failure {
                    path: f.name.clone(),
                    problem,
                })
            })
            .collect();
        failures.extend(report.extra.iter().map(|p| Failure {
            path: p.clone(),
            problem: Problem::Unlisted,
        }));
        failures.extend(report.walk_errors.iter().map(|(p, e)| Failure {
            path: if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.clone()
            },
            problem: Problem::Unlistable(e.to_string()),
        }));
        failures
    }

    /// Whether this is a refusal to start because of a lockout marker.
    pub fn is_lockout(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(f.problem, Problem::LockedOut { .. }))
    }

    /// One line per failure, at most `limit` (then `... and N more`).
    pub fn describe(&self, limit: usize) -> Vec<String> {
        let mut lines: Vec<String> = self
            .failures
            .iter()
            .take(limit)
            .map(|f| f.to_string())
            .collect();
        if self.failures.len() > limit {
            lines.push(format!("... and {} more", self.failures.len() - limit));
        }
        lines
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_lockout() {
            write!(f, "integrity lockout {}: ", self.context)?;
        } else {
            write!(f, "integrity violation {}: ", self.context)?;
        }
        let lines = self.describe(3);
        write!(f, "{}", lines.join("; "))
    }
}

/// The error returned when integrity cannot be vouched for. It cannot be ignored silently
/// (`#[must_use]`): the operation it guards must not go ahead.
///
/// It is cheap to clone (the [`Violation`] is shared).
#[must_use = "an integrity error means the guarded operation must not go ahead"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityError {
    violation: Arc<Violation>,
    earlier: bool,
}

impl IntegrityError {
    pub(crate) fn new(violation: Arc<Violation>) -> IntegrityError {
        IntegrityError {
            violation,
            earlier: false,
        }
    }

    pub(crate) fn earlier(violation: Arc<Violation>) -> IntegrityError {
        IntegrityError {
            violation,
            earlier: true,
        }
    }

    /// The violation.
    pub fn violation(&self) -> &Violation {
        &self.violation
    }

    /// True when this error repeats a violation detected earlier (the lock stays tripped:
    /// nothing is trusted again until the process restarts after an operator's unlock).
    pub fn is_earlier_violation(&self) -> bool {
        self.earlier
    }
}

impl fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.earlier {
            write!(f, "integrity lock tripped earlier: {}", self.violation)
        } else {
            self.violation.fmt(f)
        }
    }
}

impl std::error::Error for IntegrityError {}

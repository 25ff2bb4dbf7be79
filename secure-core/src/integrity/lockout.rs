//! The lockout marker: a file recording what failed, which blocks the next start until an
//! operator clears it.
//!
//! The marker is a JSON Lines file; each violation appends one record:
//!
//! ```json
//! {"time":"2026-01-02T03:04:05.123456Z","pid":4242,"executable":"/opt/app/bin/app",
//!  "context":"startup","manifest":"/opt/app/SHA256SUMS","root":"/opt/app","checked":12,
//!  "failures":[{"path":"conf/app.toml","problem":"mismatch",
//!               "expected":"9f86…","actual":"60303…","detail":"digest mismatch (…)"}]}
//! ```
//!
//! Records are appended and synced, never rewritten, so the first violation stays on record
//! (for forensics) even if the process is started again and fails again.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::violation::{Problem, Violation};
use crate::manifest::display_name;

/// One failed file in a [`LockoutRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The file (manifest name, escaped like `sha256sum` does when needed).
    pub path: String,
    /// [`Problem::as_str`]: `mismatch`, `missing`, `unreadable`, ...
    pub problem: String,
    /// Listed digest (mismatches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Digest found (mismatches only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// A human-readable description.
    pub detail: String,
}

/// One violation recorded in a lockout marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutRecord {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The process that detected it.
    pub pid: u32,
    /// That process's executable, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    /// [`Context::as_str`](super::Context::as_str): `startup`, `periodic`, `check`, ...
    pub context: String,
    /// The manifest file, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// The manifest root.
    pub root: String,
    /// Number of files checked.
    pub checked: usize,
    /// What failed.
    pub failures: Vec<FailureRecord>,
}

impl LockoutRecord {
    pub(crate) fn from_violation(v: &Violation) -> LockoutRecord {
        LockoutRecord {
            time: v.time.clone(),
            pid: std::process::id(),
            executable: std::env::current_exe()
                .ok()
                .map(|p| p.display().to_string()),
            context: v.context.as_str().to_owned(),
            manifest: v.manifest.as_ref().map(|p| p.display().to_string()),
            root: v.root.display().to_string(),
            checked: v.checked,
            failures: v
                .failures
                .iter()
                .map(|f| {
                    let (expected, actual) = match &f.problem {
                        Problem::Mismatch { expected, actual } => {
                            (Some(expected.to_hex()), Some(actual.to_hex()))
                        }
                        _ => (None, None),
                    };
                    FailureRecord {
                        path: display_name(&f.path),
                        problem: f.problem.as_str().to_owned(),
                        expected,
                        actual,
                        detail: f.problem.to_string(),
                    }
                })
                .collect(),
        }
    }

    /// A one-line summary: `2026-…Z startup (pid 42): conf/app.toml: digest mismatch (…)`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {} (pid {})", self.time, self.context, self.pid);
        for (i, f) in self.failures.iter().enumerate() {
            if i == 3 {
                s.push_str(&format!("; ... and {} more", self.failures.len() - 3));
                break;
            }
            s.push_str(if i == 0 { ": " } else { "; " });
            s.push_str(&format!("{}: {}", f.path, f.detail));
        }
        s
    }
}

/// The contents of a lockout marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockout {
    /// The marker file.
    pub path: PathBuf,
    /// The records it holds, oldest first.
    pub records: Vec<LockoutRecord>,
    /// Lines that are not records (a damaged or hand-edited marker), kept verbatim.
    pub unparsed: Vec<String>,
}

impl Lockout {
    /// A one-line summary of the first (oldest) record, for messages.
    pub fn summary(&self) -> String {
        let first = match (self.records.first(), self.unparsed.first()) {
            (Some(r), _) => r.summary(),
            (None, Some(line)) => format!("unreadable record {line:?}"),
            (None, None) => "empty marker".to_owned(),
        };
        let n = self.records.len() + self.unparsed.len();
        if n > 1 {
            format!("{first} (and {} later record(s))", n - 1)
        } else {
            first
        }
    }
}

/// The default marker for a manifest loaded from `FILE`: `FILE.lockout`; for a manifest
/// that was not loaded from a file, `.integrity-lockout` in its root.
pub fn default_marker_path(manifest: &crate::manifest::Manifest) -> PathBuf {
    match manifest.source() {
        Some(src) => {
            let mut s = src.as_os_str().to_owned();
            s.push(".lockout");
            PathBuf::from(s)
        }
        None => manifest.root().join(".integrity-lockout"),
    }
}

/// The largest lockout marker [`read_lockout`] reads: 16 MiB.
pub const MAX_MARKER_BYTES: u64 = 16 << 20;

/// Reads a lockout marker; `Ok(None)` when there is none.
///
/// A marker that is not a regular file (a FIFO, a device) or is larger than
/// [`MAX_MARKER_BYTES`] is an error, returned at once without blocking.
pub fn read_lockout(path: impl AsRef<Path>) -> io::Result<Option<Lockout>> {
    let path = path.as_ref();
    let bytes = match crate::input::read_regular_bounded(path, MAX_MARKER_BYTES, "a lockout marker")
    {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lockout = Lockout {
        path: path.to_path_buf(),
        ..Lockout::default()
    };
    for line in bytes.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<LockoutRecord>(line) {
            Ok(r) => lockout.records.push(r),
            Err(_) => lockout
                .unparsed
                .push(String::from_utf8_lossy(line).into_owned()),
        }
    }
    Ok(Some(lockout))
}

/// Clears a lockout marker (what `secure integrity unlock` does) and returns what it held, so
/// the caller can show or archive it. `Ok(None)` when there was no marker.
pub fn unlock(path: impl AsRef<Path>) -> io::Result<Option<Lockout>> {
    let path = path.as_ref();
    let Some(lockout) = read_lockout(path)? else {
        return Ok(None);
    };
    fs::remove_file(path)?;
    sync_parent(path);
    Ok(Some(lockout))
}

/// Appends a record for `violation` to the marker at `path` and syncs it.
pub(crate) fn append(path: &Path, violation: &Violation) -> io::Result<()> {
    let record = LockoutRecord::from_violation(violation);
    let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
    line.push(b'\n');
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            fs::create_dir_all(dir)?;
        }
    }
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(&line)?;
    f.sync_all()?;
    sync_parent(path);
    Ok(())
}

fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

//! The integrity lock: halt before anything runs on tampered files.
//!
//! An [`IntegrityLock`] holds a [`Manifest`] of the files a program trusts — its executable,
//! configuration, model weights, cached data — and:
//!
//! - [`verify_or_halt`](IntegrityLock::verify_or_halt) verifies them at start-up and halts the
//!   process if anything differs;
//! - [`start_periodic`](IntegrityLock::start_periodic) re-verifies them in the background and
//!   halts on a violation;
//! - [`check`](IntegrityLock::check) verifies before a critical operation and returns an
//!   [`IntegrityError`] the caller cannot silently drop;
//! - [`read_verified`](IntegrityLock::read_verified) returns a file's bytes only if those very
//!   bytes hash to the listed digest (no window between check and use).
//!
//! # On a violation
//!
//! 1. One `Critical` [`IntegrityViolation`](crate::audit::EventKind::IntegrityViolation) audit
//!    event per failed file is logged to the process-wide audit logger (if
//!    [`audit::init`] was called) and the log is flushed to disk.
//! 2. A record of what failed is appended to the **lockout marker** file (default:
//!    `<manifest file>.lockout`, see [`default_marker_path`]) and synced.
//! 3. The lock is *tripped*: every later [`check`](IntegrityLock::check) fails too, even if the
//!    files are put back. There is no degraded operation.
//! 4. For `verify_or_halt` and the periodic check, the [`HaltPolicy`] runs. The default prints
//!    what failed on standard error and exits with status [`EXIT_INTEGRITY_VIOLATION`] (86).
//!
//! While the marker exists, `verify_or_halt` refuses to start — even if the files are now
//! correct — and exits with status [`EXIT_LOCKED_OUT`] (87), until an operator has looked at
//! it and cleared it with `secure integrity unlock --marker FILE` (or [`unlock`]). The marker is
//! left untouched by the refusal, so the original record is preserved.
//!
//! # Exit statuses
//!
//! | status | meaning |
//! |---|---|
//! | [`EXIT_INTEGRITY_VIOLATION`] = 86 | a listed file is missing, unreadable or changed (or unlisted files appeared, in strict mode) |
//! | [`EXIT_LOCKED_OUT`] = 87 | a lockout marker from an earlier violation exists |
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use secure_core::audit::{self, AuditConfig};
//! use secure_core::integrity::IntegrityLock;
//! use secure_core::manifest::Manifest;
//!
//! audit::init(AuditConfig::jsonl("/var/log/app/audit.jsonl")).expect("audit log");
//! let manifest = Manifest::load("/opt/app/SHA256SUMS").expect("manifest");
//! let lock = IntegrityLock::new(manifest).self_check(true);
//! lock.verify_or_halt(); // returns only if every file verifies
//! let _periodic = lock.start_periodic(Duration::from_secs(60));
//!
//! let config = lock.read_verified("conf/app.toml").expect("verified config");
//! // ... before a critical operation:
//! lock.check().expect("integrity");
//! # let _ = config;
//! ```

mod lockout;
mod violation;

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::audit::{self, Event, EventKind, Severity};
use crate::manifest::{display_name, open_regular, Digest, Manifest, VerifyOptions};

pub use lockout::{
    default_marker_path, read_lockout, unlock, FailureRecord, Lockout, LockoutRecord,
};
pub use violation::{Context, Failure, IntegrityError, Problem, Violation};

/// Exit status of the default [`HaltPolicy::Exit`] on an integrity violation.
pub const EXIT_INTEGRITY_VIOLATION: i32 = 86;

/// Exit status of the default [`HaltPolicy::Exit`] when a lockout marker blocks the start.
pub const EXIT_LOCKED_OUT: i32 = 87;

/// What happens after a violation has been logged and recorded in the lockout marker.
///
/// Every policy stops the process: a violation never leads to degraded operation.
#[derive(Debug, Clone, Copy, Default)]
pub enum HaltPolicy {
    /// Print what failed on standard error and exit with [`EXIT_INTEGRITY_VIOLATION`] (or
    /// [`EXIT_LOCKED_OUT`]). `atexit` handlers run (the audit logger's final flush among them);
    /// destructors of live objects do not.
    #[default]
    Exit,
    /// Print what failed, then `abort()`: no handlers run, and a core dump (where enabled)
    /// preserves the process state for forensics.
    Abort,
    /// Call this function, which must not return (it may, e.g., notify a supervisor and then
    /// exit with a status of its own).
    Custom(fn(&Violation) -> !),
}

#[derive(Clone)]
struct Config {
    manifest: Manifest,
    marker: PathBuf,
    policy: HaltPolicy,
    strict: bool,
    follow_symlinks: bool,
    self_check: bool,
    threads: usize,
}

/// The outcome of the latest check of any lock in the process (for `secure_core::status()`).
static LAST_STATUS: Mutex<Option<serde_json::Value>> = Mutex::new(None);

fn last_status() -> serde_json::Value {
    LAST_STATUS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or(serde_json::Value::Null)
}

/// Guards a set of files; see the [module documentation](self).
///
/// Cloning is cheap and clones share the tripped state.
#[derive(Clone)]
pub struct IntegrityLock {
    config: Arc<Config>,
    tripped: Arc<OnceLock<Arc<Violation>>>,
}

impl IntegrityLock {
    /// A lock over `manifest`, with the default lockout marker ([`default_marker_path`]), the
    /// default [`HaltPolicy::Exit`], no strict mode and no executable self-check.
    pub fn new(manifest: Manifest) -> IntegrityLock {
        let marker = default_marker_path(&manifest);
        IntegrityLock {
            config: Arc::new(Config {
                manifest,
                marker,
                policy: HaltPolicy::Exit,
                strict: false,
                follow_symlinks: false,
                self_check: false,
                threads: 0,
            }),
            tripped: Arc::new(OnceLock::new()),
        }
    }

    fn config_mut(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// Where the lockout marker is written and looked for.
    pub fn lockout_marker(mut self, path: impl Into<PathBuf>) -> IntegrityLock {
        self.config_mut().marker = path.into();
        self
    }

    /// What happens after a violation (default [`HaltPolicy::Exit`]).
    pub fn halt_policy(mut self, policy: HaltPolicy) -> IntegrityLock {
        self.config_mut().policy = policy;
        self
    }

    /// Also treat files under the root that the manifest does not list as a violation (the
    /// manifest file and the lockout marker aside).
    pub fn strict(mut self, yes: bool) -> IntegrityLock {
        self.config_mut().strict = yes;
        self
    }

    /// Follow symbolic links even out of the manifest root when reading listed files (off by
    /// default: a listed name whose path leads out of the root through a link is a violation,
    /// [`Problem::OutsideRoot`], and nothing outside the root is read or hashed). See
    /// [`VerifyOptions::follow_symlinks`].
    pub fn follow_symlinks(mut self, yes: bool) -> IntegrityLock {
        self.config_mut().follow_symlinks = yes;
        self
    }

    /// Also verify the running executable (`/proc/self/exe` on Linux: the image actually
    /// running, even if its path has been replaced since) against its manifest entry. The
    /// manifest must list the executable.
    pub fn self_check(mut self, yes: bool) -> IntegrityLock {
        self.config_mut().self_check = yes;
        self
    }

    /// Hashing threads (0, the default, means one per core).
    pub fn threads(mut self, n: usize) -> IntegrityLock {
        self.config_mut().threads = n;
        self
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.config.manifest
    }

    /// The lockout marker path.
    pub fn marker_path(&self) -> &Path {
        &self.config.marker
    }

    /// The violation that tripped this lock, if any.
    pub fn tripped(&self) -> Option<&Violation> {
        self.tripped.get().map(|v| &**v)
    }

    /// Verifies at start-up; returns only if everything verifies and no lockout marker exists.
    /// Otherwise logs, records and halts per the [`HaltPolicy`] (by default exiting with
    /// [`EXIT_INTEGRITY_VIOLATION`], or [`EXIT_LOCKED_OUT`] when a marker blocks the start).
    ///
    /// On success an `Info` `IntegrityVerified` audit event is logged.
    pub fn verify_or_halt(&self) {
        if let Err(e) = self.run_check(Context::Startup) {
            self.halt(e.violation());
        }
        audit::log(
            Event::new(
                EventKind::IntegrityVerified,
                Severity::Info,
                "integrity",
                format!(
                    "{} file(s) verified at startup",
                    self.config.manifest.len() + usize::from(self.config.self_check)
                ),
            )
            .field("manifest", self.manifest_name()),
        );
    }

    /// Verifies now, before a critical operation. On a violation the audit event and the
    /// lockout marker are written, the lock trips, and the error is returned — the process is
    /// *not* halted; the caller must not go ahead. Once tripped, every later call fails at
    /// once with the first violation ([`IntegrityError::is_earlier_violation`]), and a running
    /// [`start_periodic`](Self::start_periodic) thread halts the process at its next tick.
    pub fn check(&self) -> Result<(), IntegrityError> {
        self.run_check(Context::Check)
    }

    /// Starts a background thread that re-verifies every `interval` and halts per the
    /// [`HaltPolicy`] on a violation (or when a lockout marker appears, e.g. written by
    /// another process of the same program). The thread stops when the returned guard is
    /// dropped.
    pub fn start_periodic(&self, interval: Duration) -> PeriodicCheck {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let lock = self.clone();
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("integrity-periodic".into())
            .spawn(move || {
                let (flag, cv) = &*stop2;
                let mut stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    let (guard, _) = cv
                        .wait_timeout_while(stopped, interval, |s| !*s)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = guard;
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    if let Err(e) = lock.run_check(Context::Periodic) {
                        lock.halt(e.violation());
                    }
                    stopped = flag.lock().unwrap_or_else(|e| e.into_inner());
                }
            });
        match handle {
            Ok(handle) => PeriodicCheck {
                stop,
                handle: Some(handle),
            },
            Err(e) => {
                // Without the background thread the promised re-verification cannot happen;
                // that is a failure to guard, so it halts like a violation would.
                let v = Violation::new(
                    Context::Periodic,
                    vec![Failure {
                        path: PathBuf::from("<integrity-periodic thread>"),
                        problem: Problem::Unreadable(format!("cannot start: {e}")),
                    }],
                    0,
                    self.config.manifest.source(),
                    self.config.manifest.root(),
                );
                self.halt(&v)
            }
        }
    }

    /// Reads a listed file and returns its bytes only if they hash to the listed digest. The
    /// digest is computed over the very bytes returned. On a mismatch this is a violation
    /// like [`check`](Self::check)'s (audit event, lockout marker, lock tripped, error
    /// returned). `path` is a manifest name (relative to the root) or an absolute path under
    /// the root.
    pub fn read_verified(&self, path: impl AsRef<Path>) -> Result<Vec<u8>, IntegrityError> {
        if let Some(v) = self.tripped.get() {
            return Err(IntegrityError::earlier(Arc::clone(v)));
        }
        read_checked(
            path.as_ref(),
            &self.config.manifest,
            self.config.follow_symlinks,
        )
        .map_err(|failure| self.record(Context::VerifiedRead, vec![failure], 1))
    }

    fn manifest_name(&self) -> String {
        match self.config.manifest.source() {
            Some(p) => p.display().to_string(),
            None => self.config.manifest.root().display().to_string(),
        }
    }

    fn run_check(&self, context: Context) -> Result<(), IntegrityError> {
        let result = self.run_check_inner(context);
        self.publish_status(context, &result);
        result
    }

    /// Records the outcome of the latest check for [`crate::status()`].
    fn publish_status(&self, context: Context, result: &Result<(), IntegrityError>) {
        let v = serde_json::json!({
            "manifest": self.manifest_name(),
            "files": self.config.manifest.len() + usize::from(self.config.self_check),
            "last_check": format!("{context:?}").to_lowercase(),
            "checked_at": crate::audit::now_rfc3339(),
            "ok": result.is_ok(),
            "violation": result.as_ref().err().map(|e| e.to_string()),
            "lockout_marker": self.config.marker.display().to_string(),
        });
        *LAST_STATUS.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        let _ = crate::status::set_integrity_source(last_status);
    }

    fn run_check_inner(&self, context: Context) -> Result<(), IntegrityError> {
        if let Some(v) = self.tripped.get() {
            return Err(IntegrityError::earlier(Arc::clone(v)));
        }
        let cfg = &self.config;
        match read_lockout(&cfg.marker) {
            Ok(None) => {}
            Ok(Some(lockout)) => {
                return Err(self.record_lockout(context, lockout.summary()));
            }
            Err(e) => {
                // A marker that exists but cannot be read still blocks: fail closed.
                return Err(self.record_lockout(
                    context,
                    format!("marker {} cannot be read: {e}", cfg.marker.display()),
                ));
            }
        }
        let opts = VerifyOptions::new()
            .strict(cfg.strict)
            .follow_symlinks(cfg.follow_symlinks)
            .threads(cfg.threads)
            .exclude(&cfg.marker);
        let report = cfg.manifest.verify_with(&opts);
        let mut failures = Violation::failures_of(&report);
        let mut checked = report.files.len();
        if cfg.self_check {
            checked += 1;
            if let Err(f) = check_self(&cfg.manifest) {
                failures.push(f);
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(self.record(context, failures, checked))
        }
    }

    /// A refusal because of a lockout marker: audited, trips the lock, but the marker itself is
    /// left as it is (it already records the original violation).
    fn record_lockout(&self, context: Context, recorded: String) -> IntegrityError {
        let v = Violation::new(
            context,
            vec![Failure {
                path: self.config.marker.clone(),
                problem: Problem::LockedOut { recorded },
            }],
            0,
            self.config.manifest.source(),
            self.config.manifest.root(),
        );
        emit_audit(&v, Some(&self.config.marker));
        let v = Arc::new(v);
        let _ = self.tripped.set(Arc::clone(&v));
        IntegrityError::new(v)
    }

    /// Logs and records a violation, trips the lock.
    fn record(&self, context: Context, failures: Vec<Failure>, checked: usize) -> IntegrityError {
        let v = Violation::new(
            context,
            failures,
            checked,
            self.config.manifest.source(),
            self.config.manifest.root(),
        );
        emit_audit(&v, Some(&self.config.marker));
        if let Err(e) = lockout::append(&self.config.marker, &v) {
            eprintln!(
                "secure-core: CANNOT WRITE LOCKOUT MARKER {}: {e}",
                self.config.marker.display()
            );
        }
        let v = Arc::new(v);
        if self.tripped.set(Arc::clone(&v)).is_err() {
            // Another thread tripped the lock first; report the first violation.
            if let Some(first) = self.tripped.get() {
                return IntegrityError::earlier(Arc::clone(first));
            }
        }
        IntegrityError::new(v)
    }

    /// Prints what failed and runs the halt policy. Never returns.
    fn halt(&self, v: &Violation) -> ! {
        let marker = self.config.marker.display();
        let (code, head) = if v.is_lockout() {
            (EXIT_LOCKED_OUT, "INTEGRITY LOCKOUT")
        } else {
            (EXIT_INTEGRITY_VIOLATION, "INTEGRITY VIOLATION")
        };
        let mut msg = String::new();
        if v.is_lockout() {
            msg.push_str(&format!(
                "secure-core: {head} {}: refusing to run: {marker} records an earlier violation\n",
                v.context
            ));
            for f in &v.failures {
                if let Problem::LockedOut { recorded } = &f.problem {
                    msg.push_str(&format!("secure-core:   {recorded}\n"));
                }
            }
            msg.push_str(&format!(
                "secure-core: after investigating, clear it with `secure integrity unlock --marker {marker}`\n"
            ));
        } else {
            msg.push_str(&format!(
                "secure-core: {head} {}: {} of {} checked file(s) failed (manifest {})\n",
                v.context,
                v.failures.len(),
                v.checked,
                self.manifest_name()
            ));
            for line in v.describe(20) {
                msg.push_str(&format!("secure-core:   {line}\n"));
            }
            msg.push_str(&format!(
                "secure-core: lockout marker {marker} blocks further starts until `secure integrity unlock --marker {marker}`\n"
            ));
        }
        match self.config.policy {
            HaltPolicy::Exit => {
                msg.push_str(&format!("secure-core: halting (exit status {code})\n"));
                eprint!("{msg}");
                std::process::exit(code)
            }
            HaltPolicy::Abort => {
                msg.push_str("secure-core: halting (abort)\n");
                eprint!("{msg}");
                std::process::abort()
            }
            HaltPolicy::Custom(f) => {
                eprint!("{msg}");
                f(v)
            }
        }
    }
}

/// Stops the background re-verification of [`IntegrityLock::start_periodic`] when dropped.
#[must_use = "dropping the guard stops the periodic re-verification at once"]
pub struct PeriodicCheck {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl PeriodicCheck {
    /// Stops the background thread and waits for it (also what dropping does).
    pub fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let (flag, cv) = &*self.stop;
        *flag.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for PeriodicCheck {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Logs one `Critical` `IntegrityViolation` event per failure and flushes the audit log.
fn emit_audit(v: &Violation, marker: Option<&Path>) {
    if !audit::is_active() {
        return;
    }
    for f in &v.failures {
        let mut ev = Event::new(
            EventKind::IntegrityViolation,
            Severity::Critical,
            "integrity",
            format!("integrity violation {}: {f}", v.context),
        )
        .field("context", v.context.as_str())
        .field("path", display_name(&f.path))
        .field("problem", f.problem.as_str())
        .field("root", v.root.display().to_string());
        if let Some(m) = &v.manifest {
            ev = ev.field("manifest", m.display().to_string());
        }
        if let Some(m) = marker {
            ev = ev.field("lockout_marker", m.display().to_string());
        }
        ev = match &f.problem {
            Problem::Mismatch { expected, actual } => ev
                .field("expected", expected.to_hex())
                .field("actual", actual.to_hex()),
            Problem::Unreadable(e) | Problem::Unlistable(e) | Problem::OutsideRoot(e) => {
                ev.field("error", e.clone())
            }
            Problem::LockedOut { recorded } => ev.field("recorded", recorded.clone()),
            _ => ev,
        };
        audit::log(ev);
    }
    if let Err(e) = audit::flush() {
        eprintln!("secure-core: CANNOT FLUSH THE AUDIT LOG after an integrity violation: {e}");
    }
}

/// Reads `path` (a manifest name, or an absolute path under the root) and returns its bytes
/// only if they hash to the digest `manifest` lists for it. The digest is computed over the
/// very bytes returned, so the file cannot change between the check and the use.
///
/// Symbolic links are followed only inside the manifest root: a name whose path leads out of
/// it fails with [`Problem::OutsideRoot`] and nothing outside is read.
///
/// A failure (not listed, missing, unreadable, outside the root, changed) is logged as a
/// `Critical`
/// `IntegrityViolation` audit event; no lockout marker is written and nothing is halted (use
/// [`IntegrityLock::read_verified`] for that).
///
/// ```
/// use secure_core::integrity::read_verified;
/// use secure_core::manifest::Manifest;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let root = std::env::temp_dir().join(format!("secure-core-rv-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&root)?;
/// std::fs::write(root.join("app.toml"), "port = 8080\n")?;
/// let manifest = Manifest::create(&root, ["app.toml"])?;
///
/// assert_eq!(read_verified("app.toml", &manifest)?, b"port = 8080\n");
/// std::fs::write(root.join("app.toml"), "port = 6666\n")?;
/// let err = read_verified("app.toml", &manifest).unwrap_err();
/// assert!(err.to_string().contains("app.toml: digest mismatch"));
/// # std::fs::remove_dir_all(&root)?;
/// # Ok(())
/// # }
/// ```
pub fn read_verified(
    path: impl AsRef<Path>,
    manifest: &Manifest,
) -> Result<Vec<u8>, IntegrityError> {
    read_checked(path.as_ref(), manifest, false).map_err(|failure| {
        let v = Violation::new(
            Context::VerifiedRead,
            vec![failure],
            1,
            manifest.source(),
            manifest.root(),
        );
        emit_audit(&v, None);
        IntegrityError::new(Arc::new(v))
    })
}

fn read_checked(path: &Path, manifest: &Manifest, follow: bool) -> Result<Vec<u8>, Failure> {
    let Some(entry) = manifest.entry_for_path(path) else {
        return Err(Failure {
            path: path.to_path_buf(),
            problem: Problem::NotInManifest,
        });
    };
    let fail = |problem| Failure {
        path: entry.name().to_path_buf(),
        problem,
    };
    let io_fail = |e: io::Error| {
        fail(if e.kind() == io::ErrorKind::NotFound {
            Problem::Missing
        } else if let Some(why) = crate::manifest::escapes_root(&e) {
            Problem::OutsideRoot(why.to_string())
        } else {
            Problem::Unreadable(e.to_string())
        })
    };
    let mut file = manifest.open_entry(entry, follow).map_err(io_fail)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(io_fail)?;
    let actual = Digest::of(&bytes);
    if actual == *entry.digest() {
        Ok(bytes)
    } else {
        Err(fail(Problem::Mismatch {
            expected: *entry.digest(),
            actual,
        }))
    }
}

/// Verifies the running executable against its entry in `manifest`: the entry whose file is
/// the executable's path (after resolving symbolic links). On Linux the bytes hashed are those
/// of `/proc/self/exe`, the image actually running, even if its path was replaced since.
///
/// A failure is logged as a `Critical` `IntegrityViolation` audit event.
pub fn verify_self(manifest: &Manifest) -> Result<(), IntegrityError> {
    check_self(manifest).map_err(|failure| {
        let v = Violation::new(
            Context::SelfCheck,
            vec![failure],
            1,
            manifest.source(),
            manifest.root(),
        );
        emit_audit(&v, None);
        IntegrityError::new(Arc::new(v))
    })
}

fn check_self(manifest: &Manifest) -> Result<(), Failure> {
    let exe = std::env::current_exe().map_err(|e| Failure {
        path: PathBuf::from("<current executable>"),
        problem: Problem::Unreadable(e.to_string()),
    })?;
    let canonical = std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
    let entry = manifest
        .entries()
        .iter()
        .find(|e| std::fs::canonicalize(manifest.path_of(e)).is_ok_and(|p| p == canonical));
    let Some(entry) = entry else {
        return Err(Failure {
            path: canonical,
            problem: Problem::NotInManifest,
        });
    };
    let image = if cfg!(target_os = "linux") && Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        exe
    };
    let mut label = entry.name().as_os_str().to_owned();
    label.push(" (running image)");
    let fail = |problem| Failure {
        path: PathBuf::from(&label),
        problem,
    };
    let actual = open_regular(&image, true)
        .and_then(|f| crate::manifest::hash_open_file(f, &mut |_| {}))
        .map_err(|e| fail(Problem::Unreadable(e.to_string())))?;
    if actual == *entry.digest() {
        Ok(())
    } else {
        Err(fail(Problem::Mismatch {
            expected: *entry.digest(),
            actual,
        }))
    }
}

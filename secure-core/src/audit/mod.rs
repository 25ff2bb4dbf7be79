//! A tamper-evident audit log.
//!
//! Events ([`Event`]: a sequence number, an RFC 3339 UTC timestamp, a [`Severity`], an
//! [`EventKind`], an operation, a message, key/value fields and the thread) are sanitized
//! (see [`crate::sanitize`]) and pushed into a bounded queue; a background thread writes them
//! in batches to the configured sinks:
//!
//! - a **JSON Lines file** (the default): one object per line, easy to read with `jq`;
//! - **standard error** (the same lines);
//! - an **in-memory ring** of the most recent events ([`recent`]);
//! - **syslog** ([`AuditConfig::with_syslog`]): a copy of the serious events sent to the
//!   local syslog socket as RFC 5424 messages, so they leave the machine's log file;
//! - a **`tracing` bridge** (cargo feature `tracing`, [`AuditConfig::with_tracing`])
//!   re-emitting each event, with its fields as fields, in the caller's span and order, and
//!   running each `#[secure_operation]` call in a span;
//! - a **`log` bridge** (cargo feature `log`, [`AuditConfig::with_log`]), the same for
//!   `log` loggers.
//!
//! A full queue blocks the caller: audit events are never dropped. [`flush`] returns when
//! everything logged so far is durable; the process-wide logger also flushes at exit
//! (including `std::process::exit`).
//!
//! # Tamper evidence
//!
//! Each record carries `prev`, the hash of the record before it, and `hash` =
//! SHA-256(0x00 ‖ prev ‖ the record's bytes), so changing, removing or reordering records
//! breaks the chain. A chain alone cannot reveal a removed *tail*, so every flush and the
//! shutdown also write an [`Anchor`] — the record count and the last hash — to a separate file
//! (`<log>.anchor` by default; keep it somewhere the log's writer cannot rewrite if you can).
//! [`verify`] recomputes every hash from the records and returns a [`Verdict`]: intact, record
//! N modified, records missing, out of order, truncated against the anchor, a tail written but
//! never anchored (a crash), or a malformed line. See [`chain`] for the exact format.
//! Rotation ([`AuditConfig::rotate_at_bytes`]) continues the chain across files.
//!
//! A hash chain only shows accidents and clumsy edits: someone with write access can
//! rewrite a record, recompute every hash after it and rewrite the anchor. A **keyed** log
//! ([`AuditConfig::with_key_file`], [`AuditConfig::with_key_env`]) resists that: each record
//! also carries an HMAC-SHA256 under the key of its *epoch*, each flush that wrote records
//! closes the epoch with a seal (epoch number, record count, last MAC), and the key then moves
//! forward, k(i+1) = H(k(i)), the old one wiped (Bellare–Yee forward-secure MACs; see
//! [`AuditKey`]). Who takes the machine at epoch n learns k(n) and nothing earlier, so
//! records of epochs before n can be neither forged nor rewritten. The verifier holds the
//! initial key, kept off the machine: [`verify_keyed`] tells a MAC that does not verify from
//! a broken chain, and names removed, replayed and unsealed epochs; the seals show removed
//! epochs without the anchor, and the writer refuses to continue a log that stops before
//! the epoch of its key.
//!
//! # Example
//!
//! ```
//! use secure_core::audit::{self, AuditConfig, Event, EventKind, Severity, Verdict};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let logger = audit::Logger::new(AuditConfig::jsonl(&path)).unwrap();
//! logger.log(Event::new(EventKind::IntegrityVerified, Severity::Info, "startup", "3 files ok"));
//! logger.log(Event::new(EventKind::OperationError, Severity::Error, "login", "bad credentials")
//!     .field("user", "ada")
//!     .field("password", "hunter2"));
//! logger.flush().unwrap();
//!
//! let text = std::fs::read_to_string(&path).unwrap();
//! assert!(text.contains("***REDACTED***") && !text.contains("hunter2"));
//! let verdict = audit::verify(&path, Some(&audit::default_anchor_path(&path))).unwrap();
//! assert_eq!(verdict, Verdict::Intact { records: 2 });
//! ```
//!
//! The process-wide logger is used the same way through free functions:
//!
//! ```no_run
//! use secure_core::audit::{self, AuditConfig, Event, EventKind, Severity};
//!
//! audit::init(AuditConfig::jsonl("/var/log/myapp/audit.jsonl")).expect("audit log");
//! audit::log(Event::new(EventKind::OperationStart, Severity::Info, "main", "started"));
//! ```

pub(crate) mod bridge;
pub mod chain;
mod config;
mod error;
mod event;
mod file;
mod json;
mod key;
mod logger;
mod report;
mod syslog;
mod verify;

use std::sync::{Mutex, OnceLock};

pub use chain::Anchor;
pub use config::{default_anchor_path, AuditConfig};
pub use error::AuditError;
pub use event::{now_rfc3339, Event, EventKind, ParseNameError, Severity};
pub use key::{AuditKey, KEY_ENV};
pub use logger::Logger;
pub use report::Report;
pub use verify::{
    is_keyed_log, verify, verify_bytes, verify_bytes_keyed, verify_files, verify_keyed, Location,
    Verdict,
};

static GLOBAL: OnceLock<Logger> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Starts the process-wide logger. It flushes (writes everything queued, syncs, writes the
/// anchor) when the process exits normally or through `std::process::exit`.
///
/// Errors: [`AuditError::AlreadyInitialized`] on a second call, or anything
/// [`Logger::new`] can return.
pub fn init(config: AuditConfig) -> Result<(), AuditError> {
    let _g = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if GLOBAL.get().is_some() {
        return Err(AuditError::AlreadyInitialized);
    }
    let logger = Logger::new(config)?;
    let _ = GLOBAL.set(logger);
    // SAFETY: registering a plain `extern "C"` function with no arguments.
    let rc = unsafe { libc::atexit(flush_at_exit) };
    if rc != 0 {
        eprintln!(
            "secure-core audit: could not register the exit handler; call audit::flush() \
             before exiting"
        );
    }
    Ok(())
}

extern "C" fn flush_at_exit() {
    // Never unwind into the C runtime.
    let _ = std::panic::catch_unwind(|| {
        if let Some(logger) = GLOBAL.get() {
            if let Err(e) = logger.shutdown_at_exit() {
                eprintln!("secure-core audit: flush at exit failed: {e}");
            }
        }
    });
}

/// The process-wide logger, if [`init`] has been called.
pub fn global() -> Option<&'static Logger> {
    GLOBAL.get()
}

/// Logs an event with the process-wide logger (see [`Logger::log`]).
///
/// **Does nothing when [`init`] has not been called**: libraries can log unconditionally and
/// the application decides whether there is an audit log.
pub fn log(event: Event) {
    if let Some(l) = GLOBAL.get() {
        l.log(event);
    }
}

/// Whether the process-wide logger has been initialised.
pub fn is_active() -> bool {
    GLOBAL.get().is_some()
}

/// Returns when everything logged so far with the process-wide logger is durable and the
/// anchor written (see [`Logger::flush`]). `Ok` when there is no process-wide logger.
pub fn flush() -> Result<(), AuditError> {
    match GLOBAL.get() {
        Some(l) => l.flush(),
        None => Ok(()),
    }
}

/// The `n` most recent events of the process-wide logger's memory ring, newest last; empty
/// without a logger or a ring (see [`AuditConfig::with_memory_ring`]).
pub fn recent(n: usize) -> Vec<Event> {
    GLOBAL.get().map(|l| l.recent(n)).unwrap_or_default()
}

/// The process-wide logger's report with up to `recent` serious events, or `None` without a
/// logger (see [`Logger::report`]).
pub fn report(recent: usize) -> Option<Report> {
    GLOBAL.get().map(|l| l.report(recent))
}

/// Flushes and stops the process-wide logger's writer thread; later events are written
/// synchronously. `Ok` when there is no process-wide logger.
pub fn shutdown() -> Result<(), AuditError> {
    match GLOBAL.get() {
        Some(l) => l.shutdown(),
        None => Ok(()),
    }
}

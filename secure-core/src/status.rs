//! A status snapshot of the process: heap figures from the allocator, whether a leak is
//! suspected, where live memory was allocated, the audit report and the integrity status.
//!
//! ```
//! let s = secure_core::status::status();
//! let json = serde_json::to_value(&s).unwrap();
//! assert!(json["potential_leak_mb"].is_number());
//! assert!(json["is_leaking"].is_boolean());
//! ```

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Report};
use crate::monitor::{self, CallsiteSummary, DEFAULT_THRESHOLD_BYTES};
use crate::sanitize::{Sanitize, SanitizePolicy};

const MIB: f64 = 1024.0 * 1024.0;

/// A snapshot of the process's security-relevant state, serializable to JSON.
///
/// Sizes in `*_mb` fields are mebibytes (2^20 bytes), as floats.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// When the snapshot was taken (RFC 3339, UTC).
    pub timestamp: String,
    /// Whether `secalloc::SecAlloc` is the global allocator; without it the heap figures are
    /// all zero.
    pub allocator_installed: bool,
    /// Live heap, in MiB: memory allocated and not freed.
    pub potential_leak_mb: f64,
    /// Live heap blocks.
    pub active_allocations: u64,
    /// Everything allocated since start, in MiB.
    pub total_allocated_mb: f64,
    /// Everything freed since start, in MiB.
    pub total_freed_mb: f64,
    /// The highest live heap seen, in MiB.
    pub peak_mb: f64,
    /// Bytes wiped on free, in MiB.
    pub wiped_mb: f64,
    /// Whether a leak is suspected: a running [`LeakMonitor`](crate::monitor::LeakMonitor) is
    /// in its alerted state, or, with no monitor running, live heap is at or above the
    /// default threshold (100 MiB).
    pub is_leaking: bool,
    /// The callsites holding the most live memory, largest first.
    pub top_allocations: Vec<CallsiteSummary>,
    /// The process-wide audit logger's report, when one is initialised.
    pub audit: Option<Report>,
    /// The integrity status, when an integrity service has registered one (see
    /// [`set_integrity_source`]).
    pub integrity: Option<serde_json::Value>,
}

static INTEGRITY: OnceLock<fn() -> serde_json::Value> = OnceLock::new();

/// Registers the function that reports the integrity status included in [`status`]. Can be
/// set once; returns `false` if one was already registered.
pub fn set_integrity_source(f: fn() -> serde_json::Value) -> bool {
    INTEGRITY.set(f).is_ok()
}

/// A snapshot with the 10 top callsites and the 20 most recent `Error`/`Critical` events.
pub fn status() -> Status {
    status_with(10, 20)
}

/// A snapshot with the `top` callsites holding the most live memory and the `recent` most
/// recent `Error`/`Critical` audit events.
///
/// Listing callsites takes a snapshot of the live blocks and symbolizes their stacks (the
/// first time, loading debug information takes a moment); pass `top = 0` to skip it.
pub fn status_with(top: usize, recent: usize) -> Status {
    let installed = secalloc::is_installed();
    let s = if installed {
        secalloc::stats()
    } else {
        secalloc::Stats::default()
    };
    let mb = |b: u64| b as f64 / MIB;
    Status {
        timestamp: audit::now_rfc3339(),
        allocator_installed: installed,
        potential_leak_mb: mb(s.live_bytes),
        active_allocations: s.live_blocks,
        total_allocated_mb: mb(s.total_allocated_bytes),
        total_freed_mb: mb(s.total_freed_bytes),
        peak_mb: mb(s.peak_live_bytes),
        wiped_mb: mb(s.wiped_bytes),
        is_leaking: leak_suspected(installed.then_some(&s)),
        top_allocations: monitor::top_callsites(top),
        audit: audit::report(recent),
        integrity: integrity(),
    }
}

/// Whether a leak is suspected, as [`Status::is_leaking`] says: a running
/// [`LeakMonitor`](crate::monitor::LeakMonitor) is in its alerted state, or, with no monitor
/// running, `stats` (the allocator's figures; `None` when `SecAlloc` is not installed) show a
/// live heap at or above the default threshold (100 MiB).
pub fn leak_suspected(stats: Option<&secalloc::Stats>) -> bool {
    monitor::any_alerted()
        .unwrap_or_else(|| stats.is_some_and(|s| s.live_bytes >= DEFAULT_THRESHOLD_BYTES))
}

/// The integrity status from the source registered with [`set_integrity_source`], if any.
pub fn integrity() -> Option<serde_json::Value> {
    INTEGRITY.get().map(|f| f())
}

impl Sanitize for Status {
    /// Sanitizes every string and float in the snapshot (callsite names, audit events, the
    /// integrity value).
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.timestamp.sanitize(policy);
        for f in [
            &mut self.potential_leak_mb,
            &mut self.total_allocated_mb,
            &mut self.total_freed_mb,
            &mut self.peak_mb,
            &mut self.wiped_mb,
        ] {
            f.sanitize(policy);
        }
        self.top_allocations.sanitize(policy);
        self.audit.sanitize(policy);
        self.integrity.sanitize(policy);
    }

    fn to_log_value(&self, policy: &SanitizePolicy) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_default()
            .to_log_value(policy)
    }
}

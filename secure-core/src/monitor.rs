//! The leak-threshold monitor.
//!
//! A [`LeakMonitor`] runs a background thread that reads [`secalloc::stats()`] every
//! interval. When live bytes cross the threshold (100 MiB by default), or grow in each of N
//! consecutive intervals (when [`growth_windows`](LeakMonitorBuilder::growth_windows) is set),
//! it raises a [`LeakAlert`]: a `MemoryLeakDetected` audit event at `Warning` severity with
//! the top callsites by live bytes, and the callback if one was given.
//!
//! Each condition alerts **once** and then waits to be re-armed: the threshold alert re-arms
//! when live bytes fall below the threshold by the hysteresis margin (10% by default), the
//! growth alert when an interval passes without growth. A program hovering around the
//! threshold therefore gets one alert, not one per interval.
//!
//! The monitor needs `secalloc::SecAlloc` as the global allocator; without it
//! [`LeakMonitorBuilder::start`] returns [`MonitorError::AllocatorNotInstalled`].
//!
//! ```no_run
//! use std::time::Duration;
//! use secure_core::monitor::LeakMonitor;
//!
//! #[global_allocator]
//! static A: secalloc::SecAlloc = secalloc::SecAlloc::new();
//!
//! let monitor = LeakMonitor::builder()
//!     .threshold_bytes(512 << 20)
//!     .interval(Duration::from_secs(5))
//!     .growth_windows(12)
//!     .on_alert(|alert| eprintln!("leak suspected: {alert}"))
//!     .start()
//!     .expect("SecAlloc is the global allocator");
//! // ... the program runs; dropping `monitor` stops the thread.
//! # drop(monitor);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::{self, Event, EventKind, Severity};

/// The default threshold: 100 MiB of live heap.
pub const DEFAULT_THRESHOLD_BYTES: u64 = 100 << 20;

/// Monitors running now, and how many of them are in the alerted state (read by
/// [`status`](crate::status::status)).
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static ALERTED: AtomicUsize = AtomicUsize::new(0);

/// Whether any running monitor is currently alerted (threshold exceeded, or steady growth
/// seen and not yet re-armed); `None` when no monitor runs.
pub fn any_alerted() -> Option<bool> {
    (RUNNING.load(Ordering::SeqCst) > 0).then(|| ALERTED.load(Ordering::SeqCst) > 0)
}

/// Why a [`LeakMonitor`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// `secalloc::SecAlloc` is not the global allocator, so there are no statistics to read.
    #[error(
        "the leak monitor needs secalloc as the global allocator: add \
         `#[global_allocator] static A: secalloc::SecAlloc = secalloc::SecAlloc::new();` \
         to the program"
    )]
    AllocatorNotInstalled,
    /// The configuration cannot work.
    #[error("invalid leak monitor configuration: {0}")]
    InvalidConfig(String),
    /// The monitor thread could not be started.
    #[error("cannot start the leak monitor thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Why an alert was raised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum AlertReason {
    /// Live bytes reached the threshold.
    ThresholdExceeded {
        /// The threshold, in bytes.
        threshold_bytes: u64,
    },
    /// Live bytes grew in each of `windows` consecutive intervals.
    SteadyGrowth {
        /// The number of consecutive growing intervals.
        windows: u32,
        /// How much live bytes grew over them.
        grown_bytes: u64,
    },
}

/// One callsite holding live memory, as shown in an alert or the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallsiteSummary {
    /// Live bytes allocated here.
    pub bytes: u64,
    /// Live blocks allocated here.
    pub blocks: u64,
    /// The first frame with a name: `function (file:line)`, or `0xADDR` when unknown.
    pub location: String,
    /// Every frame, innermost first, in the same form.
    pub frames: Vec<String>,
}

impl CallsiteSummary {
    /// The summary of one callsite of a [`secalloc::LeakReport`]: its figures, its first
    /// named frame as `location`, and every frame as `function (file:line)`.
    pub fn of(c: &secalloc::Callsite) -> CallsiteSummary {
        let frames: Vec<String> = c.frames.iter().map(frame_string).collect();
        let location = c
            .frames
            .iter()
            .find(|f| f.function.is_some())
            .map(frame_string)
            .or_else(|| frames.first().cloned())
            .unwrap_or_else(|| "(no stack recorded)".to_owned());
        CallsiteSummary {
            bytes: c.bytes,
            blocks: c.blocks,
            location,
            frames,
        }
    }
}

impl crate::Sanitize for CallsiteSummary {
    fn sanitize(&mut self, policy: &crate::SanitizePolicy) {
        self.location.sanitize(policy);
        self.frames.sanitize(policy);
    }

    fn to_log_value(&self, policy: &crate::SanitizePolicy) -> serde_json::Value {
        serde_json::json!({
            "bytes": self.bytes,
            "blocks": self.blocks,
            "location": self.location.to_log_value(policy),
            "frames": self.frames.to_log_value(policy),
        })
    }
}

fn frame_string(f: &secalloc::Frame) -> String {
    let mut s = match &f.function {
        Some(func) => func.to_string(),
        None => format!("{:#x}", f.ip),
    };
    if let Some(file) = &f.file {
        s.push_str(&format!(" ({file}"));
        if let Some(line) = f.line {
            s.push_str(&format!(":{line}"));
        }
        s.push(')');
    }
    s
}

/// The `n` callsites holding the most live bytes, from [`secalloc::report`] (empty when
/// `SecAlloc` is not the global allocator).
pub fn top_callsites(n: usize) -> Vec<CallsiteSummary> {
    if n == 0 || !secalloc::is_installed() {
        return Vec::new();
    }
    let report = secalloc::report();
    let mut sites = report.callsites;
    sites.sort_by_key(|c| std::cmp::Reverse(c.bytes));
    sites
        .into_iter()
        .take(n)
        .map(|c| CallsiteSummary::of(&c))
        .collect()
}

/// A suspected leak, as passed to the callback and logged.
#[derive(Clone, Debug, Serialize)]
pub struct LeakAlert {
    /// Why the alert was raised.
    #[serde(flatten)]
    pub reason: AlertReason,
    /// Live bytes when it was raised.
    pub live_bytes: u64,
    /// Live blocks when it was raised.
    pub live_blocks: u64,
    /// The callsites holding the most live bytes, largest first.
    pub top_callsites: Vec<CallsiteSummary>,
}

impl fmt::Display for LeakAlert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            AlertReason::ThresholdExceeded { threshold_bytes } => write!(
                f,
                "{} live bytes in {} blocks reached the threshold of {threshold_bytes} bytes",
                self.live_bytes, self.live_blocks
            )?,
            AlertReason::SteadyGrowth {
                windows,
                grown_bytes,
            } => write!(
                f,
                "live bytes grew by {grown_bytes} over {windows} consecutive intervals, to {} \
                 in {} blocks",
                self.live_bytes, self.live_blocks
            )?,
        }
        if let Some(top) = self.top_callsites.first() {
            write!(f, "; top callsite: {} bytes at {}", top.bytes, top.location)?;
        }
        Ok(())
    }
}

impl LeakAlert {
    /// The `MemoryLeakDetected` (`Warning`) audit event for this alert.
    pub fn to_event(&self) -> Event {
        let reason = match &self.reason {
            AlertReason::ThresholdExceeded { .. } => "threshold_exceeded",
            AlertReason::SteadyGrowth { .. } => "steady_growth",
        };
        let mut e = Event::new(
            EventKind::MemoryLeakDetected,
            Severity::Warning,
            "secure_core::monitor",
            self.to_string(),
        )
        .field("reason", reason)
        .field("live_bytes", self.live_bytes)
        .field("live_blocks", self.live_blocks)
        .field(
            "top_callsites",
            serde_json::to_value(&self.top_callsites).unwrap_or_default(),
        );
        match self.reason {
            AlertReason::ThresholdExceeded { threshold_bytes } => {
                e = e.field("threshold_bytes", threshold_bytes);
            }
            AlertReason::SteadyGrowth {
                windows,
                grown_bytes,
            } => {
                e = e
                    .field("windows", windows)
                    .field("grown_bytes", grown_bytes);
            }
        }
        e
    }
}

/// The monitor's decision logic, separate from its thread: feed it one live-bytes sample per
/// interval and it says when to alert.
#[derive(Clone, Debug)]
pub struct Detector {
    threshold: u64,
    rearm_below: u64,
    growth_windows: u32,
    min_growth: u64,
    threshold_armed: bool,
    growth_armed: bool,
    growing: u32,
    growth_start: u64,
    last: Option<u64>,
}

impl Detector {
    /// A detector alerting at `threshold` live bytes (re-armed below
    /// `threshold * (1 - hysteresis)`), and after `growth_windows` consecutive samples that
    /// each grew by more than `min_growth` bytes (0 windows: no growth alerts).
    pub fn new(threshold: u64, hysteresis: f64, growth_windows: u32, min_growth: u64) -> Self {
        let h = if hysteresis.is_finite() {
            hysteresis.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Detector {
            threshold,
            rearm_below: (threshold as f64 * (1.0 - h)) as u64,
            growth_windows,
            min_growth,
            threshold_armed: true,
            growth_armed: true,
            growing: 0,
            growth_start: 0,
            last: None,
        }
    }

    /// Whether the detector is in the alerted state (threshold or growth alert not re-armed).
    pub fn alerted(&self) -> bool {
        !self.threshold_armed || !self.growth_armed
    }

    /// Takes one sample; returns the alerts it raises (at most one of each kind).
    pub fn observe(&mut self, live: u64) -> Vec<AlertReason> {
        let mut alerts = Vec::new();
        if self.threshold_armed && live >= self.threshold {
            self.threshold_armed = false;
            alerts.push(AlertReason::ThresholdExceeded {
                threshold_bytes: self.threshold,
            });
        } else if !self.threshold_armed && live < self.rearm_below {
            self.threshold_armed = true;
        }
        if self.growth_windows > 0 {
            match self.last {
                Some(last) if live > last.saturating_add(self.min_growth) => {
                    if self.growing == 0 {
                        self.growth_start = last;
                    }
                    self.growing += 1;
                    if self.growth_armed && self.growing >= self.growth_windows {
                        self.growth_armed = false;
                        alerts.push(AlertReason::SteadyGrowth {
                            windows: self.growing,
                            grown_bytes: live - self.growth_start,
                        });
                    }
                }
                Some(_) => {
                    self.growing = 0;
                    self.growth_armed = true;
                }
                None => {}
            }
        }
        self.last = Some(live);
        alerts
    }
}

type Callback = Arc<dyn Fn(&LeakAlert) + Send + Sync>;

/// Configures and starts a [`LeakMonitor`].
pub struct LeakMonitorBuilder {
    threshold: u64,
    interval: Duration,
    growth_windows: u32,
    min_growth: u64,
    hysteresis: f64,
    top: usize,
    audit: bool,
    callback: Option<Callback>,
}

impl Default for LeakMonitorBuilder {
    fn default() -> Self {
        LeakMonitorBuilder {
            threshold: DEFAULT_THRESHOLD_BYTES,
            interval: Duration::from_secs(1),
            growth_windows: 0,
            min_growth: 0,
            hysteresis: 0.1,
            top: 5,
            audit: true,
            callback: None,
        }
    }
}

impl fmt::Debug for LeakMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakMonitorBuilder")
            .field("threshold", &self.threshold)
            .field("interval", &self.interval)
            .field("growth_windows", &self.growth_windows)
            .field("min_growth", &self.min_growth)
            .field("hysteresis", &self.hysteresis)
            .field("top", &self.top)
            .field("audit", &self.audit)
            .field("callback", &self.callback.is_some())
            .finish()
    }
}

impl LeakMonitorBuilder {
    /// Alert when live heap bytes reach `bytes` (default 100 MiB).
    pub fn threshold_bytes(mut self, bytes: u64) -> Self {
        self.threshold = bytes;
        self
    }

    /// How often statistics are read (default 1 s).
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// Also alert when live bytes grow in each of `n` consecutive intervals (default 0: off).
    pub fn growth_windows(mut self, n: u32) -> Self {
        self.growth_windows = n;
        self
    }

    /// Growth of at most `bytes` in an interval does not count as growing (default 0).
    pub fn min_growth_bytes(mut self, bytes: u64) -> Self {
        self.min_growth = bytes;
        self
    }

    /// The threshold alert re-arms when live bytes fall below `threshold * (1 - fraction)`
    /// (default 0.1; clamped to 0..=1).
    pub fn hysteresis(mut self, fraction: f64) -> Self {
        self.hysteresis = fraction;
        self
    }

    /// How many callsites an alert lists (default 5).
    pub fn top_callsites(mut self, n: usize) -> Self {
        self.top = n;
        self
    }

    /// Whether alerts are logged to the process-wide audit logger (default true; a no-op
    /// when no logger is initialised).
    pub fn audit(mut self, yes: bool) -> Self {
        self.audit = yes;
        self
    }

    /// Called on the monitor thread with every alert.
    pub fn on_alert(mut self, f: impl Fn(&LeakAlert) + Send + Sync + 'static) -> Self {
        self.callback = Some(Arc::new(f));
        self
    }

    /// Starts the monitor thread.
    ///
    /// Errors: [`MonitorError::AllocatorNotInstalled`] when `SecAlloc` is not the global
    /// allocator, [`MonitorError::InvalidConfig`] for a zero interval or threshold.
    pub fn start(self) -> Result<LeakMonitor, MonitorError> {
        if !secalloc::is_installed() {
            return Err(MonitorError::AllocatorNotInstalled);
        }
        if self.interval.is_zero() {
            return Err(MonitorError::InvalidConfig(
                "the interval must be longer than zero".into(),
            ));
        }
        if self.threshold == 0 {
            return Err(MonitorError::InvalidConfig(
                "the threshold must be at least 1 byte".into(),
            ));
        }
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            alerts: AtomicU64::new(0),
            alerted: AtomicBool::new(false),
        });
        let s = shared.clone();
        let mut detector = Detector::new(
            self.threshold,
            self.hysteresis,
            self.growth_windows,
            self.min_growth,
        );
        let (interval, top, audit, callback) = (self.interval, self.top, self.audit, self.callback);
        RUNNING.fetch_add(1, Ordering::SeqCst);
        let handle = std::thread::Builder::new()
            .name("secure-leak-monitor".into())
            .spawn(move || {
                loop {
                    {
                        let stop = s.stop.lock().unwrap_or_else(|e| e.into_inner());
                        let (stop, _) = s
                            .wake
                            .wait_timeout_while(stop, interval, |stop| !*stop)
                            .unwrap_or_else(|e| e.into_inner());
                        if *stop {
                            break;
                        }
                    }
                    let stats = secalloc::stats();
                    let reasons = detector.observe(stats.live_bytes);
                    s.set_alerted(detector.alerted());
                    if reasons.is_empty() {
                        continue;
                    }
                    let top_sites = top_callsites(top);
                    for reason in reasons {
                        let alert = LeakAlert {
                            reason,
                            live_bytes: stats.live_bytes,
                            live_blocks: stats.live_blocks,
                            top_callsites: top_sites.clone(),
                        };
                        s.alerts.fetch_add(1, Ordering::SeqCst);
                        if audit {
                            audit::log(alert.to_event());
                        }
                        if let Some(cb) = &callback {
                            cb(&alert);
                        }
                    }
                }
                s.set_alerted(false);
            })
            .map_err(|e| {
                RUNNING.fetch_sub(1, Ordering::SeqCst);
                MonitorError::Spawn(e)
            })?;
        Ok(LeakMonitor {
            shared,
            handle: Some(handle),
        })
    }
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    alerts: AtomicU64,
    alerted: AtomicBool,
}

impl Shared {
    fn set_alerted(&self, now: bool) {
        if self.alerted.swap(now, Ordering::SeqCst) != now {
            if now {
                ALERTED.fetch_add(1, Ordering::SeqCst);
            } else {
                ALERTED.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
}

/// A running leak monitor; dropping it (or [`stop`](LeakMonitor::stop)) stops its thread.
pub struct LeakMonitor {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
}

impl LeakMonitor {
    /// A builder with the defaults (100 MiB threshold, 1 s interval, no growth alerts, 10%
    /// hysteresis, 5 callsites, alerts logged to the audit log).
    pub fn builder() -> LeakMonitorBuilder {
        LeakMonitorBuilder::default()
    }

    /// Alerts raised so far.
    pub fn alerts(&self) -> u64 {
        self.shared.alerts.load(Ordering::SeqCst)
    }

    /// Whether the monitor is in the alerted state now.
    pub fn is_alerted(&self) -> bool {
        self.shared.alerted.load(Ordering::SeqCst)
    }

    /// Stops the monitor thread and waits for it (also done on drop).
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(h) = self.handle.take() {
            *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.shared.wake.notify_all();
            let _ = h.join();
            // A callback that panicked ended the thread early; the alerted flag is cleared
            // either way.
            self.shared.set_alerted(false);
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for LeakMonitor {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

impl fmt::Debug for LeakMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeakMonitor")
            .field("alerts", &self.alerts())
            .field("alerted", &self.is_alerted())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_alerts_once_per_crossing() {
        let mut d = Detector::new(100, 0.1, 0, 0);
        let alerts: Vec<usize> = [10, 99, 100, 150, 120, 95, 91, 89, 100, 200]
            .iter()
            .map(|&x| d.observe(x).len())
            .collect();
        assert_eq!(alerts, [0, 0, 1, 0, 0, 0, 0, 0, 1, 0]);
        assert!(d.alerted());
        d.observe(0);
        assert!(!d.alerted());
    }

    #[test]
    fn growth_alerts_after_n_windows_and_rearms_on_a_flat_one() {
        let mut d = Detector::new(u64::MAX, 0.1, 3, 5);
        let seen: Vec<Vec<AlertReason>> = [0, 10, 20, 30, 40, 50, 50, 60, 64, 70, 80, 90]
            .iter()
            .map(|&x| d.observe(x))
            .collect();
        let at: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, a)| !a.is_empty())
            .map(|(i, _)| i)
            .collect();
        // 10, 20, 30 grow three times -> alert at index 3; 50 -> 50 re-arms; 60 grows,
        // 64 is within min_growth (resets), 70, 80, 90 -> alert at index 11.
        assert_eq!(at, [3, 11]);
        assert_eq!(
            seen[3],
            vec![AlertReason::SteadyGrowth {
                windows: 3,
                grown_bytes: 30
            }]
        );
        assert_eq!(
            seen[11],
            vec![AlertReason::SteadyGrowth {
                windows: 3,
                grown_bytes: 26
            }]
        );
    }

    #[test]
    fn zero_hysteresis_rearms_just_below() {
        let mut d = Detector::new(100, 0.0, 0, 0);
        assert_eq!(d.observe(100).len(), 1);
        assert_eq!(d.observe(100).len(), 0);
        assert_eq!(d.observe(99).len(), 0);
        assert_eq!(d.observe(100).len(), 1);
    }

    #[test]
    fn alert_event_and_text() {
        let a = LeakAlert {
            reason: AlertReason::ThresholdExceeded {
                threshold_bytes: 1000,
            },
            live_bytes: 1200,
            live_blocks: 3,
            top_callsites: vec![CallsiteSummary {
                bytes: 1000,
                blocks: 1,
                location: "app::cache::fill (src/cache.rs:12)".into(),
                frames: vec![],
            }],
        };
        assert_eq!(
            a.to_string(),
            "1200 live bytes in 3 blocks reached the threshold of 1000 bytes; top callsite: \
             1000 bytes at app::cache::fill (src/cache.rs:12)"
        );
        let e = a.to_event();
        assert_eq!(e.kind, EventKind::MemoryLeakDetected);
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.fields["reason"], "threshold_exceeded");
        assert_eq!(e.fields["top_callsites"][0]["bytes"], 1000);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["reason"], "threshold_exceeded");
        assert_eq!(json["threshold_bytes"], 1000);
    }
}

//! Audit events: [`Severity`], [`EventKind`], [`Event`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sanitize::{is_sensitive_key, sanitize_str, Sanitize, SanitizePolicy, REDACTED};

/// How serious an event is. Ordered from `Info` (least) to `Critical` (most).
///
/// Displays and parses as lowercase names (`info`, `warning`, `error`, `critical`); parsing
/// ignores case and also accepts `warn`.
///
/// ```
/// use secure_core::audit::Severity;
///
/// assert_eq!("WARN".parse::<Severity>().unwrap(), Severity::Warning);
/// assert_eq!(Severity::Critical.to_string(), "critical");
/// assert!(Severity::Error > Severity::Warning);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal operation.
    Info,
    /// Something unusual that may need attention.
    Warning,
    /// An operation failed.
    Error,
    /// Security is at stake: integrity violation, heap corruption.
    Critical,
}

impl Severity {
    /// All severities, least serious first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::Error,
        Severity::Critical,
    ];

    /// The lowercase name (`"info"`, `"warning"`, `"error"`, `"critical"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error returned when parsing a [`Severity`] or [`EventKind`] fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseNameError {
    what: &'static str,
    input: String,
    expected: String,
}

impl fmt::Display for ParseNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} {:?} (expected one of: {})",
            self.what, self.input, self.expected
        )
    }
}

impl std::error::Error for ParseNameError {}

impl FromStr for Severity {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        match lower.as_str() {
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            "critical" => Ok(Severity::Critical),
            _ => Err(ParseNameError {
                what: "severity",
                input: s.to_owned(),
                expected: "info, warning (or warn), error, critical".to_owned(),
            }),
        }
    }
}

macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, )*) => {
        /// What happened.
        ///
        /// Displays and serializes as a snake_case name (`memory_leak_detected`); parsing
        /// ignores case, `_` and `-`, so `MemoryLeakDetected` and `MEMORY_LEAK_DETECTED` parse too.
        ///
        /// ```
        /// use secure_core::audit::EventKind;
        ///
        /// assert_eq!(EventKind::MemoryLeakDetected.to_string(), "memory_leak_detected");
        /// assert_eq!("IntegrityViolation".parse::<EventKind>().unwrap(), EventKind::IntegrityViolation);
        /// ```
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        #[non_exhaustive]
        pub enum EventKind {
            $( $(#[$doc])* $variant, )*
        }

        impl EventKind {
            /// All kinds, in declaration order.
            pub const ALL: &'static [EventKind] = &[$( EventKind::$variant, )*];

            /// The snake_case name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( EventKind::$variant => $name, )*
                }
            }
        }
    };
}

event_kinds! {
    /// Memory was allocated (e.g. a secure buffer).
    Alloc => "alloc",
    /// Memory was released.
    Release => "release",
    /// The leak monitor saw live memory past its threshold or growing steadily.
    MemoryLeakDetected => "memory_leak_detected",
    /// Someone asked for a forced cleanup.
    ForceCleanupRequested => "force_cleanup_requested",
    /// A `#[secure_operation]` started.
    OperationStart => "operation_start",
    /// A `#[secure_operation]` finished successfully.
    OperationComplete => "operation_complete",
    /// A `#[secure_operation]` returned an error or panicked.
    OperationError => "operation_error",
    /// Files were verified against their manifest.
    IntegrityVerified => "integrity_verified",
    /// Files did not match their manifest.
    IntegrityViolation => "integrity_violation",
    /// The allocator found a corrupted block (overrun canary, invalid or double free).
    HeapCorruption => "heap_corruption",
    /// Someone failed to authenticate (a missing or wrong credential); the event's fields
    /// say who (`client`: their address) and why (`reason`).
    AuthenticationFailed => "authentication_failed",
    /// A keyed log closed an epoch (written by the logger itself; see
    /// [`chain`](crate::audit::chain)).
    EpochSealed => "epoch_sealed",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

fn normalize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl FromStr for EventKind {
    type Err = ParseNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let n = normalize(s);
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| normalize(k.as_str()) == n)
            .ok_or_else(|| ParseNameError {
                what: "event kind",
                input: s.to_owned(),
                expected: EventKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// One audit event.
///
/// Create it with [`Event::new`] and [`Event::field`], then hand it to
/// [`audit::log`](crate::audit::log) or [`Logger::log`](crate::audit::Logger::log), which
/// sanitizes every string in it and fills in `seq`, `timestamp` and `thread`.
///
/// ```
/// use secure_core::audit::{Event, EventKind, Severity};
///
/// let e = Event::new(EventKind::OperationError, Severity::Error, "load_config", "parse failed")
///     .field("line", 12)
///     .field("path", "/etc/app.toml");
/// assert_eq!(e.fields["line"], 12);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 0, gap-free; assigned by the logger in the order events are
    /// written.
    pub seq: u64,
    /// When the event was logged, RFC 3339 in UTC with microseconds
    /// (`2024-05-01T12:34:56.123456Z`); assigned by the logger.
    pub timestamp: String,
    /// How serious it is.
    pub severity: Severity,
    /// What happened.
    pub kind: EventKind,
    /// The operation it belongs to (a function path, an endpoint, a subsystem).
    pub operation: String,
    /// A human-readable description.
    pub message: String,
    /// Structured details. Values under sensitive keys are redacted when logged.
    pub fields: BTreeMap<String, serde_json::Value>,
    /// The thread that logged it (its name, or its id); assigned by the logger.
    pub thread: String,
}

impl Event {
    /// A new event with no fields; `seq`, `timestamp` and `thread` are filled in when it is
    /// logged.
    pub fn new(
        kind: EventKind,
        severity: Severity,
        operation: impl Into<String>,
        message: impl Into<String>,
    ) -> Event {
        Event {
            seq: 0,
            timestamp: String::new(),
            severity,
            kind,
            operation: operation.into(),
            message: message.into(),
            fields: BTreeMap::new(),
            thread: String::new(),
        }
    }

    /// Adds (or replaces) a field.
    pub fn field(mut self, key: impl Into<String>, value: impl Into<serde_json::Value>) -> Event {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// Adds a field holding the sanitized rendering of `value` (see
    /// [`Sanitize::to_log_value`]) under the process-wide policy.
    pub fn field_sanitized<T: Sanitize + ?Sized>(self, key: impl Into<String>, value: &T) -> Event {
        let v = value.to_log_value(crate::sanitize::default_policy());
        self.field(key, v)
    }

    /// Logs the event with the process-wide logger (same as
    /// [`audit::log(event)`](crate::audit::log)).
    pub fn log(self) {
        crate::audit::log(self)
    }
}

impl Sanitize for Event {
    /// Sanitizes `operation`, `message`, `thread` and `timestamp` as strings and `fields` as a
    /// map (values under sensitive keys redacted).
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.timestamp.sanitize(policy);
        self.operation.sanitize(policy);
        self.message.sanitize(policy);
        self.thread.sanitize(policy);
        self.fields.sanitize(policy);
    }

    fn to_log_value(&self, policy: &SanitizePolicy) -> serde_json::Value {
        let mut fields = serde_json::Map::new();
        for (k, v) in &self.fields {
            let value = if is_sensitive_key(k, policy) {
                serde_json::Value::String(REDACTED.to_owned())
            } else {
                v.to_log_value(policy)
            };
            fields.insert(sanitize_str(k, policy), value);
        }
        serde_json::json!({
            "seq": self.seq,
            "timestamp": sanitize_str(&self.timestamp, policy),
            "severity": self.severity,
            "kind": self.kind,
            "operation": sanitize_str(&self.operation, policy),
            "message": sanitize_str(&self.message, policy),
            "fields": fields,
            "thread": sanitize_str(&self.thread, policy),
        })
    }
}

/// The current time as RFC 3339 UTC with microseconds, e.g. `2024-05-01T12:34:56.123456Z`.
pub fn now_rfc3339() -> String {
    thread_local! {
        /// The last second formatted on this thread and its `YYYY-MM-DDTHH:MM:SS.` prefix.
        static LAST: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, micros) = (d.as_secs(), d.subsec_micros());
    let cached = LAST.try_with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != secs {
            let full = format_rfc3339(secs, 0);
            last.1 = full[..20].to_owned();
            last.0 = secs;
        }
        let mut s = String::with_capacity(27);
        s.push_str(&last.1);
        let mut m = micros;
        let mut digits = [b'0'; 6];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (m % 10) as u8;
            m /= 10;
        }
        s.extend(digits.iter().map(|&b| b as char));
        s.push('Z');
        s
    });
    cached.unwrap_or_else(|_| format_rfc3339(secs, micros))
}

/// Formats seconds since the Unix epoch (plus microseconds) as RFC 3339 UTC.
pub(crate) fn format_rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The name of the current thread, or `ThreadId(N)` when it has none.
pub(crate) fn current_thread_name() -> String {
    fn compute() -> String {
        let t = std::thread::current();
        match t.name() {
            Some(n) => n.to_owned(),
            None => format!("{:?}", t.id()),
        }
    }
    thread_local! {
        // A thread's name cannot change once it runs.
        static NAME: String = compute();
    }
    NAME.try_with(|n| n.clone()).unwrap_or_else(|_| compute())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(951_782_400 + 3661, 7),
            "2000-02-29T01:01:01.000007Z"
        );
        assert_eq!(
            format_rfc3339(4_102_444_799, 999_999),
            "2099-12-31T23:59:59.999999Z"
        );
        assert_eq!(now_rfc3339().len(), 27);
    }

    #[test]
    fn names_round_trip() {
        for s in Severity::ALL {
            assert_eq!(s.to_string().parse::<Severity>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for &k in EventKind::ALL {
            assert_eq!(k.to_string().parse::<EventKind>().unwrap(), k);
            assert_eq!(format!("{k:?}").parse::<EventKind>().unwrap(), k);
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        let e = "nope".parse::<EventKind>().unwrap_err().to_string();
        assert!(e.starts_with("unknown event kind \"nope\" (expected one of: alloc, release"));
        assert!("warn ".parse::<Severity>().is_ok());
        assert!("fatal".parse::<Severity>().is_err());
    }
}

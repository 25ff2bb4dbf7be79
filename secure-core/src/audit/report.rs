//! [`Report`]: totals by severity and kind, and the latest serious events.

use std::collections::{BTreeMap, VecDeque};
use std::io::BufReader;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chain::segments;
use super::error::AuditError;
use super::event::{Event, EventKind, Severity};
use crate::input::{read_line_bounded, MAX_LOG_LINE_BYTES};

/// A summary of an audit log: how many events of each severity and kind, and the most recent
/// `Error` and `Critical` events.
///
/// From the live logger ([`audit::report`](crate::audit::report),
/// [`Logger::report`](crate::audit::Logger::report)) or from a log file
/// ([`Report::from_log`]). Serializes to JSON as:
///
/// ```json
/// {"total_events": 3,
///  "by_severity": {"critical": 0, "error": 1, "info": 2, "warning": 0},
///  "by_kind": {"alloc": 0, "operation_error": 1, ...},
///  "recent_critical": [ {event}, ... ]}
/// ```
///
/// Every severity and every kind appears in the maps, with 0 when absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Events counted.
    pub total_events: u64,
    /// Events per severity name (`info`, `warning`, `error`, `critical`).
    pub by_severity: BTreeMap<String, u64>,
    /// Events per kind name (`alloc`, `memory_leak_detected`, ...).
    pub by_kind: BTreeMap<String, u64>,
    /// The most recent `Error` and `Critical` events, newest last.
    pub recent_critical: Vec<Event>,
    /// Lines of a log file that are not events (always 0 for a live logger).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub malformed_lines: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Report {
    /// A report with every count at 0.
    pub fn empty() -> Report {
        Report {
            total_events: 0,
            by_severity: Severity::ALL
                .iter()
                .map(|s| (s.as_str().to_owned(), 0))
                .collect(),
            by_kind: EventKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), 0))
                .collect(),
            recent_critical: Vec::new(),
            malformed_lines: 0,
        }
    }

    /// Counts one event, keeping at most `recent` serious ones.
    fn add(&mut self, ev: Event, recent: usize, alerts: &mut VecDeque<Event>) {
        self.total_events += 1;
        *self
            .by_severity
            .entry(ev.severity.as_str().to_owned())
            .or_default() += 1;
        *self.by_kind.entry(ev.kind.as_str().to_owned()).or_default() += 1;
        if ev.severity >= Severity::Error && recent > 0 {
            if alerts.len() == recent {
                alerts.pop_front();
            }
            alerts.push_back(ev);
        }
    }

    /// Reads a JSON Lines audit log (its rotated segments `<log>.1`, `<log>.2`, ... first, then
    /// `log` itself) and summarizes it, keeping the `recent` most recent `Error`/`Critical`
    /// events. Lines that are not events are counted in
    /// [`malformed_lines`](Report::malformed_lines); this does not check the hash chain (see
    /// [`verify`](crate::audit::verify)).
    ///
    /// Errors when a file cannot be read.
    pub fn from_log(log: impl AsRef<Path>, recent: usize) -> Result<Report, AuditError> {
        let log = log.as_ref();
        let mut files = segments(log)?;
        if log.exists() || files.is_empty() {
            files.push(log.to_owned());
        }
        let mut r = Report::empty();
        let mut alerts = VecDeque::new();
        let mut line = Vec::new();
        for path in files {
            let f = crate::input::open_regular(&path, true)
                .map_err(|e| AuditError::io("open", &path, e))?;
            let mut rd = BufReader::with_capacity(1 << 16, f);
            loop {
                let n = read_line_bounded(&mut rd, &mut line, MAX_LOG_LINE_BYTES, "an audit log")
                    .map_err(|e| AuditError::io("read", &path, e))?;
                if n == 0 {
                    break;
                }
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                match serde_json::from_slice::<Event>(text) {
                    Ok(ev) => r.add(ev, recent, &mut alerts),
                    Err(_) => r.malformed_lines += 1,
                }
            }
        }
        r.recent_critical = alerts.into();
        Ok(r)
    }
}

impl crate::Sanitize for Report {
    /// Sanitizes the events it holds.
    fn sanitize(&mut self, policy: &crate::SanitizePolicy) {
        self.recent_critical.sanitize(policy);
    }

    fn to_log_value(&self, policy: &crate::SanitizePolicy) -> serde_json::Value {
        serde_json::to_value(self)
            .unwrap_or_default()
            .to_log_value(policy)
    }
}

//! The syslog sink: a copy of the serious events, sent to the local syslog socket as RFC 5424
//! messages, so that they leave the machine's log file (a syslog daemon forwarding to another
//! host takes them off the machine).
//!
//! One datagram per event, on a Unix datagram socket (`/dev/log` unless told otherwise):
//!
//! ```text
//! <106>1 2024-05-01T12:34:56.123456Z web1 myapp 4242 heap_corruption [audit@32473 seq="17" hash="<64 hex>" operation="alloc" user="ada"] canary overwritten
//! ```
//!
//! The priority is facility 13 (*log audit*) × 8 + the severity (`Info` 6, `Warning` 4,
//! `Error` 3, `Critical` 2); the message id is the event kind; the structured data carry the
//! record's `seq` and chain `hash` (so the copy can be matched with, and vouch for, the log)
//! and the event's operation and fields. The copy is best effort: the file log is the record.
//! A datagram that cannot be sent (no syslog daemon, its buffer full) is dropped and counted,
//! and the first failure is reported on standard error.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use super::chain::{to_hex, Hash};
use super::event::{Event, Severity};

/// The structured-data id: `audit` under the private enterprise number reserved for
/// documentation (RFC 5612).
const SD_ID: &str = "audit@32473";

/// RFC 5424's facility 13, "log audit".
const FACILITY: u8 = 13;

/// Datagrams are cut at this many bytes (what common syslog daemons accept).
const MAX_DATAGRAM: usize = 8192;

pub(crate) struct SyslogSink {
    path: PathBuf,
    min: Severity,
    socket: Option<UnixDatagram>,
    hostname: String,
    app: String,
    pid: u32,
    /// Events that could not be sent.
    pub dropped: u64,
    reported: bool,
    buf: Vec<u8>,
}

impl SyslogSink {
    /// A sink sending events of at least `min` to the datagram socket at `path`. Connecting
    /// is retried with each event until it works.
    pub fn new(path: PathBuf, min: Severity) -> SyslogSink {
        SyslogSink {
            path,
            min,
            socket: None,
            hostname: hostname(),
            app: app_name(),
            pid: std::process::id(),
            dropped: 0,
            reported: false,
            buf: Vec::with_capacity(1024),
        }
    }

    fn connect(path: &Path) -> io::Result<UnixDatagram> {
        let s = UnixDatagram::unbound()?;
        s.connect(path)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    /// Sends `ev` (written as record `ev.seq` with chain hash `hash`) if it is serious enough.
    pub fn send(&mut self, ev: &Event, hash: &Hash) {
        if ev.severity < self.min {
            return;
        }
        format_message(&mut self.buf, ev, hash, &self.hostname, &self.app, self.pid);
        let result = match &self.socket {
            Some(s) => s.send(&self.buf),
            None => Self::connect(&self.path).and_then(|s| {
                let r = s.send(&self.buf);
                self.socket = Some(s);
                r
            }),
        };
        if let Err(e) = result {
            // Reconnect next time (the daemon may have restarted).
            self.socket = None;
            self.dropped += 1;
            if !self.reported {
                self.reported = true;
                eprintln!(
                    "secure-core audit: cannot send to syslog at {}: {e}; serious events are \
                     still written to the audit log, but their syslog copy is dropped",
                    self.path.display()
                );
            }
        }
    }
}

/// Formats one RFC 5424 message into `out` (cleared first).
pub(crate) fn format_message(
    out: &mut Vec<u8>,
    ev: &Event,
    hash: &Hash,
    hostname: &str,
    app: &str,
    pid: u32,
) {
    use std::io::Write;
    out.clear();
    let severity = match ev.severity {
        Severity::Info => 6,
        Severity::Warning => 4,
        Severity::Error => 3,
        Severity::Critical => 2,
    };
    let pri = u32::from(FACILITY) * 8 + severity;
    let timestamp = if ev.timestamp.is_empty() {
        "-"
    } else {
        &ev.timestamp
    };
    let _ = write!(
        out,
        "<{pri}>1 {timestamp} {} {} {pid} {} [{SD_ID} seq=\"{}\" hash=\"{}\" operation=\"",
        header_field(hostname, 255),
        header_field(app, 48),
        ev.kind.as_str(),
        ev.seq,
        to_hex(hash)
    );
    sd_escape(out, &ev.operation);
    out.push(b'"');
    for (k, v) in &ev.fields {
        let name = sd_name(k);
        if name.is_empty() || matches!(name.as_str(), "seq" | "hash" | "operation") {
            continue;
        }
        let _ = write!(out, " {name}=\"");
        match v {
            serde_json::Value::String(s) => sd_escape(out, s),
            other => sd_escape(out, &other.to_string()),
        }
        out.push(b'"');
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(ev.message.as_bytes());
    if out.len() > MAX_DATAGRAM {
        let mut cut = MAX_DATAGRAM;
        while cut > 0 && !is_char_boundary(out, cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
}

fn is_char_boundary(b: &[u8], i: usize) -> bool {
    i >= b.len() || (b[i] as i8) >= -0x40
}

/// A header field: printable US-ASCII without spaces, at most `max` characters; `-` when
/// nothing is left.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if f.is_empty() {
        "-".to_owned()
    } else {
        f
    }
}

/// An SD-PARAM name: printable US-ASCII except `=`, space, `]` and `"`, at most 32.
fn sd_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect()
}

/// Appends `s` as an SD-PARAM value: `"`, `\` and `]` escaped with a backslash.
fn sd_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its whole length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "-".to_owned();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

fn app_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::EventKind;

    #[test]
    fn rfc5424_layout_and_escaping() {
        let mut ev = Event::new(
            EventKind::HeapCorruption,
            Severity::Critical,
            "a\"l]",
            "bad",
        )
        .field("path", "x\\y\"z]")
        .field("n", 3)
        .field("bad name=\"", 1)
        .field("seq", "not the seq");
        ev.seq = 17;
        ev.timestamp = "2024-05-01T12:34:56.123456Z".into();
        let mut out = Vec::new();
        format_message(&mut out, &ev, &[0xab; 32], "web 1", "", 42);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            format!(
                "<106>1 2024-05-01T12:34:56.123456Z web1 - 42 heap_corruption [audit@32473 \
                 seq=\"17\" hash=\"{}\" operation=\"a\\\"l\\]\" badname=\"1\" n=\"3\" \
                 path=\"x\\\\y\\\"z\\]\"] bad",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let ev = Event::new(EventKind::Alloc, Severity::Error, "op", "é".repeat(9000));
        let mut out = Vec::new();
        format_message(&mut out, &ev, &[0; 32], "h", "a", 1);
        assert!(out.len() <= MAX_DATAGRAM && out.len() > MAX_DATAGRAM - 2);
        assert!(String::from_utf8(out).is_ok());
    }
}

//! Configuration: the const builder's values and the `SECALLOC_*` environment overrides.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::sys::{getenv, FdWriter};

/// How freed memory is wiped before it goes back to the inner allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wipe {
    /// Four passes: `0x00`, `0xFF`, random bytes, `0x00` (the default).
    FourPass,
    /// One pass of zeroes.
    Zero,
    /// No wiping (freed bytes keep their contents).
    Off,
}

/// What the allocator does when it detects heap corruption (an overwritten canary or header,
/// a double free, a free of an address it never handed out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnCorruption {
    /// Print the report and abort the process (the default).
    Abort,
    /// Print the report, leak the damaged block (it is never handed back to the inner
    /// allocator) and let the program go on.
    Continue,
}

/// Where the leak report goes when the process exits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportDest {
    /// No report at exit.
    Off,
    /// The report is written to standard error (the default).
    Stderr,
    /// The report is written to this file (created or truncated).
    File(&'static str),
}

/// The format of a leak report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// Human-readable text in LeakSanitizer's style (the default).
    Text,
    /// The documented JSON schema (see `docs/report-json.md`).
    Json,
    /// DHAT's JSON, which opens in Valgrind's `dh_view.html`.
    Dhat,
    /// Folded stacks (`frame;frame;frame bytes`) for flame graph tools.
    Folded,
}

/// The allocator's configuration, built by `SecAlloc`'s const builder methods and overridden
/// once, at first use, by `SECALLOC_*` environment variables.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub wipe: Wipe,
    pub zero_on_alloc: bool,
    pub stack_depth: u8,
    pub canaries: bool,
    pub on_corruption: OnCorruption,
    pub report: ReportDest,
    pub report_format: ReportFormat,
    pub report_min_bytes: u64,
    pub report_top: usize,
    pub report_reachable: bool,
    pub leak_exitcode: Option<u8>,
    pub wipe_at_exit: bool,
    /// Whether the inner allocator's `realloc` is known to shrink in place without leaving a
    /// copy behind (true for `System` on glibc). Otherwise every realloc moves.
    pub inner_shrinks_in_place: bool,
}

/// The deepest stack that can be recorded.
pub(crate) const MAX_STACK_DEPTH: usize = 64;

/// Frames recorded by default: 16, or 32 in debug builds, where nothing is inlined and the
/// standard library's allocation path alone takes a dozen frames before the user's code.
pub(crate) const DEFAULT_STACK_DEPTH: u8 = if cfg!(debug_assertions) { 32 } else { 16 };

impl Config {
    pub(crate) const DEFAULT: Config = Config {
        wipe: Wipe::FourPass,
        zero_on_alloc: true,
        stack_depth: DEFAULT_STACK_DEPTH,
        canaries: true,
        on_corruption: OnCorruption::Abort,
        report: ReportDest::Stderr,
        report_format: ReportFormat::Text,
        report_min_bytes: 1,
        report_top: 20,
        report_reachable: false,
        leak_exitcode: None,
        wipe_at_exit: false,
        inner_shrinks_in_place: false,
    };

    /// Applies the `SECALLOC_*` environment variables. A bad value prints one line to stderr
    /// and keeps the configured value.
    pub(crate) fn apply_env(&mut self) {
        if let Some(v) = getenv(b"SECALLOC_WIPE\0") {
            match v {
                b"4" | b"fourpass" | b"four-pass" => self.wipe = Wipe::FourPass,
                b"1" | b"zero" => self.wipe = Wipe::Zero,
                b"0" | b"off" => self.wipe = Wipe::Off,
                _ => bad_value("SECALLOC_WIPE", v, "4, 1 or 0"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_ZERO_ON_ALLOC\0") {
            parse_bool("SECALLOC_ZERO_ON_ALLOC", v, &mut self.zero_on_alloc);
        }
        if let Some(v) = getenv(b"SECALLOC_STACK_DEPTH\0") {
            match parse_u64(v) {
                Some(n) if n as usize <= MAX_STACK_DEPTH => self.stack_depth = n as u8,
                _ => bad_value("SECALLOC_STACK_DEPTH", v, "a number from 0 to 64"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_CANARY\0") {
            parse_bool("SECALLOC_CANARY", v, &mut self.canaries);
        }
        if let Some(v) = getenv(b"SECALLOC_ON_CORRUPTION\0") {
            match v {
                b"abort" => self.on_corruption = OnCorruption::Abort,
                b"continue" => self.on_corruption = OnCorruption::Continue,
                _ => bad_value("SECALLOC_ON_CORRUPTION", v, "abort or continue"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT\0") {
            match v {
                b"off" | b"0" => self.report = ReportDest::Off,
                b"stderr" | b"1" => self.report = ReportDest::Stderr,
                b"" => bad_value("SECALLOC_REPORT", v, "off, stderr or a file path"),
                path => match core::str::from_utf8(path) {
                    Ok(p) => self.report = ReportDest::File(p),
                    Err(_) => bad_value("SECALLOC_REPORT", v, "off, stderr or a UTF-8 file path"),
                },
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT_FORMAT\0") {
            match v {
                b"text" => self.report_format = ReportFormat::Text,
                b"json" => self.report_format = ReportFormat::Json,
                b"dhat" => self.report_format = ReportFormat::Dhat,
                b"folded" => self.report_format = ReportFormat::Folded,
                _ => bad_value("SECALLOC_REPORT_FORMAT", v, "text, json, dhat or folded"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT_MIN_BYTES\0") {
            match parse_u64(v) {
                Some(n) => self.report_min_bytes = n,
                None => bad_value("SECALLOC_REPORT_MIN_BYTES", v, "a number of bytes"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT_TOP\0") {
            match parse_u64(v) {
                Some(n) if n > 0 => self.report_top = n as usize,
                _ => bad_value("SECALLOC_REPORT_TOP", v, "a positive number"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT_REACHABLE\0") {
            parse_bool("SECALLOC_REPORT_REACHABLE", v, &mut self.report_reachable);
        }
        if let Some(v) = getenv(b"SECALLOC_LEAK_EXITCODE\0") {
            match parse_u64(v) {
                Some(n) if n <= 255 => self.leak_exitcode = Some(n as u8),
                _ => bad_value("SECALLOC_LEAK_EXITCODE", v, "an exit code from 0 to 255"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_WIPE_AT_EXIT\0") {
            parse_bool("SECALLOC_WIPE_AT_EXIT", v, &mut self.wipe_at_exit);
        }
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

fn parse_bool(name: &str, v: &[u8], out: &mut bool) {
    match v {
        b"1" | b"true" | b"on" | b"yes" => *out = true,
        b"0" | b"false" | b"off" | b"no" => *out = false,
        _ => bad_value(name, v, "0 or 1"),
    }
}

fn bad_value(name: &str, v: &[u8], expected: &str) {
    let mut w = FdWriter::stderr();
    let _ = write!(w, "secalloc: ignoring {name}=\"");
    for &b in v.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            let _ = w.write_char(b as char);
        } else {
            let _ = write!(w, "\\x{b:02x}");
        }
    }
    let _ = writeln!(w, "\": expected {expected}; keeping the configured value");
}

/// The configuration in force, readable from any thread without locking. Written once by
/// the thread that initialises the allocator, before `READY` is published.
pub(crate) struct Runtime {
    wipe: AtomicU8,
    zero_on_alloc: AtomicBool,
    stack_depth: AtomicU8,
    canaries: AtomicBool,
    on_corruption: AtomicU8,
    inner_shrinks_in_place: AtomicBool,
    /// The process-wide canary: random, first byte in memory zero.
    pub canary: AtomicU64,
    /// Secret mixed into header check bits.
    pub header_key: AtomicU64,
    /// Report settings, read at exit (not on the hot path).
    pub report: crate::sys::SpinLock<Config>,
    pub state: AtomicU8,
    pub frame_pointers: AtomicBool,
    pub initialised_at_ns: AtomicU64,
    pub init_thread: AtomicUsize,
}

pub(crate) const UNINIT: u8 = 0;
pub(crate) const INITIALISING: u8 = 1;
pub(crate) const READY: u8 = 2;

pub(crate) static RUNTIME: Runtime = Runtime {
    wipe: AtomicU8::new(0),
    zero_on_alloc: AtomicBool::new(true),
    stack_depth: AtomicU8::new(DEFAULT_STACK_DEPTH),
    canaries: AtomicBool::new(true),
    on_corruption: AtomicU8::new(0),
    inner_shrinks_in_place: AtomicBool::new(false),
    canary: AtomicU64::new(0),
    header_key: AtomicU64::new(0),
    report: crate::sys::SpinLock::new(Config::DEFAULT),
    state: AtomicU8::new(UNINIT),
    frame_pointers: AtomicBool::new(false),
    initialised_at_ns: AtomicU64::new(0),
    init_thread: AtomicUsize::new(0),
};

impl Runtime {
    pub(crate) fn store(&self, c: &Config) {
        self.wipe.store(c.wipe as u8, Ordering::Relaxed);
        self.zero_on_alloc.store(c.zero_on_alloc, Ordering::Relaxed);
        self.stack_depth.store(c.stack_depth, Ordering::Relaxed);
        self.canaries.store(c.canaries, Ordering::Relaxed);
        self.on_corruption
            .store(c.on_corruption as u8, Ordering::Relaxed);
        self.inner_shrinks_in_place
            .store(c.inner_shrinks_in_place, Ordering::Relaxed);
        *self.report.lock() = *c;
    }

    #[inline]
    pub(crate) fn wipe(&self) -> Wipe {
        match self.wipe.load(Ordering::Relaxed) {
            0 => Wipe::FourPass,
            1 => Wipe::Zero,
            _ => Wipe::Off,
        }
    }
    #[inline]
    pub(crate) fn zero_on_alloc(&self) -> bool {
        self.zero_on_alloc.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn stack_depth(&self) -> usize {
        self.stack_depth.load(Ordering::Relaxed) as usize
    }
    #[inline]
    pub(crate) fn canaries(&self) -> bool {
        self.canaries.load(Ordering::Relaxed)
    }
    #[inline]
    pub(crate) fn on_corruption(&self) -> OnCorruption {
        if self.on_corruption.load(Ordering::Relaxed) == 0 {
            OnCorruption::Abort
        } else {
            OnCorruption::Continue
        }
    }
    #[inline]
    pub(crate) fn inner_shrinks_in_place(&self) -> bool {
        self.inner_shrinks_in_place.load(Ordering::Relaxed)
    }
    pub(crate) fn config(&self) -> Config {
        *self.report.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_numbers_strictly() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"16"), Some(16));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"1e3"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }

    #[test]
    fn bad_bool_keeps_value() {
        let mut b = true;
        parse_bool("X", b"maybe", &mut b);
        assert!(b);
        parse_bool("X", b"0", &mut b);
        assert!(!b);
    }
}

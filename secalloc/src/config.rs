//! Configuration: the const builder's values and the `SECALLOC_*` environment overrides.

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

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
    /// Heap profiling: per-callsite totals, peak and lifetimes, a DHAT file at exit.
    pub profile: bool,
    /// Where profile mode writes its DHAT file at exit.
    pub profile_file: &'static str,
    /// Whether the inner allocator's `realloc` is known to shrink in place without leaving a
    /// copy behind (true for `System` on glibc). Otherwise every realloc moves.
    pub inner_shrinks_in_place: bool,
    /// Whether the tracker keeps block metadata out of line in secalloc's own heap (set by
    /// [`SecAlloc::new`](crate::SecAlloc::new)); otherwise the header layout over the inner.
    pub own_heap: bool,
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
        profile: false,
        profile_file: "dhat-heap.json",
        inner_shrinks_in_place: false,
        own_heap: false,
    };

    /// Applies the `SECALLOC_*` environment variables. Keywords are matched without regard to
    /// case (`Stderr`, `JSON`, `Off`). A bad value prints one line to stderr and keeps the
    /// configured value; so does a `SECALLOC_*` name the allocator does not know (naming the
    /// closest one it does), once per name.
    pub(crate) fn apply_env(&mut self) {
        warn_unknown_names();
        if let Some(v) = getenv(b"SECALLOC_WIPE\0") {
            match keyword(
                v,
                &[
                    ("4", Wipe::FourPass),
                    ("fourpass", Wipe::FourPass),
                    ("four-pass", Wipe::FourPass),
                    ("1", Wipe::Zero),
                    ("zero", Wipe::Zero),
                    ("0", Wipe::Off),
                    ("off", Wipe::Off),
                ],
            ) {
                Some(w) => self.wipe = w,
                None => bad_value("SECALLOC_WIPE", v, "4, 1 or 0"),
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
            match keyword(
                v,
                &[
                    ("abort", OnCorruption::Abort),
                    ("continue", OnCorruption::Continue),
                ],
            ) {
                Some(c) => self.on_corruption = c,
                None => bad_value("SECALLOC_ON_CORRUPTION", v, "abort or continue"),
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT\0") {
            match keyword(
                v,
                &[
                    ("off", ReportDest::Off),
                    ("0", ReportDest::Off),
                    ("stderr", ReportDest::Stderr),
                    ("1", ReportDest::Stderr),
                ],
            ) {
                Some(d) => self.report = d,
                None if v.is_empty() => {
                    bad_value("SECALLOC_REPORT", v, "off, stderr or a file path")
                }
                None => match core::str::from_utf8(v) {
                    Ok(p) => self.report = ReportDest::File(p),
                    Err(_) => bad_value("SECALLOC_REPORT", v, "off, stderr or a UTF-8 file path"),
                },
            }
        }
        if let Some(v) = getenv(b"SECALLOC_REPORT_FORMAT\0") {
            match keyword(
                v,
                &[
                    ("text", ReportFormat::Text),
                    ("json", ReportFormat::Json),
                    ("dhat", ReportFormat::Dhat),
                    ("folded", ReportFormat::Folded),
                ],
            ) {
                Some(f) => self.report_format = f,
                None => bad_value("SECALLOC_REPORT_FORMAT", v, "text, json, dhat or folded"),
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
        if let Some(v) = getenv(b"SECALLOC_PROFILE\0") {
            parse_bool("SECALLOC_PROFILE", v, &mut self.profile);
        }
        if let Some(v) = getenv(b"SECALLOC_PROFILE_FILE\0") {
            match core::str::from_utf8(v) {
                Ok(p) if !p.is_empty() => self.profile_file = p,
                _ => bad_value("SECALLOC_PROFILE_FILE", v, "a UTF-8 file path"),
            }
        }
    }
}

/// Every environment variable the allocator reads. A `SECALLOC_*` name not listed here is
/// warned about (a misspelling would otherwise be ignored without a word): a variable read
/// anywhere in the crate must be listed (a unit test checks the sources).
pub(crate) const KNOWN_VARS: &[&str] = &[
    "SECALLOC_WIPE",
    "SECALLOC_ZERO_ON_ALLOC",
    "SECALLOC_STACK_DEPTH",
    "SECALLOC_CANARY",
    "SECALLOC_ON_CORRUPTION",
    "SECALLOC_REPORT",
    "SECALLOC_REPORT_FORMAT",
    "SECALLOC_REPORT_MIN_BYTES",
    "SECALLOC_REPORT_TOP",
    "SECALLOC_REPORT_REACHABLE",
    "SECALLOC_LEAK_EXITCODE",
    "SECALLOC_WIPE_AT_EXIT",
    "SECALLOC_PROFILE",
    "SECALLOC_PROFILE_FILE",
    "SECALLOC_QUARANTINE_BYTES",
];

/// The value of `v` among `options` (keywords matched ignoring ASCII case).
fn keyword<T: Copy>(v: &[u8], options: &[(&str, T)]) -> Option<T> {
    options
        .iter()
        .find(|(k, _)| v.eq_ignore_ascii_case(k.as_bytes()))
        .map(|&(_, t)| t)
}

extern "C" {
    /// The process environment (POSIX), `NAME=VALUE` strings ending with a null pointer.
    static environ: *const *const core::ffi::c_char;
}

/// Prints one line for each `SECALLOC_*` environment variable that is not in
/// [`KNOWN_VARS`], naming the closest known name. Reads `environ` directly and writes with
/// `write(2)`: it runs inside the allocator's initialisation and must not allocate.
fn warn_unknown_names() {
    // SAFETY: `environ` is the C library's environment array, read once at start-up (as
    // `getenv` does); it is null-terminated, and so is each entry.
    let mut p = unsafe { environ };
    if p.is_null() {
        return;
    }
    loop {
        // SAFETY: `p` points into the null-terminated array (checked below before advancing).
        let entry = unsafe { *p };
        if entry.is_null() {
            break;
        }
        // SAFETY: each entry is a NUL-terminated string that lives as long as the environment.
        let bytes = unsafe { core::ffi::CStr::from_ptr(entry) }.to_bytes();
        let name = bytes.split(|&b| b == b'=').next().unwrap_or(bytes);
        if name.starts_with(b"SECALLOC_") && !KNOWN_VARS.iter().any(|k| k.as_bytes() == name) {
            warn_unknown(name);
        }
        // SAFETY: the entry was not the terminating null, so the next slot exists.
        p = unsafe { p.add(1) };
    }
}

fn warn_unknown(name: &[u8]) {
    let closest = KNOWN_VARS
        .iter()
        .min_by_key(|k| edit_distance(name, k.as_bytes()))
        .copied()
        .unwrap_or("SECALLOC_REPORT");
    let mut w = FdWriter::stderr();
    let _ = w.write_str("secalloc: ignoring unknown environment variable ");
    write_escaped(&mut w, name);
    let _ = writeln!(w, " (did you mean {closest}?)");
}

/// Levenshtein distance between `a` and `b`, computed on the stack (names longer than 63
/// bytes are compared by their first 63).
fn edit_distance(a: &[u8], b: &[u8]) -> usize {
    const N: usize = 64;
    let a = &a[..a.len().min(N - 1)];
    let b = &b[..b.len().min(N - 1)];
    let mut prev = [0usize; N];
    let mut cur = [0usize; N];
    for (j, slot) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *slot = j;
    }
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(!ca.eq_ignore_ascii_case(&cb));
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
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

/// A number of bytes with an optional binary suffix: `4096`, `64K`, `1M`, `2G` (case
/// ignored); `None` when malformed or too large.
pub(crate) fn parse_bytes(v: &[u8]) -> Option<usize> {
    let (digits, shift) = match v.last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&v[..v.len() - 1], 10),
        Some(b'M') => (&v[..v.len() - 1], 20),
        Some(b'G') => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n = usize::try_from(parse_u64(digits)?).ok()?;
    let scaled = n.checked_mul(1 << shift)?;
    (scaled < usize::MAX).then_some(scaled)
}

fn parse_bool(name: &str, v: &[u8], out: &mut bool) {
    let options = [
        ("1", true),
        ("true", true),
        ("on", true),
        ("yes", true),
        ("0", false),
        ("false", false),
        ("off", false),
        ("no", false),
    ];
    match keyword(v, &options) {
        Some(b) => *out = b,
        None => bad_value(name, v, "0 or 1"),
    }
}

/// Writes at most 64 bytes of `v`, printable ASCII as it is, other bytes as `\xNN`.
fn write_escaped(w: &mut FdWriter, v: &[u8]) {
    for &b in v.iter().take(64) {
        if b.is_ascii_graphic() || b == b' ' {
            let _ = w.write_char(b as char);
        } else {
            let _ = write!(w, "\\x{b:02x}");
        }
    }
}

/// Warns that environment variable `name` has the bad value `v` (one line on stderr, in the
/// same words for every `SECALLOC_*` variable).
pub(crate) fn bad_value(name: &str, v: &[u8], expected: &str) {
    let mut w = FdWriter::stderr();
    let _ = write!(w, "secalloc: ignoring {name}=\"");
    write_escaped(&mut w, v);
    let _ = writeln!(w, "\": expected {expected}; keeping the configured value");
}

/// The configuration in force, readable from any thread without locking. Written once by
/// the thread that initialises the allocator, before `READY` is published.
pub(crate) struct Runtime {
    /// The settings every allocation and free reads, packed as [`Hot`]: one load per
    /// operation, passed down, instead of one per setting at each place it is used.
    hot: AtomicU32,
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

/// Evaluates `$body` with `$hot` bound to the settings in force, compiled twice: once for
/// the default settings, where every flag is a constant and the code specialised on it has
/// no tests of them left, and once for any settings. (A macro, not a function taking a
/// closure: through a closure the compiler kept one copy, and every test of a flag.)
macro_rules! with_hot_settings {
    ($hot:ident => $body:expr) => {{
        let $hot = crate::config::RUNTIME.hot();
        if $hot.has_default_flags() {
            let $hot = $hot.with_default_flags();
            $body
        } else if $hot.is_default_profile() {
            let $hot = $hot.with_default_profile_flags();
            $body
        } else {
            $body
        }
    }};
}
pub(crate) use with_hot_settings;

/// The settings the allocation and free paths read, packed in one word: bits 0..8 the
/// stack depth, 8..10 the wipe mode, then one bit each for zeroing, canaries and profile
/// mode. Read once per operation ([`Runtime::hot`]) and passed down as a value, so the
/// compiler keeps it in a register (separate atomics would each be loaded again at every
/// use: atomic loads are never merged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hot(u32);

impl Hot {
    const WIPE_SHIFT: u32 = 8;
    const ZERO: u32 = 1 << 10;
    const CANARIES: u32 = 1 << 11;
    const PROFILE: u32 = 1 << 12;

    pub(crate) const fn pack(c: &Config) -> Hot {
        let flags = Self::flags_of(c);
        let mut v = c.stack_depth as u32 | flags;
        if flags == Self::DEFAULT_FLAGS {
            v |= Self::DEFAULTS;
        } else if flags == Self::DEFAULT_FLAGS | Self::PROFILE {
            v |= Self::DEFAULT_PROFILE;
        }
        Hot(v)
    }

    /// The flag bits (all but the depth and `DEFAULTS`) of `c`.
    const fn flags_of(c: &Config) -> u32 {
        let mut v = (c.wipe as u32) << Self::WIPE_SHIFT;
        if c.zero_on_alloc {
            v |= Self::ZERO;
        }
        if c.canaries {
            v |= Self::CANARIES;
        }
        if c.profile {
            v |= Self::PROFILE;
        }
        v
    }
    /// Set by [`pack`](Self::pack) when every setting but the stack depth is the default:
    /// a bit of its own, which the compiler cannot relate to the others (a test of the flags
    /// themselves lets it prove the specialised value below equal to the original, and
    /// merge the two copies again).
    const DEFAULTS: u32 = 1 << 13;
    /// The tracker's freed slots go through a quarantine (`SECALLOC_QUARANTINE_BYTES`);
    /// never set with `DEFAULTS`.
    const QUARANTINE: u32 = 1 << 14;
    /// Set by [`pack`](Self::pack) when the settings are the defaults with profile mode on
    /// (`SECALLOC_PROFILE=1` alone): a third specialised copy, as for `DEFAULTS`.
    const DEFAULT_PROFILE: u32 = 1 << 15;
    const DEPTH_MASK: u32 = 0xFF;
    /// The flag bits of the default settings (four-pass wipe, zeroing, canaries, no profile).
    const DEFAULT_FLAGS: u32 = Self::flags_of(&Config::DEFAULT);

    /// The same settings with the tracker's quarantine on (no longer the defaults).
    pub(crate) const fn with_quarantine(self) -> Hot {
        Hot((self.0 | Self::QUARANTINE) & !(Self::DEFAULTS | Self::DEFAULT_PROFILE))
    }

    /// Whether the tracker's freed slots go through a quarantine.
    #[inline(always)]
    pub(crate) fn quarantine(self) -> bool {
        self.0 & Self::QUARANTINE != 0
    }

    /// Whether every setting but the stack depth is the default.
    #[inline(always)]
    pub(crate) fn has_default_flags(self) -> bool {
        self.0 & Self::DEFAULTS != 0
    }

    /// Whether the settings are the defaults but for profile mode, which is on.
    #[inline(always)]
    pub(crate) fn is_default_profile(self) -> bool {
        self.0 & Self::DEFAULT_PROFILE != 0
    }

    /// The same settings (for a caller that checked [`is_default_profile`]), rebuilt from
    /// constants, as [`with_default_flags`](Self::with_default_flags).
    #[inline(always)]
    pub(crate) fn with_default_profile_flags(self) -> Hot {
        Hot(self.0 & Self::DEPTH_MASK | Self::DEFAULT_FLAGS | Self::PROFILE | Self::DEFAULT_PROFILE)
    }

    /// The same settings (for a caller that checked [`has_default_flags`]), rebuilt from
    /// constants so that the compiler knows every flag.
    #[inline(always)]
    pub(crate) fn with_default_flags(self) -> Hot {
        Hot(self.0 & Self::DEPTH_MASK | Self::DEFAULT_FLAGS | Self::DEFAULTS)
    }

    /// How freed blocks are wiped.
    #[inline(always)]
    pub(crate) fn wipe(self) -> Wipe {
        match (self.0 >> Self::WIPE_SHIFT) & 3 {
            0 => Wipe::FourPass,
            1 => Wipe::Zero,
            _ => Wipe::Off,
        }
    }
    /// Freed bytes are wiped (in either mode).
    #[inline(always)]
    pub(crate) fn wiped(self) -> bool {
        self.wipe() != Wipe::Off
    }
    /// Whether allocations are handed out zeroed.
    #[inline(always)]
    pub(crate) fn zero_on_alloc(self) -> bool {
        self.0 & Self::ZERO != 0
    }
    /// Frames recorded per callsite stack (0: none).
    #[inline(always)]
    pub(crate) fn stack_depth(self) -> usize {
        (self.0 & Self::DEPTH_MASK) as usize
    }
    /// Whether blocks get a canary after their bytes.
    #[inline(always)]
    pub(crate) fn canaries(self) -> bool {
        self.0 & Self::CANARIES != 0
    }
    /// Whether profile mode is on.
    #[inline(always)]
    pub(crate) fn profile(self) -> bool {
        self.0 & Self::PROFILE != 0
    }
}

pub(crate) const UNINIT: u8 = 0;
pub(crate) const INITIALISING: u8 = 1;
pub(crate) const READY: u8 = 2;

pub(crate) static RUNTIME: Runtime = Runtime {
    hot: AtomicU32::new(Hot::pack(&Config::DEFAULT).0),
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
        let mut hot = Hot::pack(c);
        if crate::heap::tracked::quarantine_bound() != 0 {
            hot = hot.with_quarantine();
        }
        self.hot.store(hot.0, Ordering::Relaxed);
        self.on_corruption
            .store(c.on_corruption as u8, Ordering::Relaxed);
        self.inner_shrinks_in_place
            .store(c.inner_shrinks_in_place, Ordering::Relaxed);
        *self.report.lock() = *c;
    }

    /// The hot-path settings, in one load.
    #[inline(always)]
    pub(crate) fn hot(&self) -> Hot {
        Hot(self.hot.load(Ordering::Relaxed))
    }
    #[inline]
    pub(crate) fn wipe(&self) -> Wipe {
        self.hot().wipe()
    }
    #[inline]
    pub(crate) fn zero_on_alloc(&self) -> bool {
        self.hot().zero_on_alloc()
    }
    #[inline]
    pub(crate) fn stack_depth(&self) -> usize {
        self.hot().stack_depth()
    }
    #[inline]
    pub(crate) fn canaries(&self) -> bool {
        self.hot().canaries()
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
    /// Whether profile mode is on (fixed at initialisation: it sets the block layout).
    #[inline(always)]
    pub(crate) fn profile(&self) -> bool {
        self.hot().profile()
    }
    pub(crate) fn config(&self) -> Config {
        *self.report.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_settings_round_trip() {
        for wipe in [Wipe::FourPass, Wipe::Zero, Wipe::Off] {
            for depth in [0u8, 1, 16, MAX_STACK_DEPTH as u8] {
                for bits in 0..8u8 {
                    let mut c = Config::DEFAULT;
                    c.wipe = wipe;
                    c.stack_depth = depth;
                    c.zero_on_alloc = bits & 1 != 0;
                    c.canaries = bits & 2 != 0;
                    c.profile = bits & 4 != 0;
                    let h = Hot::pack(&c);
                    let default = wipe == Wipe::FourPass && bits == 3;
                    assert_eq!(h.has_default_flags(), default);
                    if default {
                        assert_eq!(h.with_default_flags(), h);
                    }
                    let default_profile = wipe == Wipe::FourPass && bits == 7;
                    assert_eq!(h.is_default_profile(), default_profile);
                    if default_profile {
                        assert_eq!(h.with_default_profile_flags(), h);
                    }
                    assert!(!h.quarantine());
                    let q = h.with_quarantine();
                    assert!(q.quarantine() && !q.has_default_flags() && !q.is_default_profile());
                    assert_eq!(
                        (q.wipe(), q.stack_depth(), q.canaries(), q.profile()),
                        (h.wipe(), h.stack_depth(), h.canaries(), h.profile())
                    );
                    assert_eq!(h.wipe(), wipe);
                    assert_eq!(h.wiped(), wipe != Wipe::Off);
                    assert_eq!(h.stack_depth(), depth as usize);
                    assert_eq!(h.zero_on_alloc(), c.zero_on_alloc);
                    assert_eq!(h.canaries(), c.canaries);
                    assert_eq!(h.profile(), c.profile);
                }
            }
        }
    }

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
    fn keywords_ignore_case() {
        let opts = [("stderr", 1), ("off", 2)];
        assert_eq!(keyword(b"Stderr", &opts), Some(1));
        assert_eq!(keyword(b"OFF", &opts), Some(2));
        assert_eq!(keyword(b"stderr.txt", &opts), None);
        let mut b = false;
        parse_bool("X", b"YES", &mut b);
        assert!(b);
    }

    #[test]
    fn closest_names() {
        assert_eq!(edit_distance(b"SECALLOC_WIPES", b"SECALLOC_WIPE"), 1);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        let closest = |n: &[u8]| {
            KNOWN_VARS
                .iter()
                .min_by_key(|k| edit_distance(n, k.as_bytes()))
                .copied()
        };
        assert_eq!(
            closest(b"SECALLOC_REPORT_FORMATS"),
            Some("SECALLOC_REPORT_FORMAT")
        );
        assert_eq!(
            closest(b"SECALLOC_STACKDEPTH"),
            Some("SECALLOC_STACK_DEPTH")
        );
        assert_eq!(closest(b"SECALLOC_report"), Some("SECALLOC_REPORT"));
    }

    /// Every `SECALLOC_*` name the crate reads is known, so none is warned about as unknown.
    #[test]
    fn every_variable_read_is_known() {
        let mut files = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut seen = 0;
        for path in files {
            let text = std::fs::read_to_string(path).unwrap();
            for (i, _) in text.match_indices("getenv(b\"SECALLOC_") {
                let rest = &text[i + "getenv(b\"".len()..];
                let name = &rest[..rest.find('\\').unwrap()];
                assert!(
                    KNOWN_VARS.contains(&name),
                    "{name} is read but not in KNOWN_VARS"
                );
                seen += 1;
            }
        }
        assert!(seen >= KNOWN_VARS.len(), "found only {seen} reads");
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

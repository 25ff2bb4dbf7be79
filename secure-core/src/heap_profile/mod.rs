//! Reading DHAT heap profiles (`dhat-heap.json`) and showing them: top program points by a
//! metric, folded stacks, SVG flame graphs and a self-contained HTML report.
//!
//! The format is the one Valgrind's DHAT writes and `dh_view.html` reads (`dhatFileVersion`
//! 2), which dhat-rs writes too, and secalloc: with block lifetimes (`bklt: true`) each
//! program point carries its total bytes and blocks, its maximum live, what was live at the
//! global peak (t-gmax) and at the end (t-end), and the summed lifetime of its blocks.
//! Without them (`bklt: false`, secalloc's `SECALLOC_REPORT_FORMAT=dhat` leak report) only
//! the totals are there, and the views that need more say so ([`ProfileError::NoLifetimes`]).
//!
//! Every file is checked the way the viewer needs it: version 2, `ftbl[0]` is `"[root]"`,
//! every frame index is in the frame table, no two program points have the same frames, and
//! the per-point fields `bklt` promises are present. A file that fails gets an error saying
//! where, never a panic.
//!
//! ```
//! use secure_core::heap_profile::{HeapProfile, Metric};
//!
//! let text = r#"{"dhatFileVersion": 2, "mode": "rust-heap", "verb": "Allocated",
//!   "bklt": true, "bkacc": false, "tu": "µs", "Mtu": "s", "tuth": 10,
//!   "cmd": "demo", "pid": 7, "tg": 40, "te": 90,
//!   "pps": [
//!     {"tb": 4096, "tbk": 1, "tl": 50, "mb": 4096, "mbk": 1, "gb": 4096, "gbk": 1,
//!      "eb": 0, "ebk": 0, "fs": [1, 2]},
//!     {"tb": 100, "tbk": 10, "tl": 10, "mb": 20, "mbk": 2, "gb": 0, "gbk": 0,
//!      "eb": 10, "ebk": 1, "fs": [3, 2]}],
//!   "ftbl": ["[root]", "0x10: demo::load (src/main.rs:3:5)",
//!            "0x20: demo::main (src/main.rs:9:5)", "0x30: demo::parse (src/main.rs:5:9)"]}"#;
//! let profile = HeapProfile::from_json(text)?;
//! assert_eq!(profile.total(), (4196, 11));
//! assert_eq!(profile.at_peak(), Some((4096, 1)));
//!
//! let top = profile.top(Metric::TotalBlocks, 1)?;
//! assert_eq!(profile.frame(top[0].frames[0]), "0x30: demo::parse (src/main.rs:5:9)");
//! assert_eq!(
//!     profile.folded(Metric::EndBytes)?,
//!     ["demo::main;demo::parse 10"]
//! );
//! # Ok::<(), secure_core::heap_profile::ProfileError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

mod html;
mod text;

/// The largest DHAT file [`HeapProfile::read`] reads: 1 GiB.
pub const MAX_PROFILE_BYTES: u64 = 1 << 30;

/// A heap profile could not be read, or a view needs what the profile does not hold.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read (missing, not a regular file, over
    /// [`MAX_PROFILE_BYTES`], not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file named.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// The text is not a DHAT file the viewer would load.
    #[error("invalid DHAT file: {0}")]
    Invalid(String),
    /// The metric needs block lifetimes and the profile has none (`bklt: false`).
    #[error(
        "this profile has no block lifetimes (bklt: false), so it has no {}; use total bytes \
         or total blocks (--by total, --by blocks), or record a profile with lifetimes \
         (dhat-rs, or secalloc with SECALLOC_PROFILE=1)",
        .0.description()
    )]
    NoLifetimes(Metric),
    /// A flame graph was asked for a metric no program point has any of.
    #[error("no program point has any {}: nothing to draw", .0.description())]
    NothingToDraw(Metric),
    /// The view could not be written out.
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

fn invalid(msg: impl Into<String>) -> ProfileError {
    ProfileError::Invalid(msg.into())
}

/// A DHAT heap profile: the header, the program points and the frame table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeapProfile {
    /// `mode`: `"rust-heap"` (dhat-rs), `"heap"` (Valgrind's DHAT, secalloc), `"rust-ad-hoc"`.
    pub mode: String,
    /// `verb`: what the figures count, `"Allocated"` for heap profiles.
    pub verb: String,
    /// `bklt`: block lifetimes were recorded, so every program point has
    /// [`ProgramPoint::lifetimes`].
    pub has_lifetimes: bool,
    /// `bkacc`: block accesses were recorded (Valgrind only; the access figures are not read).
    pub has_accesses: bool,
    /// `bsu`: the plural unit of sizes (`"bytes"` unless the file says otherwise).
    pub bytes_unit: String,
    /// `bksu`: the plural unit of counts (`"blocks"` unless the file says otherwise).
    pub blocks_unit: String,
    /// `tu`: the time unit of `tl`, `tg`, `te` and `tuth` (`"µs"`, or `"instrs"` in Valgrind).
    pub time_unit: String,
    /// `Mtu`: the larger time unit the viewer shows (`"s"`).
    pub long_time_unit: String,
    /// `tuth`: blocks that lived less than this many time units count as short-lived
    /// (present when `bklt`).
    pub short_lived_threshold: Option<u64>,
    /// `cmd`: the profiled program's command line.
    pub command: String,
    /// `pid`: its process id.
    pub pid: u64,
    /// `tg`: the time of the global peak, t-gmax (present when `bklt`).
    pub peak_time: Option<u64>,
    /// `te`: the time the profile ended, t-end.
    pub end_time: u64,
    /// `pps`: the program points, in file order.
    pub points: Vec<ProgramPoint>,
    /// `ftbl`: the frame strings (`0xADDR: function (file:line:col)`); index 0 is `"[root]"`.
    pub frame_table: Vec<String>,
}

/// One program point (`pps[i]`): an allocation stack and what was allocated there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramPoint {
    /// `tb`: bytes allocated in total.
    pub total_bytes: u64,
    /// `tbk`: blocks allocated in total.
    pub total_blocks: u64,
    /// The figures recorded with block lifetimes (`bklt: true`); `None` without.
    pub lifetimes: Option<PointLifetimes>,
    /// `fs`: the stack as indices into [`HeapProfile::frame_table`], innermost frame first.
    pub frames: Vec<usize>,
}

/// What a program point holds when block lifetimes were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointLifetimes {
    /// `tl`: the lifetimes of its blocks, summed, in [`HeapProfile::time_unit`]s.
    pub total_lifetime: u64,
    /// `mb`: the most bytes live at once.
    pub max_bytes: u64,
    /// `mbk`: the most blocks live at once.
    pub max_blocks: u64,
    /// `gb`: bytes live at the global peak (t-gmax).
    pub peak_bytes: u64,
    /// `gbk`: blocks live at the global peak.
    pub peak_blocks: u64,
    /// `eb`: bytes live at the end (t-end).
    pub end_bytes: u64,
    /// `ebk`: blocks live at the end.
    pub end_blocks: u64,
}

/// What program points are ranked by, and folded stacks and flame graphs weighed by.
///
/// ```
/// use secure_core::heap_profile::Metric;
/// assert_eq!("peak".parse::<Metric>(), Ok(Metric::PeakBytes));
/// assert_eq!(Metric::PeakBytes.to_string(), "peak");
/// assert!(Metric::PeakBytes.needs_lifetimes() && !Metric::TotalBlocks.needs_lifetimes());
/// assert!("fastest".parse::<Metric>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// `tb`, named `total`.
    TotalBytes,
    /// `tbk`, named `blocks`.
    TotalBlocks,
    /// `gb`, named `peak`: bytes live at the global peak (t-gmax).
    PeakBytes,
    /// `eb`, named `end`: bytes live at the end (t-end).
    EndBytes,
    /// `mb`, named `max`: the most bytes live at once.
    MaxBytes,
}

impl Metric {
    /// Every metric, in the order the views list them.
    pub const ALL: [Metric; 5] = [
        Metric::TotalBytes,
        Metric::TotalBlocks,
        Metric::PeakBytes,
        Metric::EndBytes,
        Metric::MaxBytes,
    ];

    /// The short name: `total`, `blocks`, `peak`, `end`, `max`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::TotalBytes => "total",
            Metric::TotalBlocks => "blocks",
            Metric::PeakBytes => "peak",
            Metric::EndBytes => "end",
            Metric::MaxBytes => "max",
        }
    }

    /// What it measures, for headings and messages: `bytes at the global peak (t-gmax)`.
    pub fn description(self) -> &'static str {
        match self {
            Metric::TotalBytes => "total bytes",
            Metric::TotalBlocks => "total blocks",
            Metric::PeakBytes => "bytes at the global peak (t-gmax)",
            Metric::EndBytes => "bytes at the end (t-end)",
            Metric::MaxBytes => "maximum live bytes",
        }
    }

    /// Whether only a profile with block lifetimes has it.
    pub fn needs_lifetimes(self) -> bool {
        !matches!(self, Metric::TotalBytes | Metric::TotalBlocks)
    }

    /// The program point's figure; `None` when it needs lifetimes the point lacks.
    pub fn of(self, p: &ProgramPoint) -> Option<u64> {
        match self {
            Metric::TotalBytes => Some(p.total_bytes),
            Metric::TotalBlocks => Some(p.total_blocks),
            Metric::PeakBytes => p.lifetimes.map(|l| l.peak_bytes),
            Metric::EndBytes => p.lifetimes.map(|l| l.end_bytes),
            Metric::MaxBytes => p.lifetimes.map(|l| l.max_bytes),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metric name that is not one of `total`, `blocks`, `peak`, `end`, `max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric {0:?} (expected one of total, blocks, peak, end, max)")]
pub struct UnknownMetric(String);

impl FromStr for Metric {
    type Err = UnknownMetric;
    fn from_str(s: &str) -> Result<Metric, UnknownMetric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| UnknownMetric(s.to_string()))
    }
}

impl HeapProfile {
    /// Reads and parses the DHAT file at `path`, at most [`MAX_PROFILE_BYTES`], refusing
    /// FIFOs, devices and directories without blocking (see [`crate::input`]).
    pub fn read(path: &Path) -> Result<HeapProfile, ProfileError> {
        let text = crate::input::read_regular_text(path, MAX_PROFILE_BYTES, "a heap profile")
            .map_err(|source| ProfileError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        HeapProfile::from_json(&text)
    }

    /// Parses a DHAT file's text and checks it (see the [module documentation](self)).
    ///
    /// ```
    /// use secure_core::heap_profile::HeapProfile;
    /// let err = HeapProfile::from_json(r#"{"dhatFileVersion": 1}"#).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "invalid DHAT file: unsupported dhatFileVersion 1 (expected 2)"
    /// );
    /// ```
    pub fn from_json(text: &str) -> Result<HeapProfile, ProfileError> {
        let first = text.trim_start().chars().next();
        if first.is_some()
            && first != Some('{')
            && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
        {
            return Err(invalid("not a JSON object: not a DHAT file"));
        }
        let head: Head = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if head.format.as_deref() == Some("secalloc-report") {
            return Err(invalid(
                "this is a secalloc leak report, not a DHAT file; convert it with `secure \
                 report convert --to dhat`, or write a heap profile with SECALLOC_PROFILE=1",
            ));
        }
        match head.dhat_file_version {
            None => return Err(invalid("no dhatFileVersion: not a DHAT file")),
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(2) => {}
            Some(v) => {
                return Err(invalid(format!(
                    "unsupported dhatFileVersion {v} (expected 2)"
                )))
            }
        }
        let f: FileDe = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        f.check()
    }

    /// The frame string at `index` of the frame table (`"[root]"` for 0). Indices in a
    /// parsed profile are checked, so every [`ProgramPoint::frames`] entry is valid here.
    pub fn frame(&self, index: usize) -> &str {
        self.frame_table.get(index).map_or("???", String::as_str)
    }

    /// Total bytes and blocks allocated: the sums of `tb` and `tbk`.
    pub fn total(&self) -> (u64, u64) {
        self.sum(|p| Some((p.total_bytes, p.total_blocks)))
            .unwrap_or((0, 0))
    }

    /// Bytes and blocks live at the global peak (t-gmax): the sums of `gb` and `gbk`
    /// (`None` without block lifetimes).
    pub fn at_peak(&self) -> Option<(u64, u64)> {
        self.sum_lifetimes(|l| (l.peak_bytes, l.peak_blocks))
    }

    /// Bytes and blocks live at the end (t-end): the sums of `eb` and `ebk` (`None` without
    /// block lifetimes).
    pub fn at_end(&self) -> Option<(u64, u64)> {
        self.sum_lifetimes(|l| (l.end_bytes, l.end_blocks))
    }

    fn sum_lifetimes(&self, f: impl Fn(&PointLifetimes) -> (u64, u64)) -> Option<(u64, u64)> {
        if !self.has_lifetimes {
            return None;
        }
        self.sum(|p| p.lifetimes.as_ref().map(&f))
    }

    fn sum(&self, f: impl Fn(&ProgramPoint) -> Option<(u64, u64)>) -> Option<(u64, u64)> {
        let mut total = (0u64, 0u64);
        for p in &self.points {
            let (a, b) = f(p)?;
            total.0 = total.0.saturating_add(a);
            total.1 = total.1.saturating_add(b);
        }
        Some(total)
    }

    /// The metric's sum over all program points.
    pub fn metric_total(&self, metric: Metric) -> Result<u64, ProfileError> {
        self.check_metric(metric)?;
        Ok(self
            .points
            .iter()
            .filter_map(|p| metric.of(p))
            .fold(0u64, u64::saturating_add))
    }

    fn check_metric(&self, metric: Metric) -> Result<(), ProfileError> {
        if metric.needs_lifetimes() && !self.has_lifetimes {
            Err(ProfileError::NoLifetimes(metric))
        } else {
            Ok(())
        }
    }

    /// The `n` program points with the largest `metric`, largest first (ties: more total
    /// bytes first, then file order). Points whose figure is 0 are left out.
    pub fn top(&self, metric: Metric, n: usize) -> Result<Vec<&ProgramPoint>, ProfileError> {
        Ok(self
            .ranked(metric)?
            .into_iter()
            .take(n)
            .map(|i| &self.points[i])
            .collect())
    }

    /// Indices of the points with a non-zero `metric`, largest first.
    fn ranked(&self, metric: Metric) -> Result<Vec<usize>, ProfileError> {
        self.check_metric(metric)?;
        let mut idx: Vec<usize> = (0..self.points.len())
            .filter(|&i| metric.of(&self.points[i]).unwrap_or(0) > 0)
            .collect();
        idx.sort_by_key(|&i| {
            let p = &self.points[i];
            (
                std::cmp::Reverse(metric.of(p).unwrap_or(0)),
                std::cmp::Reverse(p.total_bytes),
                i,
            )
        });
        Ok(idx)
    }

    /// Folded stacks weighed by `metric`, for flame graph tools (`inferno-flamegraph`,
    /// `flamegraph.pl`): one line per distinct stack, outermost function first, frames
    /// separated by `;`, then a space and the figure: `main;load_table 4096`. Frames are
    /// function names (see [`frame_function`]) with `;` written `,`; stacks that read the same
    /// are merged, stacks weighing 0 left out; lines are sorted.
    pub fn folded(&self, metric: Metric) -> Result<Vec<String>, ProfileError> {
        self.check_metric(metric)?;
        let mut merged: BTreeMap<String, u64> = BTreeMap::new();
        for p in &self.points {
            let v = metric.of(p).unwrap_or(0);
            if v == 0 {
                continue;
            }
            let names: Vec<String> = if p.frames.is_empty() {
                vec![NO_FRAMES.to_string()]
            } else {
                p.frames
                    .iter()
                    .rev()
                    .map(|&i| {
                        frame_function(self.frame(i))
                            .replace(';', ",")
                            .replace(['\n', '\r'], " ")
                    })
                    .collect()
            };
            let e = merged.entry(names.join(";")).or_default();
            *e = e.saturating_add(v);
        }
        Ok(merged
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect())
    }

    /// Writes an SVG flame graph of `metric` by stack (inferno), titled `title`. A profile
    /// in which every point weighs 0 gets [`ProfileError::NothingToDraw`].
    pub fn write_flamegraph(
        &self,
        metric: Metric,
        title: &str,
        w: &mut dyn Write,
    ) -> Result<(), ProfileError> {
        self.write_flamegraph_sized(metric, title, None, w)
    }

    /// [`write_flamegraph`](Self::write_flamegraph) drawn `width` pixels wide (`None`:
    /// fluid, as wide as the window that shows it).
    pub(crate) fn write_flamegraph_sized(
        &self,
        metric: Metric,
        title: &str,
        width: Option<usize>,
        w: &mut dyn Write,
    ) -> Result<(), ProfileError> {
        let lines = self.folded(metric)?;
        if lines.is_empty() {
            return Err(ProfileError::NothingToDraw(metric));
        }
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = title.to_string();
        opts.count_name = if metric == Metric::TotalBlocks {
            self.blocks_unit.clone()
        } else {
            self.bytes_unit.clone()
        };
        opts.colors =
            inferno::flamegraph::Palette::Basic(inferno::flamegraph::color::BasicPalette::Mem);
        opts.hash = true;
        opts.deterministic = true;
        opts.image_width = width;
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(String::as_str), w)
            .map_err(ProfileError::Write)
    }

    /// Writes the self-contained HTML report: header summary, flame graphs of live-at-peak
    /// and of total bytes, and the top program points in a table sortable by each metric.
    /// Nothing in it is fetched from the network; every frame string is HTML-escaped.
    ///
    /// ```
    /// use secure_core::heap_profile::HeapProfile;
    /// let p = HeapProfile::from_json(r#"{"dhatFileVersion": 2, "mode": "heap",
    ///   "verb": "Allocated", "bklt": false, "bkacc": false, "tu": "µs", "Mtu": "s",
    ///   "cmd": "demo", "pid": 1, "te": 5,
    ///   "pps": [{"tb": 24, "tbk": 1, "fs": [1]}],
    ///   "ftbl": ["[root]", "0x1: <Vec<u8> as Clone>::clone (vec.rs:1:1)"]}"#)?;
    /// let mut out = Vec::new();
    /// p.write_html(&mut out)?;
    /// let html = String::from_utf8(out).unwrap();
    /// assert!(html.contains("&lt;Vec&lt;u8&gt; as Clone&gt;::clone"));
    /// assert!(html.contains("no block lifetimes"));
    /// # Ok::<(), secure_core::heap_profile::ProfileError>(())
    /// ```
    pub fn write_html(&self, w: &mut dyn Write) -> Result<(), ProfileError> {
        html::write(self, w)
    }

    /// Writes the header summary and the `n` program points with the largest `metric` as
    /// text, each with its figures and its stack, innermost frame first (what `secure report
    /// top` prints). Strings from the file are written with control characters escaped.
    ///
    /// ```
    /// use secure_core::heap_profile::{HeapProfile, Metric};
    /// let p = HeapProfile::from_json(r#"{"dhatFileVersion": 2, "mode": "heap",
    ///   "verb": "Allocated", "bklt": false, "bkacc": false, "tu": "µs", "Mtu": "s",
    ///   "cmd": "demo", "pid": 1, "te": 5,
    ///   "pps": [{"tb": 24, "tbk": 1, "fs": [1]}, {"tb": 8, "tbk": 2, "fs": [2]}],
    ///   "ftbl": ["[root]", "0x1: demo::a (a.rs:1:1)", "0x2: demo::b (b.rs:2:2)"]}"#)?;
    /// let mut out = Vec::new();
    /// p.write_top(Metric::TotalBlocks, 1, &mut out)?;
    /// assert_eq!(
    ///     String::from_utf8(out).unwrap(),
    ///     "heap profile of \"demo\" (pid 1, mode heap, without block lifetimes: totals only)
    /// total:     32 bytes in 3 blocks
    ///
    /// top 1 of 2 program points by total blocks:
    ///
    /// #1: 2 blocks (66.7% of 3)
    ///     total:     8 bytes in 2 blocks
    ///     0x2: demo::b (b.rs:2:2)
    /// "
    /// );
    /// assert!(p.write_top(Metric::MaxBytes, 1, &mut Vec::new()).is_err());
    /// # Ok::<(), secure_core::heap_profile::ProfileError>(())
    /// ```
    pub fn write_top(
        &self,
        metric: Metric,
        n: usize,
        w: &mut dyn Write,
    ) -> Result<(), ProfileError> {
        text::write_top(self, metric, n, w)
    }

    /// The program point's average block lifetime in [`HeapProfile::time_unit`]s (`None`
    /// without lifetimes or blocks).
    pub fn average_lifetime(&self, p: &ProgramPoint) -> Option<f64> {
        let l = p.lifetimes?;
        (p.total_blocks > 0).then(|| l.total_lifetime as f64 / p.total_blocks as f64)
    }

    /// The frame of `p` a reader looks for first: the innermost one outside the allocator
    /// and the standard library (`alloc::`, `core::`, `std::`, the global allocator), or the
    /// innermost frame when all are.
    pub fn allocation_site(&self, p: &ProgramPoint) -> &str {
        let frames = || p.frames.iter().map(|&i| self.frame(i));
        frames()
            .find(|f| !is_library_frame(frame_function(f)))
            .or_else(|| frames().next())
            .unwrap_or(NO_FRAMES)
    }
}

/// The name folded stacks give a program point without frames.
const NO_FRAMES: &str = "[no frames]";

fn is_library_frame(function: &str) -> bool {
    let f = function.trim_start_matches('<');
    // `<Type as Trait>::method`: the type decides (`<demo::Table as core::clone::Clone>`
    // is the program's), unless it is a primitive or a type parameter (`<u8 as
    // alloc::vec::SpecFromElem>`), which the trait then decides.
    let f = match f.split_once(" as ") {
        Some((ty, tr)) if !ty.contains("::") => tr,
        Some((ty, _)) => ty,
        None => f,
    };
    [
        "alloc::",
        "core::",
        "std::",
        "dhat::",
        "secalloc::",
        "__rg_",
        "__rust_",
        "hashbrown::",
    ]
    .iter()
    .any(|p| f.starts_with(p))
        || f == "malloc"
        || f == "calloc"
        || f == "realloc"
}

/// The function part of a frame string: `0x1f2e: demo::load (src/main.rs:3:5)` gives
/// `demo::load`, Valgrind's `0x4C2DB8F: malloc (vg_replace_malloc.c:299)` gives `malloc`.
/// A string without the address prefix or the location suffix keeps what it has.
///
/// ```
/// use secure_core::heap_profile::frame_function;
/// assert_eq!(frame_function("0x1f2e: demo::load (src/main.rs:3:5)"), "demo::load");
/// assert_eq!(
///     frame_function("0x10: <F as FnOnce<(u8,)>>::call_once (src/a.rs:1:2)"),
///     "<F as FnOnce<(u8,)>>::call_once"
/// );
/// assert_eq!(frame_function("[root]"), "[root]");
/// ```
pub fn frame_function(frame: &str) -> &str {
    let mut s = frame;
    if let Some(rest) = s.strip_prefix("0x") {
        if let Some(colon) = rest.find(": ") {
            if colon > 0 && rest[..colon].bytes().all(|b| b.is_ascii_hexdigit()) {
                s = &rest[colon + 2..];
            }
        }
    }
    if s.ends_with(')') {
        if let Some(open) = s.rfind(" (") {
            let loc = &s[open + 2..s.len() - 1];
            if loc.contains(':') || loc.starts_with("in ") {
                s = &s[..open];
            }
        }
    }
    s
}

// The document as it is written.

/// The fields that say what the document is, read first.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "dhatFileVersion")]
    dhat_file_version: Option<serde_json::Value>,
    format: Option<String>,
}

#[derive(Deserialize)]
#[allow(non_snake_case)]
struct FileDe {
    mode: String,
    verb: String,
    bklt: bool,
    bkacc: bool,
    bsu: Option<String>,
    bksu: Option<String>,
    tu: String,
    Mtu: String,
    tuth: Option<u64>,
    cmd: String,
    pid: u64,
    tg: Option<u64>,
    te: u64,
    pps: Vec<PointDe>,
    ftbl: Vec<String>,
}

#[derive(Deserialize)]
struct PointDe {
    tb: u64,
    tbk: u64,
    tl: Option<u64>,
    mb: Option<u64>,
    mbk: Option<u64>,
    gb: Option<u64>,
    gbk: Option<u64>,
    eb: Option<u64>,
    ebk: Option<u64>,
    fs: Vec<usize>,
}

impl FileDe {
    fn check(self) -> Result<HeapProfile, ProfileError> {
        match self.ftbl.first() {
            Some(f) if f == "[root]" => {}
            Some(f) => return Err(invalid(format!("ftbl[0] is {f:?}, expected \"[root]\""))),
            None => {
                return Err(invalid(
                    "the frame table (ftbl) is empty, expected \"[root]\" first",
                ))
            }
        }
        if self.bklt {
            if self.tg.is_none() {
                return Err(invalid(
                    "bklt is true but the time of the global peak (tg) is missing",
                ));
            }
            if self.tuth.is_none() {
                return Err(invalid(
                    "bklt is true but the short-lived threshold (tuth) is missing",
                ));
            }
        }
        let mut seen: HashMap<&[usize], usize> = HashMap::with_capacity(self.pps.len());
        for (i, p) in self.pps.iter().enumerate() {
            if let Some(&f) = p.fs.iter().find(|&&f| f >= self.ftbl.len()) {
                return Err(invalid(format!(
                    "program point {i}: frame index {f} is out of range (ftbl has {} entries)",
                    self.ftbl.len()
                )));
            }
            if let Some(first) = seen.insert(&p.fs, i) {
                return Err(invalid(format!(
                    "program points {first} and {i} have the same frames (fs), which \
                     dh_view.html refuses"
                )));
            }
        }
        let bklt = self.bklt;
        let points = self
            .pps
            .into_iter()
            .enumerate()
            .map(|(i, p)| p.into_point(i, bklt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(HeapProfile {
            mode: self.mode,
            verb: self.verb,
            has_lifetimes: self.bklt,
            has_accesses: self.bkacc,
            bytes_unit: self.bsu.unwrap_or_else(|| "bytes".to_string()),
            blocks_unit: self.bksu.unwrap_or_else(|| "blocks".to_string()),
            time_unit: self.tu,
            long_time_unit: self.Mtu,
            short_lived_threshold: self.tuth,
            command: self.cmd,
            pid: self.pid,
            peak_time: self.tg,
            end_time: self.te,
            points,
            frame_table: self.ftbl,
        })
    }
}

impl PointDe {
    fn into_point(self, index: usize, bklt: bool) -> Result<ProgramPoint, ProfileError> {
        let lifetimes = if bklt {
            let need = |v: Option<u64>, name: &str| {
                v.ok_or_else(|| {
                    invalid(format!(
                        "program point {index}: {name} is missing (required when bklt is true)"
                    ))
                })
            };
            Some(PointLifetimes {
                total_lifetime: need(self.tl, "tl")?,
                max_bytes: need(self.mb, "mb")?,
                max_blocks: need(self.mbk, "mbk")?,
                peak_bytes: need(self.gb, "gb")?,
                peak_blocks: need(self.gbk, "gbk")?,
                end_bytes: need(self.eb, "eb")?,
                end_blocks: need(self.ebk, "ebk")?,
            })
        } else {
            None
        };
        Ok(ProgramPoint {
            total_bytes: self.tb,
            total_blocks: self.tbk,
            lifetimes,
            frames: self.fs,
        })
    }
}

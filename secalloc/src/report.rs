//! Leak reports: a snapshot of live blocks grouped by callsite and scope, written as text
//! (LeakSanitizer style), JSON, DHAT JSON or folded stacks, at exit or on demand.

use std::collections::HashMap;
use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::block;
use crate::config::{ReportDest, ReportFormat, RUNTIME};
use crate::live;
use crate::reach::LeakKind;
use crate::stack::INTERNAL;
use crate::symbolize::{Frame, Symbolizer};
use crate::sys::SpinLock;
use crate::Stats;

/// Serialises snapshots (and keeps `fork` from splitting one).
static SNAPSHOT: SpinLock<()> = SpinLock::new(());

/// A live block, as read from its header while pinned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub addr: usize,
    pub size: usize,
    pub stack: u32,
    pub scope: u16,
}

/// Reads every live block the allocator tracks (not its own). Must run untracked.
pub(crate) fn snapshot() -> Vec<Block> {
    snapshot_all().0
}

/// Reads every live block, in address order: `(tracked, the allocator's own)`.
pub(crate) fn snapshot_all() -> (Vec<Block>, Vec<Block>) {
    let _g = SNAPSHOT.lock();
    let mut tracked = Vec::new();
    let mut internal = Vec::new();
    let session = live::read_session();
    live::for_each_live(|addr| {
        if session.pin(addr) {
            // SAFETY: the block is live and pinned: it cannot be freed until unpin, so its
            // header is readable.
            let meta = unsafe { block::read_header(addr as *const u8) };
            session.unpin(addr);
            if let Some(m) = meta {
                let b = Block {
                    addr,
                    size: m.size,
                    stack: m.stack,
                    scope: m.scope,
                };
                if m.stack == INTERNAL {
                    internal.push(b);
                } else {
                    tracked.push(b);
                }
            }
        }
    });
    (tracked, internal)
}

/// Totals of a leak check by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakSummary {
    /// Bytes in blocks no pointer reaches.
    pub definitely_lost_bytes: u64,
    /// Blocks no pointer reaches.
    pub definitely_lost_blocks: u64,
    /// Bytes in blocks reached only from lost blocks.
    pub indirectly_lost_bytes: u64,
    /// Blocks reached only from lost blocks.
    pub indirectly_lost_blocks: u64,
    /// Bytes in blocks still reachable from the program's roots.
    pub still_reachable_bytes: u64,
    /// Blocks still reachable from the program's roots.
    pub still_reachable_blocks: u64,
}

impl LeakSummary {
    /// Definitely plus indirectly lost bytes.
    pub fn lost_bytes(&self) -> u64 {
        self.definitely_lost_bytes + self.indirectly_lost_bytes
    }
    /// Definitely plus indirectly lost blocks.
    pub fn lost_blocks(&self) -> u64 {
        self.definitely_lost_blocks + self.indirectly_lost_blocks
    }
}

/// Live bytes of one scope name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeTotal {
    /// The scope's name.
    pub name: String,
    /// Live bytes allocated in scopes of this name.
    pub bytes: u64,
    /// Live blocks allocated in scopes of this name.
    pub blocks: u64,
}

/// Live blocks that share one callsite stack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callsite {
    /// Live bytes allocated here.
    pub bytes: u64,
    /// Live blocks allocated here.
    pub blocks: u64,
    /// The largest of those blocks.
    pub largest_block: u64,
    /// Names of the scopes the blocks were allocated in (empty: none).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The verdict of a leak check (absent from reports taken without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LeakKind>,
    /// The symbolised stack, innermost (the user's allocating call) first.
    pub frames: Vec<Frame>,
}

/// A snapshot of live allocations, grouped by callsite (largest first) and by scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeakReport {
    /// Always `"secalloc-report"`.
    pub format: String,
    /// Schema version (1).
    pub version: u32,
    /// The program's command line.
    pub command: String,
    /// The process id.
    pub pid: u32,
    /// Microseconds between the allocator's start and the snapshot.
    pub elapsed_us: u64,
    /// Whether the snapshot was taken at process exit.
    pub at_exit: bool,
    /// Whether callsite stacks were recorded (false: the build lacks frame pointers, or
    /// stack depth is 0).
    pub stacks_recorded: bool,
    /// Live bytes in the snapshot.
    pub total_bytes: u64,
    /// Live blocks in the snapshot.
    pub total_blocks: u64,
    /// Live blocks grouped by callsite, largest first.
    pub callsites: Vec<Callsite>,
    /// Live bytes by scope name, largest first.
    pub scopes: Vec<ScopeTotal>,
    /// Totals by verdict, when the report came from a leak check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leak_check: Option<LeakSummary>,
    /// Why a leak check's verdicts may be off: what it could not know about its roots (an
    /// unknown inner allocator, a heap it could not walk). Absent when its roots are exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots_note: Option<String>,
    /// The allocator's statistics at the time of the snapshot.
    pub stats: Stats,
}

impl LeakReport {
    /// An error-free parse of a report written by [`LeakReport::write_json`].
    pub fn from_json(text: &str) -> Result<LeakReport, ReportParseError> {
        let r: LeakReport =
            serde_json::from_str(text).map_err(|e| ReportParseError(e.to_string()))?;
        if r.format != "secalloc-report" {
            return Err(ReportParseError(format!(
                "not a secalloc report (format is {:?}, expected \"secalloc-report\")",
                r.format
            )));
        }
        if r.version != 1 {
            return Err(ReportParseError(format!(
                "unsupported report version {}",
                r.version
            )));
        }
        Ok(r)
    }

    /// Writes the report in `format`.
    pub fn write(&self, format: ReportFormat, top: usize, w: &mut dyn Write) -> io::Result<()> {
        match format {
            ReportFormat::Text => self.write_text_top(top, w),
            ReportFormat::Json => self.write_json(w),
            ReportFormat::Dhat => self.write_dhat(w),
            ReportFormat::Folded => self.write_folded(w),
        }
    }

    /// Writes the text report with every callsite.
    pub fn write_text(&self, w: &mut dyn Write) -> io::Result<()> {
        self.write_text_top(usize::MAX, w)
    }

    /// Writes the text report, listing the `top` largest callsites.
    ///
    /// ```text
    /// secalloc: 1124 bytes in 2 blocks live at exit from 2 callsites
    ///
    /// 1024 byte(s) in 1 block(s) allocated from:
    ///     #0 0x55f1c2a0b1c7 in quickstart::load_cache examples/quickstart.rs:31:17
    ///     #1 0x55f1c2a0b5e2 in quickstart::main examples/quickstart.rs:58:5
    ///
    /// SUMMARY: secalloc: 1124 byte(s) live at exit in 2 block(s) from 2 callsite(s).
    /// ```
    pub fn write_text_top(&self, top: usize, w: &mut dyn Write) -> io::Result<()> {
        let when = if self.at_exit { "at exit" } else { "now" };
        match &self.leak_check {
            None => writeln!(
                w,
                "secalloc: {} bytes in {} blocks live {} from {} callsites",
                self.total_bytes,
                self.total_blocks,
                when,
                self.callsites.len()
            )?,
            Some(s) => writeln!(
                w,
                "secalloc: {} bytes in {} blocks lost {} (definitely lost: {} bytes in {} blocks; indirectly lost: {} bytes in {} blocks; still reachable: {} bytes in {} blocks)",
                s.lost_bytes(),
                s.lost_blocks(),
                when,
                s.definitely_lost_bytes,
                s.definitely_lost_blocks,
                s.indirectly_lost_bytes,
                s.indirectly_lost_blocks,
                s.still_reachable_bytes,
                s.still_reachable_blocks
            )?,
        }
        if let Some(note) = &self.roots_note {
            writeln!(w, "secalloc: note: {note}")?;
        }
        if !self.stacks_recorded {
            writeln!(
                w,
                "secalloc: no callsite stacks: build with -C force-frame-pointers=yes (and SECALLOC_STACK_DEPTH > 0)"
            )?;
        }
        for c in self.callsites.iter().take(top) {
            writeln!(w)?;
            match c.kind {
                None => write!(
                    w,
                    "{} byte(s) in {} block(s) allocated from:",
                    c.bytes, c.blocks
                )?,
                Some(LeakKind::DefinitelyLost) => write!(
                    w,
                    "Direct leak of {} byte(s) in {} block(s) allocated from:",
                    c.bytes, c.blocks
                )?,
                Some(LeakKind::IndirectlyLost) => write!(
                    w,
                    "Indirect leak of {} byte(s) in {} block(s) allocated from:",
                    c.bytes, c.blocks
                )?,
                Some(LeakKind::StillReachable) => write!(
                    w,
                    "{} byte(s) in {} block(s) still reachable, allocated from:",
                    c.bytes, c.blocks
                )?,
            }
            if !c.scopes.is_empty() {
                write!(w, " (scope: {})", c.scopes.join(", "))?;
            }
            writeln!(w)?;
            if c.frames.is_empty() {
                writeln!(w, "    (no stack recorded)")?;
            }
            for (i, f) in c.frames.iter().enumerate() {
                writeln!(w, "    #{i} {:#x} in {}", f.ip, f.location())?;
            }
        }
        if self.callsites.len() > top {
            let rest = &self.callsites[top..];
            let bytes: u64 = rest.iter().map(|c| c.bytes).sum();
            writeln!(w)?;
            writeln!(
                w,
                "... and {} more callsite(s) with {} byte(s) (SECALLOC_REPORT_TOP shows more)",
                rest.len(),
                bytes
            )?;
        }
        if !self.scopes.is_empty() {
            writeln!(w)?;
            writeln!(w, "by scope:")?;
            for s in &self.scopes {
                writeln!(
                    w,
                    "    {} byte(s) in {} block(s): {}",
                    s.bytes, s.blocks, s.name
                )?;
            }
        }
        writeln!(w)?;
        match &self.leak_check {
            None => writeln!(
                w,
                "SUMMARY: secalloc: {} byte(s) live {} in {} block(s) from {} callsite(s).",
                self.total_bytes,
                when,
                self.total_blocks,
                self.callsites.len()
            ),
            Some(s) => {
                let listed = self
                    .callsites
                    .iter()
                    .any(|c| c.kind == Some(LeakKind::StillReachable));
                if s.still_reachable_blocks > 0 && !listed {
                    writeln!(
                        w,
                        "{} byte(s) in {} block(s) still reachable (SECALLOC_REPORT_REACHABLE=1 lists them).",
                        s.still_reachable_bytes, s.still_reachable_blocks
                    )?;
                    writeln!(w)?;
                }
                writeln!(
                    w,
                    "SUMMARY: secalloc: {} byte(s) leaked in {} allocation(s).",
                    s.lost_bytes(),
                    s.lost_blocks()
                )
            }
        }
    }

    /// Writes the report as JSON (the schema is documented in `docs/report-json.md`).
    pub fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, self)?;
        writeln!(w)
    }

    /// Writes DHAT's JSON format (`dhatFileVersion` 2), which opens in Valgrind's
    /// `dh_view.html`. Each program point is a callsite; `tb`/`tbk` hold its live bytes and
    /// blocks. Callsites whose frames print the same are merged, as the viewer requires.
    pub fn write_dhat(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut ftbl: Vec<String> = vec!["[root]".to_string()];
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut pps: Vec<(Vec<usize>, u64, u64)> = Vec::new();
        let mut by_fs: HashMap<Vec<usize>, usize> = HashMap::new();
        for c in &self.callsites {
            let mut fs = Vec::new();
            let strings: Vec<String> = if c.frames.is_empty() {
                vec!["[no stack recorded]".to_string()]
            } else {
                c.frames.iter().map(dhat_frame).collect()
            };
            for s in strings {
                let i = *index.entry(s.clone()).or_insert_with(|| {
                    ftbl.push(s);
                    ftbl.len() - 1
                });
                fs.push(i);
            }
            match by_fs.get(&fs) {
                Some(&p) => {
                    pps[p].1 += c.bytes;
                    pps[p].2 += c.blocks;
                }
                None => {
                    by_fs.insert(fs.clone(), pps.len());
                    pps.push((fs, c.bytes, c.blocks));
                }
            }
        }
        let doc = serde_json::json!({
            "dhatFileVersion": 2,
            "mode": "heap",
            "verb": "Allocated",
            "bklt": false,
            "bkacc": false,
            "bu": "byte",
            "bsu": "bytes",
            "bksu": "blocks",
            "tu": "µs",
            "Mtu": "s",
            "cmd": self.command,
            "pid": self.pid,
            "te": self.elapsed_us,
            "pps": pps.iter().map(|(fs, tb, tbk)| serde_json::json!({"tb": tb, "tbk": tbk, "fs": fs})).collect::<Vec<_>>(),
            "ftbl": ftbl,
        });
        serde_json::to_writer(&mut *w, &doc)?;
        writeln!(w)
    }

    /// Writes folded stacks, one line per stack, outermost frame first:
    /// `main;load;alloc_table 4096`. Feed it to `inferno-flamegraph` or `flamegraph.pl`.
    pub fn write_folded(&self, w: &mut dyn Write) -> io::Result<()> {
        for line in self.folded_lines() {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    /// The folded-stack lines (merged, sorted).
    pub fn folded_lines(&self) -> Vec<String> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        for c in &self.callsites {
            let mut names: Vec<String> = c
                .frames
                .iter()
                .rev()
                .map(|f| {
                    f.function
                        .clone()
                        .unwrap_or_else(|| format!("{:#x}", f.ip))
                        .replace(';', ",")
                        .replace(' ', "")
                })
                .collect();
            if names.is_empty() {
                names.push("[no stack recorded]".replace(' ', "_"));
            }
            *merged.entry(names.join(";")).or_default() += c.bytes;
        }
        let mut lines: Vec<String> = merged
            .into_iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        lines.sort();
        lines
    }

    /// Writes an SVG flame graph of live bytes by stack (with the `flamegraph` feature).
    #[cfg(feature = "flamegraph")]
    pub fn write_flamegraph(&self, w: &mut dyn Write) -> io::Result<()> {
        let lines = self.folded_lines();
        let mut opts = inferno::flamegraph::Options::default();
        opts.title = if self.at_exit {
            "Live bytes at exit".to_string()
        } else {
            "Live bytes".to_string()
        };
        opts.count_name = "bytes".to_string();
        inferno::flamegraph::from_lines(&mut opts, lines.iter().map(|s| s.as_str()), w)
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

fn dhat_frame(f: &Frame) -> String {
    let func = f.function.as_deref().unwrap_or("???");
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!(
            "{:#x}: {} ({}:{}:{})",
            f.ip,
            func,
            file,
            line,
            f.column.unwrap_or(0)
        ),
        _ => format!("{:#x}: {}", f.ip, func),
    }
}

/// A report file could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParseError(String);

impl std::fmt::Display for ReportParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid secalloc report: {}", self.0)
    }
}

impl std::error::Error for ReportParseError {}

fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Groups blocks into a report. With `kinds` (one per block, from a leak check) callsites
/// are split by verdict and `leak_check` holds the totals.
pub(crate) fn build(blocks: &[Block], kinds: Option<&[LeakKind]>, at_exit: bool) -> LeakReport {
    // (stack, verdict) -> (bytes, blocks, largest block, scopes)
    type Group = (u64, u64, u64, Vec<u16>);
    let mut by_stack: HashMap<(u32, Option<LeakKind>), Group> = HashMap::new();
    let mut scope_totals: HashMap<&'static str, (u64, u64)> = HashMap::new();
    let mut total_bytes = 0;
    let mut summary = kinds.map(|_| LeakSummary::default());
    for (i, b) in blocks.iter().enumerate() {
        total_bytes += b.size as u64;
        let kind = kinds.map(|k| k[i]);
        if let (Some(s), Some(k)) = (summary.as_mut(), kind) {
            let (bytes, n) = match k {
                LeakKind::DefinitelyLost => {
                    (&mut s.definitely_lost_bytes, &mut s.definitely_lost_blocks)
                }
                LeakKind::IndirectlyLost => {
                    (&mut s.indirectly_lost_bytes, &mut s.indirectly_lost_blocks)
                }
                LeakKind::StillReachable => {
                    (&mut s.still_reachable_bytes, &mut s.still_reachable_blocks)
                }
            };
            *bytes += b.size as u64;
            *n += 1;
        }
        let e = by_stack.entry((b.stack, kind)).or_default();
        e.0 += b.size as u64;
        e.1 += 1;
        e.2 = e.2.max(b.size as u64);
        if b.scope != 0 && !e.3.contains(&b.scope) {
            e.3.push(b.scope);
        }
        if let Some(name) = crate::scope::name_of(b.scope) {
            let t = scope_totals.entry(name).or_default();
            t.0 += b.size as u64;
            t.1 += 1;
        }
    }
    let mut sym = Symbolizer::new();
    // Stacks that differ only in trimmed frames merge into one callsite.
    type Key = (Option<LeakKind>, Vec<(usize, Option<String>)>);
    let mut merged: HashMap<Key, Callsite> = HashMap::new();
    for ((stack, kind), (bytes, nblocks, largest, scopes)) in by_stack {
        let frames = sym.stack(crate::stack::frames(stack));
        let key: Key = (
            kind,
            frames.iter().map(|f| (f.ip, f.function.clone())).collect(),
        );
        let mut names: Vec<String> = scopes
            .iter()
            .filter_map(|&s| crate::scope::name_of(s))
            .map(str::to_string)
            .collect();
        let c = merged.entry(key).or_insert_with(|| Callsite {
            bytes: 0,
            blocks: 0,
            largest_block: 0,
            scopes: Vec::new(),
            kind,
            frames,
        });
        c.bytes += bytes;
        c.blocks += nblocks;
        c.largest_block = c.largest_block.max(largest);
        names.retain(|n| !c.scopes.contains(n));
        c.scopes.extend(names);
    }
    let mut callsites: Vec<Callsite> = merged.into_values().collect();
    callsites.sort_by(|a, b| {
        a.kind
            .cmp(&b.kind)
            .then(b.bytes.cmp(&a.bytes))
            .then(b.blocks.cmp(&a.blocks))
            .then_with(|| {
                a.frames
                    .first()
                    .map(|f| f.ip)
                    .cmp(&b.frames.first().map(|f| f.ip))
            })
    });
    let mut scopes: Vec<ScopeTotal> = scope_totals
        .into_iter()
        .map(|(name, (bytes, blocks))| ScopeTotal {
            name: name.to_string(),
            bytes,
            blocks,
        })
        .collect();
    scopes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.name.cmp(&b.name)));
    let started = RUNTIME
        .initialised_at_ns
        .load(core::sync::atomic::Ordering::Relaxed);
    LeakReport {
        format: "secalloc-report".to_string(),
        version: 1,
        command: command_line(),
        pid: std::process::id(),
        elapsed_us: crate::wipe::now_ns().saturating_sub(started) / 1000,
        at_exit,
        stacks_recorded: RUNTIME.stack_depth() > 0,
        total_bytes,
        total_blocks: blocks.len() as u64,
        callsites,
        scopes,
        leak_check: summary,
        roots_note: None,
        stats: crate::stats(),
    }
}

/// A snapshot of every live block, grouped by callsite and scope, symbolised.
///
/// Safe to call while other threads allocate and free: each block is pinned while its
/// header is read, and a thread freeing it waits for that moment. The report's own
/// allocations are not tracked.
///
/// ```
/// let r = secalloc::report();
/// let mut out = Vec::new();
/// r.write_text(&mut out).unwrap();
/// assert!(String::from_utf8(out).unwrap().starts_with("secalloc: "));
/// ```
pub fn report() -> LeakReport {
    crate::thread::untracked(|| build(&snapshot(), None, false))
}

/// A leak check now: a snapshot of live blocks classified as definitely lost, indirectly
/// lost or still reachable (see the crate docs on reachability), lost ones first.
///
/// Scans every readable-writable mapping of the process, so it costs about as much as
/// reading the program's memory once.
pub fn leak_check() -> LeakReport {
    crate::thread::untracked(|| check(false))
}

fn check(at_exit: bool) -> LeakReport {
    let (tracked, internal) = snapshot_all();
    let own = if at_exit {
        crate::reach::OwnStack::ExitCallers
    } else {
        crate::reach::OwnStack::FromHere
    };
    let v = crate::reach::classify(&tracked, &internal, own);
    // Blocks freed while the check ran are not in the report.
    let (blocks, kinds): (Vec<Block>, Vec<LeakKind>) = tracked
        .iter()
        .zip(&v.kinds)
        .filter_map(|(b, k)| k.map(|k| (*b, k)))
        .unzip();
    let mut r = build(&blocks, Some(&kinds), at_exit);
    r.roots_note = v.roots_note;
    r
}

/// Runs at exit (registered with `atexit` at initialisation): the leak check and report,
/// then the leak exit code, then (opt-in) the wipe of everything still live.
pub(crate) fn at_exit() {
    // Stay guarded from here on: nothing this thread does during exit is tracked.
    let _ = crate::thread::enter();
    let cfg = RUNTIME.config();
    let wants_check = cfg.report != ReportDest::Off || cfg.leak_exitcode.is_some();
    let mut lost = 0;
    if wants_check {
        let mut r = check(true);
        let s = r.leak_check.unwrap_or_default();
        lost = s.definitely_lost_blocks;
        if !cfg.report_reachable {
            r.callsites
                .retain(|c| c.kind != Some(LeakKind::StillReachable));
        }
        let shown = if cfg.report_reachable {
            s.lost_bytes() + s.still_reachable_bytes
        } else {
            s.lost_bytes()
        };
        if cfg.report != ReportDest::Off && shown >= cfg.report_min_bytes.max(1) {
            let result = match cfg.report {
                ReportDest::Off => Ok(()),
                ReportDest::Stderr => {
                    let mut err = io::stderr().lock();
                    r.write(cfg.report_format, cfg.report_top, &mut err)
                        .and_then(|_| err.flush())
                }
                ReportDest::File(path) => {
                    write_report_file(path, &mut |w| r.write(cfg.report_format, cfg.report_top, w))
                }
            };
            if let Err(e) = result {
                eprintln!("secalloc: could not write the exit report: {e}");
            }
        }
    }
    if cfg.wipe_at_exit {
        wipe_live_blocks();
    }
    if let Some(code) = cfg.leak_exitcode {
        if lost > 0 {
            // SAFETY: _exit ends the process at once; we are the last exit handler that
            // matters (the report is written and flushed).
            unsafe { libc::_exit(i32::from(code)) };
        }
    }
}

/// Writes the exit report (`write` writes it to the writer it is given) to the file at `path`.
/// If the file cannot be created or written, says so on stderr, naming the path, and writes
/// the report to stderr instead: the report is not lost.
fn write_report_file(
    path: &str,
    write: &mut dyn FnMut(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let to_file = std::fs::File::create(path).and_then(|f| {
        let mut w = io::BufWriter::new(f);
        write(&mut w)?;
        w.flush()
    });
    let Err(e) = to_file else { return Ok(()) };
    let mut err = io::stderr().lock();
    let _ = writeln!(
        err,
        "secalloc: could not write the exit report to {path}: {e}; writing it to standard error instead"
    );
    write(&mut err).and_then(|_| err.flush())
}

/// Wipes (four passes) every block still live. Other threads still running may be using
/// them: only for processes about to end, and opt-in.
fn wipe_live_blocks() {
    let (tracked, _) = snapshot_all();
    let mode = RUNTIME.wipe();
    let session = live::read_session();
    for b in tracked {
        if session.pin(b.addr) {
            // SAFETY: the block is live and pinned: its `size` bytes stay mapped until unpin.
            let bytes = unsafe { core::slice::from_raw_parts_mut(b.addr as *mut u8, b.size) };
            crate::__bench::wipe(
                bytes,
                if mode == crate::Wipe::Off {
                    crate::Wipe::FourPass
                } else {
                    mode
                },
            );
            session.unpin(b.addr);
        }
    }
}

/// Fork support.
pub(crate) fn lock_for_fork() {
    SNAPSHOT.raw_lock();
}

/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded.
    unsafe { SNAPSHOT.raw_unlock() };
}

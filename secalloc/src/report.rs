//! Leak reports: a snapshot of live blocks grouped by callsite and scope, written as text
//! (LeakSanitizer style), JSON, DHAT JSON or folded stacks, at exit or on demand.

use std::collections::HashMap;
use std::io::{self, Write};

use crate::config::{ReportDest, ReportFormat, RUNTIME};
use crate::json::JsonWriter;
use crate::reach::LeakKind;
use crate::reader::{Reader, Source};
use crate::stack::NO_STACK;
use crate::symbolize::{Frame, Symbolizer};
use crate::sys::SpinLock;
use crate::Stats;

/// Serialises snapshots (and keeps `fork` from splitting one).
static SNAPSHOT: SpinLock<()> = SpinLock::new(());

/// A live block, as read from its header while pinned or from its own-heap record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block {
    pub addr: usize,
    pub size: usize,
    pub stack: u32,
    pub scope: u16,
    /// Where it lives (and how a reader holds it).
    pub source: Source,
    /// Allocation time (profile mode only; 0 otherwise).
    pub born: u64,
}

/// Reads every live block the allocator tracks (not its own). Must run untracked.
pub(crate) fn snapshot() -> Vec<Block> {
    snapshot_all().0
}

/// Reads every live block, in address order: `(tracked, the allocator's own)`.
pub(crate) fn snapshot_all() -> (Vec<Block>, Vec<Block>) {
    let _g = SNAPSHOT.lock();
    // Room for every live block (and some that may appear meanwhile): each growth step would
    // copy the vector and wipe the old buffer.
    let live = crate::stats().live_blocks as usize;
    let mut tracked = Vec::with_capacity(live + live / 8 + 64);
    let mut internal = Vec::with_capacity(64);
    let reader = Reader::new();
    reader.for_each(|b, internal_block| {
        if internal_block {
            internal.push(b);
        } else {
            tracked.push(b);
        }
    });
    // The header layout's blocks come in address order, then the own heap's (slots in
    // address order, then directly mapped blocks): one order for the classifier.
    if tracked.windows(2).any(|w| w[0].addr > w[1].addr) {
        tracked.sort_unstable_by_key(|b| b.addr);
    }
    (tracked, internal)
}

/// Totals of a leak check by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl LeakKind {
    /// The verdict's name in reports: `"definitely_lost"`, `"indirectly_lost"` or
    /// `"still_reachable"`.
    ///
    /// ```
    /// assert_eq!(secalloc::LeakKind::IndirectlyLost.as_str(), "indirectly_lost");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            LeakKind::DefinitelyLost => "definitely_lost",
            LeakKind::IndirectlyLost => "indirectly_lost",
            LeakKind::StillReachable => "still_reachable",
        }
    }
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeTotal {
    /// The scope's name.
    pub name: String,
    /// Live bytes allocated in scopes of this name.
    pub bytes: u64,
    /// Live blocks allocated in scopes of this name.
    pub blocks: u64,
}

/// Live blocks that share one callsite stack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callsite {
    /// Live bytes allocated here.
    pub bytes: u64,
    /// Live blocks allocated here.
    pub blocks: u64,
    /// The largest of those blocks.
    pub largest_block: u64,
    /// Names of the scopes the blocks were allocated in (empty: none).
    pub scopes: Vec<String>,
    /// The verdict of a leak check (absent from reports taken without one).
    pub kind: Option<LeakKind>,
    /// The symbolised stack, innermost (the user's allocating call) first.
    pub frames: Vec<Frame>,
}

/// A snapshot of live allocations, grouped by callsite (largest first) and by scope.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    pub leak_check: Option<LeakSummary>,
    /// Why a leak check's verdicts may be off: what it could not know about its roots (an
    /// unknown inner allocator, a heap it could not walk). Absent when its roots are exact.
    pub roots_note: Option<String>,
    /// The allocator's statistics at the time of the snapshot.
    pub stats: Stats,
}

impl LeakReport {
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

    /// Writes the report as JSON (the schema is documented in `docs/report-json.md`;
    /// `secure_core::leak_report::from_json` reads it back).
    pub fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut j = JsonWriter::new(true);
        j.begin_object();
        j.string("format", &self.format);
        j.uint("version", u64::from(self.version));
        j.string("command", &self.command);
        j.uint("pid", u64::from(self.pid));
        j.uint("elapsed_us", self.elapsed_us);
        j.boolean("at_exit", self.at_exit);
        j.boolean("stacks_recorded", self.stacks_recorded);
        j.uint("total_bytes", self.total_bytes);
        j.uint("total_blocks", self.total_blocks);
        j.array_field("callsites");
        for c in &self.callsites {
            j.begin_object();
            j.uint("bytes", c.bytes);
            j.uint("blocks", c.blocks);
            j.uint("largest_block", c.largest_block);
            j.array_field("scopes");
            for s in &c.scopes {
                j.string_element(s);
            }
            j.end_array();
            if let Some(k) = c.kind {
                j.string("kind", k.as_str());
            }
            j.array_field("frames");
            for f in &c.frames {
                j.begin_object();
                j.uint("ip", f.ip as u64);
                j.opt_string("function", f.function.as_deref());
                j.opt_string("file", f.file.as_deref());
                j.opt_uint("line", f.line.map(u64::from));
                j.opt_uint("column", f.column.map(u64::from));
                j.boolean("inlined", f.inlined);
                j.end_object();
            }
            j.end_array();
            j.end_object();
        }
        j.end_array();
        j.array_field("scopes");
        for s in &self.scopes {
            j.begin_object();
            j.string("name", &s.name);
            j.uint("bytes", s.bytes);
            j.uint("blocks", s.blocks);
            j.end_object();
        }
        j.end_array();
        if let Some(s) = &self.leak_check {
            j.object_field("leak_check");
            j.uint("definitely_lost_bytes", s.definitely_lost_bytes);
            j.uint("definitely_lost_blocks", s.definitely_lost_blocks);
            j.uint("indirectly_lost_bytes", s.indirectly_lost_bytes);
            j.uint("indirectly_lost_blocks", s.indirectly_lost_blocks);
            j.uint("still_reachable_bytes", s.still_reachable_bytes);
            j.uint("still_reachable_blocks", s.still_reachable_blocks);
            j.end_object();
        }
        if let Some(note) = &self.roots_note {
            j.string("roots_note", note);
        }
        let st = &self.stats;
        j.object_field("stats");
        j.uint("live_bytes", st.live_bytes);
        j.uint("live_blocks", st.live_blocks);
        j.uint("total_allocated_bytes", st.total_allocated_bytes);
        j.uint("total_allocations", st.total_allocations);
        j.uint("total_freed_bytes", st.total_freed_bytes);
        j.uint("total_frees", st.total_frees);
        j.uint("reallocations", st.reallocations);
        j.uint("peak_live_bytes", st.peak_live_bytes);
        j.uint("wiped_bytes", st.wiped_bytes);
        j.uint("unique_stacks", st.unique_stacks);
        j.boolean("frame_pointers", st.frame_pointers);
        j.uint("short_stacks", st.short_stacks);
        j.uint("corruptions_detected", st.corruptions_detected);
        j.uint("metadata_bytes", st.metadata_bytes);
        j.end_object();
        j.end_object();
        w.write_all(j.finish().as_bytes())?;
        writeln!(w)
    }

    /// Writes DHAT's JSON format (`dhatFileVersion` 2), which opens in Valgrind's
    /// `dh_view.html`. Each program point is a callsite; `tb`/`tbk` hold its live bytes and
    /// blocks. Callsites whose frames print the same are merged, as the viewer requires.
    pub fn write_dhat(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut ftbl = FrameTable::new();
        let mut pps: Vec<(Vec<usize>, u64, u64)> = Vec::new();
        let mut by_fs: HashMap<Vec<usize>, usize> = HashMap::new();
        for c in &self.callsites {
            let mut fs = Vec::new();
            let strings: Vec<String> = if c.frames.is_empty() {
                vec![self.no_stack_name().to_string()]
            } else {
                c.frames.iter().map(dhat_frame).collect()
            };
            for s in strings {
                fs.push(ftbl.intern(s));
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
        let mut j = JsonWriter::new(false);
        j.begin_object();
        j.uint("dhatFileVersion", 2);
        j.string("mode", "heap");
        j.string("verb", "Allocated");
        j.boolean("bklt", false);
        j.boolean("bkacc", false);
        j.string("bu", "byte");
        j.string("bsu", "bytes");
        j.string("bksu", "blocks");
        j.string("tu", "µs");
        j.string("Mtu", "s");
        j.string("cmd", &self.command);
        j.uint("pid", u64::from(self.pid));
        j.uint("te", self.elapsed_us);
        j.array_field("pps");
        for (fs, tb, tbk) in &pps {
            j.begin_object();
            j.uint("tb", *tb);
            j.uint("tbk", *tbk);
            j.array_field("fs");
            for &f in fs {
                j.uint_element(f as u64);
            }
            j.end_array();
            j.end_object();
        }
        j.end_array();
        ftbl.write(&mut j);
        j.end_object();
        w.write_all(j.finish().as_bytes())?;
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

    /// The folded-stack lines (merged, sorted). Frame names stay as they are, spaces
    /// included, except that `;` (the frame separator) becomes `,`.
    pub fn folded_lines(&self) -> Vec<String> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        for c in &self.callsites {
            let mut names: Vec<String> = c
                .frames
                .iter()
                .rev()
                .map(|f| {
                    f.function
                        .as_deref()
                        .map_or_else(|| format!("{:#x}", f.ip), str::to_string)
                        // `;` separates frames; everything else (spaces in
                        // `<Vec<T> as FromIterator<T>>`) stays: the count is after the
                        // last space.
                        .replace(';', ",")
                        .replace('\n', " ")
                })
                .collect();
            if names.is_empty() {
                names.push(self.no_stack_name().to_string());
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

    /// The frame name DHAT and folded output give a callsite without frames.
    fn no_stack_name(&self) -> &'static str {
        if self.stacks_recorded {
            "[no stack recorded]"
        } else {
            "[no callsite stacks: build with -C force-frame-pointers=yes]"
        }
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

/// A DHAT file's frame table (`ftbl`): each distinct frame string once, `[root]` first, as
/// the viewer expects; program points refer to frames by their index here.
pub(crate) struct FrameTable {
    frames: Vec<String>,
    index: HashMap<String, usize>,
}

impl FrameTable {
    pub(crate) fn new() -> Self {
        FrameTable {
            frames: vec!["[root]".to_string()],
            index: HashMap::new(),
        }
    }

    /// The index of frame `s`, added if new.
    pub(crate) fn intern(&mut self, s: String) -> usize {
        let frames = &mut self.frames;
        *self.index.entry(s.clone()).or_insert_with(|| {
            frames.push(s);
            frames.len() - 1
        })
    }

    /// Writes the table as the `ftbl` field of the object `j` is in.
    pub(crate) fn write(&self, j: &mut JsonWriter) {
        j.array_field("ftbl");
        for f in &self.frames {
            j.string_element(f);
        }
        j.end_array();
    }
}

pub(crate) fn dhat_frame(f: &Frame) -> String {
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

pub(crate) fn command_line() -> String {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Which callsites a report lists (and therefore symbolises).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Listing {
    /// List still-reachable callsites too (with a leak check).
    pub reachable: bool,
    /// Symbolise about this many callsites, largest first (a text report shows only
    /// `SECALLOC_REPORT_TOP`); the rest are listed without frames.
    pub top: usize,
}

impl Listing {
    /// Every callsite, symbolised.
    pub(crate) const ALL: Listing = Listing {
        reachable: true,
        top: usize::MAX,
    };
}

/// Totals by verdict.
pub(crate) fn summarise(blocks: &[Block], kinds: &[LeakKind]) -> LeakSummary {
    let mut s = LeakSummary::default();
    for (b, k) in blocks.iter().zip(kinds) {
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
    s
}

/// Groups blocks into a report. With `kinds` (one per block, from a leak check) callsites
/// are split by verdict, `leak_check` holds the totals and `scopes` counts lost blocks only.
/// Only the callsites `listing` asks for are symbolised: grouping and totals come first, so a
/// report that lists nothing never reads debug info.
pub(crate) fn build(
    blocks: &[Block],
    kinds: Option<&[LeakKind]>,
    at_exit: bool,
    listing: Listing,
) -> LeakReport {
    // (stack, verdict) -> (bytes, blocks, largest block, scopes)
    type Group = (u64, u64, u64, Vec<u16>);
    let mut by_stack: HashMap<(u32, Option<LeakKind>), Group> = HashMap::new();
    let mut scope_totals: HashMap<&'static str, (u64, u64)> = HashMap::new();
    let mut total_bytes = 0;
    let summary = kinds.map(|k| summarise(blocks, k));
    let stats = crate::stats();
    // Stacks from a build without frame pointers are a frame or two of whatever code
    // allocated: list none (and say why) rather than misleading ones.
    let stacks_recorded = RUNTIME.stack_depth() > 0 && stats.frame_pointers;
    for (i, b) in blocks.iter().enumerate() {
        total_bytes += b.size as u64;
        let kind = kinds.map(|k| k[i]);
        let lost_or_plain = kind != Some(LeakKind::StillReachable);
        if lost_or_plain {
            if let Some(name) = crate::scope::name_of(b.scope) {
                let t = scope_totals.entry(name).or_default();
                t.0 += b.size as u64;
                t.1 += 1;
            }
        }
        if !listing.reachable && !lost_or_plain {
            continue;
        }
        let stack = if stacks_recorded { b.stack } else { NO_STACK };
        let e = by_stack.entry((stack, kind)).or_default();
        e.0 += b.size as u64;
        e.1 += 1;
        e.2 = e.2.max(b.size as u64);
        if b.scope != 0 && !e.3.contains(&b.scope) {
            e.3.push(b.scope);
        }
    }
    // Largest first, so the callsites a text report shows are symbolised first.
    let mut groups: Vec<_> = by_stack.into_iter().collect();
    groups.sort_by(|((sa, ka), a), ((sb, kb), b)| {
        ka.cmp(kb)
            .then(b.0.cmp(&a.0))
            .then(b.1.cmp(&a.1))
            .then(sa.cmp(sb))
    });
    let mut sym = None;
    // Stacks that differ only in trimmed frames merge into one callsite.
    type Key = (
        Option<LeakKind>,
        Vec<(usize, Option<std::sync::Arc<str>>)>,
        u32,
    );
    let mut merged: HashMap<Key, Callsite> = HashMap::new();
    for ((stack, kind), (bytes, nblocks, largest, scopes)) in groups {
        // Past `top` distinct callsites (and as many stacks again, which may still merge
        // into them), the rest is counted, not symbolised.
        let symbolise = merged.len() < listing.top.saturating_mul(2);
        let (frames, unsymbolised) = if symbolise {
            let s = sym.get_or_insert_with(Symbolizer::new);
            (s.stack(&crate::stack::frames(stack)), 0)
        } else {
            (Vec::new(), stack)
        };
        let key: Key = (
            kind,
            frames.iter().map(|f| (f.ip, f.function.clone())).collect(),
            unsymbolised,
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
            // Symbolised before unsymbolised (past `top`) at equal size.
            .then(a.frames.is_empty().cmp(&b.frames.is_empty()))
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
        stacks_recorded,
        total_bytes,
        total_blocks: blocks.len() as u64,
        callsites,
        scopes,
        leak_check: summary,
        roots_note: None,
        stats,
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
    crate::thread::untracked(|| build(&snapshot(), None, false, Listing::ALL))
}

/// A leak check now: a snapshot of live blocks classified as definitely lost, indirectly
/// lost or still reachable (see the crate docs on reachability), lost ones first.
///
/// Scans every readable-writable mapping of the process, so it costs about as much as
/// reading the program's memory once.
pub fn leak_check() -> LeakReport {
    crate::thread::untracked(|| {
        let (tracked, kinds, roots_note) = check(false);
        let mut r = build(&tracked, Some(&kinds), false, Listing::ALL);
        r.roots_note = roots_note;
        r
    })
}

/// Snapshots the live blocks and classifies them: `(tracked blocks still live, one verdict
/// each, what may be off about the roots)`.
fn check(at_exit: bool) -> (Vec<Block>, Vec<LeakKind>, Option<String>) {
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
    (blocks, kinds, v.roots_note)
}

/// Runs at exit (registered with `atexit` at initialisation): the leak check and report,
/// then the leak exit code, then (opt-in) the wipe of everything still live.
///
/// Blocks are classified and totalled first; only when the report will be printed (something
/// is lost, at least `SECALLOC_REPORT_MIN_BYTES`) are the listed callsites symbolised, so a
/// process that loses nothing never reads its debug info.
pub(crate) fn at_exit() {
    // Stay guarded from here on: nothing this thread does during exit is tracked.
    let _ = crate::thread::enter();
    let cfg = RUNTIME.config();
    let wants_check = cfg.report != ReportDest::Off || cfg.leak_exitcode.is_some();
    // The leak check reads its roots before the heap profile is written (and printed first):
    // symbolising the profile fills the symbolizer's caches (statics of the backtrace crate,
    // mapped debug files), whose words would otherwise be read as roots.
    let checked = wants_check.then(|| check(true));
    crate::profile::at_exit();
    let mut lost = 0;
    if let Some((tracked, kinds, roots_note)) = checked {
        let s = summarise(&tracked, &kinds);
        lost = s.definitely_lost_blocks;
        let shown = if cfg.report_reachable {
            s.lost_bytes() + s.still_reachable_bytes
        } else {
            s.lost_bytes()
        };
        if cfg.report != ReportDest::Off && shown >= cfg.report_min_bytes.max(1) {
            let listing = Listing {
                reachable: cfg.report_reachable,
                top: if cfg.report_format == ReportFormat::Text {
                    cfg.report_top
                } else {
                    usize::MAX
                },
            };
            let mut r = build(&tracked, Some(&kinds), true, listing);
            r.roots_note = roots_note;
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
    let reader = Reader::new();
    for b in tracked {
        reader.with_block(&b, |p, size| {
            // SAFETY: the block is held: its `size` bytes stay mapped meanwhile.
            let bytes = unsafe { core::slice::from_raw_parts_mut(p, size) };
            crate::__bench::wipe(
                bytes,
                if mode == crate::Wipe::Off {
                    crate::Wipe::FourPass
                } else {
                    mode
                },
            );
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ip: usize, name: &str) -> Frame {
        Frame {
            ip,
            function: Some(name.into()),
            file: None,
            line: None,
            column: None,
            inlined: false,
        }
    }

    fn report_with(callsites: Vec<Callsite>) -> LeakReport {
        LeakReport {
            format: "secalloc-report".into(),
            version: 1,
            command: "t".into(),
            pid: 1,
            elapsed_us: 0,
            at_exit: true,
            stacks_recorded: true,
            total_bytes: 0,
            total_blocks: 0,
            callsites,
            scopes: Vec::new(),
            leak_check: None,
            roots_note: None,
            stats: Stats::default(),
        }
    }

    fn block(addr: usize, size: usize, stack: u32, scope: u16) -> Block {
        Block {
            addr,
            size,
            stack,
            scope,
            source: crate::reader::Source::Header,
            born: 0,
        }
    }

    /// Interns a stack of `n` return addresses inside a function of the `regex` crate (code
    /// the trimming keeps), the `k`-th such stack: distinct addresses for every `k`.
    fn fake_stack(k: usize, n: usize) -> u32 {
        // SAFETY: StackCache is plain integers; zero is a valid empty cache.
        let mut cache: Box<crate::stack::StackCache> = unsafe { Box::new(core::mem::zeroed()) };
        let code = regex::escape as fn(&str) -> String as usize;
        let frames: Vec<usize> = (0..n).map(|i| code + 1 + k * n + i).collect();
        crate::stack::intern(&frames, (code + k * n) as u64 * 31 + 7, &mut cache)
    }

    fn lookups() -> usize {
        crate::symbolize::LOOKUPS.load(core::sync::atomic::Ordering::Relaxed)
    }

    // One test touches the lookup counter, so no other test runs a report meanwhile.
    #[test]
    fn symbolises_only_listed_callsites_and_counts_scopes_of_lost_blocks() {
        // Not the global allocator here: say the build has frame pointers (it has, through
        // the workspace's flags), as initialisation would.
        RUNTIME
            .frame_pointers
            .store(true, core::sync::atomic::Ordering::Relaxed);
        let scope = crate::Scope::new("report-test-scope");
        let reachable_stack = fake_stack(0, 3);
        let blocks = [
            block(0x1000, 100, reachable_stack, scope.id()),
            block(0x2000, 40, fake_stack(1, 3), scope.id()),
        ];
        let kinds = [LeakKind::StillReachable, LeakKind::DefinitelyLost];
        // Nothing listed (no lost callsite wanted, reachable not listed): no lookup at all.
        let before = lookups();
        let r = build(
            &blocks[..1],
            Some(&kinds[..1]),
            true,
            Listing {
                reachable: false,
                top: 20,
            },
        );
        assert_eq!(
            lookups(),
            before,
            "a report listing nothing reads no debug info"
        );
        assert!(r.callsites.is_empty());
        assert_eq!(r.leak_check.unwrap().still_reachable_bytes, 100);
        // The lost callsite is symbolised, the reachable one is not; `by scope` counts the
        // lost block only.
        let r = build(
            &blocks,
            Some(&kinds),
            true,
            Listing {
                reachable: false,
                top: 20,
            },
        );
        assert_eq!(lookups(), before + 3);
        assert_eq!(r.callsites.len(), 1);
        assert_eq!(r.callsites[0].bytes, 40);
        assert_eq!(
            r.scopes,
            [ScopeTotal {
                name: "report-test-scope".into(),
                bytes: 40,
                blocks: 1
            }]
        );
        // Past `top`, stacks are counted, not symbolised.
        let many: Vec<Block> = (0..10)
            .map(|i| block(0x10000 + i * 0x100, 1000 - i, fake_stack(10 + i, 2), 0))
            .collect();
        let lost = vec![LeakKind::DefinitelyLost; many.len()];
        let before = lookups();
        let r = build(
            &many,
            Some(&lost),
            true,
            Listing {
                reachable: false,
                top: 2,
            },
        );
        assert_eq!(lookups(), before + 4 * 2, "two callsites and as many again");
        assert_eq!(r.callsites.len(), 10);
        assert_eq!(r.callsites[0].bytes, 1000);
        assert!(r.callsites[..4].iter().all(|c| !c.frames.is_empty()));
        assert!(r.callsites[4..].iter().all(|c| c.frames.is_empty()));
    }

    #[test]
    fn folded_lines_keep_names_intact() {
        let r = report_with(vec![
            Callsite {
                bytes: 24,
                blocks: 1,
                largest_block: 24,
                scopes: Vec::new(),
                kind: None,
                frames: vec![
                    frame(
                        1,
                        "<alloc::vec::Vec<T> as core::iter::FromIterator<T>>::from_iter",
                    ),
                    frame(2, "app::fill; [u8; 4]"),
                    frame(3, "app::main"),
                ],
            },
            Callsite {
                bytes: 8,
                blocks: 1,
                largest_block: 8,
                scopes: Vec::new(),
                kind: None,
                frames: Vec::new(),
            },
        ]);
        assert_eq!(
            r.folded_lines(),
            [
                "[no stack recorded] 8",
                "app::main;app::fill, [u8, 4];<alloc::vec::Vec<T> as core::iter::FromIterator<T>>::from_iter 24"
            ]
        );
    }
}

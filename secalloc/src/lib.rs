//! A tracking, wiping global allocator.
//!
//! `SecAlloc` runs over secalloc's own heap, [`SecHeap`] (or over any
//! [`GlobalAlloc`](core::alloc::GlobalAlloc) given to [`SecAlloc::with_inner`], such as
//! `System`) and, for every allocation of the program:
//!
//! - records it with a deduplicated callsite stack, its scope and thread;
//! - hands it out zeroed;
//! - checks it on free (canary after the block, layout, double and invalid frees) and aborts
//!   with both callsites on corruption;
//! - wipes every freed byte in four passes (`0x00`, `0xFF`, random, `0x00`) that no optimiser
//!   can remove;
//! - keeps live statistics ([`stats`]), per-operation figures ([`scope`]), and prints a leak
//!   report when the process exits ([`report`] takes one on demand).
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
//!
//! fn main() {
//!     let _guard = secalloc::scope("startup");
//!     let v = vec![1u8; 1000];
//!     let s = secalloc::stats();
//!     assert!(s.live_bytes >= 1000);
//!     drop(v);
//! }
//! ```
//!
//! # The own heap
//!
//! [`SecHeap`] is secalloc's own heap: size-class spans with all metadata out of line, per-thread
//! heaps, exact double-free checks, large blocks mapped with a guard page. It is the default
//! inner of [`SecAlloc::new`], which keeps nothing next to user data either:
//!
//! - each block's record (requested size, alignment, stack id, scope, state) lives in an
//!   array beside the span metadata, in a mapping of its own (4 bytes a slot for most
//!   blocks, 8 with a scope or an unusual layout; backed only where slots are in use); a
//!   directly mapped block keeps its record in a table;
//! - the live set is the spans' bitmaps: freeing a free slot is a double free, detected
//!   exactly and reported with the block's allocation stack;
//! - the canary goes in the slot's slack after the block (up to 8 bytes, free of cost). A
//!   block that fills its slot exactly has none; instead a freed block is wiped (its bytes
//!   and canary, ending in zeros, so the whole slot is zero again) and the slot's first word
//!   is checked when the slot is handed out again: a write into a free slot (an overflow out of the block before it, a write after
//!   free) is reported then. So no size is pushed up a class for a canary;
//! - a wiped or fresh slot is already zero, so allocations are zeroed without a `memset`
//!   (with `Wipe::Off` the heap zeroes a reused slot instead);
//! - `realloc` within the block's class stays in place (the bytes given up are wiped, the
//!   bytes gained zeroed); a directly mapped block grows by remapping its pages (`mremap`:
//!   no copy is made, so none is left behind to wipe).
//!
//! [`SecAlloc::with_inner`] takes any other inner (`System`, mimalloc, or `SecHeap` itself)
//! and puts a 16-byte header before each block and the 8-byte canary after it, with the
//! live set in a radix map (no locked instruction: two threads freeing the same block at the
//! very same instant may both pass; a double free in any other order is caught). Figures:
//! BENCHMARKS.md.
//!
//! # Heap profiles
//!
//! `SECALLOC_PROFILE=1` (or [`SecAlloc::profile`]) adds a heap profiler in the manner of DHAT
//! and dhat-rs: per callsite the totals, the most live at once, the live figures at the
//! global peak (t-gmax) and at the end, and block lifetimes, written at exit as a DHAT file
//! (`bklt: true`) for Valgrind's `dh_view.html`, with the top callsites on stderr.
//! [`profile::HeapStats`] has the exact whole-heap figures, [`profile::snapshot`] the
//! per-callsite ones; [`testing::assert_allocations_at_most`] and
//! [`testing::assert_max_bytes_at_most`] work in any mode. See [`profile`].
//!
//! # Frame pointers
//!
//! Callsites are captured by walking frame pointers (about 2 ns a frame, against microseconds
//! for DWARF unwinding). Build with them on, in `.cargo/config.toml`:
//!
//! ```toml
//! [build]
//! rustflags = ["-C", "force-frame-pointers=yes"]
//! ```
//!
//! Without them the allocator still works, but records no stacks: reports say so
//! (`no callsite stacks: build with -C force-frame-pointers=yes`, in every format), and
//! [`Stats::frame_pointers`] is false. That holds also when only the allocator's own frames
//! have frame pointers (it is built at `opt-level = 0`) and the program's do not: walks that
//! break off within the first frames ([`Stats::short_stacks`]) give it away.
//!
//! # Debug and test builds
//!
//! A process that loses nothing pays only for the leak check at exit (one scan of its
//! writable memory): blocks are classified first and debug info is read only when a report
//! is printed, for the callsites it lists. Unoptimised, the scan and the DWARF parser that
//! symbolises a printed report are slow (seconds per test binary). Cargo takes profile
//! settings only from the workspace root, so add these to the root `Cargo.toml`:
//!
//! ```toml
//! [profile.dev.package.secalloc]
//! opt-level = 3
//! [profile.dev.package.backtrace]
//! opt-level = 3
//! [profile.dev.package.gimli]
//! opt-level = 3
//! [profile.dev.package.addr2line]
//! opt-level = 3
//! [profile.dev.package.object]
//! opt-level = 3
//! [profile.dev.package.miniz_oxide]
//! opt-level = 3
//! [profile.dev.package.adler2]
//! opt-level = 3
//! [profile.dev.package.rustc-demangle]
//! opt-level = 3
//! ```
//!
//! Debug builds record 32 frames by default (16 in release builds): with nothing inlined,
//! the standard library's allocation path alone is a dozen frames deep.
//!
//! # Leak reports and reachability
//!
//! At exit (registered with `atexit`, so it also runs after `std::process::exit`, but not
//! after `abort`) the allocator classifies every block still live, as memcheck and
//! LeakSanitizer do. Roots are the process's readable-writable mappings (globals, TLS,
//! other threads' stacks, anonymous mappings that are not the heap) and, on the exiting
//! thread, the frames of the callers of `exit`, which are never unwound: `main`'s locals
//! when it calls `process::exit` are still reachable, and so is libtest's list of tests
//! when a test fails; after `main` returns its dead frames are not scanned. Not roots: the
//! heap's free space and metadata, the C library's data, the allocator's own metadata.
//! Blocks reachable from roots are *still reachable* (also through heap objects the tracker
//! never saw, such as those std takes from `System` directly); of the rest, blocks pointed
//! to only from lost blocks are *indirectly lost* and the others *definitely lost*.
//! Because freed memory is wiped, stale pointers in freed chunks cannot make a lost block
//! look reachable. The roots are exact over the own heap, `System` (glibc) and `mimalloc`; over another
//! inner allocator, [`LeakReport::roots_note`] says what may be off. [`leak_check`] runs
//! the same classification on demand (then the calling thread's live frames are roots).
//!
//! The exit report is written only when something is lost (or, with
//! `SECALLOC_REPORT_REACHABLE=1`, live). Environment: `SECALLOC_REPORT=off|stderr|<path>`,
//! `SECALLOC_REPORT_FORMAT=text|json|dhat|folded`, `SECALLOC_REPORT_MIN_BYTES`,
//! `SECALLOC_REPORT_TOP`, `SECALLOC_REPORT_REACHABLE`, `SECALLOC_LEAK_EXITCODE=N` (exit with
//! N when anything is definitely lost), `SECALLOC_WIPE_AT_EXIT=1` (wipe every block still
//! live after the report — other threads still running may be using those blocks, so it is
//! off by default). Keywords are matched whatever their case; an unknown `SECALLOC_*` name is
//! named on stderr with the closest known one; a report file that cannot be written is named
//! on stderr and the report is written there instead.
//!
//! # Footprint
//!
//! The crate depends on `libc`, `getrandom` and `backtrace` only (and `inferno` with the
//! `flamegraph` feature): it writes its JSON reports itself (`secure_core::leak_report`
//! reads them back) and adds no trait implementations to its users' world, so inference that
//! relies on a type having one `PartialEq` impl keeps compiling where the allocator is
//! installed:
//!
//! ```
//! use secalloc as _;
//! let matches: Vec<usize> = Vec::new();
//! assert_eq!(matches, vec![]);
//! ```
//!
//! # Guarantees and non-goals
//!
//! - Every block freed through the allocator is wiped before the inner allocator sees it,
//!   including the tail released by a shrinking `realloc` and the old block of a moving one.
//!   Each pass is followed by a compiler barrier, so the wipe survives fat LTO. Every byte
//!   goes through the four passes in order; a large block is wiped 16 KiB at a time (all four
//!   passes over one stretch, then the next), so the passes run in the cache and the block's
//!   memory is written about once.
//! - The allocator's own metadata lives in `mmap`ed memory, never in the heap it tracks.
//! - Memory that never passes through the allocator (stack frames, registers, memory mapped
//!   directly, copies the kernel made) is out of reach.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod alloc;
mod block;
mod config;
mod corruption;
pub(crate) mod heap;
mod init;
mod json;
mod live;
mod own;
pub mod profile;
mod reach;
mod reader;
mod report;
mod scope;
mod stack;
mod symbolize;
mod sys;
pub mod testing;
mod thread;
mod wipe;

use core::sync::atomic::Ordering;

pub use crate::alloc::SecAlloc;
pub use crate::config::{OnCorruption, ReportDest, ReportFormat, Wipe};
pub use crate::heap::{ReturnedToKernel, SecHeap};
pub use crate::reach::LeakKind;
pub use crate::report::{leak_check, report, Callsite, LeakReport, LeakSummary, ScopeTotal};
pub use crate::scope::{current_scope, scope, Scope, ScopeEnter, ScopeGuard, ScopeStats};
pub use crate::symbolize::Frame;

/// Live and cumulative figures of the allocator.
///
/// After all threads have joined (and no allocation runs concurrently) the figures are exact.
/// `peak_live_bytes` is exact for a single-threaded program; with several threads allocating
/// at once it may read low by up to 64 KiB per other thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes in live blocks (requested sizes).
    pub live_bytes: u64,
    /// Live blocks.
    pub live_blocks: u64,
    /// Bytes allocated since start (a `realloc` counts its new size).
    pub total_allocated_bytes: u64,
    /// Allocations since start (a `realloc` counts as one allocation and one free).
    pub total_allocations: u64,
    /// Bytes freed since start.
    pub total_freed_bytes: u64,
    /// Frees since start.
    pub total_frees: u64,
    /// Reallocations since start.
    pub reallocations: u64,
    /// The highest `live_bytes` seen.
    pub peak_live_bytes: u64,
    /// Bytes wiped (user bytes plus each block's header and canary).
    pub wiped_bytes: u64,
    /// Unique callsite stacks recorded.
    pub unique_stacks: u64,
    /// Whether this build keeps frame pointers: the start-up probe found them in the
    /// allocator's own frames, and most stack walks reached past the allocating code (when
    /// over half of them break off at a missing frame pointer, the program's code was built
    /// without them and reports list no stacks).
    pub frame_pointers: bool,
    /// Stack walks that broke off within the first frames at an invalid frame pointer: the
    /// allocating code was built without frame pointers, so its stacks come out short.
    pub short_stacks: u64,
    /// Heap corruptions detected and survived (with [`OnCorruption::Continue`]).
    pub corruptions_detected: u64,
    /// Address space the allocator mapped for its own metadata (only the pages it touched
    /// use memory).
    pub metadata_bytes: u64,
}

/// The allocator's statistics now. Cheap: sums per-thread counters, takes no lock.
///
/// ```
/// let s = secalloc::stats();
/// assert!(s.total_allocated_bytes >= s.live_bytes);
/// ```
pub fn stats() -> Stats {
    let mut s = Stats::default();
    let mut add = |c: &thread::Counters| {
        s.total_allocated_bytes += c.alloc_bytes.load(Ordering::Relaxed);
        s.total_allocations += c.allocs.load(Ordering::Relaxed);
        s.total_freed_bytes += c.freed_bytes.load(Ordering::Relaxed);
        s.total_frees += c.frees.load(Ordering::Relaxed);
        s.reallocations += c.reallocs.load(Ordering::Relaxed);
        s.wiped_bytes += c.wiped_bytes.load(Ordering::Relaxed);
        s.short_stacks += c.bad_frames.load(Ordering::Relaxed);
    };
    thread::for_each_slot(|t| add(&t.counters));
    add(&thread::ORPHAN);
    s.live_bytes = s.total_allocated_bytes.saturating_sub(s.total_freed_bytes);
    s.live_blocks = s.total_allocations.saturating_sub(s.total_frees);
    s.peak_live_bytes = thread::peak_live_bytes().max(s.live_bytes);
    s.unique_stacks = u64::from(stack::unique_stacks());
    s.frame_pointers = config::RUNTIME.frame_pointers.load(Ordering::Relaxed)
        && !stack::walks_break_off(s.short_stacks, s.total_allocations);
    s.corruptions_detected = corruption::DETECTED.load(Ordering::Relaxed);
    s.metadata_bytes = (stack::STACK_BYTES.load(Ordering::Relaxed)
        + thread::SLOT_BYTES.load(Ordering::Relaxed)) as u64
        + profile::PROFILE_BYTES.load(Ordering::Relaxed);
    s
}

/// Whether a `SecAlloc` is the process's global allocator.
///
/// ```
/// // In a program without `#[global_allocator] static A: SecAlloc = ...`:
/// assert!(!secalloc::is_installed());
/// ```
pub fn is_installed() -> bool {
    if config::RUNTIME.state.load(Ordering::Acquire) != config::READY {
        return false;
    }
    let probe = Box::new(0u64);
    let addr = &*probe as *const u64 as usize;
    let yes = live::is_live(addr) || crate::heap::tracked::is_live(addr);
    drop(core::hint::black_box(probe));
    yes
}

/// Wipes `buf` the way the allocator wipes freed blocks: with [`Wipe::FourPass`], the
/// passes `0x00`, `0xFF`, random, `0x00`, each behind a compiler barrier so none can be
/// optimised away (also right before the buffer is freed or goes out of scope).
///
/// ```
/// let mut key = *b"correct horse battery staple";
/// secalloc::wipe_bytes(&mut key, secalloc::Wipe::FourPass);
/// assert!(key.iter().all(|&b| b == 0));
/// ```
pub fn wipe_bytes(buf: &mut [u8], mode: Wipe) {
    __bench::wipe(buf, mode)
}

/// Internal building blocks exposed for the workspace's benchmarks only. Not a public API:
/// no stability, no semver.
#[doc(hidden)]
pub mod __bench {
    /// Walks up to `buf.len()` frames from the caller; returns how many were found.
    #[inline(never)]
    pub fn walk_stack(buf: &mut [usize]) -> usize {
        let top = crate::thread::untracked(|| {
            let ts = crate::thread::current();
            // SAFETY: null or this thread's own state.
            unsafe { ts.as_ref() }.map_or(0, |t| t.stack_top)
        });
        crate::stack::walk(buf, top).len
    }

    /// Inserts `addr` (16-byte aligned) into the live set and removes it again.
    #[inline(never)]
    pub fn live_insert_remove(addr: usize) -> bool {
        let ts = crate::thread::untracked(crate::thread::current);
        // SAFETY: null or this thread's own state.
        let marker = unsafe { ts.as_ref() }.map(|t| &t.free_marker);
        crate::live::set_live(addr);
        crate::live::clear_live(addr, marker) == crate::live::Cleared::WasLive
    }

    /// Reads every readable-writable mapping of the process once, word by word, the way the
    /// leak check's root scan does (without skipping anything): `(bytes, nanoseconds)`. The
    /// floor of any leak check, for `benches/exit_cost.rs`.
    pub fn scan_writable_memory() -> (u64, u128) {
        let maps = crate::reach::rw_mappings();
        let mut buf = vec![0u8; 1 << 20];
        let start = std::time::Instant::now();
        let (mut bytes, mut sum) = (0u64, 0usize);
        for (s, e, _) in maps {
            crate::reach::scan_remote(s, e, &mut buf, |_, v| {
                bytes += 8;
                sum = sum.wrapping_add(v);
            });
        }
        core::hint::black_box(sum);
        (bytes, start.elapsed().as_nanos())
    }

    /// Wipes `buf` with the given mode, using this thread's random pool.
    pub fn wipe(buf: &mut [u8], mode: crate::Wipe) {
        // Creating the thread's state may allocate: do it untracked.
        let ts = crate::thread::untracked(crate::thread::current);
        // SAFETY: buf is an exclusive, live slice; ts is null or this thread's own state.
        unsafe { crate::wipe::wipe_on_thread(ts, buf.as_mut_ptr(), buf.len(), mode) };
    }
}

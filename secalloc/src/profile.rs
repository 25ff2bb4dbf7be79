//! Heap profiling: per-callsite totals, live bytes at the global peak (t-gmax), at the end
//! (t-end) and block lifetimes, written as a DHAT file that Valgrind's `dh_view.html` opens.
//!
//! Profile mode is switched on with `SECALLOC_PROFILE=1` or [`SecAlloc::profile`]
//! (`SECALLOC_PROFILE_FILE` names the file, default `dhat-heap.json`, as dhat-rs; a name
//! ending in `.folded` gets folded stacks by total bytes, for flame graphs, instead). It is
//! fixed when the allocator starts, as it gives every block an 8-byte allocation time.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().profile(true);
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect();
//!     let s = secalloc::profile::HeapStats::get();
//!     assert!(s.curr_bytes >= 8000);
//!     drop(v);
//!     // At exit: `dhat-heap.json`, and the top callsites by total and by peak bytes on stderr.
//! }
//! ```
//!
//! # What is counted, and how
//!
//! Always on (any mode): the per-thread totals behind [`crate::stats`] and
//! [`crate::testing`] (allocations, frees and their bytes, each thread's own peak of net live
//! bytes), plain stores to the thread's own counters.
//!
//! Profile mode adds one record per interned callsite stack, in `mmap`ed chunks (never the
//! heap it profiles), and no lock on the hot path. Each thread keeps its own share of the
//! figures of every callsite it allocates from or frees to (one 64-byte line per callsite,
//! in a table indexed by stack id whose pages are mapped on first use; plain loads and
//! stores): the net change it made to the callsite's live bytes and blocks, its totals
//! (`tb`, `tbk`) and lifetimes (`tl`). A share's live part is published into the record
//! (atomic adds) when it reaches 64 KiB or 1024 blocks either way, the whole share when the
//! thread exits; snapshots add the shares still held. So an
//! allocation or free makes no atomic read-modify-write of its own; the only shared access
//! is an allocation reading its record, to keep the callsite's maximum (`mb`, with the
//! blocks live then, `mbk`) as its live figures reach it: the record's published live
//! figures plus this thread's share. The process's live bytes and blocks are kept per
//! thread too, published in steps of at most 64 KiB or 1024 blocks, as [`crate::stats`]
//! keeps its own. The always-on counters cost nothing more than before: the profile-mode
//! code is behind one flag read, and blocks get their 8-byte allocation time only in
//! profile mode.
//!
//! **Lifetimes**: reading the clock (`rdtsc`) at an allocation and at its free was most of
//! what profile mode cost, so not every block is timed. A thread times the first 64 blocks
//! of each callsite it holds a share of, then one block in 8, picked at random (the block's
//! time is read before it is published, and stored with it; an untimed block stores 0 and
//! its free reads no clock). A callsite's total lifetime (`tl`) is the timed blocks' sum,
//! scaled by all its blocks over its timed ones: exact for a callsite with up to 64 blocks
//! per thread (all timed), an unbiased estimate from at least 64 + 1/8 of them beyond.
//! Allocations and frees are all counted as before; only `tl` is estimated.
//!
//! **t-gmax, as DHAT defines it**: the last moment live bytes reached their maximum (an
//! allocation that brings live bytes to or above the maximum so far declares a new peak).
//! Copying every callsite's counts at each peak would cost O(callsites); instead each peak
//! bumps a version number, and a share (or a record) touched for the first time after a new
//! peak first copies its live figures into its "at the peak" fields (they have not changed
//! since that peak, as nothing touched them), then applies the change. One not touched
//! since the last peak holds its value at the peak in its live fields. A callsite's figures
//! at the peak (`gb`, `gbk`) are its record's plus every thread's share's; a share that is
//! published adds its figures at the peak to the record's. O(1) per operation.
//!
//! This is exact in a single thread: the sum of `gb` over the callsites is the peak, and the
//! totals and the peak agree with dhat-rs's. With several threads allocating at once, a
//! thread compares the published live bytes plus its own unpublished share with the peak,
//! so the peak may read low by up to 64 KiB per other thread (as [`crate::Stats`]'s peak);
//! in the same way a callsite's maximum is what one thread saw of it, off by what other
//! threads hold unpublished of the callsite (up to 64 KiB or 1024 blocks each). Two threads declaring peaks at the same
//! moment may leave either's figures, and a callsite's figures at the peak may include or
//! miss the change another thread was making to it at that moment. Totals are exact once
//! threads are done.
//!
//! A `realloc` counts as dhat-rs counts it: one block and `new_size` bytes allocated, the
//! live bytes changing by the difference; a moved block's old copy leaves the live figures
//! before the new copy enters them, so the copy is not a peak. The new block is attributed to
//! the stack of the `realloc` call (dhat-rs keeps the first allocation's), so the two agree
//! on the totals, not on how they split between callsites. Lifetimes run from allocation (or
//! the last realloc) to free; blocks live at the end count until then.

use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicI64, AtomicPtr, AtomicU64, Ordering};
use std::collections::HashMap;
use std::io::{self, Write};

use crate::config::RUNTIME;
use crate::json::JsonWriter;
use crate::stack::{INTERNAL, NO_STACK};
use crate::symbolize::{Frame, Symbolizer};
use crate::sys::{map_zeroed, SpinLock};
use crate::thread::ThreadState;

#[allow(unused_imports)]
use crate::SecAlloc;

const RECORDS_PER_CHUNK: usize = 1 << 16;
const RECORD_CHUNKS: usize = 256;

/// One callsite's shared counters: what threads published of their shares (see the module
/// docs), and the callsite's maximum. Live figures are signed: a block freed on another
/// thread than the one that allocated it leaves one share below zero until both are in.
#[repr(C, align(64))]
struct Rec {
    // Read on every allocation from the callsite (one cache line).
    live_bytes: AtomicI64,
    live_blocks: AtomicI64,
    max_bytes: AtomicU64,
    max_blocks: AtomicU64,
    /// The peak version whose figures `peak_*` hold (see the module docs).
    peak_version: AtomicU64,
    peak_bytes: AtomicI64,
    peak_blocks: AtomicI64,
    // Written when a thread publishes its share.
    total_bytes: AtomicU64,
    total_blocks: AtomicU64,
    lifetime_ticks: AtomicU64,
    /// Blocks allocated with and without their allocation time (see [`SiteCache::times`]).
    timed_blocks: AtomicU64,
    untimed_blocks: AtomicU64,
    reallocs: AtomicU64,
}

static CHUNKS: [AtomicPtr<Rec>; RECORD_CHUNKS] =
    [const { AtomicPtr::new(ptr::null_mut()) }; RECORD_CHUNKS];
/// Taken only to map a new chunk of records (at most 256 times in a process).
static MAP_CHUNK: SpinLock<()> = SpinLock::new(());

/// Live bytes and blocks published by threads (each keeps up to [`FLUSH_BYTES`] /
/// [`FLUSH_BLOCKS`] of its own unpublished, in `ThreadState::prof_live_*`).
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);
static MAX_BYTES: AtomicU64 = AtomicU64::new(0);
static MAX_BLOCKS: AtomicU64 = AtomicU64::new(0);
/// Bumped at every declared peak.
static PEAK_VERSION: AtomicU64 = AtomicU64::new(0);
/// `now_ticks` at the last declared peak.
static PEAK_AT: AtomicU64 = AtomicU64::new(0);
/// `now_ticks` and `now_ns` when the allocator started.
static START_TICKS: AtomicU64 = AtomicU64::new(0);
static START_NS: AtomicU64 = AtomicU64::new(0);
/// Set once the profile was written (by a `Profiler` or at exit): it is written once.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Unpublished live bytes a thread may hold before it publishes them.
const FLUSH_BYTES: i64 = 64 << 10;
/// Unpublished live blocks a thread may hold before it publishes them.
const FLUSH_BLOCKS: i64 = 1024;
/// Shares in one page of a thread's share table (64 KiB, mapped when a stack id in its
/// range is first used, resident only where touched). Snapshots and a thread's exit read
/// every mapped page whole, so pages are kept small; the directory of pages (128 KiB of
/// address space in each thread slot) is read only as far as pages were mapped.
const SHARES_PER_PAGE: usize = 1 << 10;
/// Pages of a thread's share table: one for every stack id up to the stack table's limit.
const SHARE_PAGES: usize = (RECORDS_PER_CHUNK * RECORD_CHUNKS) / SHARES_PER_PAGE;

/// A thread's unpublished share of one callsite's figures (see the module docs), one cache
/// line. Only the owning thread writes it (plain loads and stores, no read-modify-write);
/// snapshots read it. Zeroed memory is an empty share (and an all-zero share adds nothing
/// to any sum, so snapshots skip it). Its stack id is its place in the thread's table.
#[repr(C, align(64))]
struct SiteShare {
    /// The peak version whose figures `peak_*` hold.
    version: AtomicU64,
    /// This thread's net change of the callsite's live bytes and blocks. The share is
    /// published when either reaches [`FLUSH_BYTES`] or [`FLUSH_BLOCKS`] (either way), so
    /// block counts stay far inside 32 bits.
    live_bytes: AtomicI64,
    /// `live_*` as they were at peak `version`.
    peak_bytes: AtomicI64,
    live_blocks: AtomicI32,
    peak_blocks: AtomicI32,
    total_bytes: AtomicU64,
    total_blocks: AtomicU64,
    lifetime: AtomicU64,
    /// Of `total_blocks`, those allocated with their time (the rest have none).
    timed_blocks: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<SiteShare>() == 64);

/// What a thread holds of one callsite: see [`SiteCache::for_each`].
#[derive(Clone, Copy, Default)]
struct Share {
    total_bytes: u64,
    total_blocks: u64,
    lifetime: u64,
    timed_blocks: u64,
    untimed_blocks: u64,
    live_bytes: i64,
    live_blocks: i64,
    /// The live figures at the latest peak.
    peak_bytes: i64,
    peak_blocks: i64,
}

impl Share {
    fn add(&mut self, o: &Share) {
        self.total_bytes += o.total_bytes;
        self.total_blocks += o.total_blocks;
        self.lifetime += o.lifetime;
        self.timed_blocks += o.timed_blocks;
        self.untimed_blocks += o.untimed_blocks;
        self.live_bytes += o.live_bytes;
        self.live_blocks += o.live_blocks;
        self.peak_bytes += o.peak_bytes;
        self.peak_blocks += o.peak_blocks;
    }
}

/// A thread's shares of the callsites it allocates from or frees to: one per stack id,
/// in pages mapped on first use (so a program with thousands of callsites in rotation,
/// such as a recursive-descent parser, keeps every share in place instead of publishing
/// one at almost every operation, as a small cache of them did). A share is published
/// into the shared record when its live figures reach [`FLUSH_BYTES`] or [`FLUSH_BLOCKS`]
/// and when the thread exits; snapshots add those still held.
#[repr(C)]
pub(crate) struct SiteCache {
    /// Page `i` holds the shares of stack ids `i * SHARES_PER_PAGE ..`; null until used.
    /// Written by the owner only (release), read by snapshots (acquire).
    pages: [AtomicPtr<SiteShare>; SHARE_PAGES],
    /// One past the highest page index mapped (bounds the snapshots' scan).
    pages_used: AtomicU64,
    /// State of the generator picking the blocks whose time is taken (0: not yet seeded).
    rng: AtomicU64,
    /// Blocks past their callsite's first [`TIMED_FIRST`] still to go until the next one
    /// timed, counting it (0 or 1: the next one is).
    untimed_left: AtomicU64,
}

/// Blocks of a callsite's share timed before sampling starts (see [`SiteCache::times`]).
const TIMED_FIRST: u64 = 64;
/// After the first [`TIMED_FIRST`], one block in this many is timed, picked at random.
const TIMED_ONE_IN: u64 = 8;

#[inline(always)]
fn add(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

/// Adds to a share's block count; returns the new count, widened.
#[inline(always)]
fn add_blocks(c: &AtomicI32, v: i32) -> i64 {
    let n = c.load(Ordering::Relaxed).wrapping_add(v);
    c.store(n, Ordering::Relaxed);
    i64::from(n)
}

#[inline(always)]
fn add_signed(c: &AtomicI64, v: i64) -> i64 {
    let n = c.load(Ordering::Relaxed).wrapping_add(v);
    c.store(n, Ordering::Relaxed);
    n
}

impl SiteShare {
    /// Whether every figure is zero (never used, or published and not used since).
    fn is_empty(&self) -> bool {
        let z = |c: &AtomicU64| c.load(Ordering::Relaxed) == 0;
        let zs = |c: &AtomicI64| c.load(Ordering::Relaxed) == 0;
        let zb = |c: &AtomicI32| c.load(Ordering::Relaxed) == 0;
        z(&self.total_blocks)
            && zs(&self.live_bytes)
            && zs(&self.peak_bytes)
            && zb(&self.live_blocks)
            && zb(&self.peak_blocks)
            && z(&self.lifetime)
            && z(&self.total_bytes)
    }

    /// First touch since peak `v`: the live share is its share at that peak (nothing
    /// changed it since), kept before this operation changes it.
    #[inline(always)]
    fn touch(&self, v: u64) {
        if self.version.load(Ordering::Relaxed) != v {
            self.peak_bytes
                .store(self.live_bytes.load(Ordering::Relaxed), Ordering::Relaxed);
            self.peak_blocks
                .store(self.live_blocks.load(Ordering::Relaxed), Ordering::Relaxed);
            self.version.store(v, Ordering::Relaxed);
        }
    }

    /// Publishes the live share into the record (the share at the peak with it, so both
    /// sums stay what they were).
    #[cold]
    #[inline(never)]
    fn publish_live(&self, r: &Rec) {
        let v = PEAK_VERSION.load(Ordering::Relaxed);
        touch(r, v);
        self.touch(v);
        for (from, to) in [
            (&self.peak_bytes, &r.peak_bytes),
            (&self.live_bytes, &r.live_bytes),
        ] {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
            from.store(0, Ordering::Relaxed);
        }
        for (from, to) in [
            (&self.peak_blocks, &r.peak_blocks),
            (&self.live_blocks, &r.live_blocks),
        ] {
            to.fetch_add(i64::from(from.load(Ordering::Relaxed)), Ordering::Relaxed);
            from.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes the share of stack `stack` into its record and empties it.
    #[cold]
    #[inline(never)]
    fn publish(&self, stack: u32) {
        if let Some(r) = record(stack) {
            self.publish_live(r);
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let (total, timed) = (load(&self.total_blocks), load(&self.timed_blocks));
            r.total_bytes
                .fetch_add(load(&self.total_bytes), Ordering::Relaxed);
            r.total_blocks.fetch_add(total, Ordering::Relaxed);
            r.lifetime_ticks
                .fetch_add(load(&self.lifetime), Ordering::Relaxed);
            r.timed_blocks.fetch_add(timed, Ordering::Relaxed);
            r.untimed_blocks
                .fetch_add(total.saturating_sub(timed), Ordering::Relaxed);
        }
        for c in [
            &self.version,
            &self.total_bytes,
            &self.total_blocks,
            &self.lifetime,
            &self.timed_blocks,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        for c in [&self.live_bytes, &self.peak_bytes] {
            c.store(0, Ordering::Relaxed);
        }
        for c in [&self.live_blocks, &self.peak_blocks] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl SiteCache {
    /// Whether a block about to be allocated from `stack` gets its allocation time, for its
    /// lifetime: the first [`TIMED_FIRST`] of the thread's share of the callsite do, then one
    /// in [`TIMED_ONE_IN`] at random (the clock read is most of what profile mode costs).
    /// The thread counts down a random gap between timed blocks, drawn uniformly from 1 to
    /// `2 * TIMED_ONE_IN - 1` (mean `TIMED_ONE_IN`) each time one is timed: a block not
    /// timed costs a decrement, not a random number, and random gaps keep callsites whose
    /// allocations alternate from being sampled in step.
    #[inline(always)]
    fn times(&self, stack: u32) -> bool {
        match self.entry(stack) {
            Some(e) if e.total_blocks.load(Ordering::Relaxed) >= TIMED_FIRST => {}
            _ => return true,
        }
        let left = self.untimed_left.load(Ordering::Relaxed);
        if left > 1 {
            self.untimed_left.store(left - 1, Ordering::Relaxed);
            return false;
        }
        self.untimed_left.store(
            1 + self.next_random() % (2 * TIMED_ONE_IN - 1),
            Ordering::Relaxed,
        );
        true
    }

    /// The next number of the thread's generator (xorshift64, seeded from the cache's
    /// address).
    #[inline]
    fn next_random(&self) -> u64 {
        let mut x = self.rng.load(Ordering::Relaxed);
        if x == 0 {
            x = (self as *const SiteCache as u64) | 1;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    /// The share of `stack`, mapping its page on first use (owner only). `None` for an id
    /// beyond the table or when the page cannot be mapped: the caller then counts into the
    /// shared record directly.
    #[inline(always)]
    fn entry(&self, stack: u32) -> Option<&SiteShare> {
        let i = stack as usize;
        let page = self.pages.get(i / SHARES_PER_PAGE)?.load(Ordering::Relaxed);
        let page = if page.is_null() {
            self.map_page(i / SHARES_PER_PAGE)?
        } else {
            page
        };
        // SAFETY: a page holds SHARES_PER_PAGE shares, zeroed (a valid empty share) and
        // never unmapped while the thread slot exists (slots are never unmapped).
        Some(unsafe { &*page.add(i % SHARES_PER_PAGE) })
    }

    /// Maps page `pi` of the table (owner only: no other thread writes `pages`).
    #[cold]
    #[inline(never)]
    fn map_page(&self, pi: usize) -> Option<*mut SiteShare> {
        let bytes = SHARES_PER_PAGE * core::mem::size_of::<SiteShare>();
        let page = map_zeroed(bytes).cast::<SiteShare>();
        if page.is_null() {
            return None;
        }
        PROFILE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
        self.pages[pi].store(page, Ordering::Release);
        if self.pages_used.load(Ordering::Relaxed) <= pi as u64 {
            self.pages_used.store(pi as u64 + 1, Ordering::Release);
        }
        Some(page)
    }

    /// Calls `f` with `(stack, share)` for every share that is not all zero (any thread;
    /// the owner may be changing them).
    fn for_each_share(&self, mut f: impl FnMut(u32, &SiteShare)) {
        let used = (self.pages_used.load(Ordering::Acquire) as usize).min(SHARE_PAGES);
        for (pi, slot) in self.pages[..used].iter().enumerate() {
            let page = slot.load(Ordering::Acquire);
            if page.is_null() {
                continue;
            }
            // SAFETY: as in `entry`: a mapped page of SHARES_PER_PAGE shares.
            let shares = unsafe { core::slice::from_raw_parts(page, SHARES_PER_PAGE) };
            for (i, e) in shares.iter().enumerate() {
                if !e.is_empty() {
                    f((pi * SHARES_PER_PAGE + i) as u32, e);
                }
            }
        }
    }

    /// What the table holds, per share in use: `(stack, share)`, the share at peak
    /// `version` taken as the share's figures at the latest peak.
    fn for_each(&self, version: u64, mut f: impl FnMut(u32, Share)) {
        self.for_each_share(|stack, e| {
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            let load_signed = |c: &AtomicI64| c.load(Ordering::Relaxed);
            let load_blocks = |c: &AtomicI32| i64::from(c.load(Ordering::Relaxed));
            let live_bytes = load_signed(&e.live_bytes);
            let live_blocks = load_blocks(&e.live_blocks);
            let (peak_bytes, peak_blocks) = if load(&e.version) == version {
                (load_signed(&e.peak_bytes), load_blocks(&e.peak_blocks))
            } else {
                (live_bytes, live_blocks)
            };
            let (total_blocks, timed_blocks) = (load(&e.total_blocks), load(&e.timed_blocks));
            f(
                stack,
                Share {
                    total_bytes: load(&e.total_bytes),
                    total_blocks,
                    lifetime: load(&e.lifetime),
                    timed_blocks,
                    untimed_blocks: total_blocks.saturating_sub(timed_blocks),
                    live_bytes,
                    live_blocks,
                    peak_bytes,
                    peak_blocks,
                },
            );
        });
    }
}

/// A cheap clock for block lifetimes: the time-stamp counter on x86-64, the coarse
/// monotonic clock (nanoseconds) elsewhere. Converted to microseconds only in reports.
#[inline(always)]
pub(crate) fn now_ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` has no preconditions on x86-64 (it reads a counter register).
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out-pointer for clock_gettime.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }
}

/// Called at initialisation (profile mode or not): the clock's origin.
pub(crate) fn start_clock() {
    START_NS.store(crate::wipe::now_ns(), Ordering::Relaxed);
    START_TICKS.store(now_ticks(), Ordering::Relaxed);
}

/// Ticks per microsecond, measured against the monotonic clock since start (over at least
/// 5 ms: a short run waits for the rest).
fn ticks_per_us() -> f64 {
    if !cfg!(target_arch = "x86_64") {
        return 1000.0;
    }
    let n0 = START_NS.load(Ordering::Relaxed);
    let t0 = START_TICKS.load(Ordering::Relaxed);
    loop {
        let n = crate::wipe::now_ns();
        let t = now_ticks();
        let ns = n.saturating_sub(n0);
        if ns >= 5_000_000 {
            return (t.saturating_sub(t0) as f64 * 1000.0 / ns as f64).max(1e-3);
        }
        std::thread::yield_now();
    }
}

/// The record of stack `id`, mapping its chunk on first use. `None` when out of memory.
#[inline(always)]
fn record(id: u32) -> Option<&'static Rec> {
    let i = id as usize;
    let chunk = CHUNKS.get(i / RECORDS_PER_CHUNK)?.load(Ordering::Acquire);
    let chunk = if chunk.is_null() {
        map_chunk(i / RECORDS_PER_CHUNK)?
    } else {
        chunk
    };
    // SAFETY: chunks hold RECORDS_PER_CHUNK records, are zeroed (a valid Rec is all zeroes)
    // and never unmapped.
    Some(unsafe { &*chunk.add(i % RECORDS_PER_CHUNK) })
}

/// The record of stack `id` if its chunk exists (never maps).
fn existing_record(id: u32) -> Option<&'static Rec> {
    let i = id as usize;
    let chunk = CHUNKS.get(i / RECORDS_PER_CHUNK)?.load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: as in `record`.
    Some(unsafe { &*chunk.add(i % RECORDS_PER_CHUNK) })
}

#[cold]
#[inline(never)]
fn map_chunk(ci: usize) -> Option<*mut Rec> {
    let _g = MAP_CHUNK.lock();
    let c = CHUNKS[ci].load(Ordering::Acquire);
    if !c.is_null() {
        return Some(c);
    }
    let bytes = RECORDS_PER_CHUNK * core::mem::size_of::<Rec>();
    let c = map_zeroed(bytes).cast::<Rec>();
    if c.is_null() {
        return None;
    }
    PROFILE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    CHUNKS[ci].store(c, Ordering::Release);
    Some(c)
}

/// Fork support: take the chunk-mapping lock before `fork`, release it in parent and child.
pub(crate) fn lock_for_fork() {
    MAP_CHUNK.raw_lock();
}

/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded: the lock was taken by lock_for_fork.
    unsafe { MAP_CHUNK.raw_unlock() };
}

/// Address space mapped for callsite records.
pub(crate) static PROFILE_BYTES: AtomicU64 = AtomicU64::new(0);

/// A record's first touch since peak `v`: its published figures are its published figures
/// at that peak (nothing changed them since), kept before this operation changes them.
#[inline(always)]
fn touch(r: &Rec, v: u64) {
    keep_at_peak(
        &r.peak_version,
        v,
        [&r.live_bytes, &r.live_blocks],
        [&r.peak_bytes, &r.peak_blocks],
    );
}

/// The peak-version step shared by records and per-thread shares: when `version` is not
/// peak `v` yet, the `live` figures are still those at that peak; copy them into `at_peak`
/// and note the version.
#[inline(always)]
fn keep_at_peak(version: &AtomicU64, v: u64, live: [&AtomicI64; 2], at_peak: [&AtomicI64; 2]) {
    if version.load(Ordering::Relaxed) != v {
        for (l, p) in live.iter().zip(at_peak) {
            p.store(l.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        version.store(v, Ordering::Relaxed);
    }
}

/// Raises the callsite's maximum to `live` bytes (with `blocks` blocks) if it reaches it.
#[inline(always)]
fn raise_max(r: &Rec, live: i64, blocks: i64) {
    // `>=` as dhat-rs: of equal maxima the latest counts (written only if it differs).
    let max = r.max_bytes.load(Ordering::Relaxed);
    if live >= 0 && live as u64 >= max {
        let blocks = blocks.max(0) as u64;
        if live as u64 > max || r.max_blocks.load(Ordering::Relaxed) != blocks {
            r.max_bytes.store(live as u64, Ordering::Relaxed);
            r.max_blocks.store(blocks, Ordering::Relaxed);
        }
    }
}

/// Changes the live figures by `bytes`/`blocks` on this thread (or, without a thread state,
/// the published ones) and declares a peak when live bytes reach the maximum so far (at
/// `now`, or 0: the time is read if a peak is declared).
#[inline(always)]
fn note_live(ts: Option<&mut ThreadState>, bytes: i64, blocks: i64, now: u64) {
    let (live, nblocks) = match ts {
        Some(ts) => {
            let pb = ts.prof_live_bytes.load(Ordering::Relaxed) + bytes;
            let pk = ts.prof_live_blocks.load(Ordering::Relaxed) + blocks;
            let fb = LIVE_BYTES.load(Ordering::Relaxed);
            let fk = LIVE_BLOCKS.load(Ordering::Relaxed);
            if pb.abs() >= FLUSH_BYTES || pk.abs() >= FLUSH_BLOCKS {
                LIVE_BYTES.fetch_add(pb, Ordering::Relaxed);
                LIVE_BLOCKS.fetch_add(pk, Ordering::Relaxed);
                ts.prof_live_bytes.store(0, Ordering::Relaxed);
                ts.prof_live_blocks.store(0, Ordering::Relaxed);
            } else {
                ts.prof_live_bytes.store(pb, Ordering::Relaxed);
                ts.prof_live_blocks.store(pk, Ordering::Relaxed);
            }
            (fb + pb, fk + pk)
        }
        None => (
            LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes,
            LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed) + blocks,
        ),
    };
    if bytes > 0 && live >= 0 && live as u64 >= MAX_BYTES.load(Ordering::Relaxed) {
        declare_peak(live as u64, nblocks.max(0) as u64, now);
    }
}

/// A new peak (see the module docs): plain stores, exact in one thread; threads declaring
/// peaks at the same moment may leave the figures of either.
#[inline(always)]
fn declare_peak(live: u64, blocks: u64, now: u64) {
    // An allocation without its time (see `SiteCache::times`) reads the clock now.
    let now = if now == 0 { now_ticks() } else { now };
    MAX_BYTES.store(live, Ordering::Relaxed);
    MAX_BLOCKS.store(blocks, Ordering::Relaxed);
    PEAK_AT.store(now, Ordering::Relaxed);
    PEAK_VERSION.store(
        PEAK_VERSION.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Counts `size` bytes in one block into stack `stack`'s live figures (this thread's share,
/// or without a thread state the record's), and when `allocated` into its totals as a new
/// block (`timed`: with its allocation time). On a thread that `realloc` is moving a block
/// for, the block is the new copy: a reallocation.
#[inline(always)]
fn enter_site(ts: Option<&ThreadState>, stack: u32, size: usize, allocated: bool, timed: bool) {
    let bytes = size as i64;
    let v = PEAK_VERSION.load(Ordering::Relaxed);
    match ts.and_then(|t| t.prof_cache.entry(stack).map(|e| (t, e))) {
        Some((ts, e)) => {
            e.touch(v);
            let lb = add_signed(&e.live_bytes, bytes);
            let lk = add_blocks(&e.live_blocks, 1);
            if allocated {
                add(&e.total_bytes, size as u64);
                add(&e.total_blocks, 1);
                if timed {
                    add(&e.timed_blocks, 1);
                }
            }
            if let Some(r) = record(stack) {
                // The callsite's live figures as this thread sees them: published plus its
                // own share.
                let live = r.live_bytes.load(Ordering::Relaxed).wrapping_add(lb);
                let blocks = r.live_blocks.load(Ordering::Relaxed).wrapping_add(lk);
                raise_max(r, live, blocks);
                if lb >= FLUSH_BYTES || lk >= FLUSH_BLOCKS {
                    e.publish_live(r);
                }
                if ts.moving_block != 0 {
                    r.reallocs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        None => {
            if let Some(r) = record(stack) {
                touch(r, v);
                let live = r.live_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
                let blocks = r.live_blocks.fetch_add(1, Ordering::Relaxed) + 1;
                if allocated {
                    r.total_bytes.fetch_add(size as u64, Ordering::Relaxed);
                    r.total_blocks.fetch_add(1, Ordering::Relaxed);
                    let n = if timed {
                        &r.timed_blocks
                    } else {
                        &r.untimed_blocks
                    };
                    n.fetch_add(1, Ordering::Relaxed);
                }
                raise_max(r, live, blocks);
            }
        }
    }
}

/// At a thread's exit (its slot released): publishes everything it holds, its share of the
/// live figures and its callsite shares, so that the threads that go on see them.
pub(crate) fn publish_thread(ts: &mut ThreadState) {
    for (from, to) in [
        (&ts.prof_live_bytes, &LIVE_BYTES),
        (&ts.prof_live_blocks, &LIVE_BLOCKS),
    ] {
        to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        from.store(0, Ordering::Relaxed);
    }
    ts.prof_cache.for_each_share(|stack, e| e.publish(stack));
}

/// The allocation time of a block about to be allocated from `stack` (the block's `born`,
/// from [`now_ticks`]), or 0 for a block whose lifetime is left out (see
/// [`SiteCache::times`]).
#[inline(always)]
pub(crate) fn birth_time(ts: Option<&ThreadState>, stack: u32) -> u64 {
    match ts {
        Some(ts) if !ts.prof_cache.times(stack) => 0,
        _ => now_ticks(),
    }
}

/// Profile accounting of a new block of `size` bytes from stack `stack`, born at `born`
/// (from [`birth_time`]).
#[inline(always)]
pub(crate) fn on_alloc(ts: Option<&mut ThreadState>, stack: u32, size: usize, born: u64) {
    enter_site(ts.as_deref(), stack, size, true, born != 0);
    note_live(ts, size as i64, 1, born);
}

/// The lifetime of a block born at `born`, ending now (0 for a block without its time).
#[inline(always)]
fn lifetime(born: u64) -> u64 {
    if born == 0 {
        0
    } else {
        now_ticks().saturating_sub(born)
    }
}

/// Profile accounting of the free of a block of `size` bytes from `stack` that lived `life`
/// ticks.
#[inline(always)]
fn on_free_at(ts: Option<&mut ThreadState>, stack: u32, size: usize, life: u64) {
    let bytes = size as i64;
    let v = PEAK_VERSION.load(Ordering::Relaxed);
    match ts.as_deref().and_then(|t| t.prof_cache.entry(stack)) {
        Some(e) => {
            e.touch(v);
            let lb = add_signed(&e.live_bytes, -bytes);
            let lk = add_blocks(&e.live_blocks, -1);
            add(&e.lifetime, life);
            if lb <= -FLUSH_BYTES || lk <= -FLUSH_BLOCKS {
                if let Some(r) = record(stack) {
                    e.publish_live(r);
                }
            }
        }
        None => {
            if let Some(r) = record(stack) {
                touch(r, v);
                r.live_bytes.fetch_sub(bytes, Ordering::Relaxed);
                r.live_blocks.fetch_sub(1, Ordering::Relaxed);
                r.lifetime_ticks.fetch_add(life, Ordering::Relaxed);
            }
        }
    }
    note_live(ts, -bytes, -1, 0);
}

/// Profile accounting of a free (from `account_free`): skipped for the old copy of a block
/// that `realloc` is moving, already counted out by [`begin_move`].
#[inline(always)]
pub(crate) fn on_free(
    ts: Option<&mut ThreadState>,
    user: usize,
    stack: u32,
    size: usize,
    born: u64,
) {
    let mut ts = ts;
    if let Some(t) = ts.as_deref_mut() {
        if t.moving_block == user {
            t.moving_block = 0;
            return;
        }
    }
    on_free_at(ts, stack, size, lifetime(born));
}

/// Profile accounting of an in-place `realloc` from `old` to `new` bytes (a free and an
/// allocation, as dhat-rs counts it). Returns the block's new allocation time.
pub(crate) fn on_realloc_in_place(
    ts: Option<&mut ThreadState>,
    stack: u32,
    old: usize,
    new: usize,
    born: u64,
) -> u64 {
    let mut ts = ts;
    let now = now_ticks();
    let life = if born == 0 {
        0
    } else {
        now.saturating_sub(born)
    };
    on_free_at(ts.as_deref_mut(), stack, old, life);
    on_alloc(ts, stack, new, now);
    if let Some(r) = record(stack) {
        r.reallocs.fetch_add(1, Ordering::Relaxed);
    }
    now
}

/// Before `realloc` moves the block at `user`: counts the old copy out of the live figures
/// now, so that the new copy entering them is measured as dhat-rs measures a realloc (by the
/// difference). The free of the old copy that follows is then not counted again. Returns
/// whether it did (profile mode, a tracked thread, a live tracked block). `known`: the
/// block's metadata if the caller found it (the own heap's realloc), else it is looked up.
pub(crate) fn begin_move(user: *mut u8, own_heap: bool, known: Option<crate::block::Meta>) -> bool {
    if !RUNTIME.profile()
        || crate::thread::guarded()
        || (!own_heap && !crate::live::is_live(user as usize))
    {
        return false;
    }
    let ts = crate::thread::current_if_any();
    // SAFETY: null or this thread's own state.
    let Some(ts) = (unsafe { ts.as_mut() }) else {
        return false;
    };
    // SAFETY: the block is live (or, on the own heap, checked to be) and the caller
    // (realloc) owns it.
    let Some(meta) = known.or_else(|| unsafe { live_meta(user, own_heap) }) else {
        return false;
    };
    if meta.stack == INTERNAL {
        return false;
    }
    on_free_at(Some(&mut *ts), meta.stack, meta.size, lifetime(meta.born));
    ts.moving_block = user as usize;
    true
}

/// After [`begin_move`]: the move failed (no memory), the old block stays live: counts it
/// back in (its lifetime restarts).
pub(crate) fn cancel_move(user: *mut u8, own_heap: bool) {
    let ts = crate::thread::current_if_any();
    // SAFETY: null or this thread's own state.
    let mut ts = unsafe { ts.as_mut() };
    if let Some(t) = ts.as_deref_mut() {
        t.moving_block = 0;
    }
    // SAFETY: the block is still live and owned by the caller.
    if let Some(meta) = unsafe { live_meta(user, own_heap) } {
        enter_site(ts.as_deref(), meta.stack, meta.size, false, true);
        note_live(ts, meta.size as i64, 1, 0);
    }
}

/// After `realloc` moved a block: ends the move, should the old block's free not have been
/// counted (the new block's allocation counted the reallocation).
pub(crate) fn on_moved() {
    let ts = crate::thread::current_if_any();
    // SAFETY: null or this thread's own state.
    if let Some(ts) = unsafe { ts.as_mut() } {
        ts.moving_block = 0;
    }
}

/// A `realloc` to the same size (which returns the block as it is): dhat-rs counts it as a
/// reallocation, one block and `size` bytes allocated.
pub(crate) fn on_same_size_realloc(user: *mut u8, own_heap: bool) {
    if crate::thread::guarded() {
        return;
    }
    // SAFETY: the block is live (checked by the caller, or on the own heap by the lookup)
    // and owned by the caller.
    if let Some(meta) = unsafe { live_meta(user, own_heap) } {
        if meta.stack != INTERNAL {
            if let Some(r) = record(meta.stack) {
                r.total_bytes.fetch_add(meta.size as u64, Ordering::Relaxed);
                r.total_blocks.fetch_add(1, Ordering::Relaxed);
                r.reallocs.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The metadata of the live block at `user`: from its header (the header layout) or its
/// slot record (the own heap, which also checks that it is live).
///
/// # Safety
/// On the header layout, `user` is a live block (its header is readable).
unsafe fn live_meta(user: *mut u8, own_heap: bool) -> Option<crate::block::Meta> {
    if own_heap {
        crate::own::live_meta(user)
    } else {
        // SAFETY: forwarded.
        unsafe { crate::block::read_header(user) }
    }
}

/// Sums of the threads' shares, per stack (figures at the peak as of peak `version`).
fn thread_shares(version: u64) -> HashMap<u32, Share> {
    let mut m: HashMap<u32, Share> = HashMap::new();
    crate::thread::for_each_slot(|t| {
        t.prof_cache
            .for_each(version, |id, s| m.entry(id).or_default().add(&s))
    });
    m
}

/// A record's published figures, as a share (figures at the peak as of peak `version`).
fn published(r: &Rec, version: u64) -> Share {
    let live_bytes = r.live_bytes.load(Ordering::Relaxed);
    let live_blocks = r.live_blocks.load(Ordering::Relaxed);
    let (peak_bytes, peak_blocks) = if r.peak_version.load(Ordering::Relaxed) == version {
        (
            r.peak_bytes.load(Ordering::Relaxed),
            r.peak_blocks.load(Ordering::Relaxed),
        )
    } else {
        (live_bytes, live_blocks)
    };
    Share {
        total_bytes: r.total_bytes.load(Ordering::Relaxed),
        total_blocks: r.total_blocks.load(Ordering::Relaxed),
        lifetime: r.lifetime_ticks.load(Ordering::Relaxed),
        timed_blocks: r.timed_blocks.load(Ordering::Relaxed),
        untimed_blocks: r.untimed_blocks.load(Ordering::Relaxed),
        live_bytes,
        live_blocks,
        peak_bytes,
        peak_blocks,
    }
}

/// The total lifetime of a callsite's blocks, from the `ticks` its `timed` blocks lived:
/// exact when all were timed, otherwise scaled up to the `untimed` ones too (they were
/// picked at random, so the timed blocks' average lifetime estimates theirs).
fn scaled_lifetime(ticks: u64, timed: u64, untimed: u64) -> u64 {
    if untimed == 0 || timed == 0 {
        return ticks;
    }
    (ticks as u128 * u128::from(timed + untimed) / u128::from(timed)) as u64
}

/// Stack `id`'s figures now: its record's and every thread's share (zero without a record).
fn site_now(id: u32, r: &Rec, shares: &HashMap<u32, Share>, version: u64) -> Share {
    let mut s = published(r, version);
    if let Some(t) = shares.get(&id) {
        s.add(t);
    }
    s
}

/// Live bytes and blocks now: published plus every thread's unpublished share.
fn live_now() -> (u64, u64) {
    let (mut b, mut k) = (
        LIVE_BYTES.load(Ordering::Relaxed),
        LIVE_BLOCKS.load(Ordering::Relaxed),
    );
    crate::thread::for_each_slot(|t| {
        b += t.prof_live_bytes.load(Ordering::Relaxed);
        k += t.prof_live_blocks.load(Ordering::Relaxed);
    });
    (b.max(0) as u64, k.max(0) as u64)
}

// ---- results ----

/// Whole-heap figures in the spirit of `dhat::HeapStats`.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().profile(true);
/// # fn main() {
/// # // Write the profile where the test leaves no file behind (not `dhat-heap.json` at exit).
/// # let file = std::env::temp_dir().join(format!("doc-heapstats-{}.json", std::process::id()));
/// # let profiler = secalloc::profile::Profiler::new().file_name(&file);
/// use secalloc::profile::HeapStats;
/// let before = HeapStats::get();
/// let v = vec![0u8; 1 << 20];
/// let now = HeapStats::get();
/// assert_eq!(now.total_blocks - before.total_blocks, 1);
/// assert_eq!(now.curr_bytes - before.curr_bytes, 1 << 20);
/// assert!(now.max_bytes >= now.curr_bytes);
/// drop(v);
/// # profiler.stop().unwrap().unwrap();
/// # std::fs::remove_file(&file).unwrap();
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Blocks allocated since start (a `realloc` counts one).
    pub total_blocks: u64,
    /// Bytes allocated since start (a `realloc` counts its new size).
    pub total_bytes: u64,
    /// Blocks live now.
    pub curr_blocks: u64,
    /// Bytes live now.
    pub curr_bytes: u64,
    /// Blocks live at the global peak (t-gmax).
    pub max_blocks: u64,
    /// Bytes live at the global peak (the most ever live at once).
    pub max_bytes: u64,
}

impl HeapStats {
    /// The figures now, exact; `None` outside profile mode.
    pub fn try_get() -> Option<HeapStats> {
        if !enabled() {
            return None;
        }
        let (mut total_blocks, mut total_bytes) = (0, 0);
        for_each_record(|_, r| {
            total_blocks += r.total_blocks.load(Ordering::Relaxed);
            total_bytes += r.total_bytes.load(Ordering::Relaxed);
        });
        crate::thread::for_each_slot(|t| {
            t.prof_cache.for_each(0, |_, s| {
                total_bytes += s.total_bytes;
                total_blocks += s.total_blocks;
            })
        });
        let (curr_bytes, curr_blocks) = live_now();
        Some(HeapStats {
            total_blocks,
            total_bytes,
            curr_blocks,
            curr_bytes,
            max_blocks: MAX_BLOCKS.load(Ordering::Relaxed),
            max_bytes: MAX_BYTES.load(Ordering::Relaxed),
        })
    }

    /// The figures now.
    ///
    /// # Panics
    /// Outside profile mode (as `dhat::HeapStats::get` panics with no heap profiler running):
    /// start the program with `SECALLOC_PROFILE=1` or install `SecAlloc::new().profile(true)`.
    /// [`crate::stats`] has the always-on figures.
    pub fn get() -> HeapStats {
        Self::try_get().expect(
            "secalloc: HeapStats::get() needs profile mode (SECALLOC_PROFILE=1, or SecAlloc::new().profile(true))",
        )
    }
}

/// Whether profile mode is on (`SECALLOC_PROFILE=1` or [`SecAlloc::profile`], with a
/// `SecAlloc` installed).
pub fn enabled() -> bool {
    RUNTIME.state.load(Ordering::Acquire) == crate::config::READY && RUNTIME.profile()
}

fn for_each_record(mut f: impl FnMut(u32, &Rec)) {
    let n = crate::stack::unique_stacks();
    for id in 0..=n {
        if let Some(r) = existing_record(id) {
            f(id, r);
        }
    }
}

/// One program point of a profile: the blocks allocated from one callsite stack (stacks
/// that symbolise alike merged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSite {
    /// Bytes allocated here (`tb`).
    pub total_bytes: u64,
    /// Blocks allocated here (`tbk`).
    pub total_blocks: u64,
    /// Reallocations that produced blocks here.
    pub reallocs: u64,
    /// The most bytes live at once from here (`mb`; merged stacks: the sum of their maxima).
    pub max_bytes: u64,
    /// Blocks live when `max_bytes` was reached (`mbk`).
    pub max_blocks: u64,
    /// Bytes live at the global peak (`gb`).
    pub peak_bytes: u64,
    /// Blocks live at the global peak (`gbk`).
    pub peak_blocks: u64,
    /// Bytes live at the end of the profile (`eb`).
    pub end_bytes: u64,
    /// Blocks live at the end of the profile (`ebk`).
    pub end_blocks: u64,
    /// Sum of the lifetimes of the blocks allocated here, in microseconds (`tl`); blocks
    /// still live count until the profile was taken.
    pub total_lifetime_us: u64,
    /// The symbolised stack, innermost (the user's allocating call) first.
    pub frames: Vec<Frame>,
}

impl ProfileSite {
    /// Average lifetime of the blocks allocated here, in microseconds.
    pub fn average_lifetime_us(&self) -> u64 {
        self.total_lifetime_us
            .checked_div(self.total_blocks)
            .unwrap_or(0)
    }
}

/// A heap profile: whole-heap figures and the program points, by total bytes (largest
/// first). Taken by [`snapshot`] or at exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Whole-heap figures.
    pub stats: HeapStats,
    /// The program's command line.
    pub command: String,
    /// The process id.
    pub pid: u32,
    /// Microseconds from the allocator's start to the global peak (`tg`).
    pub peak_at_us: u64,
    /// Microseconds from the allocator's start to the snapshot (`te`).
    pub end_at_us: u64,
    /// Whether callsite stacks were recorded (false: the build lacks frame pointers).
    pub stacks_recorded: bool,
    /// The program points, largest total bytes first.
    pub sites: Vec<ProfileSite>,
}

/// The heap profile now, symbolised; `None` outside profile mode. Blocks live now count as
/// live at the end. Its own allocations are not tracked.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().profile(true);
/// # fn main() {
/// # let file = std::env::temp_dir().join(format!("doc-snapshot-{}.json", std::process::id()));
/// # let profiler = secalloc::profile::Profiler::new().file_name(&file);
/// let p = secalloc::profile::snapshot().expect("profile mode");
/// assert_eq!(p.sites.iter().map(|s| s.total_bytes).sum::<u64>(), p.stats.total_bytes);
/// let mut folded = Vec::new();
/// p.write_folded(secalloc::profile::Metric::TotalBytes, &mut folded).unwrap();
/// # profiler.stop().unwrap().unwrap();
/// # std::fs::remove_file(&file).unwrap();
/// # }
/// ```
pub fn snapshot() -> Option<Profile> {
    if !enabled() {
        return None;
    }
    Some(crate::thread::untracked(take))
}

/// Per stack id: (record figures, lifetime ticks of its blocks live now).
fn take() -> Profile {
    let now = now_ticks();
    let stats = HeapStats::try_get().unwrap_or_default();
    let version = PEAK_VERSION.load(Ordering::Relaxed);
    // Lifetimes of the blocks still live run until now.
    let mut live_ticks: HashMap<u32, u64> = HashMap::new();
    for b in crate::report::snapshot() {
        if b.born != 0 {
            *live_ticks.entry(b.stack).or_default() += now.saturating_sub(b.born);
        }
    }
    let per_us = ticks_per_us();
    let stacks_recorded = RUNTIME.stack_depth() > 0 && crate::stats().frame_pointers;
    let shares = thread_shares(version);
    let mut sym: Option<Symbolizer> = None;
    // Sites are merged by their symbolised frames, compared as ids of distinct frames (a
    // program with thousands of stacks has few distinct frames: keys of strings cost
    // tens of MB there).
    let mut frame_ids: HashMap<Frame, u32> = HashMap::new();
    let mut by_frames: HashMap<Vec<u32>, usize> = HashMap::new();
    let mut sites: Vec<ProfileSite> = Vec::new();
    let mut lifetimes: Vec<u64> = Vec::new();
    for_each_record(|id, r| {
        let now_figures = site_now(id, r, &shares, version);
        if now_figures.total_blocks == 0 {
            return;
        }
        let frames = if stacks_recorded && id != NO_STACK {
            sym.get_or_insert_with(Symbolizer::new)
                .stack(&crate::stack::frames(id))
        } else {
            Vec::new()
        };
        let key: Vec<u32> = frames
            .iter()
            .map(|f| match frame_ids.get(f) {
                Some(&id) => id,
                None => {
                    let id = frame_ids.len() as u32;
                    frame_ids.insert(f.clone(), id);
                    id
                }
            })
            .collect();
        let ticks = scaled_lifetime(
            now_figures.lifetime + live_ticks.get(&id).copied().unwrap_or(0),
            now_figures.timed_blocks,
            now_figures.untimed_blocks,
        );
        let i = *by_frames.entry(key).or_insert_with(|| {
            sites.push(ProfileSite {
                total_bytes: 0,
                total_blocks: 0,
                reallocs: 0,
                max_bytes: 0,
                max_blocks: 0,
                peak_bytes: 0,
                peak_blocks: 0,
                end_bytes: 0,
                end_blocks: 0,
                total_lifetime_us: 0,
                frames,
            });
            lifetimes.push(0);
            sites.len() - 1
        });
        let s = &mut sites[i];
        let count = |v: i64| v.max(0) as u64;
        s.total_bytes += now_figures.total_bytes;
        s.total_blocks += now_figures.total_blocks;
        s.reallocs += r.reallocs.load(Ordering::Relaxed);
        s.max_bytes += r.max_bytes.load(Ordering::Relaxed);
        s.max_blocks += r.max_blocks.load(Ordering::Relaxed);
        s.peak_bytes += count(now_figures.peak_bytes);
        s.peak_blocks += count(now_figures.peak_blocks);
        s.end_bytes += count(now_figures.live_bytes);
        s.end_blocks += count(now_figures.live_blocks);
        lifetimes[i] += ticks;
    });
    for (s, t) in sites.iter_mut().zip(&lifetimes) {
        s.total_lifetime_us = (*t as f64 / per_us) as u64;
    }
    sites.sort_by(|a, b| {
        b.total_bytes
            .cmp(&a.total_bytes)
            .then(b.total_blocks.cmp(&a.total_blocks))
            .then_with(|| {
                a.frames
                    .first()
                    .map(|f| f.ip)
                    .cmp(&b.frames.first().map(|f| f.ip))
            })
    });
    let start = START_TICKS.load(Ordering::Relaxed);
    let us = |t: u64| (t.saturating_sub(start) as f64 / per_us) as u64;
    Profile {
        stats,
        command: crate::report::command_line(),
        pid: std::process::id(),
        peak_at_us: us(PEAK_AT.load(Ordering::Relaxed)),
        end_at_us: us(now),
        stacks_recorded,
        sites,
    }
}

/// What [`Profile::write_folded`] weighs each stack by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Bytes allocated in total (`tb`).
    TotalBytes,
    /// Blocks allocated in total (`tbk`).
    TotalBlocks,
    /// Bytes live at the global peak (`gb`).
    PeakBytes,
    /// Bytes live at the end (`eb`).
    EndBytes,
}

impl Metric {
    fn of(self, s: &ProfileSite) -> u64 {
        match self {
            Metric::TotalBytes => s.total_bytes,
            Metric::TotalBlocks => s.total_blocks,
            Metric::PeakBytes => s.peak_bytes,
            Metric::EndBytes => s.end_bytes,
        }
    }
}

/// DHAT's "short-lived" threshold (`tuth`), in microseconds, as dhat-rs writes it.
const SHORT_LIVED_US: u64 = 10;

impl Profile {
    /// Writes DHAT's JSON format (`dhatFileVersion` 2, `bklt: true`), which Valgrind's
    /// `dh_view.html` opens and sorts by every metric; the layout dhat-rs writes.
    pub fn write_dhat(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut ftbl = crate::report::FrameTable::new();
        let no_stack = if self.stacks_recorded {
            "[no stack recorded]"
        } else {
            "[no callsite stacks: build with -C force-frame-pointers=yes]"
        };
        let mut j = JsonWriter::new(false);
        j.begin_object();
        j.uint("dhatFileVersion", 2);
        j.string("mode", "rust-heap");
        j.string("verb", "Allocated");
        j.boolean("bklt", true);
        j.boolean("bkacc", false);
        j.string("tu", "µs");
        j.string("Mtu", "s");
        j.uint("tuth", SHORT_LIVED_US);
        j.string("cmd", &self.command);
        j.uint("pid", u64::from(self.pid));
        j.uint("tg", self.peak_at_us);
        j.uint("te", self.end_at_us);
        j.array_field("pps");
        for s in &self.sites {
            let strings: Vec<String> = if s.frames.is_empty() {
                vec![no_stack.to_string()]
            } else {
                s.frames.iter().map(crate::report::dhat_frame).collect()
            };
            j.begin_object();
            j.uint("tb", s.total_bytes);
            j.uint("tbk", s.total_blocks);
            j.uint("tl", s.total_lifetime_us);
            j.uint("mb", s.max_bytes);
            j.uint("mbk", s.max_blocks);
            j.uint("gb", s.peak_bytes);
            j.uint("gbk", s.peak_blocks);
            j.uint("eb", s.end_bytes);
            j.uint("ebk", s.end_blocks);
            j.array_field("fs");
            for st in strings {
                j.uint_element(ftbl.intern(st) as u64);
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

    /// Writes folded stacks weighed by `metric`, outermost frame first, one line per stack
    /// (`main;parse;alloc 4096`), for `inferno-flamegraph` or `flamegraph.pl`. Stacks of
    /// weight 0 are left out.
    pub fn write_folded(&self, metric: Metric, w: &mut dyn Write) -> io::Result<()> {
        let mut merged: HashMap<String, u64> = HashMap::new();
        for s in &self.sites {
            let v = metric.of(s);
            if v == 0 {
                continue;
            }
            let mut names: Vec<String> = s
                .frames
                .iter()
                .rev()
                .map(|f| {
                    f.function
                        .as_deref()
                        .map_or_else(|| format!("{:#x}", f.ip), str::to_string)
                        .replace(';', ",")
                        .replace('\n', " ")
                })
                .collect();
            if names.is_empty() {
                names.push("[no stack recorded]".to_string());
            }
            *merged.entry(names.join(";")).or_default() += v;
        }
        let mut lines: Vec<(String, u64)> = merged.into_iter().collect();
        lines.sort();
        for (k, v) in lines {
            writeln!(w, "{k} {v}")?;
        }
        Ok(())
    }

    /// Writes the text summary: whole-heap figures, then the `top` callsites by total bytes
    /// and the `top` callsites by bytes live at the global peak.
    ///
    /// ```text
    /// secalloc: heap profile: 1200 bytes in 3 blocks allocated; at t-gmax (12 µs): 1100 bytes in 2 blocks; at t-end: 100 bytes in 1 block(s)
    ///
    /// top 2 callsite(s) by total bytes:
    ///   1. 1000 byte(s) in 1 block(s); at t-gmax 1000 byte(s); max live 1000 byte(s); at t-end 0 byte(s); avg lifetime 3 µs
    ///     #0 0x55f1c2a0b1c7 in app::load src/main.rs:31:17
    /// ```
    pub fn write_text(&self, top: usize, w: &mut dyn Write) -> io::Result<()> {
        let st = &self.stats;
        writeln!(
            w,
            "secalloc: heap profile: {} bytes in {} blocks allocated; at t-gmax ({} µs): {} bytes in {} blocks; at t-end: {} bytes in {} block(s)",
            st.total_bytes,
            st.total_blocks,
            self.peak_at_us,
            st.max_bytes,
            st.max_blocks,
            st.curr_bytes,
            st.curr_blocks
        )?;
        let mut by_peak: Vec<&ProfileSite> =
            self.sites.iter().filter(|s| s.peak_bytes > 0).collect();
        by_peak.sort_by(|a, b| {
            b.peak_bytes
                .cmp(&a.peak_bytes)
                .then(b.total_bytes.cmp(&a.total_bytes))
        });
        let by_total: Vec<&ProfileSite> = self.sites.iter().collect();
        for (title, list) in [("total bytes", by_total), ("bytes at t-gmax", by_peak)] {
            let n = list.len().min(top);
            writeln!(w)?;
            writeln!(w, "top {n} callsite(s) by {title}:")?;
            for (i, s) in list.iter().take(n).enumerate() {
                writeln!(
                    w,
                    "  {}. {} byte(s) in {} block(s); at t-gmax {} byte(s); max live {} byte(s); at t-end {} byte(s); avg lifetime {} µs",
                    i + 1,
                    s.total_bytes,
                    s.total_blocks,
                    s.peak_bytes,
                    s.max_bytes,
                    s.end_bytes,
                    s.average_lifetime_us()
                )?;
                if s.frames.is_empty() {
                    writeln!(w, "    (no stack recorded)")?;
                }
                for (k, f) in s.frames.iter().enumerate() {
                    writeln!(w, "    #{k} {:#x} in {}", f.ip, f.location())?;
                }
            }
        }
        Ok(())
    }
}

/// Writes the profile to `path` as DHAT JSON (profile mode only: `None` otherwise). Later
/// calls (and exit) write it again, with the figures of their time.
pub fn write_dhat_file(path: &std::path::Path) -> Option<io::Result<()>> {
    let p = snapshot()?;
    Some(crate::thread::untracked(|| {
        std::fs::File::create(path).and_then(|f| {
            let mut w = io::BufWriter::new(f);
            p.write_dhat(&mut w)?;
            w.flush()
        })
    }))
}

/// A guard in the spirit of `dhat::Profiler`: when it is dropped (or [`stop`](Profiler::stop)
/// is called) the DHAT file is written, instead of at exit; the exit then writes neither the
/// file nor the text summary.
///
/// Profiling itself runs for the whole process: profile mode is fixed when the allocator
/// starts (`SECALLOC_PROFILE=1` or [`SecAlloc::profile`]). Without it the guard does nothing.
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().profile(true);
///
/// fn main() {
///     let _profiler = secalloc::profile::Profiler::new().file_name("my-heap.json");
///     let v = vec![0u8; 4096];
///     drop(v);
/// } // my-heap.json written here
/// ```
#[derive(Debug)]
pub struct Profiler {
    file: Option<std::path::PathBuf>,
    done: bool,
}

impl Profiler {
    /// A guard writing to `SECALLOC_PROFILE_FILE` (default `dhat-heap.json`).
    pub fn new() -> Profiler {
        Profiler {
            file: None,
            done: false,
        }
    }

    /// Writes to `path` instead.
    pub fn file_name(mut self, path: impl Into<std::path::PathBuf>) -> Profiler {
        self.file = Some(path.into());
        self
    }

    /// Whether profile mode is on, so that the guard will write a file.
    pub fn is_active(&self) -> bool {
        enabled()
    }

    /// Writes the DHAT file now and returns its path (`None` outside profile mode).
    pub fn stop(mut self) -> Option<io::Result<std::path::PathBuf>> {
        self.finish()
    }

    fn finish(&mut self) -> Option<io::Result<std::path::PathBuf>> {
        if self.done {
            return None;
        }
        self.done = true;
        if !enabled() {
            return None;
        }
        let path = self
            .file
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from(RUNTIME.config().profile_file));
        WRITTEN.store(1, Ordering::Relaxed);
        let r = write_dhat_file(&path)?;
        Some(r.map(|_| path))
    }
}

impl Default for Profiler {
    fn default() -> Self {
        Profiler::new()
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.finish() {
            eprintln!("secalloc: could not write the heap profile: {e}");
        }
    }
}

/// At exit, in profile mode, unless a [`Profiler`] wrote the profile: the DHAT file (folded
/// stacks by total bytes instead when its name ends in `.folded`) and the text summary on
/// stderr (unless `SECALLOC_REPORT=off`). Runs guarded.
pub(crate) fn at_exit() {
    if !enabled() || WRITTEN.load(Ordering::Relaxed) != 0 {
        return;
    }
    let cfg = RUNTIME.config();
    let p = take();
    let note = {
        let path = cfg.profile_file;
        let r = std::fs::File::create(path).and_then(|f| {
            let mut w = io::BufWriter::new(f);
            if path.ends_with(".folded") {
                p.write_folded(Metric::TotalBytes, &mut w)?;
            } else {
                p.write_dhat(&mut w)?;
            }
            w.flush()
        });
        match r {
            Ok(()) => format!(
                "secalloc: heap profile written to {path} (open it in Valgrind's dh_view.html)\n"
            ),
            Err(e) => format!("secalloc: could not write the heap profile to {path}: {e}\n"),
        }
    };
    if cfg.report == crate::config::ReportDest::Off {
        if note.starts_with("secalloc: could not") {
            eprint!("{note}");
        }
        return;
    }
    let mut err = io::stderr().lock();
    let _ = p.write_text(cfg.report_top, &mut err);
    let _ = writeln!(err);
    let _ = err.write_all(note.as_bytes());
    let _ = err.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    // The records are process-wide: one test drives them (with stack ids of its own).
    #[test]
    fn peak_figures_are_those_of_the_last_maximum() {
        without_thread_state();
        with_thread_shares();
        callsite_maximum_is_exact_on_one_thread();
    }

    /// On one thread a callsite's maximum (and the blocks live at it) is exact: random
    /// allocations and frees, some large enough to publish the thread's share, some of no
    /// bytes, against a model.
    fn callsite_maximum_is_exact_on_one_thread() {
        let p = map_zeroed(core::mem::size_of::<ThreadState>()).cast::<ThreadState>();
        assert!(!p.is_null());
        // SAFETY: zeroed memory is a valid ThreadState, mapped for this test alone.
        let ts = unsafe { &mut *p };
        // A stack far above any the test binary interns, and the others of this module.
        let stack = 3_100_001u32;
        let mut rng: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut live: Vec<usize> = Vec::new();
        let (mut model_max, mut model_blocks) = (0u64, 0u64);
        for step in 0..20_000 {
            if live.is_empty() || next(100) < 55 {
                let size = match next(100) {
                    0 => (FLUSH_BYTES as usize) + next(1 << 16) as usize,
                    1..=4 => 0,
                    _ => next(3000) as usize,
                };
                on_alloc(Some(&mut *ts), stack, size, 0);
                live.push(size);
                let now: u64 = live.iter().map(|&s| s as u64).sum();
                if now >= model_max {
                    (model_max, model_blocks) = (now, live.len() as u64);
                }
            } else {
                let i = next(live.len() as u64) as usize;
                let size = live.swap_remove(i);
                on_free(Some(&mut *ts), 16, stack, size, 0);
            }
            let r = existing_record(stack).unwrap();
            assert_eq!(
                (
                    r.max_bytes.load(Ordering::Relaxed),
                    r.max_blocks.load(Ordering::Relaxed)
                ),
                (model_max, model_blocks),
                "step {step}"
            );
        }
    }

    #[test]
    fn lifetimes_of_the_first_blocks_then_one_in_eight() {
        let p = map_zeroed(core::mem::size_of::<ThreadState>()).cast::<ThreadState>();
        assert!(!p.is_null());
        // SAFETY: zeroed memory is a valid ThreadState, mapped for this test alone.
        let cache = unsafe { &(*p).prof_cache };
        let stack = 7u32;
        assert!(
            cache.times(stack),
            "a stack the thread has no blocks of is timed"
        );
        let e = cache.entry(stack).expect("a share");
        e.total_blocks.store(TIMED_FIRST - 1, Ordering::Relaxed);
        assert!(
            (0..100).all(|_| cache.times(stack)),
            "the first blocks are timed"
        );
        e.total_blocks.store(TIMED_FIRST, Ordering::Relaxed);
        let n = 8000;
        let timed = (0..n).filter(|_| cache.times(stack)).count() as u64;
        let expected = n / TIMED_ONE_IN;
        assert!(
            (expected * 7 / 10..expected * 13 / 10).contains(&timed),
            "{timed} of {n} timed"
        );
        // The gaps between timed blocks are random, from 1 to 2 * TIMED_ONE_IN - 1.
        let mut gaps = std::collections::BTreeSet::new();
        let mut since = 0u64;
        for _ in 0..n {
            since += 1;
            if cache.times(stack) {
                gaps.insert(since);
                since = 0;
            }
        }
        assert!(gaps.len() > 4, "gaps {gaps:?}");
        assert!(
            gaps.iter().all(|g| (1..2 * TIMED_ONE_IN).contains(g)),
            "gaps {gaps:?}"
        );
        // The estimate: exact when every block was timed, scaled up otherwise.
        assert_eq!(scaled_lifetime(1000, 10, 0), 1000);
        assert_eq!(scaled_lifetime(1000, 10, 30), 4000);
        assert_eq!(scaled_lifetime(0, 0, 30), 0);
        assert_eq!(scaled_lifetime(u64::MAX / 2, 1, 1), u64::MAX - 1);
    }

    /// Stack `id`'s figures: its record's and those of `ts`'s cache (not a registered slot).
    fn figures(id: u32, ts: Option<&ThreadState>) -> Share {
        let v = PEAK_VERSION.load(Ordering::Relaxed);
        let mut shares = HashMap::new();
        if let Some(ts) = ts {
            ts.prof_cache.for_each(v, |i, s| {
                shares.insert(i, s);
            });
        }
        site_now(id, existing_record(id).unwrap(), &shares, v)
    }

    /// How much to allocate to bring live bytes to the maximum so far, so that the peaks
    /// that follow are the test's.
    fn lift() -> usize {
        let live = LIVE_BYTES.load(Ordering::Relaxed) as u64;
        let max = MAX_BYTES.load(Ordering::Relaxed);
        assert!(live <= max);
        (max - live) as usize
    }

    fn without_thread_state() {
        // Stacks far above any the test binary interns.
        let (a, b) = (3_000_001u32, 3_000_002u32);
        let base_live = LIVE_BYTES.load(Ordering::Relaxed) as u64;
        let lift = lift();
        let alloc = |stack, size| {
            let t = now_ticks();
            on_alloc(None, stack, size, t);
            t
        };
        let t0 = alloc(a, lift + 100);
        let t1 = alloc(b, 50);
        // Peak now: a = lift+100, b = 50.
        on_free(None, 0, b, 50, t1);
        let t2 = alloc(b, 20);
        // Not a peak (below): a's and b's figures at the peak stay.
        assert_eq!(figures(a, None).peak_bytes, lift as i64 + 100);
        assert_eq!(figures(b, None).peak_bytes, 50);
        assert_eq!(
            MAX_BYTES.load(Ordering::Relaxed),
            base_live + lift as u64 + 150
        );
        // A new peak: a frees most, b grows past the old maximum.
        on_free(None, 0, a, lift + 100, t0);
        let t3 = alloc(b, lift + 200);
        assert_eq!(figures(a, None).peak_bytes, 0);
        let fb = figures(b, None);
        assert_eq!((fb.peak_bytes, fb.peak_blocks), (lift as i64 + 220, 2));
        let rb = existing_record(b).unwrap();
        assert_eq!(rb.max_bytes.load(Ordering::Relaxed), lift as u64 + 220);
        assert_eq!(rb.max_blocks.load(Ordering::Relaxed), 2);
        assert_eq!((fb.total_blocks, fb.total_bytes), (3, lift as u64 + 270));
        on_free(None, 0, b, 20, t2);
        on_free(None, 0, b, lift + 200, t3);
        // Frees after the peak keep the figures at the peak.
        let fb = figures(b, None);
        assert_eq!(fb.peak_bytes, lift as i64 + 220);
        assert_eq!((fb.live_bytes, fb.live_blocks), (0, 0));
    }

    /// A thread's shares: its figures stay in its table, each callsite's in its own share
    /// (other callsites do not move them), go into the records at 64 KiB and at thread
    /// exit, and the sums (at the peak, live, totals) stay exact throughout.
    fn with_thread_shares() {
        // Two stacks in different pages of the table, far above any the test binary interns.
        let c = 3_000_003u32;
        let d = c + SHARES_PER_PAGE as u32 + 1;
        let bytes = core::mem::size_of::<ThreadState>();
        let p = map_zeroed(bytes).cast::<ThreadState>();
        assert!(!p.is_null());
        // SAFETY: zeroed memory is a valid ThreadState (integers, atomics and arrays of
        // them), mapped for this test alone and never unmapped.
        let ts = unsafe { &mut *p };
        let lift = lift();
        let alloc = |ts: &mut ThreadState, stack, size| {
            let t = now_ticks();
            on_alloc(Some(ts), stack, size, t);
            t
        };
        // (A free's address: any but 0, which stands for "no block being moved".)
        let user = 16;
        let t0 = alloc(ts, c, lift + 100);
        let t1 = alloc(ts, c, 10);
        // Peak: c = lift+110 in 2 blocks, all in this thread's share.
        on_free(Some(&mut *ts), user, c, 10, t1);
        assert_eq!(
            existing_record(c)
                .unwrap()
                .live_bytes
                .load(Ordering::Relaxed),
            0
        );
        let fc = figures(c, Some(ts));
        assert_eq!((fc.peak_bytes, fc.peak_blocks), (lift as i64 + 110, 2));
        assert_eq!((fc.live_bytes, fc.live_blocks), (lift as i64 + 100, 1));
        assert_eq!((fc.total_bytes, fc.total_blocks), (lift as u64 + 110, 2));
        // d gets a share of its own: c's stays where it is, unpublished.
        let t2 = alloc(ts, d, 5);
        let rc = existing_record(c).unwrap();
        assert_eq!(rc.live_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(rc.total_blocks.load(Ordering::Relaxed), 0);
        let fc2 = figures(c, Some(ts));
        assert_eq!(
            (fc2.peak_bytes, fc2.live_bytes, fc2.total_bytes),
            (fc.peak_bytes, fc.live_bytes, fc.total_bytes)
        );
        assert_eq!(figures(d, Some(ts)).peak_bytes, 0, "d came after the peak");
        // c's block freed: d's share is not touched.
        on_free(Some(&mut *ts), user, c, lift + 100, t0);
        let fc = figures(c, Some(ts));
        assert_eq!((fc.live_bytes, fc.live_blocks), (0, 0));
        assert_eq!(fc.peak_bytes, lift as i64 + 110, "frees keep the peak");
        assert_eq!(
            existing_record(d)
                .unwrap()
                .live_bytes
                .load(Ordering::Relaxed),
            0
        );
        assert_eq!(figures(d, Some(ts)).live_bytes, 5);
        // A new peak: d = lift+205 in 2 blocks, c = 0.
        let t3 = alloc(ts, d, lift + 200);
        let (fc, fd) = (figures(c, Some(ts)), figures(d, Some(ts)));
        assert_eq!((fc.peak_bytes, fc.peak_blocks), (0, 0));
        assert_eq!((fd.peak_bytes, fd.peak_blocks), (lift as i64 + 205, 2));
        assert_eq!((fd.total_bytes, fd.total_blocks), (lift as u64 + 205, 2));
        let rc = existing_record(c).unwrap();
        let rd = existing_record(d).unwrap();
        assert_eq!(
            (
                rc.max_bytes.load(Ordering::Relaxed),
                rc.max_blocks.load(Ordering::Relaxed)
            ),
            (lift as u64 + 110, 2)
        );
        assert_eq!(
            (
                rd.max_bytes.load(Ordering::Relaxed),
                rd.max_blocks.load(Ordering::Relaxed)
            ),
            (lift as u64 + 205, 2)
        );
        on_free(Some(&mut *ts), user, d, 5, t2);
        on_free(Some(&mut *ts), user, d, lift + 200, t3);
        let fd = figures(d, Some(ts));
        assert_eq!((fd.live_bytes, fd.live_blocks), (0, 0));
        assert_eq!(fd.peak_bytes, lift as i64 + 205);
        // A share of 64 KiB is published as it reaches it, in either direction.
        let big = FLUSH_BYTES as usize;
        let t4 = alloc(ts, c, big);
        let rc = existing_record(c).unwrap();
        assert_eq!(rc.live_bytes.load(Ordering::Relaxed), FLUSH_BYTES);
        let fc = figures(c, Some(ts));
        assert_eq!((fc.live_bytes, fc.live_blocks), (FLUSH_BYTES, 1));
        assert_eq!(
            (fc.peak_bytes, fc.peak_blocks),
            (FLUSH_BYTES, 1),
            "a new peak"
        );
        on_free(Some(&mut *ts), user, c, big, t4);
        assert_eq!(rc.live_bytes.load(Ordering::Relaxed), 0);
        let fc = figures(c, Some(ts));
        assert_eq!((fc.live_bytes, fc.peak_bytes), (0, FLUSH_BYTES));
        // The thread exits: everything it holds goes into the records, the sums unchanged.
        let t5 = alloc(ts, d, 7);
        let before = [figures(c, Some(ts)), figures(d, Some(ts))];
        assert_eq!(
            existing_record(d)
                .unwrap()
                .total_blocks
                .load(Ordering::Relaxed),
            0
        );
        publish_thread(ts);
        let mut held = 0;
        ts.prof_cache.for_each(0, |_, _| held += 1);
        assert_eq!(held, 0, "no share left in use");
        for (id, b) in [c, d].into_iter().zip(before) {
            let a = figures(id, None);
            assert_eq!(
                (a.total_bytes, a.total_blocks, a.live_bytes, a.live_blocks),
                (b.total_bytes, b.total_blocks, b.live_bytes, b.live_blocks),
                "stack {id}"
            );
            assert_eq!((a.peak_bytes, a.peak_blocks), (b.peak_bytes, b.peak_blocks));
            assert_eq!(
                (a.timed_blocks, a.untimed_blocks),
                (b.timed_blocks, b.untimed_blocks)
            );
        }
        on_free(Some(&mut *ts), user, d, 7, t5);
        // Leave the published live figures as they were.
        LIVE_BYTES.fetch_add(
            ts.prof_live_bytes.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        LIVE_BLOCKS.fetch_add(
            ts.prof_live_blocks.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

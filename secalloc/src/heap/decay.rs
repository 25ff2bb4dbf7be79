//! Decay of the empty-span cache: empty spans stay mapped, so a program that frees and
//! allocates in bursts reuses them without a system call, and go back to the kernel
//! (`MADV_DONTNEED`) once they stayed unused for a while.
//!
//! Each heap keeps, per span size, the fewest cached spans it held since its last decay
//! pass (a low-water mark). The cache is a LIFO list, so that many spans at its far end were
//! not touched in the whole period. A pass runs on the heap's own slow paths (a span given
//! back or a new one needed), at most every [`INTERVAL_NS`], read from the coarse monotonic
//! clock: there is no timer thread. It returns the untouched spans beyond a small working
//! set ([`KEEP_BYTES`] per span size); a span so goes back between one and two intervals
//! after its last use. A bound ([`CAP_BYTES`] per span size) stops a burst from keeping more
//! than that mapped in the meantime, and a heap whose thread exits keeps only the working set.
//!
//! The same passes, and the large allocations and frees themselves, decay the cache of freed
//! directly mapped blocks (`large`): a mapping cached for [`INTERVAL_NS`] is unmapped.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::class::{MIN_SPAN_SHIFT, SPAN_KINDS};
use super::{Heap, Span};

/// Least time between two decay passes of a heap.
pub(super) const INTERVAL_NS: u64 = 500_000_000;
/// Empty-span bytes per span size never returned by a decay pass (the working set).
pub(super) const KEEP_BYTES: usize = 1 << 20;
/// Empty-span bytes per span size kept mapped at most; beyond, pages go back at once.
pub(super) const CAP_BYTES: usize = 16 << 20;

/// Spans whose pages were returned to the kernel, and their bytes (process-wide).
static RETURNED_CALLS: AtomicU64 = AtomicU64::new(0);
static RETURNED_BYTES: AtomicU64 = AtomicU64::new(0);

/// A heap's decay state (owner only; zeroed memory is a fresh state).
#[repr(C)]
pub(super) struct Decay {
    /// Coarse monotonic time of the last pass, in nanoseconds (0: none yet).
    last_ns: AtomicU64,
    /// Per span size: the fewest cached spans since the last pass.
    low: [AtomicU32; SPAN_KINDS],
}

/// What the heap has given back to the kernel so far, process-wide (see
/// [`SecHeap::returned_to_kernel`](super::SecHeap::returned_to_kernel)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReturnedToKernel {
    /// `madvise(MADV_DONTNEED)` calls, one per empty span, and unmaps of freed directly
    /// mapped blocks that were kept for reuse (one per block).
    pub calls: u64,
    /// Bytes those calls covered.
    pub bytes: u64,
}

pub(super) fn returned() -> ReturnedToKernel {
    ReturnedToKernel {
        calls: RETURNED_CALLS.load(Relaxed),
        bytes: RETURNED_BYTES.load(Relaxed),
    }
}

/// Whether an empty span of `shift` may stay mapped in a cache already holding `cached`.
#[inline]
pub(super) fn may_cache(cached: u32, shift: u32) -> bool {
    ((cached as usize + 1) << shift) <= CAP_BYTES.max(1 << shift)
}

/// Returns the pages of the empty span `sp` (of `1 << shift` bytes) to the kernel.
///
/// # Safety
/// The span holds no live block and belongs to the calling thread's heap.
pub(super) unsafe fn return_pages(sp: &Span, shift: u32) {
    let base = sp.base.load(Relaxed);
    // SAFETY: per the contract, nothing in the span is in use; its pages read as zero
    // afterwards, which `dirty` 0 records.
    unsafe { libc::madvise(base as *mut libc::c_void, 1 << shift, libc::MADV_DONTNEED) };
    sp.dirty.store(0, Relaxed);
    count_returned(1 << shift);
}

/// Counts one region of `bytes` returned to the kernel.
pub(super) fn count_returned(bytes: usize) {
    RETURNED_CALLS.fetch_add(1, Relaxed);
    RETURNED_BYTES.fetch_add(bytes as u64, Relaxed);
}

/// Notes that the cache of span size `kind` now holds `cached` spans (after one was taken).
#[inline]
pub(super) fn note_taken(h: &Heap, kind: usize, cached: u32) {
    if cached < h.decay.low[kind].load(Relaxed) {
        h.decay.low[kind].store(cached, Relaxed);
    }
}

/// The coarse monotonic clock, in nanoseconds.
pub(super) fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid out-pointer; the coarse clock is read from the vDSO.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Runs a decay pass over heap `h` if the last one is [`INTERVAL_NS`] old (and over the
/// cache of freed mapped blocks, if its own last pass is as old).
///
/// # Safety
/// `h` is the calling thread's heap (or the orphan heap, under its lock).
#[cold]
pub(super) unsafe fn tick(h: &Heap) {
    let now = now_ns();
    let last = h.decay.last_ns.load(Relaxed);
    if last != 0 && now.wrapping_sub(last) < INTERVAL_NS {
        return;
    }
    h.decay.last_ns.store(now, Relaxed);
    super::large::decay_cache(now);
    for kind in 0..SPAN_KINDS {
        let shift = MIN_SPAN_SHIFT + kind as u32;
        let keep = (KEEP_BYTES >> shift).max(1) as u32;
        let untouched = h.decay.low[kind].load(Relaxed);
        if last != 0 && untouched > keep {
            // SAFETY: forwarded.
            unsafe { return_oldest(h, kind, untouched - keep) };
        }
        h.decay.low[kind].store(h.cached[kind].load(Relaxed), Relaxed);
    }
}

/// Returns the cached spans of heap `h` beyond the working set to the kernel (its thread
/// is exiting: nothing will reuse them before another thread adopts the heap, which then
/// finds the working set mapped).
///
/// # Safety
/// As [`tick`].
pub(super) unsafe fn trim_to_working_set(h: &Heap) {
    for kind in 0..SPAN_KINDS {
        let shift = MIN_SPAN_SHIFT + kind as u32;
        let keep = (KEEP_BYTES >> shift).max(1) as u32;
        let n = h.cached[kind].load(Relaxed);
        if n > keep {
            // SAFETY: forwarded.
            unsafe { return_oldest(h, kind, n - keep) };
        }
        h.decay.low[kind].store(h.cached[kind].load(Relaxed), Relaxed);
    }
}

/// Returns the `n` cached spans of span size `kind` farthest down heap `h`'s empty list.
///
/// # Safety
/// As [`tick`].
unsafe fn return_oldest(h: &Heap, kind: usize, n: u32) {
    let cached = h.cached[kind].load(Relaxed);
    let n = n.min(cached);
    let shift = MIN_SPAN_SHIFT + kind as u32;
    let mut skip = cached - n;
    let mut s = h.empty[kind].load(Relaxed);
    while !s.is_null() {
        // SAFETY: spans on a heap's empty list are its own, empty and unassigned.
        let sp = unsafe { &*s };
        if sp.dirty.load(Relaxed) != 0 {
            if skip > 0 {
                skip -= 1;
            } else {
                // SAFETY: as above.
                unsafe { return_pages(sp, shift) };
            }
        }
        s = sp.next.load(Relaxed);
    }
    h.cached[kind].store(cached - n, Relaxed);
}

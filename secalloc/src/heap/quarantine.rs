//! Quarantine (off by default): a freed small slot is not handed out again until a bounded
//! number of bytes has been freed after it, by the same thread, so a use after free cannot
//! reach the next block given that slot at once (as hardened_malloc's and Scudo's quarantines).
//!
//! Each heap keeps a FIFO ring of the slots its thread freed. A slot in the ring has its
//! span's `quarantined` bit set and neither its `free` nor its `remote` bit: it is neither
//! live nor free. Setting that bit is one atomic read-modify-write, so a second free of a
//! quarantined slot, from any thread, sees the bit and stops the process exactly. When the
//! bytes in the ring pass the bound, the oldest slots leave it and are freed for real (into
//! the owner's bitmap, or as a remote free into another thread's span). A thread's ring is
//! emptied when the thread exits.
//!
//! The bound is [`SecHeap::quarantine_bytes`](super::SecHeap::quarantine_bytes), overridden by
//! `SECALLOC_QUARANTINE_BYTES` (a number of bytes, with an optional `K`, `M` or `G` suffix;
//! 0 turns the quarantine off).

use core::cell::Cell;
use core::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicUsize};

use super::{corrupt, locate, queue_remote, Heap, Located, Span, CURRENT, NOT_OURS};
use crate::sys;

/// Most slots a ring holds, whatever the byte bound (a 2 MiB ring).
const MAX_ENTRIES: usize = 1 << 18;
/// `SECALLOC_QUARANTINE_BYTES` as read at start-up; `UNSET` when it is not set (or bad).
static ENV_BYTES: AtomicUsize = AtomicUsize::new(UNSET);
const UNSET: usize = usize::MAX;
/// Whether any slot was ever quarantined: until then the free path skips the bitmap check.
pub(super) static IN_USE: AtomicBool = AtomicBool::new(false);

/// A heap's FIFO of quarantined slot addresses, in its own mapping.
#[repr(C)]
pub(super) struct Ring {
    /// Index of the oldest entry.
    head: usize,
    /// Entries in the ring.
    len: usize,
    /// Block bytes of the entries.
    bytes: usize,
    /// Capacity in entries (a power of two).
    cap: usize,
    // `cap` addresses follow.
}

impl Ring {
    fn slots(&mut self) -> *mut usize {
        // SAFETY: the entries follow the header in the same mapping (see `new_ring`).
        unsafe { (self as *mut Ring).add(1).cast() }
    }
}

/// Reads `SECALLOC_QUARANTINE_BYTES` (once, while the heap is set up).
pub(super) fn read_env() {
    let Some(v) = sys::getenv(b"SECALLOC_QUARANTINE_BYTES\0") else {
        return;
    };
    match crate::config::parse_bytes(v) {
        Some(n) => ENV_BYTES.store(n, Relaxed),
        None => crate::config::bad_value(
            "SECALLOC_QUARANTINE_BYTES",
            v,
            "a number of bytes (with an optional K, M or G suffix)",
        ),
    }
}

/// The bound in force: the environment's if set, else the configured one.
#[inline(always)]
pub(super) fn limit(configured: usize) -> usize {
    let env = ENV_BYTES.load(Relaxed);
    if env == UNSET {
        configured
    } else {
        env
    }
}

/// Quarantines the block at `addr` (slot `slot` of span `s`) in heap `h`'s ring, then frees
/// the oldest slots for real while the ring holds more than `bound` bytes.
///
/// # Safety
/// `h` is the calling thread's heap; `s` is an assigned span and `slot` one of its slots.
pub(super) unsafe fn put(h: &Heap, s: *mut Span, slot: usize, addr: usize, bound: usize) {
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    let (w, bit) = (slot / 64, 1u64 << (slot % 64));
    let size = sp.size.load(Relaxed) as usize;
    if !IN_USE.load(Relaxed) {
        IN_USE.store(true, SeqCst);
    }
    // The quarantined bit first, then the others: a slot is at every moment marked in at
    // least one of the three bitmaps from its first free on (`evict` sets `free` or `remote`
    // before clearing this bit for a slot of its own span), so two frees cannot both pass.
    let old = sp.quarantined[w].fetch_or(bit, SeqCst);
    if old & bit != 0 || (sp.free[w].load(SeqCst) | sp.remote[w].load(SeqCst)) & bit != 0 {
        corrupt("double free", addr, size, "");
    }
    let mut ring = h.quarantine.load(Relaxed);
    if ring.is_null() {
        ring = new_ring(bound);
        if ring.is_null() {
            // No memory for a ring: free the slot at once instead.
            // SAFETY: the slot's quarantined bit is ours.
            unsafe { evict(s, slot, addr) };
            return;
        }
        h.quarantine.store(ring, Relaxed);
    }
    // SAFETY: the ring is this heap's, used by its thread only.
    let r = unsafe { &mut *ring };
    if r.len == r.cap {
        // SAFETY: as above.
        unsafe { evict_oldest(r) };
    }
    let i = (r.head + r.len) & (r.cap - 1);
    // SAFETY: i < cap, inside the ring's mapping.
    unsafe { *r.slots().add(i) = addr };
    r.len += 1;
    r.bytes += size;
    while r.bytes > bound && r.len > 0 {
        // SAFETY: as above.
        unsafe { evict_oldest(r) };
    }
}

/// Empties heap `h`'s ring (its thread is exiting).
///
/// # Safety
/// `h` is the calling thread's heap, still current.
pub(super) unsafe fn drain(h: &Heap) {
    let ring = h.quarantine.load(Relaxed);
    if ring.is_null() {
        return;
    }
    // SAFETY: the ring is this heap's, used by its thread only.
    let r = unsafe { &mut *ring };
    while r.len > 0 {
        // SAFETY: as above.
        unsafe { evict_oldest(r) };
    }
}

fn new_ring(bound: usize) -> *mut Ring {
    let cap = (bound / 16 + 1).next_power_of_two().clamp(16, MAX_ENTRIES);
    let p: *mut Ring = sys::map_zeroed(core::mem::size_of::<Ring>() + cap * 8).cast();
    if !p.is_null() {
        // SAFETY: a fresh mapping large enough for the header and `cap` entries.
        unsafe { (*p).cap = cap };
    }
    p
}

/// Takes the oldest entry out of the ring and frees its slot for real.
///
/// # Safety
/// `r` is the calling thread's heap's ring, not empty.
unsafe fn evict_oldest(r: &mut Ring) {
    // SAFETY: head < cap, inside the ring's mapping.
    let addr = unsafe { *r.slots().add(r.head) };
    r.head = (r.head + 1) & (r.cap - 1);
    r.len -= 1;
    let Located::Slot(s, slot) = locate(addr) else {
        corrupt("quarantined slot lost", addr, 0, NOT_OURS)
    };
    // SAFETY: a quarantined slot's span stays assigned (it is not empty).
    r.bytes -= unsafe { (*s).size.load(Relaxed) } as usize;
    // SAFETY: the slot was quarantined by this thread.
    unsafe { evict(s, slot, addr) };
}

/// Frees quarantined slot `slot` (at `addr`) of span `s` for real.
///
/// # Safety
/// `s` is an assigned span; the slot's quarantined bit was set by the calling thread, which
/// has a heap.
unsafe fn evict(s: *mut Span, slot: usize, addr: usize) {
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    let (w, bit) = (slot / 64, 1u64 << (slot % 64));
    let owner = sp.owner.load(Relaxed);
    let me: *mut Heap = CURRENT.with(Cell::get);
    if owner == me {
        // Free bit first, quarantined bit after: no moment with neither (see `put`).
        sp.set_free_bits(w, bit, Release);
        sp.quarantined[w].fetch_and(!bit, SeqCst);
        let idx = sp.class.load(Relaxed) as usize - 1;
        // SAFETY: `me` is this thread's heap and owns `s`.
        unsafe { super::add_free(&*me, s, idx, 1) };
        return;
    }
    // Another heap's span: clear the quarantined bit, then free remotely. A second free
    // slipping in between finds the remote bit set here, or its quarantined bit set when
    // the owner folds the remote bits back (`check_fold`): caught either way.
    sp.quarantined[w].fetch_and(!bit, SeqCst);
    let old = sp.remote[w].fetch_or(bit, SeqCst);
    if old & bit != 0 {
        corrupt("double free", addr, sp.size.load(Relaxed) as usize, "");
    }
    // SAFETY: `s` is an assigned span with owner `owner`.
    unsafe { queue_remote(s, owner) };
}

/// Checks remote frees `bits` of word `w` being folded back into span `s`: a slot that is
/// also quarantined was freed twice.
#[inline]
pub(super) fn check_fold(sp: &Span, w: usize, bits: u64) {
    let both = sp.quarantined[w].load(SeqCst) & bits;
    if both != 0 {
        let slot = w * 64 + both.trailing_zeros() as usize;
        let size = sp.size.load(Relaxed) as usize;
        corrupt("double free", sp.base.load(Relaxed) + slot * size, size, "");
    }
}

/// Whether slot bit `bit` of word `w` of span `sp` is quarantined (skipped until a slot was
/// ever quarantined).
#[inline(always)]
pub(super) fn is_quarantined(sp: &Span, w: usize, bit: u64) -> bool {
    IN_USE.load(Relaxed) && sp.quarantined[w].load(SeqCst) & bit != 0
}

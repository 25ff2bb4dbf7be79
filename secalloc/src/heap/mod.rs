//! [`SecHeap`]: secalloc's own heap, with every byte of metadata kept apart from user data.
//!
//! Small blocks (up to 256 KiB, alignments up to 64 KiB) come from size-class *spans* carved
//! out of 4 MiB *segments* in one large reservation of address space, so the span of any
//! address is found with a subtraction and two shifts. What the heap knows about a span —
//! its class, which slots are free, which were freed by other threads — lives in a separate
//! mapping, never next to or inside the blocks: an overflow out of a block can reach other
//! blocks but no allocator state, and a freed block holds no free-list pointer to corrupt or
//! to leak. Larger blocks are mapped directly, each with a guard page after it.
//!
//! Each thread allocates from a heap of its own (per-class lists of spans with free slots),
//! with plain loads and stores. A free from another thread sets a bit in the span's separate
//! atomic *remote* bitmap and queues the span on its owner's lock-free list; the owner folds
//! those bits back when it runs out of slots. The free bitmaps are also the double-free check:
//! freeing a slot whose bit is already set is detected exactly, whichever thread frees it.
//! Heaps of exited threads are adopted by new threads. Empty spans go to a per-heap cache
//! that decays: spans left unused for half a second to a second go back to the kernel, all
//! but a working set of 1 MiB per span size (`decay`), so churn does not thrash and an idle
//! heap shrinks. Mapped blocks grow and shrink without a copy (`mremap`), keeping their
//! guard page; freed ones stay mapped, zeroed, for reuse, a bounded cache with the same
//! decay (`large`). An optional quarantine ([`SecHeap::quarantine_bytes`]) delays the reuse of
//! freed slots.
//!
//! `SecHeap` is a complete [`GlobalAlloc`]: install it on its own, or under the tracker with
//! [`SecAlloc::with_inner`](crate::SecAlloc::with_inner):
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: secalloc::SecAlloc<secalloc::SecHeap> =
//!     secalloc::SecAlloc::with_inner(secalloc::SecHeap::new());
//! ```
//!
//! Corruption it sees (a double free, a free of an address it never handed out, a free of
//! a pointer into the middle of a block) stops the process with a message on stderr.

mod class;
mod decay;
mod large;
mod quarantine;
pub(crate) mod slots;
pub(crate) mod tracked;

pub use decay::ReturnedToKernel;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::fmt::Write as _;
use core::ptr;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

use crate::sys::{self, SpinLock};
use class::{MAX_SPAN_SHIFT, MIN_SPAN_SHIFT, NCLASSES, SPAN_KINDS};
use large::{alloc_large, free_large, large_len, LARGE, PAGE};

const SEGMENT_SHIFT: u32 = MAX_SPAN_SHIFT;
const SEGMENT: usize = 1 << SEGMENT_SHIFT;
/// Spans in a segment of the smallest span size.
const SPANS_MAX: usize = SEGMENT >> MIN_SPAN_SHIFT;
/// Slots in the fullest span (64 KiB of 16-byte blocks).
pub(crate) const MAX_SLOTS: usize = (1 << MIN_SPAN_SHIFT) / 16;
const WORDS: usize = MAX_SLOTS / 64;
const _: () = assert!(
    WORDS <= 64,
    "a span's summary word has a bit per bitmap word"
);
/// Address space reserved for spans, largest first until the kernel agrees (with the
/// records and metadata, about twice as much address space in all; halving each time, so
/// that under an address-space limit the heap gets at least a quarter of what is free).
const RESERVE_TRIES: [usize; 9] = [
    64 << 30,
    32 << 30,
    16 << 30,
    8 << 30,
    4 << 30,
    2 << 30,
    1 << 30,
    512 << 20,
    256 << 20,
];
/// Heaps mapped at a time when no exited thread's heap can be adopted.
const HEAPS_PER_CHUNK: usize = 64;

/// secalloc's own heap (see the module documentation).
///
/// A handle: all instances share one process-wide heap; what a handle holds is how its own
/// frees are treated (the quarantine bound).
#[derive(Clone, Copy, Debug, Default)]
pub struct SecHeap {
    quarantine_bytes: usize,
}

impl SecHeap {
    /// The process-wide heap (nothing is mapped before the first allocation), without
    /// quarantine.
    pub const fn new() -> Self {
        SecHeap {
            quarantine_bytes: 0,
        }
    }

    /// Quarantines freed small blocks: a freed slot is handed out again only after `bytes`
    /// more bytes of blocks have been freed by the same thread (first in, first out), so a
    /// dangling pointer does not reach the next block given that slot right away. Each
    /// thread's quarantine holds at most `bytes` (and at most 262,144 blocks) and is emptied
    /// when the thread exits. A second free of a quarantined block is caught exactly.
    /// 0 (the default) turns it off; `SECALLOC_QUARANTINE_BYTES` overrides the value.
    ///
    /// ```no_run
    /// #[global_allocator]
    /// static GLOBAL: secalloc::SecHeap = secalloc::SecHeap::new().quarantine_bytes(1 << 20);
    /// ```
    pub const fn quarantine_bytes(self, bytes: usize) -> Self {
        SecHeap {
            quarantine_bytes: bytes,
        }
    }

    /// What the heap has returned to the kernel so far (`madvise(MADV_DONTNEED)` calls on
    /// empty spans, unmaps of cached freed mapped blocks, and their bytes), process-wide.
    ///
    /// ```
    /// let r = secalloc::SecHeap::new().returned_to_kernel();
    /// assert!(r.bytes >= r.calls * 65536);
    /// ```
    pub fn returned_to_kernel(&self) -> ReturnedToKernel {
        decay::returned()
    }
}

/// What the heap knows about one span. Only the owning heap's thread writes the fields
/// marked "owner" (relaxed loads and stores, no read-modify-write); other threads read
/// `free` to detect double frees and write `remote` with atomic operations.
///
/// The fields are grouped by who writes them, a cache line per group, so that frees from
/// other threads (which read the fixed fields and write `remote` and `queued`) do not take
/// the line the owner writes on every allocation, and the owner's allocations do not
/// invalidate the line those frees read.
#[repr(C, align(64))]
struct Span {
    /// Owner: a set bit is a free slot.
    free: [AtomicU64; WORDS],
    /// Slots freed by other threads, not yet folded into `free`.
    remote: [AtomicU64; WORDS],
    /// Slots waiting in some thread's quarantine (neither free nor live).
    quarantined: [AtomicU64; WORDS],

    // Fixed while the span is assigned (written when it is set up for a class).
    /// Class index + 1; 0 while the span is unassigned.
    class: AtomicU32,
    /// Block size of the class.
    size: AtomicU32,
    /// `div_magic(size)`: slot index = offset × recip >> RECIP_SHIFT, without a division
    /// on the free path.
    recip: AtomicU64,
    /// The heap that owns the span (fixed from first use).
    owner: AtomicPtr<Heap>,
    /// The span's first byte (fixed when the span is first carved out of its segment).
    base: AtomicUsize,
    /// Where its slots' records begin (`slots::first_record(base)`, fixed with `base`).
    records: AtomicUsize,
    /// Owner: slots in the span.
    capacity: AtomicU32,
    /// Owner: whether the span last served an untracked class (whose freed slots are not
    /// wiped), so a tracked class taking it must zero what was used.
    untracked_dirty: AtomicBool,
    /// Owner: the tracked class the span last served, + 1 (0: none yet), whose high
    /// halves of records may still be in its share (`slots::forget_high_halves`).
    last_tracked: AtomicU8,
    _fixed_end: [u8; 64 - 46],

    // Written by the owner on every allocation and free of its own.
    /// Owner: set bits in `free`.
    nfree: AtomicU32,
    /// Owner: the word where the next search for a free slot starts.
    cursor: AtomicU32,
    /// Owner: bit `w` is set when `free[w]` has a set bit (the search for a free slot is
    /// one rotate and one count of trailing zeros, however few slots are free).
    avail: AtomicU64,
    /// Owner: bytes from the span's start that may hold data (the rest is still zero).
    dirty: AtomicU32,
    /// Owner: whether the span is on its class's list in the owner heap.
    listed: AtomicBool,
    /// Owner: list links (class lists, or the empty-span cache).
    prev: AtomicPtr<Span>,
    next: AtomicPtr<Span>,
    _owner_end: [u8; 64 - 40],

    // Written by freeing threads.
    /// Whether the span is queued on its owner's remote list.
    queued: AtomicBool,
    /// Link in the owner's remote list.
    next_remote: AtomicPtr<Span>,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Span, class) % 64 == 0);
    assert!(offset_of!(Span, untracked_dirty) < offset_of!(Span, class) + 64);
    assert!(offset_of!(Span, nfree) == offset_of!(Span, class) + 64);
    assert!(offset_of!(Span, next) < offset_of!(Span, nfree) + 64);
    assert!(offset_of!(Span, queued) == offset_of!(Span, nfree) + 64);
};

impl Span {
    /// Owner: marks the slots of `bits` in bitmap word `w` free (the store with `order`),
    /// and the word as holding free slots in the summary.
    #[inline(always)]
    fn set_free_bits(&self, w: usize, bits: u64, order: core::sync::atomic::Ordering) {
        self.free[w].store(self.free[w].load(Relaxed) | bits, order);
        self.avail.store(self.avail.load(Relaxed) | 1 << w, Relaxed);
    }
}

/// Metadata of one segment.
#[repr(C)]
struct Segment {
    /// log2 of the span size; 0 until the segment is set up.
    shift: AtomicU32,
    /// Owner: spans handed out so far.
    used: AtomicU32,
    spans: [Span; SPANS_MAX],
}

/// One thread's heap.
#[repr(C)]
struct Heap {
    /// Per class: the first span with free slots; classes `NCLASSES..` are the tracker's
    /// (spans whose slots have records in [`slots`]).
    bins: [AtomicPtr<Span>; 2 * NCLASSES],
    /// Spans that other threads freed into (a push-only list taken whole by the owner).
    remote: AtomicPtr<Span>,
    /// Per span size: the segment spans are being carved from.
    segment: [AtomicPtr<Segment>; SPAN_KINDS],
    /// Per span size: empty spans, kept mapped (`cached`) or returned to the kernel.
    empty: [AtomicPtr<Span>; SPAN_KINDS],
    cached: [AtomicU32; SPAN_KINDS],
    /// Link in the pool of heaps of exited threads.
    next_free: AtomicPtr<Heap>,
    /// Slots this heap's thread freed, in quarantine (null until the first).
    quarantine: AtomicPtr<quarantine::Ring>,
    /// When and how far the empty-span cache decays.
    decay: decay::Decay,
}

struct Pool {
    /// Heaps of exited threads, waiting to be adopted.
    abandoned: *mut Heap,
    chunk: *mut Heap,
    chunk_used: usize,
}

// SAFETY: the pool is only reached through its SpinLock; the heaps it points to are mmap'd
// and never unmapped, and adopting one hands it to exactly one thread.
unsafe impl Send for Pool {}

const UNINIT: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
/// Start and length of the span reservation.
static BASE: AtomicUsize = AtomicUsize::new(0);
static RESERVED: AtomicUsize = AtomicUsize::new(0);
/// Segment metadata, one `Segment` per 4 MiB of the reservation.
static META: AtomicPtr<Segment> = AtomicPtr::new(ptr::null_mut());
/// Segments handed out so far (they are never given back).
static SEGMENTS: AtomicUsize = AtomicUsize::new(0);
static POOL: SpinLock<Pool> = SpinLock::new(Pool {
    abandoned: ptr::null_mut(),
    chunk: ptr::null_mut(),
    chunk_used: HEAPS_PER_CHUNK,
});
/// The heap of threads whose own heap is gone (allocations during thread teardown).
static ORPHAN: SpinLock<Orphan> = SpinLock::new(Orphan(ptr::null_mut()));

struct Orphan(*mut Heap);

// SAFETY: the orphan heap is mmap'd, never unmapped, and only used under its SpinLock.
unsafe impl Send for Orphan {}
static KEY: AtomicUsize = AtomicUsize::new(0);

/// A thread whose heap was handed back: its frees are remote, its allocations orphans.
const EXITED: *mut Heap = 1 as *mut Heap;

thread_local! {
    static CURRENT: Cell<*mut Heap> = const { Cell::new(ptr::null_mut()) };
}

// ---------------------------------------------------------------------------------------
// Set-up

/// Maps the reservation and the metadata once. Returns false if the heap is unusable.
#[cold]
fn init() -> bool {
    loop {
        match STATE.compare_exchange(UNINIT, BUSY, Acquire, Acquire) {
            Ok(_) => break,
            Err(READY) => return true,
            Err(FAILED) => return false,
            Err(_) => sys::wait_while(|| STATE.load(Acquire) == BUSY),
        }
    }
    let ok = init_once();
    STATE.store(if ok { READY } else { FAILED }, Release);
    ok
}

/// Reserves address space for `len` bytes of spans and everything sized by it (segment
/// metadata, slot records): `(span base, segment metadata)`, or `None` with nothing kept.
fn reserve_heap(len: usize) -> Option<(usize, *mut u8)> {
    let p = sys::reserve(len + SEGMENT);
    if p.is_null() {
        return None;
    }
    let meta_len = (len >> SEGMENT_SHIFT) * core::mem::size_of::<Segment>();
    let meta = sys::map_zeroed(meta_len);
    if !meta.is_null() && slots::reserve(len) {
        return Some(((p as usize + SEGMENT - 1) & !(SEGMENT - 1), meta));
    }
    // SAFETY: both mappings were just made here and nothing uses them yet.
    unsafe {
        if !meta.is_null() {
            sys::unmap(meta, meta_len);
        }
        sys::unmap(p, len + SEGMENT);
    }
    None
}

fn init_once() -> bool {
    // The largest reservation the address-space limit (`ulimit -v`) leaves room for, with
    // its metadata and records: trying only the spans' own reservation at each size would
    // take one whose records then cannot be reserved.
    let Some((len, (base, meta))) = RESERVE_TRIES
        .iter()
        .find_map(|&want| reserve_heap(want).map(|r| (want, r)))
    else {
        return false;
    };
    let orphan = sys::map_zeroed(core::mem::size_of::<Heap>());
    if orphan.is_null() || !large::init_table() {
        return false;
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out-pointer and `thread_exit` an `extern "C"` function that
    // lives for the whole program.
    if unsafe { libc::pthread_key_create(&mut key, Some(thread_exit)) } != 0 {
        return false;
    }
    KEY.store(key as usize, Relaxed);
    quarantine::read_env();
    META.store(meta.cast(), Relaxed);
    ORPHAN.lock().0 = orphan.cast();
    RESERVED.store(len, Relaxed);
    BASE.store(base, Release);
    // SAFETY: the handlers are `extern "C" fn()`s with static lifetime.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_release), Some(fork_release)) };
    true
}

extern "C" fn fork_prepare() {
    POOL.raw_lock();
    LARGE.raw_lock();
    ORPHAN.raw_lock();
    large::CACHE.raw_lock();
}

extern "C" fn fork_release() {
    // SAFETY: fork_prepare took the four locks on this thread, and no guard exists for them
    // (a guard is never held across a call that can fork).
    unsafe {
        large::CACHE.raw_unlock();
        ORPHAN.raw_unlock();
        LARGE.raw_unlock();
        POOL.raw_unlock();
    }
}

/// The calling thread's heap, adopting or mapping one on first use. Null when the thread's
/// heap was already handed back (thread teardown) or no heap can be had.
#[inline(always)]
fn current() -> *mut Heap {
    let h = CURRENT.with(Cell::get);
    // Null (no heap yet) and `EXITED` (1) in one unsigned compare.
    if (h as usize) <= EXITED as usize {
        return current_slow(h);
    }
    h
}

/// [`current`] for a thread whose slot holds null (no heap yet: one is made) or `EXITED`
/// (null returned: the thread is past its heap's release).
#[cold]
fn current_slow(h: *mut Heap) -> *mut Heap {
    if h == EXITED {
        return ptr::null_mut();
    }
    if STATE.load(Acquire) != READY && !init() {
        return ptr::null_mut();
    }
    let h = {
        let mut pool = POOL.lock();
        if !pool.abandoned.is_null() {
            let h = pool.abandoned;
            // SAFETY: heaps in the pool are valid mmap'd heaps; the lock makes this thread
            // the only one to take `h`.
            pool.abandoned = unsafe { (*h).next_free.load(Relaxed) };
            h
        } else {
            if pool.chunk_used == HEAPS_PER_CHUNK {
                let c = sys::map_zeroed(HEAPS_PER_CHUNK * core::mem::size_of::<Heap>());
                if c.is_null() {
                    return ptr::null_mut();
                }
                pool.chunk = c.cast();
                pool.chunk_used = 0;
            }
            // SAFETY: chunk_used < HEAPS_PER_CHUNK, inside the chunk; zeroed memory is an
            // empty heap (null pointers, zero counts).
            let h = unsafe { pool.chunk.add(pool.chunk_used) };
            pool.chunk_used += 1;
            h
        }
    };
    CURRENT.with(|c| c.set(h));
    // SAFETY: KEY was created in init; the value is only passed back to thread_exit.
    unsafe { libc::pthread_setspecific(KEY.load(Relaxed) as libc::pthread_key_t, h.cast()) };
    h
}

/// Thread exit (the pthread key's destructor): hand the heap to the pool for adoption.
extern "C" fn thread_exit(p: *mut libc::c_void) {
    let h: *mut Heap = p.cast();
    // SAFETY: `h` is this thread's heap, still current.
    unsafe {
        quarantine::drain(&*h);
        decay::trim_to_working_set(&*h);
    }
    CURRENT.with(|c| c.set(EXITED));
    let mut pool = POOL.lock();
    // SAFETY: `h` is this thread's heap; from here on no thread owns it until adopted.
    unsafe { (*h).next_free.store(pool.abandoned, Relaxed) };
    pool.abandoned = h;
}

// ---------------------------------------------------------------------------------------
// Spans

#[inline(always)]
fn seg_meta(i: usize) -> *mut Segment {
    // SAFETY: callers pass i < RESERVED >> SEGMENT_SHIFT, inside the metadata mapping.
    unsafe { META.load(Relaxed).add(i) }
}

/// The span holding `addr` and the slot index, if `addr` is a block start of a live span.
#[inline(always)]
fn locate(addr: usize) -> Located {
    let base = BASE.load(Relaxed);
    let off = addr.wrapping_sub(base);
    if base == 0 || off >= RESERVED.load(Relaxed) {
        return Located::Outside;
    }
    let seg = off >> SEGMENT_SHIFT;
    if seg >= SEGMENTS.load(Acquire) {
        return Located::Invalid;
    }
    let m = seg_meta(seg);
    // SAFETY: segment metadata below SEGMENTS is mapped; fields are atomics.
    let shift = unsafe { (*m).shift.load(Acquire) };
    if shift == 0 {
        return Located::Invalid;
    }
    let in_seg = off & (SEGMENT - 1);
    // SAFETY: in_seg >> shift < SEGMENT >> shift <= SPANS_MAX.
    let span = unsafe { ptr::addr_of_mut!((*m).spans[in_seg >> shift]) };
    // SAFETY: `span` points into mapped metadata.
    let s = unsafe { &*span };
    let size = s.size.load(Relaxed) as usize;
    if s.class.load(Acquire) == 0 || size == 0 {
        return Located::Invalid;
    }
    let in_span = in_seg & ((1 << shift) - 1);
    let slot = slot_of(in_span, s.recip.load(Relaxed));
    if slot * size != in_span {
        return Located::Interior;
    }
    Located::Slot(span, slot)
}

/// The shift of the fixed-point reciprocals: offsets inside a span are below 2^22 and block
/// sizes at most 2^18, so offset × size < 2^44 and the quotient below is exact (Granlund and
/// Montgomery: with m = ⌈2^s / d⌉ = 2^s / d + e, 0 ≤ e < 1, ⌊n·m / 2^s⌋ = ⌊n / d + n·e / 2^s⌋,
/// and n·e / 2^s < 1 / d whenever n·d < 2^s).
const RECIP_SHIFT: u32 = 44;
const _: () = assert!(SEGMENT <= 1 << 22 && class::MAX_CLASS_SIZE <= 1 << 18);

/// The reciprocal of block size `size` for [`slot_of`].
const fn div_magic(size: usize) -> u64 {
    (1u64 << RECIP_SHIFT).div_ceil(size as u64)
}

/// `in_span / size`, for `recip = div_magic(size)` and `in_span` < 2^22: a multiply and a
/// shift (the free path's division cost as much as the rest of the address lookup).
#[inline(always)]
fn slot_of(in_span: usize, recip: u64) -> usize {
    ((in_span as u64 * recip) >> RECIP_SHIFT) as usize
}

enum Located {
    Outside,
    Invalid,
    Interior,
    Slot(*mut Span, usize),
}

/// Links `s` at the front of `list` (owner only).
///
/// # Safety
/// `s` is an unlisted span of the calling thread's heap.
unsafe fn push_front(list: &AtomicPtr<Span>, s: *mut Span) {
    let head = list.load(Relaxed);
    // SAFETY: per the contract; `head` is null or a span of the same heap.
    unsafe {
        (*s).prev.store(ptr::null_mut(), Relaxed);
        (*s).next.store(head, Relaxed);
        if !head.is_null() {
            (*head).prev.store(s, Relaxed);
        }
    }
    list.store(s, Relaxed);
}

/// Unlinks `s` from `list` (owner only).
///
/// # Safety
/// `s` is on `list`, a list of the calling thread's heap.
unsafe fn unlink(list: &AtomicPtr<Span>, s: *mut Span) {
    // SAFETY: per the contract, `s` and its neighbours are spans of this heap.
    unsafe {
        let prev = (*s).prev.load(Relaxed);
        let next = (*s).next.load(Relaxed);
        if prev.is_null() {
            list.store(next, Relaxed);
        } else {
            (*prev).next.store(next, Relaxed);
        }
        if !next.is_null() {
            (*next).prev.store(prev, Relaxed);
        }
        (*s).prev.store(ptr::null_mut(), Relaxed);
        (*s).next.store(ptr::null_mut(), Relaxed);
    }
}

/// A fresh or recycled span of `shift` for heap `h`, not yet assigned a class.
///
/// # Safety
/// `h` is the calling thread's heap.
unsafe fn take_span(h: &Heap, shift: u32) -> *mut Span {
    let kind = (shift - MIN_SPAN_SHIFT) as usize;
    let s = h.empty[kind].load(Relaxed);
    if !s.is_null() {
        // SAFETY: spans on the empty list are this heap's.
        unsafe {
            h.empty[kind].store((*s).next.load(Relaxed), Relaxed);
            // Spans whose pages went back to the kernel are clean (`dirty` 0) and were not
            // counted as cached; every other empty span held blocks, so it is dirty.
            if (*s).dirty.load(Relaxed) != 0 {
                let c = h.cached[kind].load(Relaxed).saturating_sub(1);
                h.cached[kind].store(c, Relaxed);
                decay::note_taken(h, kind, c);
            } else {
                large::make_room(1 << shift);
            }
            (*s).next.store(ptr::null_mut(), Relaxed);
        }
        return s;
    }
    let mut m = h.segment[kind].load(Relaxed);
    // SAFETY: a heap's current segment is mapped metadata owned by this heap.
    if m.is_null() || unsafe { (*m).used.load(Relaxed) } as usize == SEGMENT >> shift {
        m = new_segment(shift);
        if m.is_null() {
            return ptr::null_mut();
        }
        h.segment[kind].store(m, Relaxed);
    }
    large::make_room(1 << shift);
    // SAFETY: as above; `used` < spans in the segment. A span's metadata is first written
    // here, when it is carved (so a segment's untouched metadata pages stay unmapped).
    unsafe {
        let i = (*m).used.load(Relaxed);
        (*m).used.store(i + 1, Relaxed);
        let s = ptr::addr_of_mut!((*m).spans[i as usize]);
        let seg = (m as usize - META.load(Relaxed) as usize) / core::mem::size_of::<Segment>();
        let base = BASE.load(Relaxed) + (seg << SEGMENT_SHIFT) + ((i as usize) << shift);
        (*s).base.store(base, Relaxed);
        (*s).records.store(slots::first_record(base), Relaxed);
        (*s).owner.store(h as *const Heap as *mut Heap, Relaxed);
        s
    }
}

/// Commits the next segment of the reservation for spans of `shift`.
fn new_segment(shift: u32) -> *mut Segment {
    let max = RESERVED.load(Relaxed) >> SEGMENT_SHIFT;
    let i = SEGMENTS.fetch_add(1, AcqRel);
    if i >= max {
        return ptr::null_mut();
    }
    let start = BASE.load(Relaxed) + (i << SEGMENT_SHIFT);
    // SAFETY: [start, start + SEGMENT) lies inside our PROT_NONE reservation and was claimed
    // by this thread alone.
    if unsafe {
        libc::mprotect(
            start as *mut libc::c_void,
            SEGMENT,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    } != 0
    {
        return ptr::null_mut();
    }
    if !slots::commit_segment(i) {
        return ptr::null_mut();
    }
    let m = seg_meta(i);
    // SAFETY: `m` is this segment's (zeroed) metadata; `locate` ignores it until `shift` is
    // published below. Each span's `base` is set when `take_span` carves it.
    unsafe {
        (*m).used.store(0, Relaxed);
        (*m).shift.store(shift, Release);
    }
    m
}

/// Sets span `s` up for class `idx` with every slot free, and lists it.
///
/// # Safety
/// `s` is an unassigned span of the calling thread's heap `h`.
unsafe fn assign(h: &Heap, s: *mut Span, idx: usize) {
    let size = class::size_of(idx % NCLASSES);
    // SAFETY: per the contract; metadata fields are atomics.
    let sp = unsafe { &*s };
    // SAFETY: `s` belongs to a set-up segment, whose shift is published.
    let shift = span_shift(sp.base.load(Relaxed));
    if idx >= NCLASSES {
        tracked::on_assign(sp.base.load(Relaxed), &sp.dirty, &sp.untracked_dirty);
        let now = (idx - NCLASSES + 1) as u8;
        let was = sp.last_tracked.load(Relaxed);
        if was != now {
            if was != 0 {
                let cap = class::size_of(was as usize - 1);
                slots::forget_high_halves(sp.base.load(Relaxed), cap);
            }
            sp.last_tracked.store(now, Relaxed);
        }
    } else {
        sp.untracked_dirty.store(true, Relaxed);
    }
    let cap = (1usize << shift) / size;
    let words = cap.div_ceil(64);
    for w in 0..WORDS {
        let bits = if w + 1 < words {
            u64::MAX
        } else if w + 1 == words {
            u64::MAX >> (words * 64 - cap)
        } else {
            0
        };
        sp.free[w].store(bits, Relaxed);
    }
    sp.avail.store(u64::MAX >> (64 - words), Relaxed);
    sp.size.store(size as u32, Relaxed);
    sp.recip.store(div_magic(size), Relaxed);
    sp.capacity.store(cap as u32, Relaxed);
    sp.nfree.store(cap as u32, Relaxed);
    sp.cursor.store(0, Relaxed);
    sp.class.store(idx as u32 + 1, Release);
    sp.listed.store(true, Relaxed);
    // SAFETY: per the contract.
    unsafe { push_front(&h.bins[idx], s) };
}

/// The span shift of the segment holding `addr` (inside the reservation).
fn span_shift(addr: usize) -> u32 {
    let seg = (addr - BASE.load(Relaxed)) >> SEGMENT_SHIFT;
    // SAFETY: the segment holding a span's base is set up.
    unsafe { (*seg_meta(seg)).shift.load(Relaxed) }
}

/// Takes a free slot of class `idx` from heap `h`: `(block, span, slot index)`, a null block
/// and span when out of memory.
///
/// # Safety
/// `h` is the calling thread's heap (or the orphan heap, under its lock).
#[inline(always)]
unsafe fn alloc_small_slot(h: &Heap, idx: usize, zero: bool) -> (*mut u8, *mut Span, usize) {
    let mut s = h.bins[idx].load(Relaxed);
    if s.is_null() {
        // SAFETY: forwarded.
        s = unsafe { refill(h, idx) };
        if s.is_null() {
            return (ptr::null_mut(), s, 0);
        }
    }
    // SAFETY: spans on a heap's class list are its own, with at least one free slot.
    let sp = unsafe { &*s };
    // The first word with a free slot at or after the cursor, wrapping around: a listed
    // span has a free slot, so `avail` is not zero.
    let avail = sp.avail.load(Relaxed);
    debug_assert!(avail != 0);
    let c = sp.cursor.load(Relaxed);
    let w = (c + avail.rotate_right(c).trailing_zeros()) as usize % 64;
    let v = sp.free[w].load(Relaxed);
    let rest = v & v.wrapping_sub(1);
    sp.free[w].store(rest, Relaxed);
    if rest == 0 {
        sp.avail.store(avail & !(1 << w), Relaxed);
    }
    let slot = w * 64 + v.trailing_zeros() as usize;
    sp.cursor.store(w as u32, Relaxed);
    let left = sp.nfree.load(Relaxed) - 1;
    sp.nfree.store(left, Relaxed);
    if left == 0 {
        sp.listed.store(false, Relaxed);
        // SAFETY: `s` heads this heap's list for the class.
        unsafe { unlink(&h.bins[idx], s) };
    }
    let size = sp.size.load(Relaxed) as usize;
    let off = slot * size;
    let p = (sp.base.load(Relaxed) + off) as *mut u8;
    let dirty = sp.dirty.load(Relaxed) as usize;
    if zero && off < dirty {
        // SAFETY: the slot is `size` bytes of our committed memory, now owned by the caller.
        unsafe { ptr::write_bytes(p, 0, size.min(dirty - off)) };
    }
    if off + size > dirty {
        sp.dirty.store((off + size) as u32, Relaxed);
    }
    (p, s, slot)
}

/// Finds or makes a span with free slots for class `idx`.
///
/// # Safety
/// As [`alloc_small_slot`].
#[cold]
unsafe fn refill(h: &Heap, idx: usize) -> *mut Span {
    // SAFETY: forwarded.
    unsafe {
        decay::tick(h);
        collect_remote(h);
    }
    let s = h.bins[idx].load(Relaxed);
    if !s.is_null() {
        return s;
    }
    // SAFETY: forwarded.
    let s = unsafe { take_span(h, class::span_shift_of(idx % NCLASSES)) };
    if !s.is_null() {
        // SAFETY: a span just taken is unassigned and this heap's.
        unsafe { assign(h, s, idx) };
    }
    s
}

/// Folds the slots other threads freed back into their spans' free bitmaps.
///
/// # Safety
/// As [`alloc_small_slot`].
unsafe fn collect_remote(h: &Heap) {
    let mut s = h.remote.swap(ptr::null_mut(), Acquire);
    while !s.is_null() {
        // SAFETY: queued spans are this heap's; the link is read before `queued` is cleared,
        // after which a freeing thread may queue the span again.
        let sp = unsafe { &*s };
        let next = sp.next_remote.load(Relaxed);
        sp.queued.store(false, SeqCst);
        let class = sp.class.load(Relaxed);
        if class != 0 {
            let words = (sp.capacity.load(Relaxed) as usize).div_ceil(64);
            let mut got = 0;
            for w in 0..words {
                // Sequentially consistent: see `queue_remote`.
                if sp.remote[w].load(SeqCst) != 0 {
                    let v = sp.remote[w].swap(0, AcqRel);
                    if quarantine::IN_USE.load(Relaxed) {
                        quarantine::check_fold(sp, w, v);
                    }
                    sp.set_free_bits(w, v, Relaxed);
                    got += v.count_ones();
                }
            }
            if got > 0 {
                // SAFETY: forwarded.
                unsafe { add_free(h, s, class as usize - 1, got) };
            }
        }
        s = next;
    }
}

/// Accounts `n` slots just freed into span `s` of class `idx`: lists the span again, and
/// gives it back when it is empty and not the class's only span.
///
/// # Safety
/// `s` is a span of the calling thread's heap `h`.
#[inline(always)]
unsafe fn add_free(h: &Heap, s: *mut Span, idx: usize, n: u32) {
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    let nfree = sp.nfree.load(Relaxed) + n;
    sp.nfree.store(nfree, Relaxed);
    if !sp.listed.load(Relaxed) {
        sp.listed.store(true, Relaxed);
        // SAFETY: per the contract; the span was not listed.
        unsafe { push_front(&h.bins[idx], s) };
    }
    if nfree == sp.capacity.load(Relaxed)
        && !(sp.prev.load(Relaxed).is_null() && sp.next.load(Relaxed).is_null())
    {
        // SAFETY: per the contract.
        unsafe { release(h, s, idx) };
    }
}

/// Gives back an empty span: unassigned, cached mapped up to a bound (see [`decay`]), pages
/// returned to the kernel beyond it.
///
/// # Safety
/// `s` is an empty, listed span of class `idx` of the calling thread's heap `h`.
#[cold]
unsafe fn release(h: &Heap, s: *mut Span, idx: usize) {
    // SAFETY: per the contract.
    unsafe { unlink(&h.bins[idx], s) };
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    sp.listed.store(false, Relaxed);
    sp.class.store(0, Release);
    let shift = span_shift(sp.base.load(Relaxed));
    let kind = (shift - MIN_SPAN_SHIFT) as usize;
    let cached = h.cached[kind].load(Relaxed);
    if decay::may_cache(cached, shift) {
        h.cached[kind].store(cached + 1, Relaxed);
    } else {
        // SAFETY: the span holds no live block and is this heap's.
        unsafe { decay::return_pages(sp, shift) };
    }
    sp.next.store(h.empty[kind].load(Relaxed), Relaxed);
    h.empty[kind].store(s, Relaxed);
    // SAFETY: forwarded.
    unsafe { decay::tick(h) };
}

/// Frees slot `slot` of span `s`, from whichever thread.
///
/// # Safety
/// `s` is an assigned span and `slot` one of its slots.
#[inline(always)]
unsafe fn free_small(s: *mut Span, slot: usize, addr: usize) {
    // SAFETY: forwarded.
    if !unsafe { try_free_small(s, slot) } {
        // SAFETY: forwarded.
        corrupt(
            "double free",
            addr,
            unsafe { (*s).size.load(Relaxed) } as usize,
            "",
        );
    }
}

/// Frees slot `slot` of span `s`, from whichever thread; false (and nothing done) if the slot
/// is free already: a double free.
///
/// # Safety
/// `s` is an assigned span and `slot` one of its slots.
#[inline(always)]
unsafe fn try_free_small(s: *mut Span, slot: usize) -> bool {
    // SAFETY: forwarded.
    unsafe { try_free_small_in(s, slot, true) }
}

/// [`try_free_small`], told whether the slot may be in a quarantine (`false` only for a
/// caller that knows no slot of its span ever is).
///
/// # Safety
/// As for [`try_free_small`].
#[inline(always)]
unsafe fn try_free_small_in(s: *mut Span, slot: usize, may_be_quarantined: bool) -> bool {
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    let (w, bit) = (slot / 64, 1u64 << (slot % 64));
    let owner = sp.owner.load(Relaxed);
    let me = CURRENT.with(Cell::get);
    if owner == me {
        if (sp.free[w].load(Relaxed) | sp.remote[w].load(Relaxed)) & bit != 0
            || (may_be_quarantined && quarantine::is_quarantined(sp, w, bit))
        {
            return false;
        }
        sp.set_free_bits(w, bit, Relaxed);
        let idx = sp.class.load(Relaxed) as usize - 1;
        // SAFETY: `me` is this thread's heap and owns `s`.
        unsafe { add_free(&*me, s, idx, 1) };
        return true;
    }
    // Read the owner's bitmap before setting the remote bit: once it is set, the owner may
    // fold it into `free` at any moment, and reading `free` then would call a first free a
    // double one. A slot handed out has its free bit clear, and the pointer's hand-over to
    // this thread made that store visible here.
    let owned = sp.free[w].load(Acquire);
    if owned & bit != 0 {
        return false;
    }
    let old = sp.remote[w].fetch_or(bit, SeqCst);
    if old & bit != 0 || (may_be_quarantined && quarantine::is_quarantined(sp, w, bit)) {
        return false;
    }
    // SAFETY: per the contract; `owner` is the span's owner.
    unsafe { queue_remote(s, owner) };
    true
}

/// Queues span `s` on its owner's remote list, unless it is queued already.
///
/// # Safety
/// `s` is an assigned span and `owner` its owner heap.
#[inline(always)]
unsafe fn queue_remote(s: *mut Span, owner: *mut Heap) {
    // SAFETY: per the contract.
    let sp = unsafe { &*s };
    // A plain load first: once the span is queued, the frees that follow read the flag
    // instead of taking its cache line with a swap each. Sound with the owner's side in
    // `collect_remote`: in the single order of sequentially consistent operations, a load
    // that still sees `true` comes before the owner's `store(false)`, so this free's
    // `fetch_or` of its bit (before the load) comes before the owner's loads of the
    // remote words (after that store), which therefore see the bit.
    if !sp.queued.load(SeqCst) && !sp.queued.swap(true, SeqCst) {
        // SAFETY: a span's owner heap is mmap'd and never unmapped.
        let list = unsafe { &(*owner).remote };
        let mut head = list.load(Relaxed);
        loop {
            sp.next_remote.store(head, Relaxed);
            match list.compare_exchange_weak(head, s, Release, Relaxed) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
    }
}

/// Stops the process over a bad free the heap cannot survive:
/// `secalloc: heap corruption: {what} of {addr}{note}`, with the slot size when known.
#[cold]
fn corrupt(what: &str, addr: usize, size: usize, note: &str) -> ! {
    let mut w = sys::FdWriter::stderr();
    let _ = write!(w, "secalloc: heap corruption: {what} of {addr:#x}");
    if size > 0 {
        let _ = write!(w, " (a {size}-byte slot)");
    }
    let _ = writeln!(w, "{note}");
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}

const NOT_OURS: &str = ": not a block this heap handed out";
const INTERIOR: &str = ", a pointer into the middle of a block";

// ---------------------------------------------------------------------------------------
// GlobalAlloc

/// Takes a slot of class `idx` (`0..2 * NCLASSES`) from the calling thread's heap (or the
/// orphan heap): `(block, span, slot index)`, a null block when out of reservation. `zero`:
/// zero the slot if it was used before.
#[inline(always)]
fn alloc_class(idx: usize, zero: bool) -> (*mut u8, *mut Span, usize) {
    let h = current();
    if h.is_null() {
        if STATE.load(Acquire) != READY {
            return (ptr::null_mut(), ptr::null_mut(), 0);
        }
        let g = ORPHAN.lock();
        // SAFETY: the orphan heap is only used under its lock.
        unsafe { alloc_small_slot(&*g.0, idx, zero) }
    } else {
        // SAFETY: `h` is this thread's heap.
        unsafe { alloc_small_slot(&*h, idx, zero) }
    }
}

impl SecHeap {
    #[inline(always)]
    fn alloc_layout(&self, layout: Layout, zero: bool) -> *mut u8 {
        let Some(idx) = class::for_layout(layout.size(), layout.align()) else {
            return alloc_large(layout.size(), layout.align());
        };
        let p = alloc_class(idx, zero).0;
        if p.is_null() {
            // Out of reservation: map it directly instead.
            return alloc_large(layout.size(), layout.align());
        }
        p
    }
}

// SAFETY: blocks come from committed memory that no other live block overlaps, sized and
// aligned as the layout asks (class sizes are multiples of the alignment, spans aligned to
// 64 KiB; mapped blocks are page- or `align`-aligned); a slot is handed out only while its
// free bit is set and that bit is cleared by its owner before it is returned.
//
// The methods are deliberately not `#[inline]`: an inline method is compiled into the crate
// that declares the `#[global_allocator]`, at that crate's optimisation level, so a debug
// build of a program (its test suite, say) would run the heap unoptimised, several times
// slower. Not inline, they are compiled here, at secalloc's level (the workspace and the
// `scripts/outside-suites` builds optimise secalloc in every profile), for the cost of one
// call from the allocator shim.
unsafe impl GlobalAlloc for SecHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.alloc_layout(layout, false)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.alloc_layout(layout, true)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        let addr = ptr as usize;
        match locate(addr) {
            Located::Slot(s, slot) => {
                let bound = quarantine::limit(self.quarantine_bytes);
                // With a quarantine, a thread that only frees gets a heap (for its ring).
                let h = if bound != 0 {
                    current()
                } else {
                    ptr::null_mut()
                };
                if !h.is_null() {
                    // SAFETY: `h` is this thread's heap; `locate` found an assigned span
                    // and a slot start.
                    unsafe { quarantine::put(&*h, s, slot, addr, bound) }
                } else {
                    // SAFETY: `locate` found an assigned span and a slot start.
                    unsafe { free_small(s, slot, addr) }
                }
            }
            Located::Interior => corrupt("free", addr, 0, INTERIOR),
            Located::Invalid => corrupt("invalid free", addr, 0, NOT_OURS),
            Located::Outside => {
                // Nothing known zero: the heap alone does not wipe.
                if !free_large(addr, 0) {
                    corrupt("invalid free", addr, 0, NOT_OURS)
                }
            }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let addr = ptr as usize;
        let old = match locate(addr) {
            Located::Slot(s, _) => {
                // SAFETY: `locate` found an assigned span.
                let size = unsafe { (*s).size.load(Relaxed) } as usize;
                // In place while the block stays in its class or is at least half used.
                if new_size <= size && (new_size > size / 2 || size <= 128) {
                    return ptr;
                }
                size
            }
            Located::Outside => match large_len(addr) {
                Some(body) => {
                    // Still a mapped block: resized where it is, or its pages moved by the
                    // kernel (only page-aligned blocks may move), never copied.
                    if class::for_layout(new_size, layout.align()).is_none()
                        && (new_size <= body || layout.align() <= PAGE)
                    {
                        let p = large::resize(addr, new_size);
                        if !p.is_null() {
                            return p;
                        }
                    }
                    body
                }
                None => corrupt("invalid realloc", addr, 0, NOT_OURS),
            },
            Located::Interior => corrupt("realloc", addr, 0, INTERIOR),
            Located::Invalid => corrupt("invalid realloc", addr, 0, NOT_OURS),
        };
        // SAFETY: the caller guarantees new_size, rounded to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let p = self.alloc_layout(new_layout, false);
        if !p.is_null() {
            // SAFETY: both blocks are live and distinct; we copy what both hold.
            unsafe {
                ptr::copy_nonoverlapping(ptr, p, old.min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reciprocals_divide_every_offset_of_every_class_exactly() {
        for idx in 0..NCLASSES {
            let size = class::size_of(idx);
            let span = 1usize << class::span_shift_of(idx);
            let m = div_magic(size);
            // Every slot start and its neighbours, up to the span's end.
            for slot in 0..=span / size {
                for n in [
                    slot * size,
                    (slot * size).saturating_sub(1),
                    slot * size + 1,
                ] {
                    if n < span {
                        assert_eq!(slot_of(n, m), n / size, "size {size}, offset {n}");
                    }
                }
            }
            assert_eq!(slot_of(span - 1, m), (span - 1) / size, "size {size}");
        }
    }
}

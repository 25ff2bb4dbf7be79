//! Per-slot records of the tracker's blocks, kept out of line.
//!
//! A span of a tracked class (see [`super::tracked`]) has one record per slot: callsite
//! stack id, scope, slack (the slot's bytes past the requested size, so the size is the
//! class size minus it), log2 of the alignment, a state (empty, live, freed, leaked after
//! corruption) and a parity bit flipped by every allocation of the slot.
//!
//! A record is a 64-bit word (see [`encode`]) of which each slot keeps the low half, its
//! *word*, in the record array: the low 20 bits of the stack id, the low 5 of the slack,
//! the low 3 of the alignment's log2, the state, the parity and a flag saying whether the
//! high half is not 0. The high half holds the scope and the other fields' high bits, so
//! it is 0 for most blocks: no scope, a stack id below 2^20, less than 32 bytes of slack
//! (every class up to 256 bytes with alignments to 16; larger classes when the size is
//! near the class size) and an alignment below 256. Otherwise it is written before the
//! word (release), and read only when the flag says so: for slots of up to
//! [`COMPACT_MAX`] bytes in a parallel *extension array* (whose pages only such slots
//! touch), for larger ones in the span's own share of the records, right after its words
//! (a page holds both: such a span has at most 204 slots). A 16-byte block's record costs
//! a quarter of the block; with 8-byte records it cost half, and the records were most of
//! what stood between small-string work and the peak RSS target (BENCHMARKS.md, session
//! 11). Before a span serves another class, the high halves a larger class left in its
//! share are cleared ([`forget_high_halves`]): the new class's words could lie there.
//!
//! The word is the block's identity for readers: a reader that notes it and finds it
//! unchanged later knows the slot was not freed meanwhile (or was freed and reused twice by
//! a block of the same callsite, size, alignment and scope, which a report cannot tell
//! apart anyway). The thread that allocated a block is not kept (nothing reads it).
//!
//! The records live in a reservation of their own, parallel to the span reservation: 1 MiB
//! of words per 4 MiB segment, committed (`PROT_READ | PROT_WRITE`, lazily backed) when the
//! segment is, so only the pages holding records of slots in use ever cost memory. A
//! span's words start at entry `(span offset >> 16) * MAX_SLOTS`: a span holds at most
//! `MAX_SLOTS` slots and starts on a 64 KiB boundary, so spans never share records. Nothing
//! of it sits next to user data. In profile mode each slot also has its block's allocation
//! time (`Meta::born`) in a parallel array of `u64`s (reserved and committed with the
//! records, touched only when profiling).
//!
//! Directly mapped (large) tracked blocks keep their whole record word in [`LARGE`], a
//! hash table keyed by address under a spin lock (large allocations take a lock and a
//! system call anyway), which also lets a reader *pin* a large block: its free then waits,
//! so the block is not unmapped while a report reads it.
//!
//! [`encode`], [`decode`] and their fast halves `compact_word` and `decode_word` are the
//! one place where a record and the tracker's `Meta` (`crate::block::Meta`) are converted.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use super::class::MIN_SPAN_SHIFT;
use super::{BASE, MAX_SLOTS, SEGMENT_SHIFT};
use crate::block::Meta;
use crate::config::RUNTIME;
use crate::stack::INTERNAL;
use crate::sys::{self, SpinLock};

/// State 0: a slot that never held a tracked block.
/// A live tracked block.
pub(crate) const LIVE: u64 = 1;
/// A tracked block that was freed.
pub(crate) const FREED: u64 = 2;
/// A block leaked after a corruption report (`OnCorruption::Continue`): never freed, never
/// reported, never handed out again.
pub(crate) const LEAKED: u64 = 3;

/// The largest slot whose record's high half goes to the extension array (larger slots
/// keep it in their span's share of the records).
pub(crate) const COMPACT_MAX: usize = 256;

/// Record entries per segment: room for `MAX_SLOTS` words per 64 KiB of the segment (the
/// unit of per-slot arrays: words, extension words, times).
const SEGMENT_RECORDS: usize = ((1 << SEGMENT_SHIFT) >> MIN_SPAN_SHIFT) * MAX_SLOTS;
/// Bytes of one entry of the record array.
const UNIT: usize = core::mem::size_of::<Record>();
const SEGMENT_RECORD_BYTES: usize = SEGMENT_RECORDS * UNIT;

/// One slot's record in the record array: its word (see the module documentation).
#[repr(C, align(4))]
pub(crate) struct Record {
    w: AtomicU32,
}

/// A record's contents, decoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decoded {
    pub meta: Meta,
    pub state: u64,
    /// The block's identity for readers: the record word (slots), or the large block's
    /// generation.
    pub gen: u64,
}

// The record word, 64 bits; its low half is the slot's word in the record array (the high
// half is kept apart when it is not 0):
//   bits  0..20  stack id, low 20 bits (the id all ones for `INTERNAL`)
//        20..25  slack, low 5 bits
//        25..28  log2 align, low 3 bits
//        28..30  state
//        30      parity
//        31      the high half is not 0
//        32..48  scope
//        48..51  stack id, high 3 bits
//        51..62  slack, high 11 bits
//        62..64  log2 align, high 2 bits
const STACK_BITS: u32 = 23;
const STACK_MASK: u64 = (1 << STACK_BITS) - 1;
const LOW_STACK: u32 = 20;
const SLACK_SHIFT: u32 = 20;
const LOW_SLACK: u32 = 5;
const ALIGN_SHIFT: u32 = 25;
const LOW_ALIGN: u32 = 3;
const STATE_SHIFT: u32 = 28;
const PARITY: u64 = 1 << 30;
const HIGH: u64 = 1 << 31;
const SCOPE_SHIFT: u32 = 32;
const HIGH_STACK_SHIFT: u32 = 48;
const HIGH_SLACK_SHIFT: u32 = 51;
const HIGH_ALIGN_SHIFT: u32 = 62;
const SLACK_MASK: u64 = (1 << 16) - 1;
const ALIGN_MASK: u64 = (1 << 5) - 1;

const fn low(bits: u32) -> u64 {
    (1 << bits) - 1
}

// Every stack id fits beside the all-ones stand-in for `INTERNAL`.
const _: () = assert!((crate::stack::MAX_ID as u64) < STACK_MASK);
// The fields tile the word.
const _: () = assert!(HIGH_SLACK_SHIFT - HIGH_STACK_SHIFT == STACK_BITS - LOW_STACK);
const _: () = assert!(HIGH_ALIGN_SHIFT - HIGH_SLACK_SHIFT == 16 - LOW_SLACK);
const _: () = assert!(64 - HIGH_ALIGN_SHIFT == 5 - LOW_ALIGN);

/// The stack value of a record (all ones for `INTERNAL`).
#[inline(always)]
fn stack_value(stack: u32) -> u64 {
    if stack == INTERNAL {
        STACK_MASK
    } else {
        u64::from(stack) & STACK_MASK
    }
}

/// The stack id of a stack value.
#[inline(always)]
fn stack_of(v: u64) -> u32 {
    if v == STACK_MASK {
        INTERNAL
    } else {
        v as u32
    }
}

/// The record word for `meta` in `state` in a slot of `cap` bytes (`meta.size <= cap`, and
/// the slack below 64 KiB: see `slack_fits_every_class_and_alignment`), with parity bit
/// `parity` (0 or [`PARITY`]). Also the large table's record word.
#[inline(always)]
pub(crate) fn encode(meta: &Meta, state: u64, cap: usize, parity: u64) -> u64 {
    let v = stack_value(meta.stack);
    let slack = (cap.saturating_sub(meta.size) as u64).min(SLACK_MASK);
    let a = u64::from(meta.align_log2) & ALIGN_MASK;
    let high = u64::from(meta.scope) << SCOPE_SHIFT
        | (v >> LOW_STACK) << HIGH_STACK_SHIFT
        | (slack >> LOW_SLACK) << HIGH_SLACK_SHIFT
        | (a >> LOW_ALIGN) << HIGH_ALIGN_SHIFT;
    (v & low(LOW_STACK))
        | (slack & low(LOW_SLACK)) << SLACK_SHIFT
        | (a & low(LOW_ALIGN)) << ALIGN_SHIFT
        | state << STATE_SHIFT
        | parity
        | high
        | if high != 0 { HIGH } else { 0 }
}

/// The contents of record word `w` of a slot of `cap` bytes.
#[inline(always)]
pub(crate) fn decode(w: u64, cap: usize) -> Decoded {
    let v =
        (w & low(LOW_STACK)) | ((w >> HIGH_STACK_SHIFT) & low(STACK_BITS - LOW_STACK)) << LOW_STACK;
    let slack = ((w >> SLACK_SHIFT) & low(LOW_SLACK))
        | ((w >> HIGH_SLACK_SHIFT) & low(16 - LOW_SLACK)) << LOW_SLACK;
    let a = ((w >> ALIGN_SHIFT) & low(LOW_ALIGN)) | (w >> HIGH_ALIGN_SHIFT) << LOW_ALIGN;
    Decoded {
        meta: Meta {
            // Saturating: a record left from the span's previous class may say more slack
            // than this class has (its size then means nothing, and its state is not live).
            size: cap.saturating_sub(slack as usize),
            align_log2: a as u32,
            stack: stack_of(v),
            scope: (w >> SCOPE_SHIFT) as u16,
            born: 0,
        },
        state: (w >> STATE_SHIFT) & 3,
        gen: w,
    }
}

/// The contents of record word `w` of a slot of `cap` bytes whose high half is 0: [`decode`]
/// of the word alone (the high half's fields then fold away).
#[inline(always)]
fn decode_word(w: u32, cap: usize) -> Decoded {
    decode(u64::from(w), cap)
}

/// The word for `meta` in `state` in a slot of `cap` bytes (`meta.size <= cap`), with
/// parity bit `parity` (0 or [`PARITY`]), if the record's high half is 0:
/// no scope, a stack id below 2^20, less than 32 bytes of slack, an alignment below 256.
/// Equal to the low half of [`encode`]'s word then.
#[inline(always)]
fn compact_word(meta: &Meta, state: u64, cap: usize, parity: u64) -> Option<u32> {
    // `INTERNAL` (all ones) does not fit, so it needs no case of its own here.
    let v = meta.stack;
    // Wrapping: a size above `cap` (never passed) would not fit either.
    let slack = cap.wrapping_sub(meta.size) as u32;
    let a = meta.align_log2;
    if (v >> LOW_STACK) | (slack >> LOW_SLACK) | (a >> LOW_ALIGN) | u32::from(meta.scope) != 0 {
        return None;
    }
    Some(
        v | slack << SLACK_SHIFT | a << ALIGN_SHIFT | (state as u32) << STATE_SHIFT | parity as u32,
    )
}

/// Slots in a span of the class of `cap`-byte slots.
fn capacity_of(cap: usize) -> usize {
    let shift = super::class::span_shift_of(super::class::index_of(cap));
    (1usize << shift) / cap
}

impl Record {
    /// The slot's index in the per-slot arrays.
    #[inline(always)]
    fn index(&self) -> usize {
        (self as *const Record as usize - RECORDS.load(Relaxed)) / UNIT
    }

    /// Where the high half of the record of a slot of `cap` bytes is kept when it is not 0:
    /// in the extension array for slots of up to [`COMPACT_MAX`] bytes (the span's share
    /// of the records may be full of words), else in the span's share right after its
    /// words (at most 204 of them: words and high halves share a page).
    #[inline(always)]
    fn high(&self, cap: usize) -> &AtomicU32 {
        let p = if cap <= COMPACT_MAX {
            EXT.load(Relaxed) + self.index() * core::mem::size_of::<u32>()
        } else {
            self as *const Record as usize + capacity_of(cap) * UNIT
        };
        // SAFETY: the extension words are reserved and committed with the records, segment
        // by segment, one per entry; a span of slots of more than COMPACT_MAX bytes has at
        // most a sixteenth as many slots as its share of the records has entries, so the
        // entry `capacity` past a slot's is still the span's. Neither is ever unmapped and
        // an AtomicU32 is valid for any bit pattern.
        unsafe { &*(p as *const AtomicU32) }
    }

    /// Reads the record of a slot of `cap` bytes (the owner's own view, or a reader's racy
    /// one: see [`super::tracked`]). In profile mode `meta.born` too.
    #[inline(always)]
    pub(crate) fn read(&self, cap: usize) -> Decoded {
        self.read_in(cap, RUNTIME.profile())
    }

    /// [`read`](Self::read), told whether profile mode is on (by a caller that has the
    /// settings at hand already).
    #[inline(always)]
    pub(crate) fn read_in(&self, cap: usize, profile: bool) -> Decoded {
        if let Some(d) = self.read_compact(cap, profile) {
            return d;
        }
        // The word again: a newer one (a racing reader's) comes with its high half too.
        self.with_born(self.read_with_high(self.w.load(Acquire), cap), profile)
    }

    /// [`read_in`](Self::read_in) of a record without a high half (most blocks'), `None`
    /// for one with a high half, to be read with `read_in` out of line: the caller then
    /// keeps the fast path's decoded record in registers, where a merge with the cold
    /// read's result would put it in memory (the free path stored and reloaded it).
    #[inline(always)]
    pub(crate) fn read_compact(&self, cap: usize, profile: bool) -> Option<Decoded> {
        let w = self.w.load(Acquire);
        if u64::from(w) & HIGH != 0 {
            return None;
        }
        Some(self.with_born(decode_word(w, cap), profile))
    }

    /// `d` with the slot's allocation time when `profile` is on (it is 0 otherwise).
    #[inline(always)]
    fn with_born(&self, mut d: Decoded, profile: bool) -> Decoded {
        if profile {
            d.meta.born = self.born().load(Relaxed);
        }
        d
    }

    /// [`read_in`](Self::read_in) of a record whose word `w` says it has a high half.
    #[cold]
    #[inline(never)]
    fn read_with_high(&self, w: u32, cap: usize) -> Decoded {
        // The high half was written before the word (release): it is at least as new.
        let high = self.high(cap).load(Relaxed);
        let mut d = decode(u64::from(w) | u64::from(high) << 32, cap);
        d.gen = u64::from(w);
        d
    }

    /// The slot's allocation time (profile mode), beside the record in the parallel array.
    #[inline(always)]
    pub(crate) fn born(&self) -> &'static AtomicU64 {
        let p = BORN.load(Relaxed) + self.index() * core::mem::size_of::<u64>();
        // SAFETY: records and times are reserved and committed together, segment by
        // segment, with the same number of entries; the reservation is never unmapped and
        // an AtomicU64 is valid for any bit pattern.
        unsafe { &*(p as *const AtomicU64) }
    }

    /// Writes the record of a slot of `cap` bytes, flipping its parity (with release, so
    /// a reader that sees the new word sees the allocation time and high half too).
    #[inline(always)]
    pub(crate) fn write(&self, meta: &Meta, state: u64, cap: usize) {
        self.write_in(meta, state, cap, RUNTIME.profile())
    }

    /// [`write`](Self::write), told whether profile mode is on.
    #[inline(always)]
    pub(crate) fn write_in(&self, meta: &Meta, state: u64, cap: usize, profile: bool) {
        if profile {
            self.born().store(meta.born, Relaxed);
        }
        let parity = u64::from(!self.w.load(Relaxed)) & PARITY;
        match compact_word(meta, state, cap, parity) {
            Some(w) => self.w.store(w, Release),
            None => self.write_with_high(*meta, state, cap, parity),
        }
    }

    /// [`write_in`](Self::write_in) of a record whose high half is not 0: the high half
    /// first, so that a reader seeing the word's flag sees it. (`meta` by value: a copy
    /// made on this cold path, where a reference would keep the caller's `Meta` in memory
    /// on the hot one.)
    #[cold]
    #[inline(never)]
    fn write_with_high(&self, meta: Meta, state: u64, cap: usize, parity: u64) {
        let w = encode(&meta, state, cap, parity);
        self.high(cap).store((w >> 32) as u32, Relaxed);
        self.w.store(w as u32, Release);
    }

    /// The state and the block's identity (the record's word), without decoding the rest.
    #[inline(always)]
    pub(crate) fn stamp(&self) -> (u64, u64) {
        let w = u64::from(self.w.load(Acquire));
        ((w >> STATE_SHIFT) & 3, w)
    }

    /// Sets the state, keeping the rest.
    #[inline(always)]
    pub(crate) fn set_state(&self, state: u64) {
        let w = self.w.load(Relaxed);
        let w = (w & !(3 << STATE_SHIFT)) | (state as u32) << STATE_SHIFT;
        self.w.store(w, Release);
    }
}

/// Start of the record reservation (0 until [`reserve`]).
static RECORDS: AtomicUsize = AtomicUsize::new(0);
/// Start of the extension array (high halves of records of slots up to `COMPACT_MAX`
/// bytes), parallel to the records.
static EXT: AtomicUsize = AtomicUsize::new(0);
/// Start of the allocation-time reservation, parallel to the records.
static BORN: AtomicUsize = AtomicUsize::new(0);
/// Extension-word bytes per segment.
const SEGMENT_EXT_BYTES: usize = SEGMENT_RECORDS * core::mem::size_of::<u32>();
/// Allocation-time bytes per segment.
const SEGMENT_BORN_BYTES: usize = SEGMENT_RECORDS * core::mem::size_of::<u64>();

/// The per-slot reservations: start, bytes per segment.
fn arrays() -> [(&'static AtomicUsize, usize); 3] {
    [
        (&RECORDS, SEGMENT_RECORD_BYTES),
        (&EXT, SEGMENT_EXT_BYTES),
        (&BORN, SEGMENT_BORN_BYTES),
    ]
}

/// Reserves records for a span reservation of `len` bytes. Called once, by the heap's
/// initialisation.
pub(super) fn reserve(len: usize) -> bool {
    let segments = len >> SEGMENT_SHIFT;
    let mut got = [core::ptr::null_mut(); 3];
    for (k, (_, bytes)) in arrays().into_iter().enumerate() {
        got[k] = sys::reserve(segments * bytes);
        if got[k].is_null() {
            for (&p, (_, bytes)) in got[..k].iter().zip(arrays()) {
                // SAFETY: the reservation was just made here and nothing uses it yet.
                unsafe { sys::unmap(p, segments * bytes) };
            }
            return false;
        }
    }
    for (&p, (start, _)) in got.iter().zip(arrays()) {
        start.store(p as usize, Release);
    }
    true
}

/// Makes the records of segment `i` usable (lazily backed: untouched pages cost nothing).
pub(super) fn commit_segment(i: usize) -> bool {
    arrays().into_iter().all(|(start, bytes)| {
        // SAFETY: the range is segment `i`'s part of one of our own PROT_NONE reservations
        // (`i` is below the number of segments they were sized for), claimed by this thread
        // alone.
        unsafe {
            libc::mprotect(
                (start.load(Acquire) + i * bytes) as *mut libc::c_void,
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
            ) == 0
        }
    })
}

/// Clears the high halves that the span starting at `span_base` kept in its share of the
/// records while it served slots of `cap` bytes, before it serves another class: in that
/// class's words they could read as records of live blocks. Only the owner calls this, with
/// every slot free; nothing else writes there meanwhile. (High halves in the extension
/// array need no clearing: one is read only through a word written after it.)
pub(crate) fn forget_high_halves(span_base: usize, cap: usize) {
    if cap <= COMPACT_MAX {
        return;
    }
    let n = capacity_of(cap);
    let first = first_record(span_base);
    for i in n..2 * n {
        // SAFETY: entries `n..2n` are the span's share (see `Record::high`): committed,
        // never unmapped, atomics valid for any bit pattern.
        let e = unsafe { &*((first + i * UNIT) as *const AtomicU32) };
        e.store(0, Relaxed);
    }
}

/// The index of slot `slot` of the span starting at `span_base` in per-slot arrays.
#[inline(always)]
pub(crate) fn slot_index(span_base: usize, slot: usize) -> usize {
    ((span_base - BASE.load(Relaxed)) >> MIN_SPAN_SHIFT) * MAX_SLOTS + slot
}

/// The record of slot `slot` of the span starting at `span_base`.
#[inline(always)]
pub(crate) fn record(span_base: usize, slot: usize) -> &'static Record {
    record_from(first_record(span_base), slot)
}

/// Where the records of the span starting at `span_base` begin (its slot 0's record), kept
/// in the span's metadata so that finding a slot's record is one add.
#[inline(always)]
pub(crate) fn first_record(span_base: usize) -> usize {
    RECORDS.load(Relaxed) + slot_index(span_base, 0) * UNIT
}

/// The record of slot `slot` of the span whose records begin at `first` (from
/// [`first_record`]).
#[inline(always)]
pub(crate) fn record_from(first: usize, slot: usize) -> &'static Record {
    let p = first + slot * UNIT;
    // SAFETY: `first` is a span's first record, in committed records (before the segment
    // is published), and `slot < MAX_SLOTS`; a record is an atomic, valid for any bit
    // pattern, and the reservation is never unmapped.
    unsafe { &*(p as *const Record) }
}

// ---------------------------------------------------------------------------------------
// Large blocks

/// Most entries the table of large tracked blocks grows to (a power of two).
const LARGE_ENTRIES: usize = 1 << 20;
/// Entries of the table when first mapped: one page.
const LARGE_FIRST: usize = 4096 / core::mem::size_of::<LargeEntry>();

/// A large tracked block: address (0: an empty entry), exact size, record word (encoded
/// with no slack: the size is here), generation, pins.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct LargeEntry {
    pub addr: usize,
    pub size: usize,
    pub w: u64,
    /// A number no other large block had (readers tell a block mapped where a freed one
    /// was apart by it).
    pub gen: u64,
    pub pins: usize,
    pub body: usize,
    /// The block's allocation time (profile mode).
    pub born: u64,
    _pad: usize,
}

impl LargeEntry {
    /// The entry's record, with the exact size and (profile mode) the allocation time.
    pub(crate) fn decoded(&self) -> Decoded {
        let mut d = decode(self.w, self.size);
        d.meta.born = self.born;
        d.gen = self.gen;
        d
    }
}

/// An open-addressing table (linear probing, backward-shift deletion) of the large tracked
/// blocks, kept at most half full: it starts at one page and doubles, so that its memory
/// follows the number of large blocks live at once (a fixed table of a million entries
/// hashed by address put every large block ever allocated on a page of its own: 300 KB on
/// a compiler-like workload, BENCHMARKS.md session 11).
pub(crate) struct LargeTable {
    entries: *mut LargeEntry,
    /// Entries mapped at `entries` (a power of two; 0 before the first insert).
    cap: usize,
    pub count: usize,
}

// SAFETY: the table is only reached through its SpinLock; its entries live in an mmap'd
// region owned by the table.
unsafe impl Send for LargeTable {}

/// The large tracked blocks.
pub(crate) static LARGE: SpinLock<LargeTable> = SpinLock::new(LargeTable::new());

impl LargeTable {
    const fn new() -> Self {
        LargeTable {
            entries: core::ptr::null_mut(),
            cap: 0,
            count: 0,
        }
    }

    /// The home entry of `addr` in a table of `cap` entries.
    fn home(addr: usize, cap: usize) -> usize {
        (addr >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - cap.trailing_zeros())
    }

    fn entry(&mut self, i: usize) -> &mut LargeEntry {
        // SAFETY: callers pass i < cap, entries of the table's own mapping; it is reached
        // only under the lock, which `&mut self` stands for.
        unsafe { &mut *self.entries.add(i) }
    }

    fn find(&mut self, addr: usize) -> Option<usize> {
        if self.cap == 0 {
            return None;
        }
        let mut i = Self::home(addr, self.cap);
        loop {
            let e = self.entry(i);
            if e.addr == addr {
                return Some(i);
            }
            if e.addr == 0 {
                return None;
            }
            i = (i + 1) & (self.cap - 1);
        }
    }

    /// Puts `e` in a free entry of its probe chain (the table has one).
    fn place(&mut self, e: LargeEntry) {
        let mut i = Self::home(e.addr, self.cap);
        while self.entry(i).addr != 0 {
            i = (i + 1) & (self.cap - 1);
        }
        *self.entry(i) = e;
    }

    /// Moves the entries to a table of `cap` entries; false (nothing changed) if it cannot
    /// be mapped.
    fn grow(&mut self, cap: usize) -> bool {
        let p = sys::map_zeroed(cap * core::mem::size_of::<LargeEntry>());
        if p.is_null() {
            return false;
        }
        let (old, old_cap) = (self.entries, self.cap);
        self.entries = p.cast();
        self.cap = cap;
        for i in 0..old_cap {
            // SAFETY: i < old_cap: an entry of the old mapping, still mapped.
            let e = unsafe { *old.add(i) };
            if e.addr != 0 {
                self.place(e);
            }
        }
        if !old.is_null() {
            // SAFETY: the old mapping is the one `grow` mapped before for `old_cap` entries;
            // its entries were moved and nothing else points into it.
            unsafe { sys::unmap(old.cast(), old_cap * core::mem::size_of::<LargeEntry>()) };
        }
        true
    }

    /// Adds the block at `addr`; false when the table cannot grow to hold it.
    pub(crate) fn insert(
        &mut self,
        addr: usize,
        size: usize,
        body: usize,
        born: u64,
        w: u64,
        gen: u64,
    ) -> bool {
        if 2 * (self.count + 1) > self.cap {
            let cap = (2 * self.cap).max(LARGE_FIRST);
            if cap > LARGE_ENTRIES || !self.grow(cap) {
                return false;
            }
        }
        self.place(LargeEntry {
            addr,
            size,
            w,
            gen,
            pins: 0,
            body,
            born,
            _pad: 0,
        });
        self.count += 1;
        true
    }

    /// The entry of the block at `addr`.
    pub(crate) fn get(&mut self, addr: usize) -> Option<&mut LargeEntry> {
        let i = self.find(addr)?;
        Some(self.entry(i))
    }

    /// Removes the block at `addr` (backward-shift deletion, no tombstones); false if absent.
    pub(crate) fn remove(&mut self, addr: usize) -> bool {
        let Some(i) = self.find(addr) else {
            return false;
        };
        let mask = self.cap - 1;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let e = *self.entry(j);
            if e.addr == 0 {
                break;
            }
            let h = Self::home(e.addr, self.cap);
            let dist_j = j.wrapping_sub(h) & mask;
            let dist_hole = hole.wrapping_sub(h) & mask;
            if dist_hole < dist_j {
                *self.entry(hole) = e;
                hole = j;
            }
        }
        self.entry(hole).addr = 0;
        self.count -= 1;
        true
    }

    /// Calls `f` with every entry in use.
    pub(crate) fn for_each(&mut self, mut f: impl FnMut(&LargeEntry)) {
        if self.count == 0 {
            return;
        }
        for i in 0..self.cap {
            let e = *self.entry(i);
            if e.addr != 0 {
                f(&e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_every_field() {
        let cap = 256 << 10;
        let metas = [
            Meta {
                size: 200_000,
                align_log2: 16,
                stack: crate::stack::MAX_ID,
                scope: 0xFFFE,
                born: 0,
            },
            Meta {
                size: cap - 0xFFFF,
                align_log2: 0,
                stack: INTERNAL,
                scope: 0,
                born: 0,
            },
            Meta {
                size: cap,
                align_log2: 31,
                stack: 1,
                scope: u16::MAX,
                born: 0,
            },
        ];
        for meta in metas {
            for state in [0, LIVE, FREED, LEAKED] {
                for parity in [0, PARITY] {
                    let d = decode(encode(&meta, state, cap, parity), cap);
                    assert_eq!(d.meta, meta);
                    assert_eq!(d.state, state);
                }
            }
        }
    }

    /// Layouts that slots of `cap` bytes serve (every one for slots of up to 256 bytes, a
    /// sample with both ends for larger ones), with stacks and scopes at their limits.
    fn cases_for(cap: usize) -> Vec<Meta> {
        use super::super::class;
        let sizes: Vec<usize> = if cap <= COMPACT_MAX {
            (0..=cap).collect()
        } else {
            let mut v: Vec<usize> = (0..=cap).step_by(cap / 64).collect();
            v.extend([cap - 33, cap - 32, cap - 31, cap - 1, cap]);
            v
        };
        let mut out = Vec::new();
        for align_log2 in 0..=cap.trailing_zeros().min(16) {
            for &size in &sizes {
                let Some(idx) = class::for_layout(size, 1 << align_log2) else {
                    continue;
                };
                if class::size_of(idx) != cap {
                    continue;
                }
                for (stack, scope) in [
                    (1, 0),
                    ((1 << 20) - 1, 0),
                    (1 << 20, 0),
                    (crate::stack::MAX_ID, 0),
                    (INTERNAL, 0),
                    (7, 1),
                    (0x5_4321, u16::MAX),
                ] {
                    out.push(Meta {
                        size,
                        align_log2,
                        stack,
                        scope,
                        born: 0,
                    });
                }
            }
        }
        out
    }

    /// Slot sizes of both places for high halves, up to the largest class.
    const CAPS: [usize; 9] = [16, 32, 48, 128, 256, 320, 5 << 10, 80 << 10, 256 << 10];

    #[test]
    fn record_words_need_their_high_half_exactly_when_a_field_does_not_fit() {
        let mut extended = 0;
        let small = (0..super::super::NCLASSES)
            .map(super::super::class::size_of)
            .filter(|&c| c <= COMPACT_MAX);
        for cap in small.chain(CAPS) {
            let cases = cases_for(cap);
            assert!(!cases.is_empty(), "{cap}");
            for meta in cases {
                for state in [0, LIVE, FREED, LEAKED] {
                    for parity in [0, PARITY] {
                        let full = encode(&meta, state, cap, parity);
                        let fits = meta.scope == 0
                            && stack_value(meta.stack) < 1 << LOW_STACK
                            && cap - meta.size < 32
                            && meta.align_log2 < 8;
                        let word = compact_word(&meta, state, cap, parity);
                        assert_eq!(word.is_some(), fits, "{meta:?} in {cap}");
                        assert_eq!(full >> 32 == 0, fits, "{meta:?} in {cap}");
                        assert_eq!(full & HIGH == 0, fits, "{meta:?} in {cap}");
                        if let Some(w) = word {
                            assert_eq!(u64::from(w), full, "{meta:?} in {cap}");
                            let d = decode_word(w, cap);
                            assert_eq!((d.meta, d.state), (meta, state), "in {cap}");
                        }
                        extended += usize::from(!fits);
                        let d = decode(full, cap);
                        assert_eq!(d.meta, meta, "in {cap}");
                        assert_eq!(d.state, state);
                        assert_eq!(full & PARITY, parity);
                    }
                }
            }
        }
        assert!(extended > 0);
    }

    #[test]
    fn records_in_place_keep_high_halves_states_and_identities() {
        super::super::tracked::init_before_tracker();
        // Slots taken from the heap, so that their words, high halves and times are
        // committed memory: high halves in the extension array and in the span's share.
        for size in CAPS {
            let t = super::super::tracked::take(size, 8, false).expect("a tracked slot");
            let super::super::tracked::Found::Slot { rec, cap, .. } =
                super::super::tracked::find(t.addr)
            else {
                panic!("size {size}: not a slot");
            };
            assert_eq!(cap, size);
            // High halves of larger slots sit `capacity_of` entries past their words: it
            // is the number of slots the span really has.
            let span_bytes = 1usize << super::super::span_shift(t.addr);
            assert_eq!(capacity_of(cap), span_bytes / cap, "size {size}");
            let cases = cases_for(cap);
            let step = (cases.len() / 500).max(1);
            for meta in cases
                .into_iter()
                .filter(|m| m.align_log2 <= 3)
                .step_by(step)
            {
                let before = rec.stamp().1;
                rec.write_in(&meta, LIVE, cap, false);
                let (state, id) = rec.stamp();
                assert_eq!(state, LIVE);
                assert_ne!(id, before, "every write flips the parity");
                assert_eq!(rec.read_in(cap, false).meta, meta);
                rec.set_state(FREED);
                let d = rec.read_in(cap, false);
                assert_eq!((d.state, d.meta), (FREED, meta), "only the state changed");
                assert_ne!(rec.stamp().1, id, "a freed block is another identity");
            }
        }
    }

    #[test]
    fn slack_fits_every_class_and_alignment() {
        use super::super::class;
        for align_log2 in 0..=class::MAX_CLASS_ALIGN.trailing_zeros() {
            let align = 1usize << align_log2;
            for size in 1..=class::MAX_CLASS_SIZE {
                if let Some(idx) = class::for_layout(size, align) {
                    let slack = class::size_of(idx) - size;
                    assert!(slack <= SLACK_MASK as usize, "size {size}, align {align}");
                }
            }
        }
    }

    #[test]
    fn large_table_finds_removes_grows_and_keeps_probe_chains() {
        let mut t = LargeTable::new();
        // Addresses colliding on their home entry, and others: the table grows from one
        // page to 512 entries on the way.
        let addrs: Vec<usize> = (1..200).map(|k| 0x7000_0000_0000 + k * 0x1000).collect();
        for (k, &a) in addrs.iter().enumerate() {
            assert!(t.insert(a, a & 0xFFFF, 4096, 0, a as u64, 0));
            assert!(t.cap >= 2 * t.count, "at most half full");
            assert!(t.get(addrs[k / 2]).is_some(), "found again after growing");
        }
        assert_eq!(t.cap, 512);
        for &a in addrs.iter().step_by(3) {
            assert!(t.remove(a));
            assert!(!t.remove(a));
        }
        for (k, &a) in addrs.iter().enumerate() {
            assert_eq!(t.get(a).is_some(), k % 3 != 0, "{a:#x}");
            if let Some(e) = t.get(a) {
                assert_eq!((e.size, e.w), (a & 0xFFFF, a as u64));
            }
        }
        let mut n = 0;
        t.for_each(|e| {
            assert_eq!(e.w, e.addr as u64);
            n += 1;
        });
        assert_eq!(n, t.count);
        assert_eq!(n, addrs.len() - addrs.len().div_ceil(3));
    }

    #[test]
    fn large_table_stays_within_a_page_for_a_few_blocks() {
        let mut t = LargeTable::new();
        // Blocks come and go; never more than 20 live at once.
        for round in 0..100usize {
            for k in 0..20 {
                let a = 0x7100_0000_0000 + (round * 20 + k) * 0x5000;
                assert!(t.insert(a, 1 << 20, 1 << 20, 0, 0, 0));
            }
            for k in 0..20 {
                assert!(t.remove(0x7100_0000_0000 + (round * 20 + k) * 0x5000));
            }
        }
        assert_eq!(t.count, 0);
        assert_eq!(t.cap, LARGE_FIRST, "one page");
    }
}

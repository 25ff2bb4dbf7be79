//! Per-slot records of the tracker's blocks, kept out of line.
//!
//! A span of a tracked class (see [`super::tracked`]) has one 8-byte [`Record`] per slot:
//! callsite stack id, scope, slack (the slot's bytes past the requested size, so the size
//! is the class size minus it), log2 of the alignment, a state (empty, live, freed, leaked
//! after corruption) and a parity bit flipped by every allocation of the slot. The record
//! word as a whole is the block's identity for readers: a reader that notes it and finds
//! it unchanged later knows the slot was not freed meanwhile (or was freed and reused
//! twice by a block of the same callsite, size and scope, which a report cannot tell
//! apart anyway). The thread that allocated a block is not kept (nothing reads it).
//!
//! The records live in a reservation of their own, parallel to the span reservation: 4 MiB
//! of records per 4 MiB segment, committed (`PROT_READ | PROT_WRITE`, lazily backed) when the
//! segment is, so only the pages holding records of slots in use ever cost memory. A span's
//! records start at `(span offset >> 16) * MAX_SLOTS`: a span holds at most `MAX_SLOTS`
//! slots and starts on a 64 KiB boundary, so spans never share records. Nothing of it sits
//! next to user data. In profile mode each slot also has its block's allocation time
//! (`Meta::born`) in a parallel array of `u64`s (reserved and committed with the records,
//! touched only when profiling).
//!
//! Directly mapped (large) tracked blocks keep their record in [`LARGE`], a hash table keyed
//! by address under a spin lock (large allocations take a lock and a system call anyway),
//! which also lets a reader *pin* a large block: its free then waits, so the block is not
//! unmapped while a report reads it.
//!
//! [`encode`] and [`decode`] are the one place where a record and the tracker's
//! `Meta` (`crate::block::Meta`) are converted. Halving the record from 16 bytes (which
//! also held a 24-bit generation and the thread) took 0.05–0.08 off peak RSS against
//! System on the bench suite (BENCHMARKS.md): a 16-byte block's record cost as much as the
//! block.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU64, AtomicUsize};

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

/// Record bytes per segment: room for `MAX_SLOTS` records per 64 KiB of the segment.
const SEGMENT_RECORDS: usize = ((1 << SEGMENT_SHIFT) >> MIN_SPAN_SHIFT) * MAX_SLOTS;
const SEGMENT_RECORD_BYTES: usize = SEGMENT_RECORDS * core::mem::size_of::<Record>();

/// One slot's record (see the module documentation): stack id (24 bits, all ones for
/// `INTERNAL`), scope (16), slack (16), state (2), log2 align (5), parity (1).
#[repr(C)]
pub(crate) struct Record {
    pub w: AtomicU64,
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

const STACK_BITS: u32 = 24;
const STACK_MASK: u64 = (1 << STACK_BITS) - 1;
const SCOPE_SHIFT: u32 = 24;
const SLACK_SHIFT: u32 = 40;
const SLACK_MASK: u64 = 0xFFFF;
const STATE_SHIFT: u32 = 56;
const ALIGN_SHIFT: u32 = 58;
const ALIGN_MASK: u64 = 0x1F;
const PARITY: u64 = 1 << 63;

// Every stack id fits beside the all-ones stand-in for `INTERNAL`.
const _: () = assert!((crate::stack::MAX_ID as u64) < STACK_MASK);

/// The record word for `meta` in `state` in a slot of `cap` bytes (`meta.size <= cap`, and
/// the slack below 64 KiB: see `slack_fits_every_class_and_alignment`), with parity bit
/// `parity` (0 or [`PARITY`]).
#[inline(always)]
pub(crate) fn encode(meta: &Meta, state: u64, cap: usize, parity: u64) -> u64 {
    let stack = if meta.stack == INTERNAL {
        STACK_MASK
    } else {
        u64::from(meta.stack) & STACK_MASK
    };
    let slack = (cap.saturating_sub(meta.size) as u64).min(SLACK_MASK);
    stack
        | (u64::from(meta.scope) << SCOPE_SHIFT)
        | (slack << SLACK_SHIFT)
        | (state << STATE_SHIFT)
        | ((u64::from(meta.align_log2) & ALIGN_MASK) << ALIGN_SHIFT)
        | parity
}

/// The contents of record word `w` of a slot of `cap` bytes.
#[inline(always)]
pub(crate) fn decode(w: u64, cap: usize) -> Decoded {
    let stack = w & STACK_MASK;
    Decoded {
        meta: Meta {
            // Saturating: a record left from the span's previous class may say more slack
            // than this class has (its size then means nothing, and its state is not live).
            size: cap.saturating_sub(((w >> SLACK_SHIFT) & SLACK_MASK) as usize),
            align_log2: ((w >> ALIGN_SHIFT) & ALIGN_MASK) as u32,
            stack: if stack == STACK_MASK {
                INTERNAL
            } else {
                stack as u32
            },
            scope: (w >> SCOPE_SHIFT) as u16,
            born: 0,
        },
        state: (w >> STATE_SHIFT) & 3,
        gen: w,
    }
}

impl Record {
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
        let mut d = decode(self.w.load(Acquire), cap);
        if profile {
            d.meta.born = self.born().load(Relaxed);
        }
        d
    }

    /// The slot's allocation time (profile mode), beside the record in the parallel array.
    #[inline(always)]
    pub(crate) fn born(&self) -> &'static AtomicU64 {
        let index = (self as *const Record as usize - RECORDS.load(Relaxed))
            / core::mem::size_of::<Record>();
        let p = BORN.load(Relaxed) + index * core::mem::size_of::<u64>();
        // SAFETY: records and times are reserved and committed together, segment by
        // segment, with the same number of entries; the reservation is never unmapped and
        // an AtomicU64 is valid for any bit pattern.
        unsafe { &*(p as *const AtomicU64) }
    }

    /// Writes the record of a slot of `cap` bytes, flipping its parity (with release, so
    /// a reader that sees the new word sees the allocation time too).
    #[inline(always)]
    pub(crate) fn write(&self, meta: &Meta, state: u64, cap: usize) {
        self.write_in(meta, state, cap, RUNTIME.profile())
    }

    /// [`write`](Self::write), told whether profile mode is on.
    #[inline(always)]
    pub(crate) fn write_in(&self, meta: &Meta, state: u64, cap: usize, profile: bool) {
        let parity = !self.w.load(Relaxed) & PARITY;
        if profile {
            self.born().store(meta.born, Relaxed);
        }
        self.w.store(encode(meta, state, cap, parity), Release);
    }

    /// The state and the block's identity (the record word), without decoding the rest.
    #[inline(always)]
    pub(crate) fn stamp(&self) -> (u64, u64) {
        let w = self.w.load(Acquire);
        ((w >> STATE_SHIFT) & 3, w)
    }

    /// Sets the state, keeping the rest.
    #[inline(always)]
    pub(crate) fn set_state(&self, state: u64) {
        let w = self.w.load(Relaxed);
        self.w
            .store((w & !(3 << STATE_SHIFT)) | (state << STATE_SHIFT), Release);
    }
}

/// Start of the record reservation (0 until [`reserve`]).
static RECORDS: AtomicUsize = AtomicUsize::new(0);
/// Start of the allocation-time reservation, parallel to the records.
static BORN: AtomicUsize = AtomicUsize::new(0);
/// Allocation-time bytes per segment.
const SEGMENT_BORN_BYTES: usize = SEGMENT_RECORDS * core::mem::size_of::<u64>();

/// Reserves records for a span reservation of `len` bytes. Called once, by the heap's
/// initialisation.
pub(super) fn reserve(len: usize) -> bool {
    let segments = len >> SEGMENT_SHIFT;
    let p = sys::reserve(segments * SEGMENT_RECORD_BYTES);
    if p.is_null() {
        return false;
    }
    let b = sys::reserve(segments * SEGMENT_BORN_BYTES);
    if b.is_null() {
        // SAFETY: the records' reservation was just made here and nothing uses it yet.
        unsafe { sys::unmap(p, segments * SEGMENT_RECORD_BYTES) };
        return false;
    }
    RECORDS.store(p as usize, Release);
    BORN.store(b as usize, Release);
    true
}

/// Makes the records of segment `i` usable (lazily backed: untouched pages cost nothing).
pub(super) fn commit_segment(i: usize) -> bool {
    let commit = |start: usize, len: usize| {
        // SAFETY: the range is segment `i`'s part of one of our own PROT_NONE reservations
        // (`i` is below the number of segments they were sized for), claimed by this thread
        // alone.
        unsafe {
            libc::mprotect(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
            ) == 0
        }
    };
    commit(
        RECORDS.load(Acquire) + i * SEGMENT_RECORD_BYTES,
        SEGMENT_RECORD_BYTES,
    ) && commit(
        BORN.load(Acquire) + i * SEGMENT_BORN_BYTES,
        SEGMENT_BORN_BYTES,
    )
}

/// The index of slot `slot` of the span starting at `span_base` in per-slot arrays.
#[inline(always)]
pub(crate) fn slot_index(span_base: usize, slot: usize) -> usize {
    ((span_base - BASE.load(Relaxed)) >> MIN_SPAN_SHIFT) * MAX_SLOTS + slot
}

/// The record of slot `slot` of the span starting at `span_base`.
#[inline(always)]
pub(crate) fn record(span_base: usize, slot: usize) -> &'static Record {
    let p = RECORDS.load(Relaxed) + slot_index(span_base, slot) * core::mem::size_of::<Record>();
    // SAFETY: the span lies in a committed segment, whose records are committed with it
    // (before the segment is published), and `slot < MAX_SLOTS`; a record is two atomics,
    // valid for any bit pattern, and the reservation is never unmapped.
    unsafe { &*(p as *const Record) }
}

/// Where the records of the span starting at `span_base` begin (its slot 0's record), kept
/// in the span's metadata so that finding a slot's record is one add.
#[inline(always)]
pub(crate) fn first_record(span_base: usize) -> usize {
    RECORDS.load(Relaxed) + slot_index(span_base, 0) * core::mem::size_of::<Record>()
}

/// The record of slot `slot` of the span whose records begin at `first` (from
/// [`first_record`]).
#[inline(always)]
pub(crate) fn record_from(first: usize, slot: usize) -> &'static Record {
    let p = first + slot * core::mem::size_of::<Record>();
    // SAFETY: as in `record`: `first` is a span's first record, in committed records.
    unsafe { &*(p as *const Record) }
}

// ---------------------------------------------------------------------------------------
// Large blocks

/// Entries of the table of large tracked blocks (a power of two).
const LARGE_ENTRIES: usize = 1 << 20;
const ENTRIES_PER_PAGE: usize = 4096 / core::mem::size_of::<LargeEntry>();
const SUMMARY_WORDS: usize = LARGE_ENTRIES / ENTRIES_PER_PAGE / 64;

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

pub(crate) struct LargeTable {
    entries: *mut LargeEntry,
    /// A bit per page of entries that was ever written (scans skip the others).
    summary: [u64; SUMMARY_WORDS],
    pub count: usize,
}

// SAFETY: the table is only reached through its SpinLock; its entries live in an mmap'd
// region that is never unmapped.
unsafe impl Send for LargeTable {}

/// The large tracked blocks.
pub(crate) static LARGE: SpinLock<LargeTable> = SpinLock::new(LargeTable {
    entries: core::ptr::null_mut(),
    summary: [0; SUMMARY_WORDS],
    count: 0,
});

fn home(addr: usize) -> usize {
    (addr >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        >> (usize::BITS - LARGE_ENTRIES.trailing_zeros())
}

impl LargeTable {
    fn entry(&mut self, i: usize) -> &mut LargeEntry {
        // SAFETY: callers pass i < LARGE_ENTRIES; the table is mapped (checked by callers)
        // and reached only under the lock, which `&mut self` stands for.
        unsafe { &mut *self.entries.add(i) }
    }

    fn find(&mut self, addr: usize) -> Option<usize> {
        if self.entries.is_null() {
            return None;
        }
        let mut i = home(addr);
        loop {
            let e = self.entry(i);
            if e.addr == addr {
                return Some(i);
            }
            if e.addr == 0 {
                return None;
            }
            i = (i + 1) & (LARGE_ENTRIES - 1);
        }
    }

    /// Adds the block at `addr`; false when no table can be mapped or it is full.
    pub(crate) fn insert(
        &mut self,
        addr: usize,
        size: usize,
        body: usize,
        born: u64,
        w: u64,
        gen: u64,
    ) -> bool {
        if self.entries.is_null() {
            let p = sys::map_zeroed(LARGE_ENTRIES * core::mem::size_of::<LargeEntry>());
            if p.is_null() {
                return false;
            }
            self.entries = p.cast();
        }
        if self.count + 1 >= LARGE_ENTRIES {
            return false;
        }
        let mut i = home(addr);
        while self.entry(i).addr != 0 {
            i = (i + 1) & (LARGE_ENTRIES - 1);
        }
        *self.entry(i) = LargeEntry {
            addr,
            size,
            w,
            gen,
            pins: 0,
            body,
            born,
            _pad: 0,
        };
        let page = i / ENTRIES_PER_PAGE;
        self.summary[page / 64] |= 1 << (page % 64);
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
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & (LARGE_ENTRIES - 1);
            let e = *self.entry(j);
            if e.addr == 0 {
                break;
            }
            let h = home(e.addr);
            let dist_j = j.wrapping_sub(h) & (LARGE_ENTRIES - 1);
            let dist_hole = hole.wrapping_sub(h) & (LARGE_ENTRIES - 1);
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
        if self.entries.is_null() || self.count == 0 {
            return;
        }
        for w in 0..SUMMARY_WORDS {
            let mut bits = self.summary[w];
            while bits != 0 {
                let page = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                for i in page * ENTRIES_PER_PAGE..(page + 1) * ENTRIES_PER_PAGE {
                    let e = *self.entry(i);
                    if e.addr != 0 {
                        f(&e);
                    }
                }
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
        let r = Record {
            w: AtomicU64::new(0),
        };
        let meta = metas[0];
        r.write(&meta, LIVE, cap);
        let (state, first) = r.stamp();
        assert_eq!(state, LIVE);
        r.set_state(FREED);
        assert_eq!(r.stamp().0, FREED);
        assert_eq!(
            r.read(cap).meta,
            meta,
            "the state change leaves the rest alone"
        );
        // The same block allocated again in the slot reads as another one.
        r.write(&meta, LIVE, cap);
        assert_ne!(r.stamp(), (LIVE, first));
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
    fn large_table_finds_removes_and_keeps_probe_chains() {
        let mut t = LargeTable {
            entries: core::ptr::null_mut(),
            summary: [0; SUMMARY_WORDS],
            count: 0,
        };
        // Addresses colliding on their home entry, and others.
        let addrs: Vec<usize> = (1..200).map(|k| 0x7000_0000_0000 + k * 0x1000).collect();
        for &a in &addrs {
            assert!(t.insert(a, a & 0xFFFF, 4096, 0, a as u64, 0));
        }
        for &a in addrs.iter().step_by(3) {
            assert!(t.remove(a));
            assert!(!t.remove(a));
        }
        for (k, &a) in addrs.iter().enumerate() {
            assert_eq!(t.get(a).is_some(), k % 3 != 0, "{a:#x}");
        }
        let mut n = 0;
        t.for_each(|e| {
            assert_eq!(e.w, e.addr as u64);
            n += 1;
        });
        assert_eq!(n, t.count);
        assert_eq!(n, addrs.len() - addrs.len().div_ceil(3));
    }
}

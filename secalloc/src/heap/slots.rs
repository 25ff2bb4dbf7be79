//! Per-slot records of the tracker's blocks, kept out of line.
//!
//! A span of a tracked class (see [`super::tracked`]) has one 16-byte [`Record`] per slot:
//! requested size, log2 of the alignment, callsite stack id, scope, thread, a state (empty,
//! live, freed, leaked after corruption) and a generation bumped on every allocation and
//! free of the slot (so a reader can tell that a slot it looked at was freed meanwhile).
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
//! `Meta` (`crate::block::Meta`) are converted.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU64, AtomicUsize};

use super::class::MIN_SPAN_SHIFT;
use super::{BASE, MAX_SLOTS, SEGMENT_SHIFT};
use crate::block::Meta;
use crate::config::RUNTIME;
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

/// One slot's record (see the module documentation). `w0`: size (32 bits, saturated; large
/// blocks keep the exact size beside it), generation (24), state (2), log2 align (6).
/// `w1`: stack id (32), scope (16), thread (16).
#[repr(C)]
pub(crate) struct Record {
    pub w0: AtomicU64,
    pub w1: AtomicU64,
}

/// A record's contents, decoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decoded {
    pub meta: Meta,
    pub state: u64,
    pub gen: u32,
}

const GEN_SHIFT: u32 = 32;
const GEN_MASK: u64 = (1 << 24) - 1;
const STATE_SHIFT: u32 = 56;
const ALIGN_SHIFT: u32 = 58;

/// The record words for `meta` in `state` with generation `gen`.
#[inline(always)]
pub(crate) fn encode(meta: &Meta, state: u64, gen: u32) -> (u64, u64) {
    let size = meta.size.min(u32::MAX as usize) as u64;
    let w0 = size
        | ((u64::from(gen) & GEN_MASK) << GEN_SHIFT)
        | (state << STATE_SHIFT)
        | (u64::from(meta.align_log2) << ALIGN_SHIFT);
    let w1 = u64::from(meta.stack) | (u64::from(meta.scope) << 32) | (u64::from(meta.thread) << 48);
    (w0, w1)
}

/// The contents of record words `w0`, `w1`.
#[inline(always)]
pub(crate) fn decode(w0: u64, w1: u64) -> Decoded {
    Decoded {
        meta: Meta {
            size: (w0 as u32) as usize,
            align_log2: (w0 >> ALIGN_SHIFT) as u32,
            stack: w1 as u32,
            scope: (w1 >> 32) as u16,
            thread: (w1 >> 48) as u16,
            born: 0,
        },
        state: (w0 >> STATE_SHIFT) & 3,
        gen: ((w0 >> GEN_SHIFT) & GEN_MASK) as u32,
    }
}

impl Record {
    /// Reads the record (the owner's own view, or a reader's racy one: see [`super::tracked`]).
    /// In profile mode `meta.born` too.
    #[inline(always)]
    pub(crate) fn read(&self) -> Decoded {
        let w0 = self.w0.load(Acquire);
        let w1 = self.w1.load(Relaxed);
        let mut d = decode(w0, w1);
        if RUNTIME.profile() {
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

    /// Writes the record: `w1` first, then `w0` (state and generation) with release, so a
    /// reader that sees the new generation sees the new stack too.
    #[inline(always)]
    pub(crate) fn write(&self, meta: &Meta, state: u64, gen: u32) {
        let (w0, w1) = encode(meta, state, gen);
        if RUNTIME.profile() {
            self.born().store(meta.born, Relaxed);
        }
        self.w1.store(w1, Relaxed);
        self.w0.store(w0, Release);
    }

    /// The generation and state, without the rest.
    #[inline(always)]
    pub(crate) fn stamp(&self) -> (u64, u32) {
        let w0 = self.w0.load(Acquire);
        (
            (w0 >> STATE_SHIFT) & 3,
            ((w0 >> GEN_SHIFT) & GEN_MASK) as u32,
        )
    }

    /// Sets state and generation, keeping the rest.
    #[inline(always)]
    pub(crate) fn set_stamp(&self, state: u64, gen: u32) {
        let w0 = self.w0.load(Relaxed);
        let keep = w0 & !((3 << STATE_SHIFT) | (GEN_MASK << GEN_SHIFT));
        self.w0.store(
            keep | (state << STATE_SHIFT) | ((u64::from(gen) & GEN_MASK) << GEN_SHIFT),
            Release,
        );
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

// ---------------------------------------------------------------------------------------
// Large blocks

/// Entries of the table of large tracked blocks (a power of two).
const LARGE_ENTRIES: usize = 1 << 20;
const ENTRIES_PER_PAGE: usize = 4096 / core::mem::size_of::<LargeEntry>();
const SUMMARY_WORDS: usize = LARGE_ENTRIES / ENTRIES_PER_PAGE / 64;

/// A large tracked block: address (0: an empty entry), exact size, record words, pins.
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct LargeEntry {
    pub addr: usize,
    pub size: usize,
    pub w0: u64,
    pub w1: u64,
    pub pins: usize,
    pub body: usize,
    /// The block's allocation time (profile mode).
    pub born: u64,
    _pad: usize,
}

impl LargeEntry {
    /// The entry's record, with the exact size and (profile mode) the allocation time.
    pub(crate) fn decoded(&self) -> Decoded {
        let mut d = decode(self.w0, self.w1);
        d.meta.size = self.size;
        d.meta.born = self.born;
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
        w: (u64, u64),
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
            w0: w.0,
            w1: w.1,
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
        let meta = Meta {
            size: 200_000,
            align_log2: 16,
            stack: 0xDEAD_BEEF,
            scope: 0xFFFE,
            thread: 0x1234,
            born: 0,
        };
        for state in [0, LIVE, FREED, LEAKED] {
            for gen in [0, 1, 0xFF_FFFF] {
                let (w0, w1) = encode(&meta, state, gen);
                let d = decode(w0, w1);
                assert_eq!(d.meta, meta);
                assert_eq!(d.state, state);
                assert_eq!(d.gen, gen);
            }
        }
        let r = Record {
            w0: AtomicU64::new(0),
            w1: AtomicU64::new(0),
        };
        r.write(&meta, LIVE, 7);
        r.set_stamp(FREED, 8);
        assert_eq!(r.stamp(), (FREED, 8));
        assert_eq!(r.read().meta, meta, "the stamp leaves the rest alone");
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
            assert!(t.insert(a, a & 0xFFFF, 4096, 0, (a as u64, 0)));
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
            assert_eq!(e.w0, e.addr as u64);
            n += 1;
        });
        assert_eq!(n, t.count);
        assert_eq!(n, addrs.len() - addrs.len().div_ceil(3));
    }
}

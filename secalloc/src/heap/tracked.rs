//! The tracker's entry points into the heap: blocks whose metadata lives out of line.
//!
//! `SecAlloc::new()` allocates from *tracked* classes: each size class has a twin at index
//! `NCLASSES + class` with spans of its own, whose slots have a [`Record`] each in
//! [`slots`]. The live set is the spans' bitmaps (a slot is live while its
//! free and remote bits are clear; freeing a free slot is a double free, detected exactly)
//! and the records say what is in each slot. Directly mapped blocks keep their record in
//! the large table. Nothing here allocates through the global allocator.
//!
//! # Readers
//!
//! Reports and the reachability scan enumerate live blocks with [`for_each_live`] while
//! other threads allocate and free. A slot's memory is never unmapped (at most its pages go
//! back to the kernel and read as zero), so reading it is always safe; a reader notes the
//! record (the block's identity, see [`slots`]), reads, and reads the record again
//! ([`stamp`]): if it changed, the block was freed (and maybe reallocated) meanwhile and
//! what was read is discarded. A
//! directly mapped block is unmapped when freed, so a reader *pins* it ([`pin_large`]) and
//! its free waits for the pin to go.

use core::sync::atomic::Ordering::{Acquire, Relaxed};
use core::sync::atomic::{AtomicBool, AtomicU64};

use super::slots::{self, Record, LARGE, LEAKED, LIVE};
use super::{class, locate, seg_meta, Located, Span, NCLASSES, PAGE, SEGMENT, SEGMENTS};
use crate::block::Meta;
use crate::config::Hot;

/// Sets the heap up now, before the tracker registers its fork handlers: handlers run in
/// reverse order of registration, so the heap's (which take its locks) then run after the
/// tracker's, whose locks are held while allocating — the other order deadlocks a fork
/// racing with a report.
pub(crate) fn init_before_tracker() {
    if super::STATE.load(Acquire) != super::READY {
        super::init();
    }
}

/// A block just taken from the heap for the tracker, its record not yet written.
pub(crate) struct Taken {
    pub addr: usize,
    /// Bytes the block may use: the class size, or the mapped length of a large block.
    pub cap: usize,
    /// The slot's record (null for a directly mapped block).
    rec: *const Record,
}

/// A slot of a tracked span, for giving it back.
pub(crate) struct SlotRef {
    span: *mut Span,
    slot: usize,
}

/// A tracked block found by address, for a free or a realloc.
pub(crate) enum Found {
    /// A slot of a tracked class.
    Slot {
        at: SlotRef,
        rec: &'static Record,
        cap: usize,
    },
    /// A directly mapped block: its record and mapped length.
    Large { entry: slots::LargeEntry },
    /// Not the start of a block handed out to the tracker.
    NotOurs,
}

/// The tracked twin of the class for a layout, if a class serves it.
#[inline(always)]
fn tracked_class(size: usize, align: usize) -> Option<usize> {
    class::for_layout(size, align).map(|i| i + NCLASSES)
}

/// Whether a block of `old` bytes aligned to `align` can become `new` bytes in place: the
/// same class, or (large blocks) within the mapped length `cap` and still too large for a
/// class.
#[inline(always)]
pub(crate) fn fits_in_place(old: usize, new: usize, align: usize, cap: usize, large: bool) -> bool {
    if large {
        new <= cap && new > class::MAX_CLASS_SIZE
    } else {
        new <= cap && tracked_class(new, align) == tracked_class(old, align)
    }
}

/// Page-rounded length of a directly mapped block of `size` bytes (as `alloc_large` maps).
pub(crate) fn large_body(size: usize) -> usize {
    (size.max(1) + PAGE - 1) & !(PAGE - 1)
}

/// Takes a block for `size` bytes aligned to `align`. `zero`: zero a slot that was used
/// before (the tracker asks only when freed slots are not wiped; fresh memory is zero).
#[inline(always)]
pub(crate) fn take(size: usize, align: usize, zero: bool) -> Option<Taken> {
    if let Some(idx) = tracked_class(size, align) {
        let (p, span, slot) = super::alloc_class(idx, zero);
        if !p.is_null() {
            // SAFETY: `span` is the assigned span the slot came from.
            let first = unsafe { (*span).records.load(Relaxed) };
            return Some(Taken {
                addr: p as usize,
                cap: class::size_of_class(idx - NCLASSES),
                rec: slots::record_from(first, slot),
            });
        }
    }
    take_large(size, align)
}

#[cold]
fn take_large(size: usize, align: usize) -> Option<Taken> {
    let p = super::alloc_large(size, align);
    if p.is_null() {
        return None;
    }
    Some(Taken {
        addr: p as usize,
        cap: large_body(size),
        rec: core::ptr::null(),
    })
}

/// Generations of large blocks (a fresh one per block, so a block mapped where a freed one
/// was is told apart).
static LARGE_GEN: AtomicU64 = AtomicU64::new(1);

impl Taken {
    /// The state of the slot's record as it was before this allocation (`None` for a large
    /// block).
    #[inline(always)]
    pub(crate) fn previous_state(&self) -> Option<u64> {
        // SAFETY: a non-null `rec` points into the committed, never-unmapped records.
        unsafe { self.rec.as_ref() }.map(|r| r.stamp().0)
    }

    /// Publishes the block as live with `meta`. False when a large block's record cannot
    /// be stored (the block is then unmapped again: out of memory).
    #[inline(always)]
    pub(crate) fn publish(&self, meta: &Meta, hot: Hot) -> bool {
        // SAFETY: a non-null `rec` points into the committed, never-unmapped records.
        if let Some(rec) = unsafe { self.rec.as_ref() } {
            rec.write_in(meta, LIVE, self.cap, hot.profile());
            return true;
        }
        self.publish_large(*meta)
    }

    /// [`publish`](Self::publish) of a directly mapped block: its entry in the large table.
    /// (`meta` by value, as for the record's cold write.)
    #[cold]
    #[inline(never)]
    fn publish_large(&self, meta: Meta) -> bool {
        let gen = LARGE_GEN.fetch_add(1, Relaxed);
        let w = slots::encode(&meta, LIVE, meta.size, 0);
        if LARGE
            .lock()
            .insert(self.addr, meta.size, self.cap, meta.born, w, gen)
        {
            return true;
        }
        // Never written: all zero.
        super::free_large(self.addr, usize::MAX);
        false
    }

    /// Marks the slot as leaked after a corruption report: it is never handed out again.
    pub(crate) fn leak(&self, meta: &Meta) {
        // SAFETY: as in `publish`.
        if let Some(rec) = unsafe { self.rec.as_ref() } {
            rec.write(meta, LEAKED, self.cap);
        }
    }
}

/// The record of the slot before `addr` in its span, if `addr` is a slot of a tracked span
/// and not its first.
pub(crate) fn record_before(addr: usize, cap: usize) -> Option<slots::Decoded> {
    match find(addr.checked_sub(cap)?) {
        Found::Slot { rec, cap, .. } => Some(rec.read(cap)),
        _ => None,
    }
}

/// The tracked block starting at `addr`.
#[inline(always)]
pub(crate) fn find(addr: usize) -> Found {
    match locate(addr) {
        Located::Slot(span, slot) => {
            // SAFETY: `locate` found an assigned span in mapped metadata.
            let sp = unsafe { &*span };
            let class = sp.class.load(Acquire) as usize;
            if class <= NCLASSES {
                return Found::NotOurs;
            }
            Found::Slot {
                at: SlotRef { span, slot },
                rec: slots::record_from(sp.records.load(Relaxed), slot),
                cap: sp.size.load(Relaxed) as usize,
            }
        }
        Located::Outside => find_large(addr),
        Located::Interior | Located::Invalid => Found::NotOurs,
    }
}

#[cold]
fn find_large(addr: usize) -> Found {
    let mut t = LARGE.lock();
    match t.get(addr) {
        Some(e) => Found::Large { entry: *e },
        None => Found::NotOurs,
    }
}

/// The tracker's quarantine bound (`SECALLOC_QUARANTINE_BYTES`, read when the heap is set
/// up), 0 for none.
pub(crate) fn quarantine_bound() -> usize {
    super::quarantine::limit(0)
}

/// Gives a freed slot back to the heap; false if it was free already (a double free racing
/// with this one). `hot`: the settings (whether the tracker quarantines freed slots).
///
/// # Safety
/// `at` comes from [`find`] for a block whose record was marked freed.
#[inline(always)]
pub(crate) unsafe fn give_back_slot(at: SlotRef, hot: Hot) -> bool {
    // With a quarantine (`SECALLOC_QUARANTINE_BYTES`), the slot waits in this thread's ring
    // before it can be handed out again; its record already says freed, so a double free
    // meanwhile is still caught by the tracker. Without one, no tracked slot is ever
    // quarantined (only the tracker quarantines slots of tracked spans), so the free needs
    // no look at the quarantine bitmap.
    if !hot.quarantine() {
        // SAFETY: forwarded.
        return unsafe { super::try_free_small_in(at.span, at.slot, false) };
    }
    let bound = super::quarantine::limit(0);
    if bound != 0 {
        let h = super::current();
        if !h.is_null() {
            // SAFETY: `at` names an assigned span (forwarded contract).
            let sp = unsafe { &*at.span };
            let addr = sp.base.load(Relaxed) + at.slot * sp.size.load(Relaxed) as usize;
            // SAFETY: `h` is this thread's heap; `at` is a slot of an assigned span.
            unsafe { super::quarantine::put(&*h, at.span, at.slot, addr, bound) };
            return true;
        }
    }
    // SAFETY: forwarded.
    unsafe { super::try_free_small(at.span, at.slot) }
}

/// Takes the large block at `addr` out of the table once no reader pins it; false if it is
/// not there (any more). The caller then wipes it and calls [`unmap_large`].
pub(crate) fn remove_large(addr: usize) -> bool {
    loop {
        let mut t = LARGE.lock();
        match t.get(addr) {
            None => return false,
            Some(e) if e.pins > 0 => {
                drop(t);
                crate::sys::wait_while(|| LARGE.lock().get(addr).is_some_and(|e| e.pins > 0));
            }
            Some(_) => return t.remove(addr),
        }
    }
}

/// Gives back a large block taken out of the table by [`remove_large`], whose first
/// `zeroed` bytes the caller wiped to zero (0 if it did not wipe): the heap zeroes the rest
/// and keeps the mapping for reuse for a while, or unmaps it.
pub(crate) fn unmap_large(addr: usize, zeroed: usize) {
    super::free_large(addr, zeroed);
}

/// Wipes the first `len` bytes of the freed large block at `user` (out of the table, see
/// [`remove_large`]) with `mode`, without faulting in the pages the block never touched:
/// those are discarded instead and read as zero (a wipe would fault each one in only to
/// overwrite its zeros, and the heap keeps a freed mapping resident for reuse). With
/// `Wipe::Off`, nothing.
///
/// # Safety
/// As [`crate::wipe::wipe_on_thread`]; `user` is a large block's (page-aligned) start.
pub(crate) unsafe fn wipe_large(
    ts: *mut crate::thread::ThreadState,
    user: *mut u8,
    len: usize,
    mode: crate::Wipe,
) {
    if mode == crate::Wipe::Off {
        return;
    }
    // SAFETY: per the contract, the block's mapping is this thread's alone; each stretch
    // handed to the wipe lies inside it.
    unsafe {
        super::large::clear_untouched_free(user as usize, len, |p, n| {
            crate::wipe::wipe_on_thread(ts, p as *mut u8, n, mode)
        })
    };
}

/// Calls `f` with each freed mapping the heap keeps for reuse (`start`, `len`): the heap's
/// own memory, all zero, no block's (the reachability scan skips them).
pub(crate) fn for_each_cached_mapping(f: impl FnMut(usize, usize)) {
    super::large::for_each_cached(f);
}

/// Updates a large block's record after a realloc in place.
pub(crate) fn update_large(addr: usize, meta: &Meta) {
    let gen = LARGE_GEN.fetch_add(1, Relaxed);
    if let Some(e) = LARGE.lock().get(addr) {
        e.w = slots::encode(meta, LIVE, meta.size, 0);
        e.gen = gen;
        e.size = meta.size;
        e.born = meta.born;
    }
}

/// Whether a large block aligned to `align` can be moved by remapping its pages (the kernel
/// keeps only page alignment).
pub(crate) fn remappable(align: usize) -> bool {
    align <= super::PAGE
}

/// Moves the large tracked block of `entry`, already out of the table ([`remove_large`]), to
/// `meta.size` bytes by remapping its pages (`mremap`: pages move, no copy of the bytes is
/// left behind; the guard page follows the new end). Returns its new address, entered in
/// the table with `meta` as a new allocation; `None` (and the entry put back as it was) if
/// the kernel refused.
pub(crate) fn remap_large(entry: &slots::LargeEntry, meta: &Meta) -> Option<usize> {
    let q = super::large::resize(entry.addr, meta.size) as usize;
    let mut t = LARGE.lock();
    if q == 0 {
        t.insert(
            entry.addr, entry.size, entry.body, entry.born, entry.w, entry.gen,
        );
        return None;
    }
    let gen = LARGE_GEN.fetch_add(1, Relaxed);
    let w = slots::encode(meta, LIVE, meta.size, 0);
    // The entry just removed left room: the insert cannot find the table full.
    t.insert(q, meta.size, large_body(meta.size), meta.born, w, gen);
    Some(q)
}

/// Sets the allocation time of the tracked block at `addr` (profile mode: the time is known
/// only once the block is counted, after it was published).
pub(crate) fn set_born(addr: usize, born: u64) {
    match find(addr) {
        Found::Slot { rec, .. } => rec.born().store(born, Relaxed),
        Found::Large { .. } => {
            if let Some(e) = LARGE.lock().get(addr) {
                e.born = born;
            }
        }
        Found::NotOurs => {}
    }
}

/// Marks a large block leaked after a corruption report (it stays mapped, never reported).
pub(crate) fn leak_large(addr: usize, meta: &Meta) {
    if let Some(e) = LARGE.lock().get(addr) {
        let size = e.size;
        e.w = slots::encode(&Meta { size, ..*meta }, LEAKED, size, 0);
    }
}

/// A live tracked block seen by [`for_each_live`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiveBlock {
    pub addr: usize,
    pub meta: Meta,
    pub gen: u64,
    pub large: bool,
}

/// Calls `f` with every tracked block live when its record is read: slots of tracked spans
/// in address order, then directly mapped blocks. Must run untracked (it may take the large
/// table's lock).
pub(crate) fn for_each_live(mut f: impl FnMut(LiveBlock)) {
    if super::STATE.load(Acquire) != super::READY {
        return;
    }
    let segments = SEGMENTS
        .load(Acquire)
        .min(super::RESERVED.load(Relaxed) >> super::SEGMENT_SHIFT);
    for i in 0..segments {
        let m = seg_meta(i);
        // SAFETY: segment metadata below SEGMENTS is mapped; fields are atomics.
        let shift = unsafe { (*m).shift.load(Acquire) };
        if shift == 0 {
            continue;
        }
        for j in 0..(SEGMENT >> shift) {
            // SAFETY: j < spans in the segment.
            let sp = unsafe { &*core::ptr::addr_of!((*m).spans[j]) };
            let class = sp.class.load(Acquire) as usize;
            if class <= NCLASSES {
                continue;
            }
            let size = class::size_of(class - 1 - NCLASSES);
            let cap = ((1usize << shift) / size).min(super::MAX_SLOTS);
            let base = sp.base.load(Relaxed);
            for slot in 0..cap {
                let rec = slots::record(base, slot);
                let d = rec.read(size);
                if d.state == LIVE && sp.class.load(Acquire) as usize == class {
                    f(LiveBlock {
                        addr: base + slot * size,
                        meta: d.meta,
                        gen: d.gen,
                        large: false,
                    });
                }
            }
        }
    }
    for_each_live_large(&mut f);
}

/// The directly mapped part of [`for_each_live`]. The table is copied in one go, under its
/// lock, into a mapping of our own, and `f` runs on the copy: `f` may allocate, which may
/// take the lock, and an insert meanwhile may grow the table, which places every entry
/// anew (copying a few entries at a time, by their order in the table, would then skip
/// some blocks and repeat others). Without memory for the copy, the copying goes a few
/// entries at a time after all.
fn for_each_live_large(f: &mut impl FnMut(LiveBlock)) {
    let mut t = LARGE.lock();
    let n = t.count;
    if n == 0 {
        return;
    }
    let bytes = n * core::mem::size_of::<Copied>();
    let buf = crate::sys::map_zeroed(bytes).cast::<Copied>();
    if buf.is_null() {
        drop(t);
        return for_each_live_large_in_steps(f);
    }
    let mut k = 0;
    t.for_each(|e| {
        if k < n {
            // SAFETY: k < n: inside the mapping of n entries, aligned (mmap'd).
            unsafe { buf.add(k).write((e.addr, e.decoded())) };
            k += 1;
        }
    });
    drop(t);
    // SAFETY: entries 0..k were written above; the mapping is ours alone.
    deliver((0..k).map(|i| unsafe { buf.add(i).read() }), f);
    // SAFETY: the mapping `map_zeroed` made above for `bytes`, used by nothing else now.
    unsafe { crate::sys::unmap(buf.cast(), bytes) };
}

/// A large-table entry copied out: the block's address and its record.
type Copied = (usize, slots::Decoded);

/// Calls `f` with each live block of the copied entries.
fn deliver(copied: impl Iterator<Item = Copied>, f: &mut impl FnMut(LiveBlock)) {
    for (addr, d) in copied {
        if d.state == LIVE {
            f(LiveBlock {
                addr,
                meta: d.meta,
                gen: d.gen,
                large: true,
            });
        }
    }
}

/// [`for_each_live_large`] without memory for a copy: 64 entries at a time.
#[cold]
fn for_each_live_large_in_steps(f: &mut impl FnMut(LiveBlock)) {
    let mut copied: [Option<Copied>; 64] = [None; 64];
    let mut skip = 0;
    loop {
        let mut n = 0;
        let mut seen = 0;
        LARGE.lock().for_each(|e| {
            if seen >= skip && n < copied.len() {
                copied[n] = Some((e.addr, e.decoded()));
                n += 1;
            }
            seen += 1;
        });
        deliver(copied[..n].iter().flatten().copied(), f);
        skip += n;
        if n < copied.len() {
            break;
        }
    }
}

/// The state and identity of the tracked block at `addr` now (a slot's record word, a large
/// block's generation; `None`: not a tracked block start any more).
pub(crate) fn stamp(addr: usize) -> Option<(u64, u64)> {
    match find(addr) {
        Found::Slot { rec, .. } => Some(rec.stamp()),
        Found::Large { entry } => {
            let d = entry.decoded();
            Some((d.state, d.gen))
        }
        Found::NotOurs => None,
    }
}

/// Whether the block `b` is still live and the same allocation.
pub(crate) fn still_live(b: &LiveBlock) -> bool {
    stamp(b.addr) == Some((LIVE, b.gen))
}

/// Pins the large block `b` if it is still live and the same allocation: its free waits
/// until [`unpin_large`].
pub(crate) fn pin_large(b: &LiveBlock) -> bool {
    let mut t = LARGE.lock();
    match t.get(b.addr) {
        Some(e) => {
            let d = e.decoded();
            if d.state == LIVE && d.gen == b.gen {
                e.pins += 1;
                true
            } else {
                false
            }
        }
        None => false,
    }
}

/// Releases a pin taken by [`pin_large`].
pub(crate) fn unpin_large(addr: usize) {
    if let Some(e) = LARGE.lock().get(addr) {
        e.pins -= 1;
    }
}

/// Whether `addr` is a live tracked block (racy by nature; for diagnostics).
pub(crate) fn is_live(addr: usize) -> bool {
    stamp(addr).is_some_and(|(s, _)| s == LIVE)
}

/// Called when span `base` is assigned a tracked class: if it last served an untracked
/// class, whose freed slots are not wiped, zero what it used, so the tracker's slots start
/// zeroed.
pub(super) fn on_assign(
    base: usize,
    dirty: &core::sync::atomic::AtomicU32,
    untracked_dirty: &AtomicBool,
) {
    if untracked_dirty.swap(false, Relaxed) {
        let used = dirty.load(Relaxed) as usize;
        if used > 0 {
            // SAFETY: the span is being assigned by its owner: no slot of it is handed out,
            // and its first `used` bytes are committed memory of the reservation.
            unsafe { core::ptr::write_bytes(base as *mut u8, 0, used) };
        }
    }
}

/// Fork support: the large table's lock, taken last of the tracker's (it is taken while
/// the report's, the stack table's or the scope registry's locks are held, never the other
/// way round) and before the heap's own (its handlers were registered first, so they run
/// after the tracker's).
pub(crate) fn lock_for_fork() {
    LARGE.raw_lock();
}

/// Releases the lock taken by [`lock_for_fork`].
///
/// # Safety
/// The calling thread took it with [`lock_for_fork`].
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded.
    unsafe { LARGE.raw_unlock() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_s_record_is_found_from_its_span_s_first_record() {
        init_before_tracker();
        for size in [1usize, 16, 24, 100, 500, 2048, 5000, 70_000] {
            let t = take(size, 8, false).expect("a tracked slot");
            let Found::Slot { at, rec, .. } = find(t.addr) else {
                panic!("size {size}: not found as a slot");
            };
            // SAFETY: `find` returned an assigned span in mapped metadata.
            let base = unsafe { (*at.span).base.load(Relaxed) };
            assert!(core::ptr::eq(rec, t.rec), "size {size}");
            assert!(
                core::ptr::eq(rec, slots::record(base, at.slot)),
                "size {size}"
            );
        }
    }

    #[test]
    fn a_span_taken_by_another_class_reads_no_old_record_as_live() {
        init_before_tracker();
        // A thread of its own, so that the spans freed here are the first its heap reuses.
        std::thread::spawn(|| {
            // Records of 160 KiB slots (25 to a 4 MiB span) whose high halves, kept after
            // the span's 25 words, read as words of live blocks: 23,840 bytes of slack.
            let (size, cap) = (140_000, 160 << 10);
            let meta = Meta {
                size,
                align_log2: 3,
                stack: 5,
                scope: 0,
                born: 0,
            };
            let hot = crate::config::RUNTIME.hot();
            let mut spans = Vec::new();
            let mut blocks = Vec::new();
            for _ in 0..100 {
                let t = take(size, 8, false).expect("a tracked slot");
                assert_eq!(t.cap, cap);
                assert!(t.publish(&meta, hot));
                blocks.push(t.addr);
            }
            for addr in blocks {
                let Found::Slot { at, rec, .. } = find(addr) else {
                    panic!("not a slot");
                };
                // SAFETY: `find` returned an assigned span in mapped metadata.
                spans.push(unsafe { (*at.span).base.load(Relaxed) });
                rec.set_state(slots::FREED);
                // SAFETY: `at` is from `find` for a block whose record was marked freed.
                assert!(unsafe { give_back_slot(at, hot) });
            }
            spans.dedup();
            // 80 KiB slots (51 to a span of the same size) until those spans serve them.
            let mut reused = Vec::new();
            for _ in 0..4 * 51 {
                let t = take(80_000, 8, false).expect("a tracked slot");
                assert_eq!(t.cap, 80 << 10);
                let base = t.addr & !((4 << 20) - 1);
                if spans.contains(&base) && !reused.contains(&base) {
                    reused.push(base);
                }
            }
            assert!(!reused.is_empty(), "no span came back");
            for base in reused {
                for slot in 0..51 {
                    let (state, _) = slots::record(base, slot).stamp();
                    assert_ne!(state, LIVE, "span {base:#x} slot {slot}");
                }
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn large_blocks_are_each_seen_once_while_the_scan_grows_the_table() {
        init_before_tracker();
        let hot = crate::config::RUNTIME.hot();
        let meta = |size| Meta {
            size,
            align_log2: 3,
            stack: 9,
            scope: 0,
            born: 0,
        };
        let size = class::MAX_CLASS_SIZE + 1;
        let take_published = || {
            let t = take(size, 8, false).expect("a large block");
            assert!(t.publish(&meta(size), hot));
            t.addr
        };
        let kept: Vec<usize> = (0..100).map(|_| take_published()).collect();
        // The scan's callback allocates 300 more large blocks the first time it runs: the
        // table grows (and places its entries anew) in the middle of the scan.
        let mut more = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for_each_live(|b| {
            if b.large {
                if more.is_empty() {
                    more.extend((0..300).map(|_| take_published()));
                }
                *seen.entry(b.addr).or_insert(0) += 1;
            }
        });
        for a in &kept {
            assert_eq!(seen.get(a), Some(&1), "block {a:#x}");
        }
        for a in kept.into_iter().chain(more) {
            assert!(remove_large(a));
            unmap_large(a, 0);
        }
    }
}

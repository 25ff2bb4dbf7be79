//! The tracker over its own heap (`SecAlloc::new()`): block metadata out of line, in the
//! heap's per-slot records ([`crate::heap::slots`]), reached through the heap's tracker entry
//! points ([`crate::heap::tracked`]).
//!
//! These functions do not depend on the `SecAlloc` type parameter, so they are compiled once,
//! in this crate (with its optimisation level, also in a program's debug build), and inlined
//! across crates only by LTO.

use core::alloc::Layout;
use core::ptr;

use crate::alloc::{
    account_alloc, account_free, account_realloc_in_place, bad_free, canary_intact, layout_matches,
    realloc_move, Freed,
};
use crate::block::{self, Meta};
use crate::config::{self, Hot, Wipe, RUNTIME};
use crate::corruption::{self, Corruption};
use crate::heap::slots::{self, FREED, LEAKED, LIVE};
use crate::heap::tracked::{self, Found};
use crate::stack::INTERNAL;
use crate::{thread, wipe};

// -----------------------------------------------------------------------------------
// The own heap (`SecAlloc::new()`): metadata out of line, in the heap's slot records.

/// Allocates a block from the own heap's tracked classes. A slot comes zeroed when
/// freed slots are wiped (every wipe ends with zeros, fresh memory is zero); only with
/// `Wipe::Off` does the heap zero a used slot. With canaries on, the slot's slack after
/// the block (up to 8 bytes) holds the canary; a block that fills its slot exactly has
/// none, and is checked instead by the free-slot check: the first word of a slot
/// handed out again must still be zero, as the wipe left it, or something wrote to it
/// while it was free (an overflow out of the block before it, or a write after free).
pub(crate) unsafe fn alloc(layout: Layout, zero: bool) -> *mut u8 {
    // SAFETY: forwarded contract.
    config::with_hot_settings!(hot => unsafe { alloc_with(layout, zero, hot) })
}

/// [`alloc`] under the settings `hot`.
#[inline(always)]
unsafe fn alloc_with(layout: Layout, zero: bool, hot: Hot) -> *mut u8 {
    let (tracked, meta, ts) = crate::alloc::begin(layout, hot);
    let wiped = hot.wiped();
    let canary = hot.canaries();
    let p = loop {
        let Some(t) = tracked::take(layout.size(), layout.align(), zero && !wiped) else {
            break ptr::null_mut();
        };
        let p = t.addr as *mut u8;
        if canary && wiped {
            if let Some(prev) = t.previous_state() {
                // SAFETY: a slot holds at least 16 bytes and is 16-aligned; it is ours
                // (just taken, not yet handed out).
                let first = unsafe { first_word_for_writing(p) };
                if first != 0 && prev != LEAKED {
                    free_slot_written(t, first, meta);
                    continue;
                }
            }
        }
        if !t.publish(&meta, hot) {
            break ptr::null_mut();
        }
        if canary {
            // SAFETY: the slack lies inside the slot (cap bytes at p).
            unsafe { write_slack_canary(p, layout.size(), t.cap) };
        }
        break p;
    };
    if tracked {
        if !p.is_null() {
            // SAFETY: `ts` is null or this thread's own state.
            account_alloc(unsafe { ts.as_mut() }, &meta, hot);
        }
        thread::leave();
    }
    p
}

/// Reads the first word of a slot about to be handed out, with an access the processor
/// treats as a write (x86-64: `xadd` of 0, which stores back what it read). On a page never
/// touched before, a plain read maps the kernel's shared zero page and the program's first
/// write then faults a second time to get a page of its own; a write access takes the one
/// fault only. (On maps, canaries and this check cost 3,000 of 9,300 page faults as plain
/// reads: BENCHMARKS.md.)
///
/// # Safety
/// `p` is 8-aligned and its first 8 bytes are writable memory of a slot the caller owns.
#[inline(always)]
unsafe fn first_word_for_writing(p: *mut u8) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut v: u64 = 0;
        // SAFETY: guaranteed by the caller: an aligned, writable word no one else may use;
        // `xadd` with 0 leaves its value unchanged and returns it.
        unsafe {
            core::arch::asm!(
                "xadd qword ptr [{p}], {v}",
                p = in(reg) p,
                v = inout(reg) v,
                options(nostack)
            )
        };
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: guaranteed by the caller.
        unsafe { p.cast::<u64>().read_volatile() }
    }
}

/// Reports a slot written while free (found when handing it out again), and leaks it.
#[cold]
#[inline(never)]
fn free_slot_written(t: tracked::Taken, found: u64, meta: Meta) {
    let before = tracked::record_before(t.addr, t.cap);
    t.leak(&meta);
    let (stack, size) = match before {
        Some(d) if d.state == LIVE || d.state == FREED => (Some(d.meta.stack), d.meta.size),
        _ => (None, 0),
    };
    corruption::report(
        Corruption::FreeSlotWritten {
            slot_size: t.cap,
            found,
            before_stack: stack,
            before_size: size,
        },
        t.addr,
    );
}

/// Checks a tracked block being freed or reallocated: live, freed with its layout, its
/// canary intact. Returns its metadata, or `None` after reporting corruption (the block
/// is then leaked, unless it was not live).
#[inline(always)]
fn validate(
    user: *mut u8,
    layout: Layout,
    d: slots::Decoded,
    cap: usize,
    hot: Hot,
) -> Option<Meta> {
    let meta = d.meta;
    if d.state != LIVE {
        if d.state == FREED {
            corruption::report(
                Corruption::DoubleFree {
                    alloc_stack: meta.stack,
                    size: meta.size,
                },
                user as usize,
            );
        } else {
            bad_free(user, layout);
        }
        return None;
    }
    if !layout_matches(&meta, layout, user) {
        return None;
    }
    if hot.canaries() {
        // SAFETY: the slack lies inside the block's slot.
        let (expected, found) = unsafe { read_slack_canary(user, meta.size, cap) };
        if !canary_intact(&meta, expected, found, user) {
            return None;
        }
    }
    Some(meta)
}

/// Frees a block of the own heap.
pub(crate) unsafe fn dealloc(user: *mut u8, layout: Layout) {
    // SAFETY: forwarded contract.
    config::with_hot_settings!(hot => unsafe { dealloc_with(user, layout, hot) })
}

/// [`dealloc`] under the settings `hot`.
#[inline(always)]
unsafe fn dealloc_with(user: *mut u8, layout: Layout, hot: Hot) {
    let entered = thread::enter();
    let ts = thread::for_free(entered);
    match tracked::find(user as usize) {
        Found::Slot { at, rec, cap } => match rec.read_compact(cap, hot.profile()) {
            // SAFETY: forwarded contract; `ts` is null or this thread's own state.
            Some(d) => unsafe { free_slot(user, layout, at, rec, cap, d, ts, hot) },
            // SAFETY: as above.
            None => unsafe { free_slot_with_high(user, layout, at, rec, cap, ts, hot) },
        },
        // SAFETY: forwarded contract; `ts` is null or this thread's own state.
        Found::Large { entry } => unsafe { free_large_block(user, layout, entry, ts, hot) },
        Found::NotOurs => bad_free(user, layout),
    }
    leave_if(entered)
}

/// [`free_slot`] of a block whose record has a high half (a scope, a stack id of 2^20 or
/// more, an unusual layout): read and freed out of line, so that the common path's record
/// stays in registers.
///
/// # Safety
/// As for [`free_slot`].
#[cold]
#[inline(never)]
unsafe fn free_slot_with_high(
    user: *mut u8,
    layout: Layout,
    at: tracked::SlotRef,
    rec: &slots::Record,
    cap: usize,
    ts: *mut thread::ThreadState,
    hot: Hot,
) {
    let d = rec.read_in(cap, hot.profile());
    // SAFETY: forwarded contract.
    unsafe { free_slot(user, layout, at, rec, cap, d, ts, hot) }
}

/// Frees the block at `user`, in the slot `at` of `cap` bytes whose record `rec` reads `d`:
/// checked (live, its layout, its canary), wiped, counted and given back to the heap; or,
/// when a check fails, reported and (if it was live) leaked.
///
/// # Safety
/// As for [`dealloc`]; `at`, `rec` and `cap` come from `find` for `user`; `ts` is null or
/// this thread's own state.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn free_slot(
    user: *mut u8,
    layout: Layout,
    at: tracked::SlotRef,
    rec: &slots::Record,
    cap: usize,
    d: slots::Decoded,
    ts: *mut thread::ThreadState,
    hot: Hot,
) {
    let Some(meta) = validate(user, layout, d, cap, hot) else {
        if d.state == LIVE {
            rec.set_state(LEAKED);
        }
        return;
    };
    // Readers that noted the record as it was drop what they read from now on.
    rec.set_state(FREED);
    // What the block may have written: its bytes and the canary after them. The rest of
    // the slot is still zero (never written since the slot was last wiped or fresh), and
    // wiping it would only bring in pages the block never used.
    let len = meta.size + slack_canary_len(meta.size, cap);
    // SAFETY: the slot (cap >= len bytes) is ours until given back below: it is out of the
    // live set for every reader, and no other thread frees it (its record said live, and a
    // racing double free is caught by the bitmaps below).
    unsafe { wipe::wipe_on_thread(ts, user, len, hot.wipe()) };
    // The slot's record keeps the block's stack and says freed until the slot is handed
    // out again: a second free is named from it, not the ring.
    // SAFETY: the slot is mapped memory of the heap; `ts` as above.
    unsafe { after_wipe(ts, user, &meta, len, false, hot) };
    // SAFETY: `at` comes from `find` and the record is marked freed.
    if !unsafe { tracked::give_back_slot(at, hot) } {
        corruption::report(
            Corruption::DoubleFree {
                alloc_stack: meta.stack,
                size: meta.size,
            },
            user as usize,
        );
    }
}

/// What follows the wipe of a freed block of `len` bytes at `user`: its accounting (unless
/// it is the allocator's own; `remember`: in the ring of recent frees), then a volatile read
/// of it and a barrier, so that no optimiser can treat the wipe's stores as dead.
///
/// # Safety
/// `user` is mapped memory of the heap; `ts` is null or this thread's own state.
#[inline(always)]
unsafe fn after_wipe(
    ts: *mut thread::ThreadState,
    user: *mut u8,
    meta: &Meta,
    len: usize,
    remember: bool,
    hot: Hot,
) {
    if meta.stack != INTERNAL {
        let how = Freed {
            wiped: hot.wiped(),
            wiped_len: len,
            remember,
        };
        // SAFETY: per the contract.
        account_free(unsafe { ts.as_mut() }, user as usize, meta, how, hot);
    }
    // SAFETY: per the contract.
    unsafe { ptr::read_volatile(user) };
    wipe::barrier(user);
}

/// Frees a directly mapped block (out of line: its own wipe and unmapping cost far more than
/// a call, and keeping it apart keeps the slot path's values in registers).
///
/// # Safety
/// As for [`dealloc`]; `entry` is the block's table entry from `find`; `ts` is null or this
/// thread's own state.
#[inline(never)]
unsafe fn free_large_block(
    user: *mut u8,
    layout: Layout,
    entry: slots::LargeEntry,
    ts: *mut thread::ThreadState,
    hot: Hot,
) {
    let addr = user as usize;
    let mode = hot.wipe();
    let Some(meta) = take_large(user, layout, &entry, hot) else {
        return;
    };
    let len = meta.size + slack_canary_len(meta.size, entry.body);
    // SAFETY: the block is out of the table (no reader holds it) and still mapped until
    // unmap_large; its pages past `len` were never written. Pages it never touched are
    // discarded, not faulted in to be wiped.
    unsafe { tracked::wipe_large(ts, user, len, mode) };
    // The entry leaves the table: a second free is named from the ring.
    // SAFETY: the block is still mapped (until unmap_large below); `ts` as above.
    unsafe { after_wipe(ts, user, &meta, len, true, hot) };
    // Every wipe ends in zeros: the heap keeps the mapping for reuse, zero.
    tracked::unmap_large(addr, if mode != Wipe::Off { len } else { 0 });
}

/// Reallocates a block of the own heap: in place within its class (or its mapping, for
/// a large block), otherwise by moving it.
pub(crate) unsafe fn realloc(user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    let found = tracked::find(user as usize);
    let (cap, large) = match &found {
        Found::Slot { cap, .. } => (*cap, false),
        Found::Large { entry } => (entry.body, true),
        Found::NotOurs => {
            let entered = thread::enter();
            bad_free(user, layout);
            leave_if(entered);
            return ptr::null_mut();
        }
    };
    if new_size == layout.size() && RUNTIME.profile() {
        crate::profile::on_same_size_realloc(user, true);
    }
    if tracked::fits_in_place(layout.size(), new_size, layout.align(), cap, large) {
        // SAFETY: forwarded contract.
        return unsafe { realloc_in_place(user, layout, new_size, found) };
    }
    // Profile mode counts the block out before it moves: its metadata, found already.
    let meta = if RUNTIME.profile() {
        live_meta_of(&found)
    } else {
        None
    };
    if let Found::Large { entry } = found {
        if new_size > cap && tracked::remappable(layout.align()) {
            // SAFETY: forwarded contract.
            return unsafe { grow_large(user, layout, new_size, entry) };
        }
    }
    // SAFETY: forwarded contract.
    unsafe {
        realloc_move(
            user,
            layout,
            new_size,
            true,
            meta,
            |l, z| alloc(l, z),
            |p, l| dealloc(p, l),
        )
    }
}

/// Checks a directly mapped tracked block being freed or moved and takes it out of the
/// table (a reader holding it is waited for; none can take it afterwards). `None` after
/// reporting corruption: the block is then leaked (or was not live).
fn take_large(user: *mut u8, layout: Layout, entry: &slots::LargeEntry, hot: Hot) -> Option<Meta> {
    let d = entry.decoded();
    let Some(meta) = validate(user, layout, d, entry.body, hot) else {
        if d.state == LIVE {
            tracked::leak_large(user as usize, &d.meta);
        }
        return None;
    };
    if !tracked::remove_large(user as usize) {
        bad_free(user, layout);
        return None;
    }
    Some(meta)
}

/// Grows a directly mapped tracked block past its mapping by remapping its pages: no copy is
/// made (so none is left to wipe), the pages gained come zeroed from the kernel. Moves the
/// block the usual way if the kernel refuses.
#[cold]
#[inline(never)]
unsafe fn grow_large(
    user: *mut u8,
    layout: Layout,
    new_size: usize,
    entry: slots::LargeEntry,
) -> *mut u8 {
    let entered = thread::enter();
    let ts = thread::for_free(entered);
    let Some(mut meta) = take_large(user, layout, &entry, RUNTIME.hot()) else {
        return leave_if_null(entered);
    };
    let old = meta.size;
    let canary = RUNTIME.canaries();
    let old_canary = if canary {
        slack_canary_len(old, entry.body)
    } else {
        0
    };
    // The old canary's bytes become the block's: zero them (the rest of the old last page
    // was never written, and the kernel's new pages are zero).
    // SAFETY: they lie inside the block's mapping, which this thread owns (out of the table).
    unsafe { ptr::write_bytes(user.add(old), 0, old_canary) };
    meta.size = new_size;
    let Some(q) = tracked::remap_large(&entry, &meta) else {
        if canary {
            // SAFETY: as above; the block is back in the table unchanged.
            unsafe { write_slack_canary(user, old, entry.body) };
        }
        leave_if(entered);
        // SAFETY: forwarded contract; the block is live and unchanged.
        return unsafe {
            realloc_move(
                user,
                layout,
                new_size,
                true,
                None,
                |l, z| alloc(l, z),
                |p, l| dealloc(p, l),
            )
        };
    };
    let q = q as *mut u8;
    if canary {
        // SAFETY: the slack lies inside the new mapping's body.
        unsafe { write_slack_canary(q, new_size, tracked::large_body(new_size)) };
    }
    if meta.stack != INTERNAL {
        // SAFETY: ts is null or this thread's own state.
        let ts = unsafe { ts.as_mut() };
        account_realloc_in_place(ts, &mut meta, old, RUNTIME.wipe() != Wipe::Off, 0);
        if RUNTIME.profile() {
            tracked::set_born(q as usize, meta.born);
        }
    }
    leave_if(entered);
    q
}

/// Resizes a tracked block inside its slot: the bytes given up are wiped, the bytes
/// gained are zeroed, the canary moves, the record is rewritten (its word changes, parity
/// and size: readers treat it as a new block, as the header path does).
#[cold]
#[inline(never)]
unsafe fn realloc_in_place(
    user: *mut u8,
    layout: Layout,
    new_size: usize,
    found: Found,
) -> *mut u8 {
    let entered = thread::enter();
    let ts = thread::for_free(entered);
    let (d, cap) = match &found {
        Found::Slot { rec, cap, .. } => (rec.read(*cap), *cap),
        Found::Large { entry } => {
            let d = entry.decoded();
            (d, entry.body)
        }
        Found::NotOurs => return leave_if_null(entered),
    };
    let Some(mut meta) = validate(user, layout, d, cap, RUNTIME.hot()) else {
        if d.state == LIVE {
            match &found {
                Found::Slot { rec, .. } => rec.set_state(LEAKED),
                _ => tracked::leak_large(user as usize, &d.meta),
            }
        }
        return leave_if_null(entered);
    };
    let old = meta.size;
    let canary = RUNTIME.canaries();
    let old_canary = if canary {
        slack_canary_len(old, cap)
    } else {
        0
    };
    let mode = RUNTIME.wipe();
    let mut tail = 0;
    if new_size < old {
        tail = old + old_canary - new_size;
        // SAFETY: the tail lies inside the slot, which this thread owns as its block's
        // allocator (the caller gave it to realloc).
        unsafe { wipe::wipe_on_thread(ts, user.add(new_size), tail, mode) };
    } else if new_size > old && (RUNTIME.zero_on_alloc() || mode != Wipe::Off) {
        // SAFETY: as above; the gained bytes (and the old canary) lie inside the slot.
        unsafe { ptr::write_bytes(user.add(old), 0, new_size - old) };
    }
    meta.size = new_size;
    if canary {
        // SAFETY: the slack lies inside the slot.
        unsafe { write_slack_canary(user, new_size, cap) };
    }
    if meta.stack != INTERNAL && new_size != old {
        // SAFETY: ts is null or this thread's own state.
        let ts = unsafe { ts.as_mut() };
        account_realloc_in_place(ts, &mut meta, old, mode != Wipe::Off, tail);
    }
    match &found {
        Found::Slot { rec, cap, .. } => rec.write(&meta, LIVE, *cap),
        _ => tracked::update_large(user as usize, &meta),
    }
    leave_if(entered);
    user
}

/// The metadata of the live tracked block at `user` (`None`: not one), with its allocation
/// time in profile mode.
pub(crate) fn live_meta(user: *mut u8) -> Option<Meta> {
    live_meta_of(&tracked::find(user as usize))
}

/// The metadata of the block `found`, if it is live.
fn live_meta_of(found: &Found) -> Option<Meta> {
    let d = match found {
        Found::Slot { rec, cap, .. } => rec.read(*cap),
        Found::Large { entry } => entry.decoded(),
        Found::NotOurs => return None,
    };
    (d.state == LIVE).then_some(d.meta)
}

/// Leaves the tracker if `entered`.
#[inline(always)]
fn leave_if(entered: bool) {
    if entered {
        thread::leave();
    }
}

/// Leaves the tracker if `entered`; null.
#[inline(always)]
fn leave_if_null(entered: bool) -> *mut u8 {
    leave_if(entered);
    ptr::null_mut()
}

/// Canary bytes in the slack of a `cap`-byte slot holding `size` bytes: up to 8.
#[inline(always)]
fn slack_canary_len(size: usize, cap: usize) -> usize {
    (cap - size).min(block::CANARY)
}

/// Writes the canary's first bytes into the slack after `size` bytes of a `cap`-byte slot.
///
/// # Safety
/// `user .. user + cap` is writable memory of the block's slot.
#[inline(always)]
unsafe fn write_slack_canary(user: *mut u8, size: usize, cap: usize) {
    // SAFETY: forwarded contract.
    unsafe { put_slack_canary(user, size, cap, block::canary_value()) }
}

/// [`write_slack_canary`] with the canary `value`.
///
/// # Safety
/// As for [`write_slack_canary`].
#[inline(always)]
unsafe fn put_slack_canary(user: *mut u8, size: usize, cap: usize, value: u64) {
    let n = slack_canary_len(size, cap);
    if n == block::CANARY {
        // SAFETY: guaranteed by the caller: 8 bytes of slack after the block.
        unsafe { block::write_canary_value(user, size, value) };
    } else if n > 0 {
        // SAFETY: guaranteed by the caller; n < 8 bytes inside the slot.
        unsafe { write_short(user.add(size), n, value) };
    }
}

/// The slack canary `(expected, found)`, both with only the bytes the slack holds.
///
/// # Safety
/// `user .. user + cap` is readable memory of the block's slot.
#[inline(always)]
unsafe fn read_slack_canary(user: *const u8, size: usize, cap: usize) -> (u64, u64) {
    // SAFETY: forwarded contract.
    unsafe { slack_canary_against(user, size, cap, block::canary_value()) }
}

/// [`read_slack_canary`] against the canary `value`.
///
/// # Safety
/// As for [`read_slack_canary`].
#[inline(always)]
unsafe fn slack_canary_against(user: *const u8, size: usize, cap: usize, value: u64) -> (u64, u64) {
    let n = slack_canary_len(size, cap);
    if n == block::CANARY {
        // SAFETY: guaranteed by the caller: 8 bytes of slack after the block.
        return (value, unsafe { block::read_canary(user, size) });
    }
    // SAFETY: guaranteed by the caller; n < 8 bytes inside the slot.
    let found = unsafe { read_short(user.add(size), n) };
    let mask = if n == 0 { 0 } else { u64::MAX >> (64 - 8 * n) };
    (value & mask, found)
}

/// The `n < 8` bytes at `p` as a little-endian number (the bytes past `n` zero), read with
/// at most two overlapping loads of 4, 2 or 1 bytes: a slot's short slack canary is read on
/// every free of a block that leaves less than 8 bytes of slack, and a `memcpy` call of a
/// variable length cost more than the rest of the check.
///
/// # Safety
/// `p .. p + n` is readable memory.
#[inline(always)]
unsafe fn read_short(p: *const u8, n: usize) -> u64 {
    debug_assert!(n < 8);
    // SAFETY: in all three arms both loads lie inside `p .. p + n` (for 4 <= n < 8 the
    // second starts at n - 4 >= 0, and likewise for 2 and 1); unaligned reads.
    unsafe {
        if n >= 4 {
            let lo = u32::from_le(p.cast::<u32>().read_unaligned()) as u64;
            let hi = u32::from_le(p.add(n - 4).cast::<u32>().read_unaligned()) as u64;
            lo | hi << (8 * (n - 4))
        } else if n >= 2 {
            let lo = u16::from_le(p.cast::<u16>().read_unaligned()) as u64;
            let hi = u16::from_le(p.add(n - 2).cast::<u16>().read_unaligned()) as u64;
            lo | hi << (8 * (n - 2))
        } else if n == 1 {
            u64::from(p.read())
        } else {
            0
        }
    }
}

/// Writes the low `n < 8` bytes of `v` (little-endian) at `p`, with at most two overlapping
/// stores of 4, 2 or 1 bytes (see [`read_short`]).
///
/// # Safety
/// `p .. p + n` is writable memory.
#[inline(always)]
unsafe fn write_short(p: *mut u8, n: usize, v: u64) {
    debug_assert!(n < 8);
    // SAFETY: in all arms both stores lie inside `p .. p + n`, as in `read_short`; the
    // overlapping bytes get the same value from both; unaligned writes.
    unsafe {
        if n >= 4 {
            p.cast::<u32>().write_unaligned((v as u32).to_le());
            p.add(n - 4)
                .cast::<u32>()
                .write_unaligned(((v >> (8 * (n - 4))) as u32).to_le());
        } else if n >= 2 {
            p.cast::<u16>().write_unaligned((v as u16).to_le());
            p.add(n - 2)
                .cast::<u16>()
                .write_unaligned(((v >> (8 * (n - 2))) as u16).to_le());
        } else if n == 1 {
            p.write(v as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        put_slack_canary, read_short, slack_canary_against, slack_canary_len, write_short,
    };

    /// Every length below 8 at every offset of a guarded buffer: exactly the low `n` bytes
    /// are written, in little-endian order, nothing around them, and they read back masked.
    #[test]
    fn short_slack_bytes_round_trip_exactly() {
        let v: u64 = 0x8877_6655_4433_2211;
        for n in 0..8 {
            for off in 0..8 {
                let mut buf = [0xAAu8; 24];
                // SAFETY: off + n <= 15 < 24 bytes of the buffer.
                unsafe { write_short(buf.as_mut_ptr().add(off), n, v) };
                let want = v.to_le_bytes();
                for (i, b) in buf.iter().enumerate() {
                    let expected = if i >= off && i < off + n {
                        want[i - off]
                    } else {
                        0xAA
                    };
                    assert_eq!(*b, expected, "n {n}, offset {off}, byte {i}");
                }
                // SAFETY: as above.
                let got = unsafe { read_short(buf.as_ptr().add(off), n) };
                let mask = if n == 0 { 0 } else { u64::MAX >> (64 - 8 * n) };
                assert_eq!(got, v & mask, "n {n}, offset {off}");
            }
        }
    }

    /// Every block size in slots of several sizes: the canary takes exactly the slack's
    /// first bytes (up to 8), the block's bytes and the rest of the slot are left as they
    /// were, a check finds it intact, and a change to any of its bytes, and to no other
    /// byte, is found.
    #[test]
    fn slack_canary_takes_the_bytes_after_the_block_and_only_them() {
        // As the process-wide canary: random, its first byte zero.
        let value: u64 = 0x8877_6655_4433_2200;
        let canary = value.to_le_bytes();
        for cap in [16usize, 32, 48, 64, 4096] {
            // In the large slot, the sizes near either end (the rest are alike).
            let sizes = (0..=cap).filter(|&s| cap <= 64 || s < 64 || s > cap - 64);
            for size in sizes {
                let mut slot = vec![0u8; cap];
                for (i, b) in slot.iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(7) | 1;
                }
                let before = slot.clone();
                // SAFETY: `slot` holds `cap >= 8` bytes, exclusively borrowed.
                unsafe { put_slack_canary(slot.as_mut_ptr(), size, cap, value) };
                let n = slack_canary_len(size, cap);
                for (i, (&now, &was)) in slot.iter().zip(&before).enumerate() {
                    let want = if (size..size + n).contains(&i) {
                        canary[i - size]
                    } else {
                        was
                    };
                    assert_eq!(now, want, "cap {cap}, size {size}, byte {i}");
                }
                // SAFETY: as above.
                let (expected, found) =
                    unsafe { slack_canary_against(slot.as_ptr(), size, cap, value) };
                assert_eq!(expected, found, "cap {cap}, size {size}");
                let mask = if n == 0 { 0 } else { u64::MAX >> (64 - 8 * n) };
                assert_eq!(expected, value & mask);
                // Every byte from 16 before the block's end to 16 after, and the slot's first
                // and last.
                let near = size.saturating_sub(16)..(size + 16).min(cap);
                for i in near.chain([0, cap - 1]) {
                    let mut bad = slot.clone();
                    bad[i] ^= 0x40;
                    // SAFETY: as above.
                    let (e, f) = unsafe { slack_canary_against(bad.as_ptr(), size, cap, value) };
                    assert_eq!(
                        e != f,
                        (size..size + n).contains(&i),
                        "cap {cap}, size {size}, byte {i} changed"
                    );
                }
            }
        }
    }
}

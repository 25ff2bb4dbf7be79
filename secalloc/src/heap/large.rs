//! Directly mapped blocks (beyond the largest class, or aligned beyond 64 KiB): each is its
//! own mapping followed by a `PROT_NONE` guard page, recorded in an open-addressing table
//! (address → mapped length) that lives in a mapping of its own.
//!
//! Resizing one ([`resize`]) never copies: a shrink unmaps the tail and moves the guard page
//! down; a growth asks the kernel to `mremap` the pages (it moves page-table entries, so no
//! copy of the old contents is left anywhere) and puts a guard page after the new end.

use core::ptr;
use core::sync::atomic::Ordering::Acquire;

use super::{init, READY, STATE};
use crate::sys::{self, SpinLock};

pub(super) const PAGE: usize = 4096;
/// Entries of the table (a power of two).
const SLOTS: usize = 1 << 20;

pub(super) struct Large {
    /// (address, mapped length without the guard page); address 0: empty.
    slots: *mut (usize, usize),
}

// SAFETY: the table is only reached through its SpinLock and lives in an mmap'd region that
// is never unmapped.
unsafe impl Send for Large {}

pub(super) static LARGE: SpinLock<Large> = SpinLock::new(Large {
    slots: ptr::null_mut(),
});

/// Maps the table; false when the kernel refuses.
pub(super) fn init_table() -> bool {
    let table = sys::map_zeroed(SLOTS * core::mem::size_of::<(usize, usize)>());
    if table.is_null() {
        return false;
    }
    LARGE.lock().slots = table.cast();
    true
}

fn hash(addr: usize) -> usize {
    (addr >> 12).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (usize::BITS - SLOTS.trailing_zeros())
}

fn page_round(size: usize) -> Option<usize> {
    Some(size.max(1).checked_add(PAGE - 1)? & !(PAGE - 1))
}

impl Large {
    /// The index of `addr`'s entry, if it has one.
    fn find(&self, addr: usize) -> Option<usize> {
        if self.slots.is_null() {
            return None;
        }
        let mut i = hash(addr);
        loop {
            // SAFETY: i < SLOTS, inside the table's mapping; the caller holds the lock.
            let e = unsafe { *self.slots.add(i) };
            if e.0 == addr {
                return Some(i);
            }
            if e.0 == 0 {
                return None;
            }
            i = (i + 1) & (SLOTS - 1);
        }
    }

    fn insert(&mut self, addr: usize, body: usize) {
        let mut i = hash(addr);
        loop {
            // SAFETY: i < SLOTS, inside the table's mapping; the caller holds the lock.
            let e = unsafe { &mut *self.slots.add(i) };
            if e.0 == 0 {
                *e = (addr, body);
                return;
            }
            i = (i + 1) & (SLOTS - 1);
        }
    }

    /// Empties entry `i`; backward-shift deletion keeps every probe chain unbroken without
    /// tombstones.
    fn remove_at(&mut self, i: usize) {
        let slots = self.slots;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & (SLOTS - 1);
            // SAFETY: j < SLOTS, inside the table's mapping; the caller holds the lock.
            let e = unsafe { *slots.add(j) };
            if e.0 == 0 {
                break;
            }
            let home = hash(e.0);
            // Move e into the hole if its home is not in (hole, j] (cyclically).
            let dist_j = j.wrapping_sub(home) & (SLOTS - 1);
            let dist_hole = hole.wrapping_sub(home) & (SLOTS - 1);
            if dist_hole < dist_j {
                // SAFETY: as above.
                unsafe { *slots.add(hole) = e };
                hole = j;
            }
        }
        // SAFETY: as above.
        unsafe { *slots.add(hole) = (0, 0) };
    }

    fn len_at(&self, i: usize) -> usize {
        // SAFETY: i came from `find`, inside the table; the caller holds the lock.
        unsafe { (*self.slots.add(i)).1 }
    }
}

/// Maps a block of `size` bytes aligned to `align`, followed by a guard page.
pub(super) fn alloc_large(size: usize, align: usize) -> *mut u8 {
    if STATE.load(Acquire) != READY && !init() {
        return ptr::null_mut();
    }
    let Some(body) = page_round(size) else {
        return ptr::null_mut();
    };
    let extra = if align > PAGE { align } else { 0 };
    let Some(total) = body.checked_add(PAGE + extra) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping with a null hint; checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            total,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let p = p as usize;
    let start = (p + align.max(PAGE) - 1) & !(align.max(PAGE) - 1);
    // SAFETY: all three ranges lie inside the mapping just made and are ours alone: the head
    // before `start`, the guard page after the body, and the tail after the guard.
    unsafe {
        if start > p {
            libc::munmap(p as *mut libc::c_void, start - p);
        }
        libc::mprotect((start + body) as *mut libc::c_void, PAGE, libc::PROT_NONE);
        let end = start + body + PAGE;
        if p + total > end {
            libc::munmap(end as *mut libc::c_void, p + total - end);
        }
    }
    LARGE.lock().insert(start, body);
    start as *mut u8
}

/// The mapped length of the directly mapped block at `addr`, if there is one.
pub(super) fn large_len(addr: usize) -> Option<usize> {
    let t = LARGE.lock();
    t.find(addr).map(|i| t.len_at(i))
}

/// Unmaps the directly mapped block at `addr`; false if there is none.
pub(super) fn free_large(addr: usize) -> bool {
    let mut t = LARGE.lock();
    let Some(i) = t.find(addr) else {
        return false;
    };
    let body = t.len_at(i);
    t.remove_at(i);
    drop(t);
    // SAFETY: [addr, addr + body + PAGE) is the block's mapping with its guard page, which
    // nothing references any more.
    unsafe { libc::munmap(addr as *mut libc::c_void, body + PAGE) };
    true
}

/// Resizes the directly mapped block at `addr` to hold `new_size` bytes without copying:
/// returns its (possibly new) address, with a guard page after its new end, or null when
/// there is no such block or the kernel refuses (the block is then unchanged). The block
/// must be aligned to no more than a page if it may grow (a moved mapping is only
/// page-aligned).
pub(super) fn resize(addr: usize, new_size: usize) -> *mut u8 {
    let Some(new_body) = page_round(new_size) else {
        return ptr::null_mut();
    };
    // The lock is held across the system calls: the table must name the block's new place
    // before any other thread can be handed the address range it leaves.
    let mut t = LARGE.lock();
    let Some(i) = t.find(addr) else {
        return ptr::null_mut();
    };
    let body = t.len_at(i);
    if new_body == body {
        return addr as *mut u8;
    }
    if new_body < body {
        // SAFETY: both ranges lie inside the block's mapping [addr, addr + body + PAGE),
        // past the first `new_body` bytes the caller keeps: the new guard page, then the
        // rest of the old body and the old guard page.
        unsafe {
            if libc::mprotect(
                (addr + new_body) as *mut libc::c_void,
                PAGE,
                libc::PROT_NONE,
            ) != 0
            {
                return ptr::null_mut();
            }
            libc::munmap(
                (addr + new_body + PAGE) as *mut libc::c_void,
                body - new_body,
            );
        }
        t.remove_at(i);
        t.insert(addr, new_body);
        return addr as *mut u8;
    }
    let Some(new_total) = new_body.checked_add(PAGE) else {
        return ptr::null_mut();
    };
    // SAFETY: [addr, addr + body) is the block's body, one mapping of ours; the kernel
    // moves or extends it and its old range is no longer ours afterwards.
    let q = unsafe {
        libc::mremap(
            addr as *mut libc::c_void,
            body,
            new_total,
            libc::MREMAP_MAYMOVE,
        )
    };
    if q == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let q = q as usize;
    // SAFETY: [q + new_body, q + new_total) is the last page of the new mapping, ours; the
    // old guard page [addr + body, addr + body + PAGE) is still ours if the body moved.
    unsafe {
        libc::mprotect((q + new_body) as *mut libc::c_void, PAGE, libc::PROT_NONE);
        if q != addr {
            libc::munmap((addr + body) as *mut libc::c_void, PAGE);
        }
    }
    t.remove_at(i);
    t.insert(q, new_body);
    q as *mut u8
}

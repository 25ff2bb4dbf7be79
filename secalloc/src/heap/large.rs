//! Directly mapped blocks (beyond the largest class, or aligned beyond 64 KiB): each is its
//! own mapping followed by a `PROT_NONE` guard page, recorded in an open-addressing table
//! (address → mapped length) that lives in a mapping of its own.
//!
//! Resizing one ([`resize`]) never copies: a shrink unmaps the tail and moves the guard page
//! down; a growth asks the kernel to `mremap` the pages (it moves page-table entries, so no
//! copy of the old contents is left anywhere) and puts a guard page after the new end.
//!
//! # The cache of freed mappings
//!
//! A freed block's mapping is not unmapped at once: up to [`CACHE_ENTRIES`] mappings of at
//! most [`CACHE_MAX_BODY`] bytes each, [`CACHE_BYTES`] in all, stay mapped, guard page
//! included, and serve later large allocations with their pages already faulted in (a fresh
//! mapping faults, and the kernel clears, every page again; glibc reuses such memory too:
//! its mmap threshold rises to the size of the first mapped chunk freed, up to 32 MiB).
//! - Every cached byte is zero: the tracker's wipe ends in zeros over the bytes the block
//!   could write (`free_large`'s `zeroed`), and whatever lies past them up to the page-rounded
//!   end is zeroed here; a block freed by `SecHeap` alone, which does not wipe, is zeroed here
//!   whole (a memset: its pages are resident anyway, and zeroing them is cheaper than the
//!   fault and the kernel's clearing of each page a fresh mapping costs). Pages a block never
//!   touched are neither wiped nor zeroed but discarded ([`clear_untouched_free`]: `mincore`,
//!   `MADV_DONTNEED`), so freeing does not fault them in only to keep them resident in the
//!   cache. So a reused block needs no memset (`alloc_zeroed` and the tracker rely on that)
//!   and no freed data waits in the cache.
//! - An allocation takes the smallest cached mapping at least as large (suitably aligned:
//!   its address must be a multiple of the alignment), shrunk to the page count it needs
//!   as [`resize`] does (a new guard page right after the body, the tail unmapped), so an
//!   overflow still hits a guard page; failing that, for alignments up to a page, the
//!   largest smaller one, grown by `mremap` (its resident pages move, the gained ones come
//!   zeroed from the kernel).
//! - A cached mapping is nobody's block: it is out of the address table (a free or realloc
//!   of its address is an invalid one), out of the tracker's records (no reader sees it),
//!   and the reachability scan skips it ([`for_each_cached`]).
//! - The cache does not add to the heap's footprint: before the small-block heap faults in
//!   span memory, the cache gives back as many bytes of its oldest mappings ([`make_room`]).
//! - A mapping unused for [`INTERVAL_NS`](super::decay::INTERVAL_NS) (0.5 s) goes back to
//!   the kernel at the next decay pass (large allocations and frees, and the heaps' own slow
//!   paths, read the coarse clock; there is no timer thread): cached memory lasts 0.5–1 s
//!   unused while the program allocates, and is counted in
//!   [`SecHeap::returned_to_kernel`](super::SecHeap::returned_to_kernel) when unmapped.
//! - The cache has a lock of its own, taken by the heap's fork handlers; no system call and
//!   no memset is made while holding it, nor any other lock taken.

use core::ptr;
use core::sync::atomic::Ordering::{Acquire, Relaxed};
use core::sync::atomic::{AtomicU64, AtomicUsize};

use super::decay::{self, INTERVAL_NS};
use super::{init, READY, STATE};
use crate::sys::{self, SpinLock};

pub(super) const PAGE: usize = 4096;
/// Entries of the table (a power of two).
const SLOTS: usize = 1 << 20;
/// Freed mappings kept for reuse at most.
pub(super) const CACHE_ENTRIES: usize = 16;
/// Bytes (bodies, without guard pages) kept in the cache at most.
pub(super) const CACHE_BYTES: usize = 32 << 20;
/// The largest body kept (glibc's dynamic mmap threshold stops at 32 MiB on 64-bit).
pub(super) const CACHE_MAX_BODY: usize = 32 << 20;

/// A freed mapping kept for reuse: `body` bytes at `addr`, all zero, a guard page after.
#[derive(Clone, Copy)]
struct Cached {
    /// 0: an empty entry.
    addr: usize,
    body: usize,
    /// Coarse monotonic time it was cached.
    since_ns: u64,
}

impl Cached {
    const EMPTY: Cached = Cached {
        addr: 0,
        body: 0,
        since_ns: 0,
    };
}

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

/// Freed mappings kept for reuse.
pub(super) struct Cache {
    entries: [Cached; CACHE_ENTRIES],
    bytes: usize,
    /// Bytes given back by [`make_room`] beyond what fresh spans asked for so far.
    credit: usize,
}

/// The cache: a lock of its own, a leaf (nothing else is locked while it is held; the
/// orphan heap's decay pass takes it under the orphan heap's lock, so the fork handlers
/// take it last).
pub(super) static CACHE: SpinLock<Cache> = SpinLock::new(Cache {
    entries: [Cached::EMPTY; CACHE_ENTRIES],
    bytes: 0,
    credit: 0,
});

/// Cached mappings now (written under the lock; read without it to skip empty passes).
static CACHED: AtomicUsize = AtomicUsize::new(0);
/// Coarse time of the cache's last decay pass.
static CACHE_PASS_NS: AtomicU64 = AtomicU64::new(0);

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

impl Cache {
    /// Takes the cached mapping that best serves a block of `body` bytes aligned to
    /// `align` (see the module documentation), if any.
    fn take_cached(&mut self, body: usize, align: usize) -> Option<Cached> {
        let mut fit: Option<usize> = None;
        let mut smaller: Option<usize> = None;
        for (i, c) in self.entries.iter().enumerate() {
            if c.addr == 0 || c.addr % align.max(PAGE) != 0 {
                continue;
            }
            if c.body >= body {
                if fit.map_or(true, |f| c.body < self.entries[f].body) {
                    fit = Some(i);
                }
            } else if align <= PAGE && smaller.map_or(true, |s| c.body > self.entries[s].body) {
                smaller = Some(i);
            }
        }
        let i = fit.or(smaller)?;
        Some(self.remove_cached(i))
    }

    fn oldest(&self) -> Option<usize> {
        (0..CACHE_ENTRIES)
            .filter(|&i| self.entries[i].addr != 0)
            .min_by_key(|&i| self.entries[i].since_ns)
    }

    /// Takes the oldest mappings out, into `out`, until `bytes` are covered or none is
    /// left (see [`make_room`]); returns how many.
    fn take_room(&mut self, bytes: usize, out: &mut [Cached; CACHE_ENTRIES]) -> usize {
        if self.credit >= bytes {
            self.credit -= bytes;
            return 0;
        }
        let mut need = bytes - self.credit;
        self.credit = 0;
        let mut n = 0;
        while need > 0 {
            let Some(i) = self.oldest() else {
                break;
            };
            out[n] = self.remove_cached(i);
            if out[n].body >= need {
                self.credit = out[n].body - need;
                need = 0;
            } else {
                need -= out[n].body;
            }
            n += 1;
        }
        n
    }

    fn remove_cached(&mut self, i: usize) -> Cached {
        let c = self.entries[i];
        self.entries[i] = Cached::EMPTY;
        self.bytes -= c.body;
        CACHED.fetch_sub(1, Relaxed);
        c
    }

    /// Caches `c`, first evicting the oldest entries while the cache is full (by entries or
    /// bytes) into `evicted`; returns how many were.
    fn put_cached(&mut self, c: Cached, evicted: &mut [Cached; CACHE_ENTRIES]) -> usize {
        let mut n = 0;
        loop {
            let free = self.entries.iter().position(|e| e.addr == 0);
            if free.is_some() && self.bytes + c.body <= CACHE_BYTES {
                let i = free.unwrap_or_default();
                self.entries[i] = c;
                self.bytes += c.body;
                CACHED.fetch_add(1, Relaxed);
                return n;
            }
            let Some(i) = self.oldest() else {
                // Cannot happen (c.body <= CACHE_BYTES): nothing to evict, nothing cached.
                evicted[n] = c;
                return n + 1;
            };
            evicted[n] = self.remove_cached(i);
            n += 1;
        }
    }
}

/// Unmaps the mapping of `body` bytes at `addr` and its guard page.
///
/// # Safety
/// The mapping is ours alone and nothing references it.
unsafe fn unmap(addr: usize, body: usize) {
    // SAFETY: per the contract.
    unsafe { libc::munmap(addr as *mut libc::c_void, body + PAGE) };
}

/// Unmaps cached mappings taken out of the cache, counting them as returned to the kernel.
fn release(cached: &[Cached]) {
    for c in cached {
        // SAFETY: a mapping out of the cache is ours alone.
        unsafe { unmap(c.addr, c.body) };
        decay::count_returned(c.body);
    }
}

/// Shrinks the mapping at `addr` from `body` to `new_body` bytes: a new guard page right
/// after the first `new_body`, the rest and the old guard page unmapped. False (the mapping
/// unchanged) if the kernel refuses.
///
/// # Safety
/// `[addr, addr + body + PAGE)` is a block's mapping with its guard page, ours alone past
/// its first `new_body` bytes; `new_body < body`, both multiples of the page.
unsafe fn shrink_mapping(addr: usize, body: usize, new_body: usize) -> bool {
    // SAFETY: both ranges lie inside the mapping, past the first `new_body` bytes: the new
    // guard page, then the rest of the old body and the old guard page.
    unsafe {
        if libc::mprotect(
            (addr + new_body) as *mut libc::c_void,
            PAGE,
            libc::PROT_NONE,
        ) != 0
        {
            return false;
        }
        libc::munmap(
            (addr + new_body + PAGE) as *mut libc::c_void,
            body - new_body,
        );
    }
    true
}

/// Grows the mapping at `addr` from `body` to `new_body` bytes by remapping its pages
/// (`mremap`, which may move them: the old range is then no longer ours), with a guard page
/// after the new end. Returns the new address, or 0 (the mapping unchanged) if the kernel
/// refuses.
///
/// # Safety
/// `[addr, addr + body + PAGE)` is a block's mapping with its guard page, ours alone;
/// `new_body > body`, both multiples of the page.
unsafe fn grow_mapping(addr: usize, body: usize, new_body: usize) -> usize {
    let Some(new_total) = new_body.checked_add(PAGE) else {
        return 0;
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
        return 0;
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
    q
}

/// Clears `[addr, addr + len)` of a freed block (`addr` page-aligned) without faulting in
/// pages it never touched: `clear` runs over each stretch of resident pages (cut to the
/// range), every other whole page is discarded (`MADV_DONTNEED`: it reads as zero
/// afterwards; a swapped-out page's copy is dropped, as a wipe would leave the old copy in
/// the swap area too). Writing to untouched pages would fault each one in only to clear it,
/// and keep it resident while the mapping is cached. If the kernel cannot tell which pages
/// are resident, `clear` runs over the whole range.
///
/// # Safety
/// The range lies in a mapping of the heap that nothing else uses now.
pub(crate) unsafe fn clear_untouched_free(
    addr: usize,
    len: usize,
    mut clear: impl FnMut(usize, usize),
) {
    const CHUNK_PAGES: usize = 512;
    let mut vec = [0u8; CHUNK_PAGES];
    let end = addr + len;
    let mut at = addr;
    while at < end {
        let pages = ((end - at).div_ceil(PAGE)).min(CHUNK_PAGES);
        // SAFETY: `at` is page-aligned and [at, at + pages * PAGE) lies in the mapping
        // (its body is page-rounded); `vec` holds `pages` bytes.
        if unsafe { libc::mincore(at as *mut libc::c_void, pages * PAGE, vec.as_mut_ptr()) } != 0 {
            clear(at, end - at);
            return;
        }
        let mut i = 0;
        while i < pages {
            let resident = vec[i] & 1 != 0;
            let mut j = i + 1;
            while j < pages && (vec[j] & 1 != 0) == resident {
                j += 1;
            }
            let (from, to) = (at + i * PAGE, (at + j * PAGE).min(end));
            if resident {
                clear(from, to - from);
            } else {
                // SAFETY: whole pages of the mapping, which nothing else uses (the last may
                // run past `end`: it is still the block's, and was not resident either).
                unsafe {
                    libc::madvise(
                        from as *mut libc::c_void,
                        (j - i) * PAGE,
                        libc::MADV_DONTNEED,
                    )
                };
            }
            i = j;
        }
        at += pages * PAGE;
    }
}

/// A cached mapping made into a block of `body` bytes aligned to `align`; 0 if none fits.
fn reuse_cached(body: usize, align: usize) -> usize {
    let Some(c) = CACHE.lock().take_cached(body, align) else {
        return 0;
    };
    if c.body == body {
        return c.addr;
    }
    let p = if c.body > body {
        // SAFETY: the mapping is out of the cache, ours alone.
        if unsafe { shrink_mapping(c.addr, c.body, body) } {
            c.addr
        } else {
            0
        }
    } else {
        // SAFETY: as above (`take_cached` offers a smaller one only for alignments up to a
        // page, which a moved mapping keeps).
        unsafe { grow_mapping(c.addr, c.body, body) }
    };
    if p == 0 {
        release(&[c]);
    }
    p
}

/// Runs a decay pass over the cache if the last one is [`INTERVAL_NS`] old: mappings
/// cached at least that long ago go back to the kernel.
pub(super) fn decay_cache(now: u64) {
    if CACHED.load(Relaxed) == 0 {
        return;
    }
    let last = CACHE_PASS_NS.load(Relaxed);
    if now.wrapping_sub(last) < INTERVAL_NS
        || CACHE_PASS_NS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
    {
        return;
    }
    let mut old = [Cached::EMPTY; CACHE_ENTRIES];
    let mut n = 0;
    {
        let mut t = CACHE.lock();
        for i in 0..CACHE_ENTRIES {
            let c = t.entries[i];
            if c.addr != 0 && now.wrapping_sub(c.since_ns) >= INTERVAL_NS {
                old[n] = t.remove_cached(i);
                n += 1;
            }
        }
    }
    release(&old[..n]);
}

/// The small-block heap is about to use `bytes` of span memory that is not resident (a
/// fresh span, or one whose pages went back to the kernel): the cache first gives back as
/// many bytes of its oldest mappings (the surplus counts against later spans). glibc would
/// serve small blocks from such freed memory; this heap cannot, so without this a cached
/// mapping left unused while a program builds up small blocks would add its size to the
/// peak footprint. A program that reuses its spans (steady state) keeps its cache.
pub(super) fn make_room(bytes: usize) {
    if CACHED.load(Relaxed) == 0 {
        return;
    }
    let mut out = [Cached::EMPTY; CACHE_ENTRIES];
    let n = CACHE.lock().take_room(bytes, &mut out);
    release(&out[..n]);
}

/// Calls `f` with each cached mapping's body (`start`, `len`): memory of the heap's own, no
/// block's (for the reachability scan).
pub(super) fn for_each_cached(mut f: impl FnMut(usize, usize)) {
    let cache = CACHE.lock().entries;
    for c in cache.iter().filter(|c| c.addr != 0) {
        f(c.addr, c.body);
    }
}

/// Maps a block of `size` bytes aligned to `align`, followed by a guard page: a cached
/// mapping if one fits, else a fresh one.
pub(super) fn alloc_large(size: usize, align: usize) -> *mut u8 {
    if STATE.load(Acquire) != READY && !init() {
        return ptr::null_mut();
    }
    let Some(body) = page_round(size) else {
        return ptr::null_mut();
    };
    if body <= CACHE_MAX_BODY && CACHED.load(Relaxed) != 0 {
        decay_cache(decay::now_ns());
        let p = reuse_cached(body, align);
        if p != 0 {
            LARGE.lock().insert(p, body);
            return p as *mut u8;
        }
    }
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

/// Frees the directly mapped block at `addr`, whose first `zeroed` bytes are known to be
/// zero (the tracker's wipe; 0 when nothing is known, `usize::MAX` for a block never
/// written): its mapping is zeroed past them and cached, or unmapped if too large. False if
/// there is no such block.
pub(super) fn free_large(addr: usize, zeroed: usize) -> bool {
    let mut t = LARGE.lock();
    let Some(i) = t.find(addr) else {
        return false;
    };
    let body = t.len_at(i);
    t.remove_at(i);
    drop(t);
    if body > CACHE_MAX_BODY {
        // SAFETY: [addr, addr + body + PAGE) is the block's mapping with its guard page,
        // which nothing references any more.
        unsafe { unmap(addr, body) };
        return true;
    }
    let from = zeroed.min(body);
    if from < body {
        // The bytes past those known zero, from the start of their first page (a page not
        // resident reads zero once discarded, its first bytes included).
        let lo = addr + from;
        let start = lo & !(PAGE - 1);
        // SAFETY: the block's body, out of the table: ours alone.
        unsafe {
            clear_untouched_free(start, addr + body - start, |p, n| {
                let p0 = p.max(lo);
                if p0 < p + n {
                    ptr::write_bytes(p0 as *mut u8, 0, p + n - p0);
                }
            });
        }
    }
    let now = decay::now_ns();
    let mut evicted = [Cached::EMPTY; CACHE_ENTRIES];
    let cached = Cached {
        addr,
        body,
        since_ns: now,
    };
    let n = CACHE.lock().put_cached(cached, &mut evicted);
    release(&evicted[..n]);
    decay_cache(now);
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
    let q = if new_body < body {
        // SAFETY: the block's mapping; the caller keeps only its first `new_body` bytes.
        if !unsafe { shrink_mapping(addr, body, new_body) } {
            return ptr::null_mut();
        }
        addr
    } else {
        // SAFETY: the block's mapping, which the caller hands over.
        let q = unsafe { grow_mapping(addr, body, new_body) };
        if q == 0 {
            return ptr::null_mut();
        }
        q
    };
    t.remove_at(i);
    t.insert(q, new_body);
    q as *mut u8
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn entry(addr: usize, body: usize, since_ns: u64) -> Cached {
        Cached {
            addr,
            body,
            since_ns,
        }
    }

    fn empty() -> Cache {
        Cache {
            entries: [Cached::EMPTY; CACHE_ENTRIES],
            bytes: 0,
            credit: 0,
        }
    }

    /// Empties `c` (keeping the process-wide count of cached mappings balanced).
    fn drain(c: &mut Cache) {
        for i in 0..CACHE_ENTRIES {
            if c.entries[i].addr != 0 {
                c.remove_cached(i);
            }
        }
    }

    #[test]
    fn the_cache_evicts_its_oldest_mappings_past_its_entry_and_byte_bounds() {
        let mut c = empty();
        let mut ev = [Cached::EMPTY; CACHE_ENTRIES];
        for i in 0..CACHE_ENTRIES {
            assert_eq!(
                c.put_cached(entry((i + 1) * 64 * MIB, MIB, i as u64), &mut ev),
                0
            );
        }
        // Full by entries: the oldest (time 0) goes.
        assert_eq!(c.put_cached(entry(1 << 40, MIB, 100), &mut ev), 1);
        assert_eq!(ev[0].addr, 64 * MIB);
        assert_eq!(c.bytes, CACHE_ENTRIES * MIB);
        // A mapping of 30 MiB: 32 MiB in all at most, so the 14 oldest left go.
        assert_eq!(c.put_cached(entry(1 << 41, 30 * MIB, 101), &mut ev), 14);
        assert!(ev[..14].iter().all(|e| e.since_ns < CACHE_ENTRIES as u64));
        assert!(c.bytes <= CACHE_BYTES);
        assert_eq!(c.bytes, 32 * MIB);
        drain(&mut c);
        assert_eq!(c.bytes, 0);
    }

    #[test]
    fn the_cache_hands_out_the_best_fit_suitably_aligned() {
        let mut c = empty();
        let mut ev = [Cached::EMPTY; CACHE_ENTRIES];
        let a = 0x7000_0000_0000 + PAGE; // page-aligned only
        let b = 0x7100_0000_0000; // 1 TiB-aligned
        c.put_cached(entry(a, 4 * MIB, 0), &mut ev);
        c.put_cached(entry(a + 64 * MIB, 2 * MIB, 0), &mut ev);
        c.put_cached(entry(b, 8 * MIB, 0), &mut ev);
        // The smallest at least as large.
        assert_eq!(c.take_cached(MIB, 8).map(|e| e.addr), Some(a + 64 * MIB));
        // An alignment only `b` has.
        assert_eq!(c.take_cached(MIB, 1 << 20).map(|e| e.addr), Some(b));
        // Nothing as large: the largest smaller one, to grow, for page alignment only.
        assert_eq!(c.take_cached(16 * MIB, 1 << 16).map(|e| e.addr), None);
        assert_eq!(c.take_cached(16 * MIB, 8).map(|e| e.addr), Some(a));
        assert_eq!(c.bytes, 0);
        drain(&mut c);
    }

    #[test]
    fn fresh_spans_take_room_from_the_oldest_cached_mappings() {
        let mut c = empty();
        let mut ev = [Cached::EMPTY; CACHE_ENTRIES];
        c.put_cached(entry(1 << 40, MIB, 2), &mut ev);
        c.put_cached(entry(2 << 40, 2 * MIB, 1), &mut ev);
        c.put_cached(entry(3 << 40, MIB, 3), &mut ev);
        // 64 KiB of fresh span: the oldest mapping (2 MiB) goes, the rest is credit.
        assert_eq!(c.take_room(64 << 10, &mut ev), 1);
        assert_eq!(ev[0].addr, 2 << 40);
        assert_eq!(c.credit, 2 * MIB - (64 << 10));
        // Covered by the credit: nothing goes.
        assert_eq!(c.take_room(MIB, &mut ev), 0);
        // Past it: the next oldest, and the one after.
        assert_eq!(c.take_room(2 * MIB, &mut ev), 2);
        assert_eq!((ev[0].addr, ev[1].addr), (1 << 40, 3 << 40));
        assert_eq!(c.bytes, 0);
        assert_eq!(c.credit, MIB - (64 << 10));
        // Past the credit with nothing left to give: no debt carried over to mappings
        // cached later.
        assert_eq!(c.take_room(4 * MIB, &mut ev), 0);
        assert_eq!(c.credit, 0);
        c.put_cached(entry(4 << 40, MIB, 4), &mut ev);
        assert_eq!(c.take_room(0, &mut ev), 0);
        assert_eq!(c.bytes, MIB);
        drain(&mut c);
    }
}

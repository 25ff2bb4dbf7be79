//! The live set: which addresses are live blocks right now.
//!
//! A two-level radix bitmap over the 48-bit user address space with two bits per 16-byte
//! granule (block starts are 16-byte aligned): `LIVE` and `PIN`. Setting and clearing `LIVE`
//! is one atomic RMW on a word that sits next to its neighbours' bits, so there is no lock and
//! little sharing between threads (threads allocate from different arenas). `PIN` lets a
//! reader (a report, the reachability scan) hold a block still: a free that clears `LIVE`
//! waits until the reader drops the pin, so readers never touch memory that was handed back.
//!
//! Leaves cover 4 GiB each and are mapped lazily with `MAP_NORESERVE`; a summary bit per 4 KiB
//! page of bitmap lets scans skip untouched pages. Overhead: 1 bit of bitmap per 8 bytes of
//! heap actually used (1.6%).

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

const L1_ENTRIES: usize = 1 << 16;
const LEAF_SHIFT: u32 = 32;
const GRANULE_SHIFT: u32 = 4;
const WORDS_PER_LEAF: usize = 1 << (LEAF_SHIFT - GRANULE_SHIFT - 5);
const WORDS_PER_PAGE: usize = 512;
const SUMMARY_WORDS: usize = WORDS_PER_LEAF / WORDS_PER_PAGE / 64;

const LIVE: u64 = 1;
const PIN: u64 = 2;

#[repr(C)]
struct Leaf {
    summary: [AtomicU64; SUMMARY_WORDS],
    words: [AtomicU64; WORDS_PER_LEAF],
}

static L1: [AtomicPtr<Leaf>; L1_ENTRIES] = [const { AtomicPtr::new(ptr::null_mut()) }; L1_ENTRIES];

/// Whether an address can be indexed (user space below 2^48, 16-byte aligned).
#[inline]
pub(crate) fn indexable(addr: usize) -> bool {
    (addr as u64) >> 48 == 0 && addr & 15 == 0
}

#[inline]
fn split(addr: usize) -> (usize, usize, u32) {
    let a = addr as u64;
    let l1 = (a >> LEAF_SHIFT) as usize & (L1_ENTRIES - 1);
    let granule = (a & ((1 << LEAF_SHIFT) - 1)) >> GRANULE_SHIFT;
    ((l1), (granule >> 5) as usize, ((granule & 31) * 2) as u32)
}

#[inline]
fn leaf(l1: usize) -> *mut Leaf {
    L1[l1].load(Ordering::Acquire)
}

#[cold]
fn install_leaf(l1: usize) -> *mut Leaf {
    let fresh = crate::sys::map_zeroed(core::mem::size_of::<Leaf>()).cast::<Leaf>();
    if fresh.is_null() {
        return ptr::null_mut();
    }
    match L1[l1].compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => fresh,
        Err(existing) => {
            // SAFETY: `fresh` was mapped above with this size and never published.
            unsafe { libc::munmap(fresh.cast(), core::mem::size_of::<Leaf>()) };
            existing
        }
    }
}

/// Marks `addr` live. Returns false when it could not be indexed (no memory for a leaf, or
/// an address outside the indexed range): the block then works but cannot be validated on free.
#[inline]
pub(crate) fn set_live(addr: usize) -> bool {
    if !indexable(addr) {
        return false;
    }
    let (l1, w, bit) = split(addr);
    let mut lf = leaf(l1);
    if lf.is_null() {
        lf = install_leaf(l1);
        if lf.is_null() {
            return false;
        }
    }
    // SAFETY: `lf` points to a published, never-unmapped leaf; `w < WORDS_PER_LEAF` by split().
    let leaf = unsafe { &*lf };
    leaf.words[w].fetch_or(LIVE << bit, Ordering::Release);
    let page = w / WORDS_PER_PAGE;
    let sw = &leaf.summary[page / 64];
    let sbit = 1u64 << (page % 64);
    if sw.load(Ordering::Relaxed) & sbit == 0 {
        sw.fetch_or(sbit, Ordering::Release);
    }
    true
}

/// Outcome of [`clear_live`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cleared {
    /// The block was live; it is now out of the live set and no reader holds it.
    WasLive,
    /// The address was not live: an invalid or double free.
    NotLive,
    /// The address is outside the indexed range; nothing is known about it.
    Unindexed,
}

/// Removes `addr` from the live set, waiting for any reader that pinned it.
#[inline]
pub(crate) fn clear_live(addr: usize) -> Cleared {
    if !indexable(addr) {
        return if (addr as u64) >> 48 != 0 {
            Cleared::Unindexed
        } else {
            Cleared::NotLive
        };
    }
    let (l1, w, bit) = split(addr);
    let lf = leaf(l1);
    if lf.is_null() {
        return Cleared::NotLive;
    }
    // SAFETY: published leaves are never unmapped.
    let word = unsafe { &(*lf).words[w] };
    // Test only the LIVE bit in the result, so this compiles to one `lock btr` instead of a
    // compare-exchange loop. A reader pins only while LIVE is set, so a pin taken before
    // this point is visible to the load below, and none can be taken after it.
    if word.fetch_and(!(LIVE << bit), Ordering::AcqRel) & (LIVE << bit) == 0 {
        return Cleared::NotLive;
    }
    if word.load(Ordering::Acquire) & (PIN << bit) != 0 {
        wait_unpinned(word, bit);
    }
    Cleared::WasLive
}

#[cold]
fn wait_unpinned(word: &AtomicU64, bit: u32) {
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) & (PIN << bit) != 0 {
        spins += 1;
        if spins < 128 {
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

/// Whether `addr` is live right now (racy by nature; for diagnostics).
pub(crate) fn is_live(addr: usize) -> bool {
    if !indexable(addr) {
        return false;
    }
    let (l1, w, bit) = split(addr);
    let lf = leaf(l1);
    // SAFETY: published leaves are never unmapped.
    !lf.is_null() && unsafe { (*lf).words[w].load(Ordering::Acquire) } & (LIVE << bit) != 0
}

/// Pins a live block so it cannot be freed until [`unpin`]. Returns false if it is not live.
pub(crate) fn pin(addr: usize) -> bool {
    if !indexable(addr) {
        return false;
    }
    let (l1, w, bit) = split(addr);
    let lf = leaf(l1);
    if lf.is_null() {
        return false;
    }
    // SAFETY: published leaves are never unmapped.
    let word = unsafe { &(*lf).words[w] };
    let mut cur = word.load(Ordering::Acquire);
    loop {
        if cur & (LIVE << bit) == 0 {
            return false;
        }
        if cur & (PIN << bit) != 0 {
            // Another reader holds it; readers are serialised by the snapshot lock, so this
            // is a pin left by this very thread — treat as pinned.
            return false;
        }
        match word.compare_exchange_weak(
            cur,
            cur | (PIN << bit),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return true,
            Err(now) => cur = now,
        }
    }
}

/// Releases a pin taken by [`pin`].
pub(crate) fn unpin(addr: usize) {
    let (l1, w, bit) = split(addr);
    let lf = leaf(l1);
    // SAFETY: the block was pinned, so its leaf exists and is never unmapped.
    unsafe { (*lf).words[w].fetch_and(!(PIN << bit), Ordering::Release) };
}

/// Calls `f` with the address of every block live at the moment its word is read, in
/// ascending address order. Blocks may be freed concurrently: pin before reading one.
pub(crate) fn for_each_live(mut f: impl FnMut(usize)) {
    for (l1, slot) in L1.iter().enumerate() {
        let lf = slot.load(Ordering::Acquire);
        if lf.is_null() {
            continue;
        }
        // SAFETY: published leaves are never unmapped.
        let leaf = unsafe { &*lf };
        for (si, sw) in leaf.summary.iter().enumerate() {
            let mut pages = sw.load(Ordering::Acquire);
            while pages != 0 {
                let page = si * 64 + pages.trailing_zeros() as usize;
                pages &= pages - 1;
                let first = page * WORDS_PER_PAGE;
                for w in first..first + WORDS_PER_PAGE {
                    let mut v = leaf.words[w].load(Ordering::Acquire) & 0x5555_5555_5555_5555;
                    while v != 0 {
                        let bit = v.trailing_zeros() as u64;
                        v &= v - 1;
                        let granule = (w as u64) * 32 + bit / 2;
                        let addr = ((l1 as u64) << LEAF_SHIFT) | (granule << GRANULE_SHIFT);
                        f(addr as usize);
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
    fn set_clear_pin_roundtrip() {
        // Addresses in a leaf the real heap is unlikely to use.
        let base = 0x7000_0000_0000usize + 0x1230;
        assert!(set_live(base));
        assert!(is_live(base));
        assert!(!is_live(base + 16));
        assert!(pin(base));
        unpin(base);
        assert_eq!(clear_live(base), Cleared::WasLive);
        assert_eq!(clear_live(base), Cleared::NotLive);
        assert!(!pin(base));
        assert_eq!(clear_live(base + 8), Cleared::NotLive);
        assert_eq!(clear_live(1usize << 50), Cleared::Unindexed);
    }

    #[test]
    fn enumerates_in_order() {
        let base = 0x7100_0000_0000usize;
        let addrs = [base, base + 16, base + 4096 * 600, base + (1 << 31)];
        for &a in &addrs {
            set_live(a);
        }
        let mut seen = Vec::new();
        for_each_live(|a| {
            if a >> 40 == base >> 40 {
                seen.push(a)
            }
        });
        assert_eq!(seen, addrs);
        for &a in &addrs {
            clear_live(a);
        }
    }

    #[test]
    fn free_waits_for_pin() {
        let a = 0x7200_0000_0000usize;
        set_live(a);
        assert!(pin(a));
        let t = std::thread::spawn(move || clear_live(a));
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished(), "free must wait while the block is pinned");
        unpin(a);
        assert_eq!(t.join().unwrap(), Cleared::WasLive);
    }
}

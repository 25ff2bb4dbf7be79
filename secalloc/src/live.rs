//! The live set: which addresses are live blocks right now.
//!
//! A two-level radix map over the 48-bit user address space with one byte per 32-byte
//! granule. Block starts are 16-byte aligned and at least 32 bytes apart (every inner block
//! holds a 16-byte header plus at least one user byte, and is 16-byte aligned), so a granule
//! holds at most one live block start; the byte says whether it is live (`LIVE`), which half
//! of the granule it starts in (`HIGH`), and whether a reader holds it (`PIN`).
//!
//! # No locked instruction on the hot path
//!
//! A byte of its own per block means marking a block live is a plain byte store, and so is
//! clearing it — no `lock`-prefixed read-modify-write, whose cost is mostly waiting for the
//! store buffer (full of the block's header, zeroing and wipe stores) to drain. The only thing
//! that needs more is `PIN`: a reader (a report, the reachability scan) pins a live block so a
//! concurrent free waits until it is done, and a plain load-then-store free could overwrite a
//! pin taken between its load and its store. So frees take the plain path only while no
//! reader is active, and readers make that safe with an asymmetric barrier, as userspace RCU
//! does:
//!
//! - a free bumps its thread's marker to odd, checks [`READERS`], clears the byte with a
//!   plain store if there are none, and bumps the marker back to even — compiler fences only;
//! - a reader increments `READERS`, then runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)`,
//!   which executes a full memory barrier on every running thread of the process, then waits
//!   until no thread's marker is odd with the value it had. After that, every free either
//!   finished its plain clear (its store is visible) or sees `READERS > 0` and takes the
//!   atomic path (compare-exchange, then wait for the pin to go).
//!
//! Without `membarrier` (old kernels, seccomp) `READERS` stays at one for good and every free
//! takes the atomic path.
//!
//! A consequence: a block freed twice *at the same instant* by two threads may pass both
//! checks (both see it live before either clears it). A double free in any other order — the
//! usual bug — is caught.
//!
//! Leaves cover 4 GiB each and are mapped lazily with `MAP_NORESERVE`; a summary bit per 4 KiB
//! page of the map lets scans skip untouched pages. Overhead: 1 byte of map per 32 bytes of
//! heap actually used (3.1%).

use core::ptr;
use core::sync::atomic::{
    compiler_fence, AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

const L1_ENTRIES: usize = 1 << 16;
const LEAF_SHIFT: u32 = 32;
const GRANULE_SHIFT: u32 = 5;
const BYTES_PER_LEAF: usize = 1 << (LEAF_SHIFT - GRANULE_SHIFT);
const BYTES_PER_PAGE: usize = 4096;
const SUMMARY_WORDS: usize = BYTES_PER_LEAF / BYTES_PER_PAGE / 64;

/// The granule holds a live block start.
const LIVE: u8 = 1;
/// The block starts 16 bytes into the granule.
const HIGH: u8 = 2;
/// A reader holds the block.
const PIN: u8 = 4;

#[repr(C)]
struct Leaf {
    summary: [AtomicU64; SUMMARY_WORDS],
    bytes: [AtomicU8; BYTES_PER_LEAF],
}

static L1: [AtomicPtr<Leaf>; L1_ENTRIES] = [const { AtomicPtr::new(ptr::null_mut()) }; L1_ENTRIES];

/// Readers in progress, plus one for good when the asymmetric barrier is unavailable. While
/// non-zero, frees use the atomic path. Starts at one: frees made before [`enable_fast_clear`]
/// are atomic. Every free reads it, so it has a cache line (pair) of its own: no write to a
/// neighbouring static can evict it from every core.
static READERS: ReadersCount = ReadersCount(AtomicUsize::new(1));

#[repr(align(128))]
struct ReadersCount(AtomicUsize);

impl core::ops::Deref for ReadersCount {
    type Target = AtomicUsize;
    fn deref(&self) -> &AtomicUsize {
        &self.0
    }
}
/// Whether [`enable_fast_clear`] took `READERS`' initial one away.
static FAST_ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether an address can be indexed (user space below 2^48, 16-byte aligned).
#[inline]
pub(crate) fn indexable(addr: usize) -> bool {
    (addr as u64) >> 48 == 0 && addr & 15 == 0
}

/// `(L1 index, byte index in the leaf, the byte's LIVE|HIGH pattern for this address)`.
#[inline(always)]
fn split(addr: usize) -> (usize, usize, u8) {
    let a = addr as u64;
    let l1 = (a >> LEAF_SHIFT) as usize & (L1_ENTRIES - 1);
    let idx = ((a & ((1 << LEAF_SHIFT) - 1)) >> GRANULE_SHIFT) as usize;
    let want = LIVE | (((a >> 4) & 1) as u8 * HIGH);
    (l1, idx, want)
}

#[inline(always)]
fn leaf(l1: usize) -> *mut Leaf {
    L1[l1].load(Ordering::Acquire)
}

/// The map byte of `addr`, if its leaf exists.
#[inline(always)]
fn cell(addr: usize) -> Option<(&'static AtomicU8, u8)> {
    let (l1, idx, want) = split(addr);
    let lf = leaf(l1);
    if lf.is_null() {
        return None;
    }
    // SAFETY: published leaves are never unmapped; `idx < BYTES_PER_LEAF` by split().
    Some((unsafe { &(*lf).bytes[idx] }, want))
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
            unsafe { crate::sys::unmap(fresh.cast(), core::mem::size_of::<Leaf>()) };
            existing
        }
    }
}

/// Turns on plain-store frees if the asymmetric barrier works here. Called once, at
/// initialisation, and again in a forked child (whose registration is not inherited on
/// every kernel).
/// Idempotent.
pub(crate) fn enable_fast_clear() {
    if barrier::register()
        && FAST_ENABLED
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        READERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// In a freshly forked child: keep the fast path only if the child can still run the
/// barrier. (The child is single-threaded here, so no free is in flight.)
pub(crate) fn after_fork_in_child() {
    if FAST_ENABLED.load(Ordering::Acquire) && !barrier::register() {
        FAST_ENABLED.store(false, Ordering::Release);
        READERS.fetch_add(1, Ordering::AcqRel);
    }
}

/// Marks `addr` live. Returns false when it could not be indexed (no memory for a leaf, or
/// an address outside the indexed range): the block then works but cannot be validated on free.
///
/// The block's header must be written before: readers that see the byte read the header.
#[inline]
pub(crate) fn set_live(addr: usize) -> bool {
    if !indexable(addr) {
        return false;
    }
    let (l1, idx, want) = split(addr);
    let mut lf = leaf(l1);
    if lf.is_null() {
        lf = install_leaf(l1);
        if lf.is_null() {
            return false;
        }
    }
    // SAFETY: `lf` points to a published, never-unmapped leaf; `idx < BYTES_PER_LEAF`.
    let leaf = unsafe { &*lf };
    // No other block starts in this granule while this one is live, and a reader pins only
    // live blocks, so the byte is zero now and nobody else writes it: a plain store.
    leaf.bytes[idx].store(want, Ordering::Release);
    let page = idx / BYTES_PER_PAGE;
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
///
/// `marker` is the calling thread's free marker (see the module docs); without one the
/// atomic path is taken.
#[inline]
pub(crate) fn clear_live(addr: usize, marker: Option<&AtomicU64>) -> Cleared {
    if !indexable(addr) {
        return if (addr as u64) >> 48 != 0 {
            Cleared::Unindexed
        } else {
            Cleared::NotLive
        };
    }
    let Some((cell, want)) = cell(addr) else {
        return Cleared::NotLive;
    };
    if let Some(seq) = marker {
        // Only this thread writes its marker: a plain load and store.
        let s = seq.load(Ordering::Relaxed);
        seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // The marker store must come before the READERS load in program order; the reader's
        // membarrier supplies the hardware barrier between them.
        compiler_fence(Ordering::SeqCst);
        let fast = if READERS.load(Ordering::Relaxed) == 0 {
            let b = cell.load(Ordering::Relaxed);
            if b == want {
                #[cfg(test)]
                tests::widen_race_window();
                cell.store(0, Ordering::Relaxed);
                Some(Cleared::WasLive)
            } else if b & (LIVE | HIGH) != want {
                Some(Cleared::NotLive)
            } else {
                None // a pin whose release this thread does not see yet: the atomic path waits
            }
        } else {
            None
        };
        compiler_fence(Ordering::SeqCst);
        seq.store(s.wrapping_add(2), Ordering::Release);
        if let Some(done) = fast {
            return done;
        }
    }
    clear_atomic(cell, want)
}

#[cold]
#[inline(never)]
fn clear_atomic(cell: &AtomicU8, want: u8) -> Cleared {
    let mut b = cell.load(Ordering::Acquire);
    loop {
        if b & (LIVE | HIGH) != want {
            return Cleared::NotLive;
        }
        match cell.compare_exchange_weak(b, b & PIN, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(now) => b = now,
        }
    }
    if b & PIN != 0 {
        wait_unpinned(cell);
    }
    Cleared::WasLive
}

#[cold]
fn wait_unpinned(cell: &AtomicU8) {
    crate::sys::wait_while(|| cell.load(Ordering::Acquire) & PIN != 0);
}

/// Whether `addr` is live right now (racy by nature; for diagnostics).
pub(crate) fn is_live(addr: usize) -> bool {
    if !indexable(addr) {
        return false;
    }
    cell(addr).is_some_and(|(c, want)| c.load(Ordering::Acquire) & (LIVE | HIGH) == want)
}

/// A reader's hold on the live set: while one exists, frees take the atomic path, so blocks
/// can be pinned. Create with [`read_session`]; cheap enough for reports, not for hot loops
/// (a `membarrier` system call).
pub(crate) struct ReadSession {
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Starts a read session: after it returns, every free in flight has finished its plain
/// clear and every later free sees the reader.
pub(crate) fn read_session() -> ReadSession {
    READERS.fetch_add(1, Ordering::SeqCst);
    if FAST_ENABLED.load(Ordering::Acquire) {
        if !barrier::all_threads()
            && FAST_ENABLED
                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // The barrier failed (it worked at start-up): atomic frees from now on.
            // `all_threads` already ran the slower fallback barrier, so this session is safe.
            READERS.fetch_add(1, Ordering::SeqCst);
        }
        crate::thread::wait_for_frees_in_flight();
    }
    ReadSession {
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for ReadSession {
    fn drop(&mut self) {
        READERS.fetch_sub(1, Ordering::Release);
    }
}

impl ReadSession {
    /// Pins a live block so it cannot be freed until [`unpin`](Self::unpin). Returns false if
    /// it is not live.
    pub(crate) fn pin(&self, addr: usize) -> bool {
        if !indexable(addr) {
            return false;
        }
        let Some((cell, want)) = cell(addr) else {
            return false;
        };
        let mut cur = cell.load(Ordering::Acquire);
        loop {
            if cur & (LIVE | HIGH) != want {
                return false;
            }
            if cur & PIN != 0 {
                // Another reader holds it; readers are serialised by the snapshot lock, so
                // this is a pin left by this very thread — treat as pinned.
                return false;
            }
            match cell.compare_exchange_weak(cur, cur | PIN, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Releases a pin taken by [`pin`](Self::pin).
    pub(crate) fn unpin(&self, addr: usize) {
        if let Some((cell, _)) = cell(addr) {
            cell.fetch_and(!PIN, Ordering::Release);
        }
    }
}

/// Calls `f` with the address of every block live at the moment its byte is read, in
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
                let first = page * BYTES_PER_PAGE;
                for (k, c) in leaf.bytes[first..first + BYTES_PER_PAGE].iter().enumerate() {
                    let b = c.load(Ordering::Acquire);
                    if b & LIVE != 0 {
                        let granule = (first + k) as u64;
                        let addr = ((l1 as u64) << LEAF_SHIFT)
                            | (granule << GRANULE_SHIFT)
                            | if b & HIGH != 0 { 16 } else { 0 };
                        f(addr as usize);
                    }
                }
            }
        }
    }
}

/// The asymmetric barrier: a full memory barrier on every running thread of the process.
mod barrier {
    #[cfg(target_os = "linux")]
    mod imp {
        const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
        const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

        fn membarrier(cmd: libc::c_long) -> bool {
            // SAFETY: membarrier takes two integer arguments and touches no user memory.
            unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long) == 0 }
        }

        pub(in crate::live) fn register() -> bool {
            membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
        }

        pub(in crate::live) fn all_threads() -> bool {
            if membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) {
                return true;
            }
            fallback();
            false
        }

        /// Changing the protection of a page this process has touched makes the kernel shoot
        /// down its TLB entry on every CPU running the process, by interrupt: each of those
        /// threads stops and drains its stores (what `FlushProcessWriteBuffers` does on
        /// kernels without `membarrier`). If even this fails, yield for a while.
        #[cold]
        fn fallback() {
            let page = crate::sys::map_zeroed(4096);
            if !page.is_null() {
                // SAFETY: `page` is a fresh private page of 4096 bytes: we write one byte to
                // make it present, then change its protection twice.
                unsafe {
                    page.write_volatile(1);
                    if libc::mprotect(page.cast(), 4096, libc::PROT_READ) == 0
                        && libc::mprotect(page.cast(), 4096, libc::PROT_READ | libc::PROT_WRITE)
                            == 0
                    {
                        return;
                    }
                }
            }
            for _ in 0..1000 {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
        }
    }

    #[cfg(not(target_os = "linux"))]
    mod imp {
        pub(in crate::live) fn register() -> bool {
            false
        }

        pub(in crate::live) fn all_threads() -> bool {
            // Never registered: every free is atomic already.
            true
        }
    }

    pub(in crate::live) use imp::{all_threads, register};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set by the test of the plain path: every plain clear then pauses between its load and
    /// its store, so a reader that could pin in between (a broken protocol) would.
    static WIDEN: AtomicBool = AtomicBool::new(false);
    /// Tests that hold read sessions run one at a time: a session elsewhere would put the
    /// plain-path test's workers on the atomic path.
    static SESSIONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    pub(super) fn widen_race_window() {
        if WIDEN.load(Ordering::Relaxed) {
            for _ in 0..20_000 {
                core::hint::spin_loop();
            }
        }
    }

    #[test]
    fn set_clear_pin_roundtrip() {
        let _one = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        let marker = AtomicU64::new(0);
        // Addresses in a leaf the real heap is unlikely to use.
        let base = 0x7000_0000_0000usize + 0x1230;
        assert!(set_live(base));
        assert!(is_live(base));
        assert!(!is_live(base + 16));
        assert!(!is_live(base - 16), "same granule, other half");
        {
            let r = read_session();
            assert!(r.pin(base));
            assert!(!r.pin(base + 16));
            r.unpin(base);
        }
        assert_eq!(clear_live(base + 16, Some(&marker)), Cleared::NotLive);
        assert_eq!(clear_live(base, Some(&marker)), Cleared::WasLive);
        assert_eq!(marker.load(Ordering::Relaxed) % 2, 0, "marker back to even");
        assert_eq!(clear_live(base, Some(&marker)), Cleared::NotLive);
        assert_eq!(clear_live(base, None), Cleared::NotLive);
        assert!(!read_session().pin(base));
        assert_eq!(clear_live(base + 8, None), Cleared::NotLive);
        assert_eq!(clear_live(1usize << 50, None), Cleared::Unindexed);
    }

    #[test]
    fn both_halves_of_a_granule() {
        let lo = 0x7000_1000_0000usize;
        let hi = lo + 16;
        assert!(set_live(hi));
        assert!(!is_live(lo));
        assert_eq!(clear_live(lo, None), Cleared::NotLive);
        assert!(is_live(hi), "a wrong-half free leaves the live block alone");
        assert_eq!(clear_live(hi, None), Cleared::WasLive);
        assert!(set_live(lo));
        assert_eq!(clear_live(lo, None), Cleared::WasLive);
    }

    #[test]
    fn enumerates_in_order() {
        let base = 0x7100_0000_0000usize;
        let addrs = [base, base + 48, base + 4096 * 600 + 16, base + (1 << 31)];
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
            clear_live(a, None);
        }
    }

    /// Threads set and clear blocks through the plain-store path while a reader keeps
    /// opening sessions and pinning every live block at once: a pin must survive until the
    /// reader drops it (a plain clear that overwrote a pin would zero the byte while the
    /// reader still relies on it), and every clear of a live block succeeds exactly once.
    /// Plain clears pause between their load and store here, so a reader that did not wait
    /// for clears in flight would pin inside that window.
    #[test]
    fn plain_clears_never_overwrite_pins() {
        let _one = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        enable_fast_clear();
        WIDEN.store(true, Ordering::Relaxed);
        let base = 0x7300_0000_0000usize;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..3)
            .map(|t| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    // The thread's real slot, so readers see its marker.
                    let ts = crate::thread::untracked(crate::thread::current);
                    // SAFETY: this thread's own state, never unmapped.
                    let marker = unsafe { &(*ts).free_marker };
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) || rounds < 20 {
                        let addr = |i: usize| base + t * 0x10_0000 + i * 48;
                        for i in 0..32 {
                            assert!(set_live(addr(i)));
                        }
                        for i in 0..32 {
                            assert_eq!(clear_live(addr(i), Some(marker)), Cleared::WasLive);
                            assert_eq!(clear_live(addr(i), Some(marker)), Cleared::NotLive);
                        }
                        rounds += 1;
                    }
                    assert_eq!(marker.load(Ordering::Relaxed) % 2, 0);
                    rounds
                })
            })
            .collect();
        let candidates: Vec<usize> = (0..3)
            .flat_map(|t| (0..32).map(move |i| base + t * 0x10_0000 + i * 48))
            .collect();
        let mut pinned = 0u64;
        for _ in 0..200 {
            // Let the workers run plain clears for a while, then catch them mid-clear.
            for _ in 0..50_000 {
                core::hint::spin_loop();
            }
            let r = read_session();
            let held: Vec<usize> = candidates.iter().copied().filter(|&a| r.pin(a)).collect();
            pinned += held.len() as u64;
            for _ in 0..50_000 {
                core::hint::spin_loop();
            }
            for &a in &held {
                // The owner may have cleared LIVE meanwhile (then it waits for us), but the
                // pin must still be there.
                let (c, _) = cell(a).unwrap();
                assert_ne!(c.load(Ordering::Acquire) & PIN, 0, "pin lost at {a:#x}");
                r.unpin(a);
            }
        }
        stop.store(true, Ordering::Relaxed);
        let rounds: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        WIDEN.store(false, Ordering::Relaxed);
        assert!(rounds >= 60);
        assert!(pinned > 100, "the reader pinned only {pinned} blocks");
        if cfg!(target_os = "linux") && barrier::register() {
            assert!(
                FAST_ENABLED.load(Ordering::Relaxed),
                "plain clears were enabled"
            );
        }
    }

    #[test]
    fn free_waits_for_pin() {
        let _one = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        let a = 0x7200_0000_0000usize;
        set_live(a);
        let r = read_session();
        assert!(r.pin(a));
        let t = std::thread::spawn(move || {
            let marker = AtomicU64::new(0);
            clear_live(a, Some(&marker))
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!t.is_finished(), "free must wait while the block is pinned");
        r.unpin(a);
        assert_eq!(t.join().unwrap(), Cleared::WasLive);
        drop(r);
        assert!(!is_live(a));
    }
}

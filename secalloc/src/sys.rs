//! Operating-system helpers that never allocate through the global allocator:
//! anonymous mappings, a spin lock, and a fixed-buffer writer for stderr.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

/// Regions the allocator mapped for its own metadata, so the leak checker can skip them: the
/// first `MAX_REGIONS` here, the rest in chunks mapped when needed (themselves listed too).
const MAX_REGIONS: usize = 4096;
type Region = (AtomicUsize, AtomicUsize);
static REGIONS: [Region; MAX_REGIONS] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_REGIONS];
static NREGIONS: AtomicUsize = AtomicUsize::new(0);
const CHUNK_ENTRIES: usize = 4096;
const CHUNK_BYTES: usize = CHUNK_ENTRIES * core::mem::size_of::<Region>();
const MAX_CHUNKS: usize = 256;
static CHUNKS: [AtomicPtr<Region>; MAX_CHUNKS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CHUNKS];

/// The `i`-th region entry; with `create`, maps the overflow chunk that holds it if needed.
fn region(i: usize, create: bool) -> Option<&'static Region> {
    if i < MAX_REGIONS {
        return Some(&REGIONS[i]);
    }
    let k = (i - MAX_REGIONS) / CHUNK_ENTRIES;
    let slot = CHUNKS.get(k)?;
    let mut c = slot.load(Ordering::Acquire);
    if c.is_null() {
        if !create {
            return None;
        }
        // SAFETY: an anonymous private mapping with a null hint has no preconditions.
        let fresh = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                CHUNK_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if fresh == libc::MAP_FAILED {
            return None;
        }
        let fresh = fresh.cast::<Region>();
        c = match slot.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(existing) => {
                // SAFETY: `fresh` was mapped above with this size and never published.
                unsafe { libc::munmap(fresh.cast(), CHUNK_BYTES) };
                existing
            }
        };
    }
    // SAFETY: a published chunk holds CHUNK_ENTRIES zero-initialised (valid) atomics and is
    // never unmapped.
    Some(unsafe { &*c.add((i - MAX_REGIONS) % CHUNK_ENTRIES) })
}

/// Calls `f(start, len)` for each metadata region mapped so far.
pub(crate) fn for_each_region(mut f: impl FnMut(usize, usize)) {
    let n = NREGIONS.load(Ordering::Acquire);
    for i in 0..n {
        let Some((start, len)) = region(i, false) else {
            continue;
        };
        let (s, l) = (start.load(Ordering::Acquire), len.load(Ordering::Acquire));
        if s != 0 {
            f(s, l);
        }
    }
    for c in &CHUNKS {
        let p = c.load(Ordering::Acquire);
        if !p.is_null() {
            f(p as usize, CHUNK_BYTES);
        }
    }
}

/// Maps `len` bytes of zeroed, private, anonymous memory. Returns null on failure.
///
/// Pages are reserved lazily by the kernel (`MAP_NORESERVE`): untouched pages cost no memory.
pub(crate) fn map_zeroed(len: usize) -> *mut u8 {
    map_own(len, libc::PROT_READ | libc::PROT_WRITE)
}

/// Reserves `len` bytes of address space without access or memory (`PROT_NONE`), and
/// records it as the allocator's own. Returns null on failure.
pub(crate) fn reserve(len: usize) -> *mut u8 {
    map_own(len, libc::PROT_NONE)
}

/// Maps `len` bytes of private, anonymous, lazily reserved memory with protection `prot` and
/// records the mapping as the allocator's own. Returns null on failure.
fn map_own(len: usize, prot: libc::c_int) -> *mut u8 {
    // SAFETY: an anonymous private mapping with a null hint has no preconditions; the result
    // is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            prot,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    record_region(p as usize, len);
    p.cast()
}

fn record_region(start: usize, len: usize) {
    let i = NREGIONS.fetch_add(1, Ordering::AcqRel);
    if let Some((s, l)) = region(i, true) {
        l.store(len, Ordering::Release);
        s.store(start, Ordering::Release);
    }
}

/// Unmaps a region mapped by [`map_zeroed`] or [`reserve`] and drops it from the list of the allocator's
/// own regions, so the leak checker does not skip whatever the kernel maps there next.
///
/// # Safety
/// `p` and `len` are those of one `map_zeroed` or `reserve` call, and nothing uses the region
/// any more.
pub(crate) unsafe fn unmap(p: *mut u8, len: usize) {
    let n = NREGIONS.load(Ordering::Acquire);
    for i in 0..n {
        let Some((start, l)) = region(i, false) else {
            continue;
        };
        if start.load(Ordering::Acquire) == p as usize && l.load(Ordering::Acquire) == len {
            start.store(0, Ordering::Release);
            break;
        }
    }
    // SAFETY: forwarded from the caller: the whole mapping, no longer in use.
    unsafe { libc::munmap(p.cast(), len) };
}

/// Waits while `busy()` holds: spins briefly, then yields the CPU between checks (the
/// thread we wait for may be descheduled on a busy machine). Never allocates.
pub(crate) fn wait_while(mut busy: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while busy() {
        if spins < 128 {
            spins += 1;
            core::hint::spin_loop();
        } else {
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
    }
}

/// A test-and-test-and-set spin lock that never allocates. Used only off the hot path
/// (interning a new stack, creating a scope record, thread start and exit, fork).
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock serialises all access to `value`, so sharing the lock between threads is
// sound whenever the protected value may be sent between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.raw_lock();
        SpinGuard { lock: self }
    }

    /// Takes the lock without producing a guard (for `pthread_atfork` handlers).
    pub(crate) fn raw_lock(&self) {
        wait_while(|| {
            self.locked.load(Ordering::Relaxed)
                || self
                    .locked
                    .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .is_err()
        });
    }

    /// Releases a lock taken with [`SpinLock::raw_lock`].
    ///
    /// # Safety
    /// The caller must hold the lock (taken with `raw_lock`) and no guard may exist.
    pub(crate) unsafe fn raw_unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held, so no other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held, and `&mut self` makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// Formats into a fixed stack buffer and writes whole lines to a file descriptor, so messages
/// can be printed from inside the allocator without allocating.
pub(crate) struct FdWriter {
    fd: i32,
    buf: [u8; 1024],
    len: usize,
}

impl FdWriter {
    pub(crate) const fn stderr() -> Self {
        FdWriter {
            fd: 2,
            buf: [0; 1024],
            len: 0,
        }
    }

    pub(crate) fn flush(&mut self) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: the slice `buf[off..len]` is initialised and lives for the call.
            let n =
                unsafe { libc::write(self.fd, self.buf.as_ptr().add(off).cast(), self.len - off) };
            if n <= 0 {
                // SAFETY: reading errno has no preconditions.
                if n < 0 && unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                break;
            }
            off += n as usize;
        }
        self.len = 0;
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Reads an environment variable without allocating. `name` must end with a NUL byte.
pub(crate) fn getenv(name: &'static [u8]) -> Option<&'static [u8]> {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated. The environment is read once at start-up, before the
    // program could have changed it from another thread.
    let p = unsafe { libc::getenv(name.as_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string that lives as long as the environment
    // entry, which we treat as static (it is never freed by a well-behaved program).
    let s = unsafe { core::ffi::CStr::from_ptr(p) };
    Some(s.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(p: *mut u8, len: usize) -> bool {
        let mut found = false;
        for_each_region(|s, l| found |= s == p as usize && l == len);
        found
    }

    #[test]
    fn every_region_is_listed_past_the_first_table_and_unmapped_ones_go() {
        let maps: Vec<*mut u8> = (0..MAX_REGIONS + 100).map(|_| map_zeroed(4096)).collect();
        assert!(maps.iter().all(|p| !p.is_null()));
        assert!(NREGIONS.load(Ordering::Relaxed) > MAX_REGIONS);
        assert!(listed(maps[0], 4096));
        assert!(
            listed(*maps.last().unwrap(), 4096),
            "a region past the first table"
        );
        let mut chunk = false;
        for_each_region(|s, l| {
            chunk |= l == CHUNK_BYTES && s == CHUNKS[0].load(Ordering::Relaxed) as usize
        });
        assert!(chunk, "the overflow chunk lists itself");
        for &p in &maps {
            // SAFETY: mapped above with this size, not used.
            unsafe { unmap(p, 4096) };
        }
        assert!(!listed(*maps.last().unwrap(), 4096));
        assert!(!listed(maps[0], 4096));
    }
}

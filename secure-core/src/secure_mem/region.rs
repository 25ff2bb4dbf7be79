//! One `mmap` region: guard page, data pages (canary slack + value), guard page.

use std::io::{self, Write as _};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::{SecureMemError, COUNTERS};
use crate::audit::{self, Event, EventKind, Severity};

/// A mapped region. Owns the mapping: dropping it checks the canary, wipes the data pages in
/// four passes and unmaps them.
pub(crate) struct Region {
    /// Start of the mapping (the leading guard page).
    base: NonNull<u8>,
    /// Bytes mapped: leading guard + data pages + trailing guard.
    map_len: usize,
    /// Bytes of data pages (a multiple of the page size).
    data_len: usize,
    /// Where the value starts, from the start of the data pages.
    offset: usize,
    /// The value's bytes.
    len: usize,
    purpose: &'static str,
    locked: bool,
    /// The process that mapped it (a forked child sees the data pages zeroed).
    pid: u32,
}

// SAFETY: a `Region` is the only owner of its mapping; the raw pointer is not shared with
// anything else, so moving it to another thread or sharing `&Region` is as safe as for a `Box`.
unsafe impl Send for Region {}
// SAFETY: see `Send`; `&Region` only gives out the pointer and plain fields.
unsafe impl Sync for Region {}

pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let p = PAGE.load(Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let p = if p > 0 && (p as usize).is_power_of_two() {
        p as usize
    } else {
        4096
    };
    PAGE.store(p, Ordering::Relaxed);
    p
}

/// The per-process random pattern written into the slack around values.
fn canary() -> &'static [u8; 16] {
    static CANARY: OnceLock<[u8; 16]> = OnceLock::new();
    CANARY.get_or_init(|| {
        let mut c = [0u8; 16];
        if getrandom::getrandom(&mut c).is_err() {
            // No OS randomness: fall back to std's per-process hash keys, the time and the pid.
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            let a = h.finish();
            h.write_u64(a);
            let b = h.finish();
            c[..8].copy_from_slice(&a.to_le_bytes());
            c[8..].copy_from_slice(&b.to_le_bytes());
        }
        c
    })
}

static RELEASE_HOOK: AtomicUsize = AtomicUsize::new(0);

pub(super) fn set_release_hook(hook: Option<super::ReleaseHook>) {
    RELEASE_HOOK.store(hook.map_or(0, |f| f as usize), Ordering::SeqCst);
}

fn release_hook() -> Option<super::ReleaseHook> {
    let h = RELEASE_HOOK.load(Ordering::SeqCst);
    if h == 0 {
        None
    } else {
        // SAFETY: a non-zero value was stored from a `ReleaseHook` function pointer.
        Some(unsafe { std::mem::transmute::<usize, super::ReleaseHook>(h) })
    }
}

static WARNED_UNLOCKED: AtomicBool = AtomicBool::new(false);

fn warn_unlocked(purpose: &'static str, bytes: usize, err: &io::Error) {
    if WARNED_UNLOCKED.swap(true, Ordering::Relaxed) {
        return;
    }
    let _ = writeln!(
        io::stderr(),
        "secure-core: warning: could not lock {bytes} bytes of secure memory for {purpose:?} \
         in RAM ({err}); it works but may be written to swap. Raise the locked-memory limit \
         (RLIMIT_MEMLOCK, `ulimit -l`) or grant CAP_IPC_LOCK. This warning is printed once; \
         secure_mem::stats().lock_failures counts every unlocked region."
    );
}

fn audit_event(kind: EventKind, purpose: &'static str, message: &str, bytes: usize, locked: bool) {
    if audit::is_active() {
        audit::log(
            Event::new(kind, Severity::Info, purpose, message)
                .field("bytes", bytes)
                .field("locked", locked),
        );
    }
}

impl Region {
    /// Maps a region for a value of `len` bytes aligned to `align` (a power of two).
    ///
    /// With `fill = Some(unit)` (`unit` > 0, a multiple of `align`), the value is made as long
    /// as the data pages allow, in whole units (a vector's capacity).
    pub(crate) fn new(
        purpose: &'static str,
        len: usize,
        align: usize,
        fill: Option<usize>,
    ) -> Result<Region, SecureMemError> {
        debug_assert!(align.is_power_of_two());
        let page = page_size();
        let too_large = || SecureMemError::CapacityOverflow {
            purpose,
            requested: format!("{len} bytes"),
        };
        // With an alignment above the page size, the value may have to start up to
        // `align - page` bytes below where it would touch the trailing guard page.
        let extra = align.saturating_sub(page);
        let data_len = len
            .checked_add(extra)
            .and_then(|n| n.max(1).checked_next_multiple_of(page))
            .filter(|&n| n <= isize::MAX as usize / 2)
            .ok_or_else(too_large)?;
        let map_len = data_len + 2 * page;

        // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(SecureMemError::Map {
                purpose,
                bytes: map_len,
                source: io::Error::last_os_error(),
            });
        }
        let base = base.cast::<u8>();
        // SAFETY: `page` is inside the `map_len`-byte mapping just made.
        let data = unsafe { base.add(page) };
        // SAFETY: the data pages are inside the mapping and page-aligned.
        if unsafe { libc::mprotect(data.cast(), data_len, libc::PROT_READ | libc::PROT_WRITE) } != 0
        {
            let source = io::Error::last_os_error();
            // SAFETY: unmapping exactly the mapping made above.
            unsafe { libc::munmap(base.cast(), map_len) };
            return Err(SecureMemError::Protect {
                purpose,
                bytes: data_len,
                source,
            });
        }

        let len = match fill {
            None => len,
            Some(unit) => (data_len - extra) / unit * unit,
        };
        let data_end = data as usize + data_len;
        let start = (data_end - len) & !(align - 1);
        let offset = start - data as usize;

        // Canary in every data byte outside the value (fresh pages are zero, so the value's
        // bytes are already zero).
        let pattern = canary();
        // SAFETY: the data pages are mapped read-write and not yet shared with anyone.
        let pages = unsafe { std::slice::from_raw_parts_mut(data, data_len) };
        let end = offset + len;
        for (i, b) in pages[..offset].iter_mut().enumerate() {
            *b = pattern[i % 16];
        }
        for (i, b) in pages[end..].iter_mut().enumerate() {
            *b = pattern[(end + i) % 16];
        }

        // SAFETY: locking the data pages of our own mapping.
        let locked = unsafe { libc::mlock(data.cast(), data_len) } == 0;
        if !locked {
            let err = io::Error::last_os_error();
            COUNTERS.lock_failures.fetch_add(1, Ordering::Relaxed);
            warn_unlocked(purpose, data_len, &err);
        }
        advise(base, map_len, data, data_len);

        COUNTERS.regions_allocated.fetch_add(1, Ordering::Relaxed);
        COUNTERS.regions_live.fetch_add(1, Ordering::Relaxed);
        COUNTERS.bytes_live.fetch_add(len, Ordering::Relaxed);
        COUNTERS.mapped_bytes.fetch_add(data_len, Ordering::Relaxed);
        if locked {
            COUNTERS.locked_bytes.fetch_add(data_len, Ordering::Relaxed);
        }
        audit_event(
            EventKind::Alloc,
            purpose,
            "secure memory mapped",
            len,
            locked,
        );

        Ok(Region {
            // SAFETY: mmap succeeded, so `base` is not null.
            base: unsafe { NonNull::new_unchecked(base) },
            map_len,
            data_len,
            offset,
            len,
            purpose,
            locked,
            pid: std::process::id(),
        })
    }

    /// The start of the value (aligned as asked; valid for `len()` bytes).
    pub(crate) fn ptr(&self) -> *mut u8 {
        // SAFETY: one guard page plus `offset` stays inside the mapping.
        unsafe { self.base.as_ptr().add(page_size() + self.offset) }
    }

    /// The value's bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn purpose(&self) -> &'static str {
        self.purpose
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.locked
    }

    fn data(&self) -> *mut u8 {
        // SAFETY: the data pages start one page into the mapping.
        unsafe { self.base.as_ptr().add(page_size()) }
    }

    /// The index (from the start of the data pages) of the overwritten canary byte nearest to
    /// the value, if any.
    fn broken_canary(&self) -> Option<usize> {
        let pattern = canary();
        // SAFETY: the data pages are mapped read-write and every byte is initialised (zero
        // from mmap, the canary, or the value; `Plain` values have no uninitialised bytes in
        // the slack, which is outside them).
        let front = unsafe { std::slice::from_raw_parts(self.data(), self.offset) };
        if let Some(i) = (0..front.len())
            .rev()
            .find(|&i| front[i] != pattern[i % 16])
        {
            return Some(i);
        }
        let end = self.offset + self.len;
        // SAFETY: as above, the bytes after the value up to the end of the data pages.
        let back = unsafe { std::slice::from_raw_parts(self.data().add(end), self.data_len - end) };
        back.iter()
            .enumerate()
            .find(|&(i, &b)| b != pattern[(end + i) % 16])
            .map(|(i, _)| end + i)
    }

    /// Whether this is a forked child's copy whose data pages the kernel zeroed
    /// (`MADV_WIPEONFORK`): then the canary is zero too, which is not corruption.
    fn wiped_by_fork(&self) -> bool {
        if std::process::id() == self.pid {
            return false;
        }
        let end = self.offset + self.len;
        // SAFETY: the slack before and after the value: mapped, initialised bytes.
        let (front, back) = unsafe {
            (
                std::slice::from_raw_parts(self.data(), self.offset),
                std::slice::from_raw_parts(self.data().add(end), self.data_len - end),
            )
        };
        front.iter().chain(back).all(|&b| b == 0)
    }

    /// Wipes the whole data pages in four passes.
    fn wipe(&mut self) {
        let data = self.data();
        // A raw zeroing pass first makes every byte initialised (a value's padding bytes may
        // not be), so the pages can be viewed as `[u8]`.
        // SAFETY: the data pages are mapped read-write and owned by this region.
        unsafe { std::ptr::write_bytes(data, 0, self.data_len) };
        // SAFETY: as above; no reference into the value outlives `&mut self`.
        let pages = unsafe { std::slice::from_raw_parts_mut(data, self.data_len) };
        secalloc::wipe_bytes(pages, secalloc::Wipe::FourPass);
        if let Some(hook) = release_hook() {
            hook(self.purpose, pages);
        }
    }

    #[cold]
    #[inline(never)]
    fn canary_broken(&mut self, at: usize) -> ! {
        let bytes = |n: usize| {
            if n == 1 {
                "1 byte".to_owned()
            } else {
                format!("{n} bytes")
            }
        };
        let place = if at < self.offset {
            format!("{} before the value's start", bytes(self.offset - at))
        } else {
            let end = self.offset + self.len;
            format!("{} after the value's end", bytes(at - end + 1))
        };
        let _ = writeln!(
            io::stderr(),
            "secure-core: secure memory corruption: the canary next to the {}-byte value for \
             {:?} was overwritten {place} (a write outside the value); the region is wiped \
             and the process aborts",
            self.len,
            self.purpose
        );
        if audit::is_active() {
            audit::log(
                Event::new(
                    EventKind::HeapCorruption,
                    Severity::Critical,
                    self.purpose,
                    format!("secure memory canary overwritten {place}"),
                )
                .field("bytes", self.len),
            );
            let _ = audit::flush();
        }
        self.wipe();
        std::process::abort()
    }
}

/// `MADV_DONTDUMP` on the whole mapping, `MADV_WIPEONFORK` on the data pages; failures are
/// counted, never fatal.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn advise(base: *mut u8, map_len: usize, data: *mut u8, data_len: usize) {
    // SAFETY: advice on our own mapping; neither call changes its contents in this process.
    if unsafe { libc::madvise(base.cast(), map_len, libc::MADV_DONTDUMP) } != 0 {
        COUNTERS.dont_dump_failures.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: as above. EINVAL means a kernel before 4.14 (no MADV_WIPEONFORK).
    if unsafe { libc::madvise(data.cast(), data_len, libc::MADV_WIPEONFORK) } != 0 {
        COUNTERS
            .wipe_on_fork_unsupported
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn advise(_: *mut u8, _: usize, _: *mut u8, _: usize) {
    COUNTERS.dont_dump_failures.fetch_add(1, Ordering::Relaxed);
    COUNTERS
        .wipe_on_fork_unsupported
        .fetch_add(1, Ordering::Relaxed);
}

impl Drop for Region {
    fn drop(&mut self) {
        if let Some(at) = self.broken_canary() {
            if !self.wiped_by_fork() {
                self.canary_broken(at);
            }
        }
        self.wipe();
        // SAFETY: unmapping exactly this region's mapping; nothing points into it any more
        // (the owning container is being dropped or has replaced it).
        let rc = unsafe { libc::munmap(self.base.as_ptr().cast(), self.map_len) };
        debug_assert_eq!(rc, 0, "munmap of a secure region failed");
        COUNTERS.regions_live.fetch_sub(1, Ordering::Relaxed);
        COUNTERS.bytes_live.fetch_sub(self.len, Ordering::Relaxed);
        COUNTERS
            .mapped_bytes
            .fetch_sub(self.data_len, Ordering::Relaxed);
        if self.locked {
            COUNTERS
                .locked_bytes
                .fetch_sub(self.data_len, Ordering::Relaxed);
        }
        audit_event(
            EventKind::Release,
            self.purpose,
            "secure memory wiped and unmapped",
            self.len,
            self.locked,
        );
    }
}

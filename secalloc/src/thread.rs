//! Per-thread state: the re-entrancy guard, counters, the stack cache, the random pool and
//! the ring of recent frees. It lives in mmap'd slots that are recycled when threads exit.
//!
//! Counters are written only by the owning thread (a relaxed load and store, no atomic
//! read-modify-write, no shared cache line) and summed by [`crate::stats`]. Live bytes are
//! also batched into one global figure, in steps of at most [`FLUSH_BYTES`] a thread, to track
//! the peak: exact for a single thread, within `FLUSH_BYTES` per other thread otherwise.

use core::cell::Cell;
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use crate::config::MAX_STACK_DEPTH;
use crate::stack::StackCache;
use crate::sys::map_zeroed;
use crate::wipe::RandPool;

/// Net live bytes a thread accumulates before publishing them to the global figure.
pub(crate) const FLUSH_BYTES: i64 = 64 << 10;
/// Entries in each thread's ring of recent frees (used to tell a double free from an invalid one).
pub(crate) const RECENT_FREES: usize = 256;

/// Counters kept per thread (and once for threads that are exiting).
#[repr(C)]
#[derive(Default)]
pub(crate) struct Counters {
    pub alloc_bytes: AtomicU64,
    pub allocs: AtomicU64,
    pub freed_bytes: AtomicU64,
    pub frees: AtomicU64,
    pub reallocs: AtomicU64,
    pub wiped_bytes: AtomicU64,
    pub bad_frames: AtomicU64,
    pub corruptions: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Counters {
            alloc_bytes: AtomicU64::new(0),
            allocs: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            reallocs: AtomicU64::new(0),
            wiped_bytes: AtomicU64::new(0),
            bad_frames: AtomicU64::new(0),
            corruptions: AtomicU64::new(0),
        }
    }
}

/// Adds to a counter owned by the calling thread: a plain load and store, no RMW.
#[inline(always)]
pub(crate) fn bump(c: &AtomicU64, v: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
}

#[repr(C)]
pub(crate) struct RecentFree {
    pub addr: AtomicUsize,
    /// stack id << 32 | size (saturated to u32)
    pub meta: AtomicU64,
}

#[repr(C)]
pub(crate) struct ThreadState {
    pub counters: Counters,
    /// Odd while this thread clears a live-set byte without a lock (see `live`).
    pub free_marker: AtomicU64,
    /// The highest live-bytes estimate this thread has seen (the global figure plus its own
    /// unpublished bytes); only the owner writes it.
    pub peak_seen: AtomicU64,
    /// `own_live` when this thread last published its live bytes into `LIVE_FLUSHED`: the
    /// difference is its unpublished share.
    pub flushed_live: i64,
    /// Net live bytes this thread's own allocations and frees added (it may be negative),
    /// and the highest it has been since `testing` last reset it: owner-only plain fields.
    pub own_live: i64,
    pub own_peak: i64,
    /// In profile mode, the block `realloc` is moving on this thread, already counted out of
    /// the profile (see `profile::begin_move`); 0 when none.
    pub moving_block: usize,
    /// Profile mode: this thread's share of the live figures not yet published (see
    /// `profile`), and its shares of callsite figures (owner-written, read by snapshots).
    pub prof_live_bytes: AtomicI64,
    pub prof_live_blocks: AtomicI64,
    pub prof_cache: crate::profile::SiteCache,
    pub stack_top: usize,
    pub index: u32,
    in_use: AtomicBool,
    next: AtomicPtr<ThreadState>,
    pub recent_pos: usize,
    pub recent: [RecentFree; RECENT_FREES],
    pub frames: [usize; MAX_STACK_DEPTH],
    pub cache: StackCache,
    pub pool: RandPool,
}

static SLOTS: AtomicPtr<ThreadState> = AtomicPtr::new(ptr::null_mut());
static SLOT_COUNT: AtomicU32 = AtomicU32::new(0);
/// Live bytes published by threads (see module docs).
pub(crate) static LIVE_FLUSHED: AtomicI64 = AtomicI64::new(0);
/// Highest live-bytes figure seen.
pub(crate) static PEAK: AtomicU64 = AtomicU64::new(0);
/// Counters for work done by threads whose state was already released (thread exit).
pub(crate) static ORPHAN: Counters = Counters::new();
/// Bytes mapped for thread slots.
pub(crate) static SLOT_BYTES: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static GUARD: Cell<bool> = const { Cell::new(false) };
    static STATE: Cell<*mut ThreadState> = const { Cell::new(ptr::null_mut()) };
    static EXITED: Cell<bool> = const { Cell::new(false) };
    static RELEASE: SlotRelease = const { SlotRelease };
}

struct SlotRelease;

impl Drop for SlotRelease {
    fn drop(&mut self) {
        let p = STATE.with(|s| s.replace(ptr::null_mut()));
        EXITED.with(|e| e.set(true));
        if !p.is_null() {
            // SAFETY: `p` is this thread's slot; after this store another thread may take it.
            unsafe {
                flush_pending(&mut *p);
                if crate::config::RUNTIME.profile() {
                    crate::profile::publish_thread(&mut *p);
                }
                (*p).in_use.store(false, Ordering::Release);
            }
        }
    }
}

/// Sets the re-entrancy guard; returns false if it was already set (the tracker is running
/// on this thread, so the caller must not track).
#[inline(always)]
pub(crate) fn enter() -> bool {
    GUARD.with(|g| !g.replace(true))
}

/// Clears the guard set by a successful [`enter`].
#[inline(always)]
pub(crate) fn leave() {
    GUARD.with(|g| g.set(false));
}

/// Whether the guard is set on this thread.
#[inline(always)]
pub(crate) fn guarded() -> bool {
    GUARD.with(|g| g.get())
}

/// Runs `f` with the guard set, so allocations it makes are the allocator's own (not
/// tracked, not reported). Restores the previous state.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let entered = enter();
    let r = f();
    if entered {
        leave();
    }
    r
}

/// This thread's state, creating it on first use. Null while the thread is exiting (after
/// its slot was released). Call with the guard set: set-up may allocate.
#[inline(always)]
pub(crate) fn current() -> *mut ThreadState {
    let p = STATE.with(|s| s.get());
    if !p.is_null() {
        return p;
    }
    current_slow()
}

/// The state a free on this thread works with: created if needed when the free is tracked
/// (`entered`: the guard was taken), otherwise only an existing one (the tracker's own frees
/// must not create state).
#[inline(always)]
pub(crate) fn for_free(entered: bool) -> *mut ThreadState {
    if entered {
        current()
    } else {
        current_if_any()
    }
}

/// This thread's state if it already has one (never creates it).
#[inline(always)]
pub(crate) fn current_if_any() -> *mut ThreadState {
    STATE.with(|s| s.get())
}

#[cold]
fn current_slow() -> *mut ThreadState {
    if EXITED.with(|e| e.get()) {
        return ptr::null_mut();
    }
    let p = acquire_slot();
    if p.is_null() {
        return p;
    }
    STATE.with(|s| s.set(p));
    // Register the exit hook; this may allocate (glibc's __cxa_thread_atexit_impl), which
    // the caller's guard keeps untracked.
    if RELEASE.try_with(|_| ()).is_err() {
        // The thread is already tearing down its thread-locals.
        STATE.with(|s| s.set(ptr::null_mut()));
        EXITED.with(|e| e.set(true));
        // SAFETY: p was acquired above and not shared.
        unsafe { (*p).in_use.store(false, Ordering::Release) };
        return ptr::null_mut();
    }
    p
}

fn acquire_slot() -> *mut ThreadState {
    // Reuse a released slot: counters are cumulative, so they simply go on accumulating.
    let mut p = SLOTS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: slots are never unmapped.
        let s = unsafe { &*p };
        if !s.in_use.load(Ordering::Relaxed)
            && s.in_use
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            // SAFETY: we own the slot now; stack_top and the pool belonged to the previous thread.
            unsafe {
                (*p).stack_top = crate::stack::current_stack_top();
                (*p).pool.init();
            }
            return p;
        }
        p = s.next.load(Ordering::Acquire);
    }
    let bytes = (core::mem::size_of::<ThreadState>() + 4095) & !4095;
    let p = map_zeroed(bytes).cast::<ThreadState>();
    if p.is_null() {
        return p;
    }
    SLOT_BYTES.fetch_add(bytes, Ordering::Relaxed);
    // SAFETY: freshly mapped, zeroed memory: a valid ThreadState (all fields are integers,
    // atomics and arrays of them, for which zero is valid); we initialise the rest here.
    unsafe {
        (*p).in_use.store(true, Ordering::Relaxed);
        (*p).index = SLOT_COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        (*p).stack_top = crate::stack::current_stack_top();
        (*p).pool.init();
    }
    let mut head = SLOTS.load(Ordering::Relaxed);
    loop {
        // SAFETY: p is not yet published; we are its only user.
        unsafe { (*p).next.store(head, Ordering::Relaxed) };
        match SLOTS.compare_exchange_weak(head, p, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return p,
            Err(h) => head = h,
        }
    }
}

/// Visits every slot ever created (including released ones).
pub(crate) fn for_each_slot(mut f: impl FnMut(&ThreadState)) {
    let mut p = SLOTS.load(Ordering::Acquire);
    while !p.is_null() {
        // SAFETY: slots are never unmapped; other threads' fields are read through atomics.
        let s = unsafe { &*p };
        f(s);
        p = s.next.load(Ordering::Acquire);
    }
}

/// Records a net change of live bytes for peak tracking.
#[inline(always)]
pub(crate) fn note_live(ts: &mut ThreadState, delta: i64) {
    if delta > 0 {
        note_live_up(ts, delta);
    } else {
        note_live_down(ts, -delta);
    }
}

/// Records `bytes` more live bytes (an allocation).
#[inline(always)]
pub(crate) fn note_live_up(ts: &mut ThreadState, bytes: i64) {
    ts.own_live += bytes;
    if ts.own_live > ts.own_peak {
        ts.own_peak = ts.own_live;
    }
    let pending = ts.own_live - ts.flushed_live;
    // Per-thread maximum, merged by `stats`: a plain store, no shared RMW while the heap
    // grows.
    let est = LIVE_FLUSHED.load(Ordering::Relaxed) + pending;
    if est > 0 && est as u64 > ts.peak_seen.load(Ordering::Relaxed) {
        ts.peak_seen.store(est as u64, Ordering::Relaxed);
    }
    if pending >= FLUSH_BYTES {
        flush_pending(ts);
    }
}

/// Records `bytes` fewer live bytes (a free).
#[inline(always)]
pub(crate) fn note_live_down(ts: &mut ThreadState, bytes: i64) {
    ts.own_live -= bytes;
    if ts.own_live - ts.flushed_live <= -FLUSH_BYTES {
        flush_pending(ts);
    }
}

/// Publishes this thread's unpublished live bytes into `LIVE_FLUSHED`.
pub(crate) fn flush_pending(ts: &mut ThreadState) {
    let pending = ts.own_live - ts.flushed_live;
    if pending != 0 {
        LIVE_FLUSHED.fetch_add(pending, Ordering::Relaxed);
        ts.flushed_live = ts.own_live;
    }
}

/// Peak tracking for work done without a thread state (exiting threads).
pub(crate) fn note_live_orphan(delta: i64) {
    let now = LIVE_FLUSHED.fetch_add(delta, Ordering::Relaxed) + delta;
    if delta > 0 && now > 0 {
        PEAK.fetch_max(now as u64, Ordering::Relaxed);
    }
}

/// Remembers a free so a later free of the same address can be named a double free.
#[inline(always)]
pub(crate) fn remember_free(ts: &mut ThreadState, addr: usize, stack: u32, size: usize) {
    let e = &ts.recent[ts.recent_pos];
    e.addr.store(addr, Ordering::Relaxed);
    e.meta.store(
        (u64::from(stack) << 32) | (size.min(u32::MAX as usize) as u64),
        Ordering::Relaxed,
    );
    ts.recent_pos = (ts.recent_pos + 1) % RECENT_FREES;
}

/// Looks `addr` up in the rings of recent frees — this thread's first, each newest first, as
/// an address is often freed, reused and freed again — and returns `(stack id, size)` of the
/// block last freed there.
pub(crate) fn find_recent_free(addr: usize) -> Option<(u32, usize)> {
    fn newest_in(s: &ThreadState, addr: usize) -> Option<(u32, usize)> {
        // `recent_pos` is the owner's next write slot: read it racily, as a starting point.
        let start = s.recent_pos % RECENT_FREES;
        (1..=RECENT_FREES).find_map(|k| {
            let e = &s.recent[(start + RECENT_FREES - k) % RECENT_FREES];
            (e.addr.load(Ordering::Relaxed) == addr).then(|| {
                let m = e.meta.load(Ordering::Relaxed);
                ((m >> 32) as u32, (m & 0xFFFF_FFFF) as usize)
            })
        })
    }
    let me = current_if_any();
    // SAFETY: null or this thread's own state.
    if let Some(found) = unsafe { me.as_ref() }.and_then(|s| newest_in(s, addr)) {
        return Some(found);
    }
    let mut found = None;
    for_each_slot(|s| {
        if found.is_none() && !ptr::eq(s, me) {
            found = newest_in(s, addr);
        }
    });
    found
}

/// In a freshly forked child only the forking thread exists: release every other slot
/// (and end the lock-free clears they were in the middle of when the parent forked).
pub(crate) fn after_fork_in_child() {
    let me = current_if_any();
    for_each_slot(|s| {
        if !ptr::eq(s, me) {
            let m = s.free_marker.load(Ordering::Relaxed);
            s.free_marker.store(m + (m & 1), Ordering::Relaxed);
            s.in_use.store(false, Ordering::Release);
        }
    });
}

/// Waits until every lock-free live-set clear that was in flight has finished (for a
/// reader, after its barrier: see `live`).
pub(crate) fn wait_for_frees_in_flight() {
    for_each_slot(|s| {
        let m = s.free_marker.load(Ordering::Acquire);
        if m & 1 == 1 {
            crate::sys::wait_while(|| s.free_marker.load(Ordering::Acquire) == m);
        }
    });
}

/// The highest live-bytes figure any thread has seen.
pub(crate) fn peak_live_bytes() -> u64 {
    let mut peak = PEAK.load(Ordering::Relaxed);
    for_each_slot(|s| peak = peak.max(s.peak_seen.load(Ordering::Relaxed)));
    peak
}

/// A number unique to the calling thread while it lives (the address of a thread-local).
#[inline]
pub(crate) fn token() -> usize {
    GUARD.with(|g| g as *const Cell<bool> as usize)
}

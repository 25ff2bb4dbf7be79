//! `SecAlloc`: the `GlobalAlloc` implementation.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::Ordering;
use std::alloc::System;

use crate::block::{self, Meta};
use crate::config::{
    Config, Hot, OnCorruption, ReportDest, ReportFormat, Wipe, INITIALISING, MAX_STACK_DEPTH,
    READY, RUNTIME, UNINIT,
};
use crate::corruption::{self, Corruption};
use crate::heap::tracked;
use crate::live::{self, Cleared};
use crate::stack::{self, INTERNAL, NO_STACK};
use crate::thread::{self, bump, ThreadState, ORPHAN};
use crate::{profile, scope, wipe, SecHeap};

/// Blocks up to this inner size are zeroed by the allocator itself rather than by the inner
/// allocator's `alloc_zeroed` (below glibc's smallest mmap threshold, 128 KiB).
const ZERO_INLINE_MAX: usize = 64 << 10;

/// The tracking, wiping global allocator.
///
/// By default ([`new`](SecAlloc::new)) it runs over secalloc's own heap, [`SecHeap`], and
/// keeps everything it knows about a block — callsite stack, scope, thread, requested size —
/// in arrays beside the heap's span metadata, apart from user data; the canary sits in the
/// slot's slack. Over any other [`GlobalAlloc`] given to [`with_inner`](SecAlloc::with_inner)
/// (including `System`, or an explicit `with_inner(SecHeap::new())`) it puts a 16-byte header
/// before every block and an 8-byte canary after it. Either way every block it hands out is
/// zeroed and recorded, and every block it takes back is checked and wiped before the heap
/// sees it.
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
/// ```
///
/// Configuration uses const builder methods, and can be overridden at run time by
/// `SECALLOC_*` environment variables (read once, at the first allocation):
///
/// ```no_run
/// use secalloc::{SecAlloc, Wipe};
/// #[global_allocator]
/// static GLOBAL: SecAlloc = SecAlloc::new().wipe(Wipe::Zero).stack_depth(8);
/// ```
///
/// Over the system allocator instead:
///
/// ```no_run
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc<std::alloc::System> =
///     secalloc::SecAlloc::with_inner(std::alloc::System);
/// ```
///
/// The tracker is process-wide: there is one per process, whichever `SecAlloc` value feeds
/// it. The configuration of the first `SecAlloc` used wins.
pub struct SecAlloc<A: GlobalAlloc = SecHeap> {
    inner: A,
    config: Config,
}

impl SecAlloc<SecHeap> {
    /// A `SecAlloc` over secalloc's own heap with the default configuration: four-pass
    /// wipe, zero on alloc, 16-frame stacks, canaries, abort on corruption, report to stderr.
    /// Block metadata lives out of line, beside the heap's span metadata.
    pub const fn new() -> Self {
        let mut config = Config::DEFAULT;
        config.own_heap = true;
        SecAlloc {
            inner: SecHeap::new(),
            config,
        }
    }
}

impl Default for SecAlloc<SecHeap> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: GlobalAlloc> SecAlloc<A> {
    /// A `SecAlloc` over `inner`, with the default configuration and the header layout (a
    /// 16-byte header before each block, the canary after it). Every `realloc` moves the
    /// block (alloc, copy, wipe, free), since `inner`'s own `realloc` might free the old block
    /// without wiping it — except over `System` on glibc, whose `realloc` shrinks in place.
    pub const fn with_inner(inner: A) -> Self {
        SecAlloc {
            inner,
            config: Config::DEFAULT,
        }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// How freed memory is wiped (default [`Wipe::FourPass`]; `SECALLOC_WIPE=4|1|0`).
    pub const fn wipe(mut self, wipe: Wipe) -> Self {
        self.config.wipe = wipe;
        self
    }

    /// Whether memory handed out by `alloc` is zeroed (default on; `SECALLOC_ZERO_ON_ALLOC`).
    pub const fn zero_on_alloc(mut self, on: bool) -> Self {
        self.config.zero_on_alloc = on;
        self
    }

    /// Return addresses recorded per allocation (default 16, at most 64; 0 turns callsite
    /// tracking off; `SECALLOC_STACK_DEPTH`).
    pub const fn stack_depth(mut self, depth: usize) -> Self {
        self.config.stack_depth = if depth > MAX_STACK_DEPTH {
            MAX_STACK_DEPTH as u8
        } else {
            depth as u8
        };
        self
    }

    /// Whether a canary follows every block (default on; `SECALLOC_CANARY=0|1`): 8 bytes
    /// after it in the header layout; over the own heap up to 8 bytes in the slot's slack,
    /// and for blocks that fill their slot, the check of the free slot's first word when it
    /// is handed out again (see the crate documentation).
    pub const fn canaries(mut self, on: bool) -> Self {
        self.config.canaries = on;
        self
    }

    /// What happens on heap corruption (default [`OnCorruption::Abort`];
    /// `SECALLOC_ON_CORRUPTION=abort|continue`).
    pub const fn on_corruption(mut self, action: OnCorruption) -> Self {
        self.config.on_corruption = action;
        self
    }

    /// Where the exit report goes (default [`ReportDest::Stderr`];
    /// `SECALLOC_REPORT=off|stderr|<path>`).
    pub const fn report(mut self, dest: ReportDest) -> Self {
        self.config.report = dest;
        self
    }

    /// The exit report's format (default [`ReportFormat::Text`];
    /// `SECALLOC_REPORT_FORMAT=text|json|dhat|folded`).
    pub const fn report_format(mut self, format: ReportFormat) -> Self {
        self.config.report_format = format;
        self
    }

    /// The exit report is printed only when at least this many bytes are live at exit
    /// (default 1; `SECALLOC_REPORT_MIN_BYTES`).
    pub const fn report_min_bytes(mut self, bytes: u64) -> Self {
        self.config.report_min_bytes = bytes;
        self
    }

    /// How many callsites the text report lists (default 20; `SECALLOC_REPORT_TOP`).
    pub const fn report_top(mut self, n: usize) -> Self {
        self.config.report_top = n;
        self
    }

    /// Whether the exit report lists still-reachable blocks in full rather than as a summary
    /// line (default off; `SECALLOC_REPORT_REACHABLE=1`).
    pub const fn report_reachable(mut self, on: bool) -> Self {
        self.config.report_reachable = on;
        self
    }

    /// Exit with this code when anything is definitely lost at exit (default none;
    /// `SECALLOC_LEAK_EXITCODE=N`), as LeakSanitizer's `exitcode` does.
    pub const fn leak_exitcode(mut self, code: u8) -> Self {
        self.config.leak_exitcode = Some(code);
        self
    }

    /// Wipe every block still live at exit, after the report (default off;
    /// `SECALLOC_WIPE_AT_EXIT=1`). See the crate docs for the risk with running threads.
    pub const fn wipe_at_exit(mut self, on: bool) -> Self {
        self.config.wipe_at_exit = on;
        self
    }

    /// Heap profiling (default off; `SECALLOC_PROFILE=1`): per-callsite totals, peak and
    /// lifetimes, written at exit as a DHAT file (`SECALLOC_PROFILE_FILE`, default
    /// `dhat-heap.json`) with a text summary on stderr. See [`crate::profile`].
    pub const fn profile(mut self, on: bool) -> Self {
        self.config.profile = on;
        self
    }

    #[inline(always)]
    fn ready(&self) {
        if RUNTIME.state.load(Ordering::Acquire) != READY {
            self.init_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn init_slow(&self) {
        let me = thread::token();
        loop {
            match RUNTIME.state.compare_exchange(
                UNINIT,
                INITIALISING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    RUNTIME.init_thread.store(me, Ordering::Relaxed);
                    let entered = thread::enter();
                    let inner = core::any::type_name::<A>();
                    if self.config.own_heap || inner == core::any::type_name::<SecHeap>() {
                        tracked::init_before_tracker();
                    }
                    crate::reach::set_inner(if self.config.own_heap {
                        crate::reach::OWN_HEAP
                    } else {
                        inner
                    });
                    let mut config = self.config;
                    // glibc's realloc shrinks in place (or moves whole pages with mremap),
                    // never leaving a copy of the kept bytes behind.
                    config.inner_shrinks_in_place = !config.own_heap
                        && inner == core::any::type_name::<System>()
                        && cfg!(all(target_os = "linux", target_env = "gnu"));
                    crate::init::initialise(&config);
                    RUNTIME.state.store(READY, Ordering::Release);
                    if entered {
                        thread::leave();
                    }
                    return;
                }
                Err(READY) => return,
                Err(_) => {
                    // Initialisation in progress: on this thread (a re-entrant allocation
                    // made while initialising) go on; elsewhere wait for it.
                    if RUNTIME.init_thread.load(Ordering::Relaxed) == me {
                        return;
                    }
                    core::hint::spin_loop();
                }
            }
        }
    }

    /// Allocates a block. `zero`: zero the user bytes (otherwise left as the inner allocator
    /// returned them).
    #[inline(always)]
    unsafe fn alloc_block(&self, layout: Layout, zero: bool) -> *mut u8 {
        self.ready();
        if self.config.own_heap {
            // SAFETY: forwarded contract.
            return unsafe { crate::own::alloc(layout, zero) };
        }
        let hot = RUNTIME.hot();
        let canary = hot.canaries();
        let Some(il) = block::inner_layout(layout.size(), layout.align(), canary) else {
            return ptr::null_mut();
        };
        let (tracked, meta, ts) = begin(layout, hot);
        // Small blocks: plain `alloc` and zero the user bytes here (glibc's `calloc` never
        // takes the per-thread cache, which costs more than the zeroing). Large blocks:
        // `alloc_zeroed`, whose fresh pages come zeroed from the kernel.
        let small = il.size() <= ZERO_INLINE_MAX;
        // SAFETY: `il` has non-zero size (it includes the header) and a valid alignment.
        let base = unsafe {
            if zero && !small {
                self.inner.alloc_zeroed(il)
            } else {
                self.inner.alloc(il)
            }
        };
        if base.is_null() {
            if tracked {
                thread::leave();
            }
            return base;
        }
        // SAFETY: `base` holds `il.size()` bytes; the user pointer, header and canary lie
        // inside it by construction of `inner_layout`.
        let user = unsafe { base.add(block::offset(layout.align())) };
        if zero && small {
            let n = layout.size();
            // SAFETY: the user bytes lie inside the block just allocated. Up to 256 bytes
            // the zeroing is a few inlined vector stores instead of a call into libc.
            unsafe {
                if n <= wipe::SMALL {
                    wipe::set_small(user, 0, n);
                } else {
                    ptr::write_bytes(user, 0, n);
                }
            }
        }
        if tracked {
            // SAFETY: `ts` is null or this thread's own state.
            account_alloc(unsafe { ts.as_mut() }, &meta, hot);
        }
        // SAFETY: as above.
        unsafe {
            block::write_header(user, &meta);
            if canary {
                block::write_canary(user, layout.size());
            }
        }
        live::set_live(user as usize);
        if tracked {
            thread::leave();
        }
        user
    }

    /// Validates a block being freed (already out of the live set). Returns its header, or
    /// `None` after reporting corruption (the block is then leaked).
    #[inline(always)]
    unsafe fn validate(&self, user: *mut u8, layout: Layout) -> Option<Meta> {
        // SAFETY: the block was live until our clear_live, so its header is readable.
        let Some(meta) = (unsafe { block::read_header(user) }) else {
            corruption::report(
                Corruption::HeaderOverwritten {
                    size: layout.size(),
                },
                user as usize,
            );
            return None;
        };
        if !layout_matches(&meta, layout, user) {
            return None;
        }
        if RUNTIME.canaries() {
            // SAFETY: the canary lies inside the block's inner allocation.
            let found = unsafe { block::read_canary(user, meta.size) };
            if !canary_intact(&meta, block::canary_value(), found, user) {
                return None;
            }
        }
        Some(meta)
    }

    /// Wipes a validated block and hands it to the inner allocator.
    #[inline(always)]
    unsafe fn release(&self, user: *mut u8, meta: Meta, ts: *mut ThreadState) {
        let canary = RUNTIME.canaries();
        let off = block::offset(meta.align());
        // SAFETY: the block was allocated with this offset.
        let base = unsafe { user.sub(off) };
        let Some(il) = block::inner_layout(meta.size, meta.align(), canary) else {
            return;
        };
        let mode = RUNTIME.wipe();
        // SAFETY: the whole inner allocation is ours until inner.dealloc below, and no other
        // thread can reach it (it left the live set, and no reader holds a pin on it).
        unsafe { wipe::wipe_on_thread(ts, base, il.size(), mode) };
        if meta.stack != INTERNAL {
            // SAFETY: `ts` is null or this thread's own state.
            account_free(
                unsafe { ts.as_mut() },
                user as usize,
                &meta,
                Freed {
                    wiped: mode != Wipe::Off,
                    wiped_len: il.size(),
                    remember: true,
                },
                RUNTIME.hot(),
            );
        }
        // Keep the wipe: read the block back through a volatile load and let the pointer
        // escape, so no optimiser can treat the stores above as dead before the free.
        // SAFETY: base is valid for reads (still allocated).
        unsafe { ptr::read_volatile(base) };
        wipe::barrier(base);
        // SAFETY: base/il are exactly what inner.alloc returned/was given.
        unsafe { self.inner.dealloc(base, il) };
    }

    #[cold]
    #[inline(never)]
    unsafe fn realloc_in_place(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let tracked = thread::enter();
        let done = |p: *mut u8| {
            if tracked {
                thread::leave();
            }
            p
        };
        let ts = thread::for_free(tracked);
        match live::clear_live(user as usize, free_marker(ts)) {
            Cleared::WasLive | Cleared::Unindexed => {}
            Cleared::NotLive => {
                bad_free(user, layout);
                return done(ptr::null_mut());
            }
        }
        // SAFETY: the block was live; validate reads its header and canary.
        let Some(mut meta) = (unsafe { self.validate(user, layout) }) else {
            return done(ptr::null_mut());
        };
        let canary = RUNTIME.canaries();
        let canary_len = if canary { block::CANARY } else { 0 };
        let off = block::offset(meta.align());
        let old_il = block::inner_layout(meta.size, meta.align(), canary).expect("valid before");
        let tail = meta.size - new_size + canary_len;
        let mode = RUNTIME.wipe();
        // SAFETY: the tail (old bytes past new_size, and the old canary) is inside the block,
        // which left the live set: nobody else touches it.
        unsafe { wipe::wipe_on_thread(ts, user.add(new_size), tail, mode) };
        let old_size = meta.size;
        // SAFETY: base is the inner allocation; the new size is smaller, so inner realloc
        // shrinks in place (glibc) or moves whole pages (mremap) — no copy is left behind.
        let base = unsafe { user.sub(off) };
        let new_total = off + new_size + canary_len;
        // SAFETY: base/old_il came from inner.alloc; new_total > 0.
        let nb = unsafe { self.inner.realloc(base, old_il, new_total) };
        let (nb, size) = if nb.is_null() {
            (base, old_size)
        } else {
            (nb, new_size)
        };
        meta.size = size;
        // SAFETY: nb holds off + size + canary bytes.
        let nu = unsafe { nb.add(off) };
        if meta.stack != INTERNAL && size != old_size {
            // SAFETY: ts is null or this thread's own state.
            let ts = unsafe { ts.as_mut() };
            account_realloc_in_place(ts, &mut meta, old_size, mode != Wipe::Off, tail);
        }
        // SAFETY: as above.
        unsafe {
            block::write_header(nu, &meta);
            if canary {
                block::write_canary(nu, size);
            }
        }
        live::set_live(nu as usize);
        if nb == base && size == old_size {
            return done(ptr::null_mut());
        }
        done(nu)
    }
}

/// Enters the tracker and describes a block of `layout` about to be allocated:
/// `(tracked, meta, this thread's state)`. Untracked (the allocator's own) blocks get the
/// `INTERNAL` stack; a tracked caller must `thread::leave` when done.
#[inline(always)]
pub(crate) fn begin(layout: Layout, hot: Hot) -> (bool, Meta, *mut ThreadState) {
    let tracked = thread::enter();
    let mut meta = Meta {
        size: layout.size(),
        align_log2: layout.align().trailing_zeros(),
        stack: INTERNAL,
        scope: 0,
        born: 0,
    };
    let mut ts: *mut ThreadState = ptr::null_mut();
    if tracked {
        ts = thread::current();
        meta.scope = scope::current();
        meta.stack = NO_STACK;
        // SAFETY: `ts` is null or this thread's own state, used only by this thread.
        if let Some(ts) = unsafe { ts.as_mut() } {
            meta.stack = capture(ts, hot);
        }
        if hot.profile() {
            // Known before the block is published, so its record is written once.
            // SAFETY: as above.
            meta.born = profile::birth_time(unsafe { ts.as_ref() }, meta.stack);
        }
    }
    (tracked, meta, ts)
}

#[inline(always)]
fn capture(ts: &mut ThreadState, hot: Hot) -> u32 {
    // At most MAX_STACK_DEPTH (the settings keep it so; the bound lets the compiler drop
    // the slice's check).
    let depth = hot.stack_depth().min(MAX_STACK_DEPTH);
    if depth == 0 {
        return NO_STACK;
    }
    let w = stack::walk(&mut ts.frames[..depth], ts.stack_top);
    if w.len < 3 {
        // A chain that breaks right after the allocator's own callers means the calling
        // code has no frame pointers (a walk ending in the C runtime's frames is normal).
        if w.broke_off() {
            bump(&ts.counters.bad_frames, 1);
        }
        if w.len == 0 {
            return NO_STACK;
        }
    }
    // SAFETY: the walk stores at most `depth <= frames.len()` frames and returns how many.
    let frames = unsafe { ts.frames.get_unchecked(..w.len) };
    stack::intern(frames, w.hash, &mut ts.cache)
}

/// Reports a free of an address that is not live, then aborts or (configured) returns.
#[cold]
#[inline(never)]
pub(crate) fn bad_free(user: *mut u8, layout: Layout) {
    let kind = match thread::find_recent_free(user as usize) {
        Some((stack, size)) => Corruption::DoubleFree {
            alloc_stack: stack,
            size,
        },
        None => Corruption::InvalidFree {
            size: layout.size(),
        },
    };
    corruption::report(kind, user as usize);
}

/// Moves a block to a new allocation of `new_size` bytes (alloc, copy, free) with `alloc`
/// (`(layout, zero)`) and `dealloc`. `own_heap`: `alloc` hands out zeroed slots for free.
/// `meta`: the block's metadata if the caller has it (for profile mode).
///
/// # Safety
/// As `GlobalAlloc::realloc`; `alloc` and `dealloc` are the allocator's own.
#[inline(always)]
pub(crate) unsafe fn realloc_move(
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    own_heap: bool,
    meta: Option<Meta>,
    alloc: impl Fn(Layout, bool) -> *mut u8,
    dealloc: impl Fn(*mut u8, Layout),
) -> *mut u8 {
    // SAFETY: the caller guarantees new_size, rounded to layout.align(), does not overflow.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    let keep = layout.size().min(new_size);
    let zero_tail = new_size > keep && RUNTIME.zero_on_alloc();
    // A large grown block comes zeroed from the inner allocator (`alloc_zeroed`: fresh
    // pages from the kernel are not written), so the capacity the program has not used
    // yet stays untouched, as it would without SecAlloc; a small one is zeroed past
    // `keep` below. The own heap hands out zeroed slots for free: it is always asked.
    let large = zero_tail && (new_size > ZERO_INLINE_MAX || own_heap);
    // Profile mode counts the old copy out first: a realloc is measured by the difference.
    let moving = profile::begin_move(ptr, own_heap, meta);
    let new = alloc(new_layout, large);
    if new.is_null() {
        if moving {
            profile::cancel_move(ptr, own_heap);
        }
        return new;
    }
    // SAFETY: both blocks hold at least `keep` bytes and are distinct allocations.
    unsafe { ptr::copy_nonoverlapping(ptr, new, keep) };
    if zero_tail && !large {
        // SAFETY: new holds new_size bytes.
        unsafe { ptr::write_bytes(new.add(keep), 0, new_size - keep) };
    }
    dealloc(ptr, layout);
    count_moved_realloc();
    if moving {
        profile::on_moved();
    }
    new
}

/// Whether a block is freed (or reallocated) with the layout it was allocated with; reports
/// the mismatch otherwise.
#[inline(always)]
pub(crate) fn layout_matches(meta: &Meta, layout: Layout, user: *mut u8) -> bool {
    if meta.size == layout.size() && meta.align() == layout.align() {
        return true;
    }
    corruption::report(
        Corruption::LayoutMismatch {
            alloc_stack: meta.stack,
            size: meta.size,
            align: meta.align(),
            freed_size: layout.size(),
            freed_align: layout.align(),
        },
        user as usize,
    );
    false
}

/// Whether the canary `found` after a block is the `expected` one; reports the overflow
/// otherwise.
#[inline(always)]
pub(crate) fn canary_intact(meta: &Meta, expected: u64, found: u64, user: *mut u8) -> bool {
    if found == expected {
        return true;
    }
    corruption::report(
        Corruption::Overflow {
            alloc_stack: meta.stack,
            size: meta.size,
            expected,
            found,
        },
        user as usize,
    );
    false
}

/// The calling thread's live-set free marker, if it has a state.
#[inline(always)]
fn free_marker<'a>(ts: *mut ThreadState) -> Option<&'a core::sync::atomic::AtomicU64> {
    // SAFETY: `ts` is null or this thread's own state, which is never unmapped.
    unsafe { ts.as_ref() }.map(|t| &t.free_marker)
}

/// Counts a new block (`meta`: its size, stack, scope and, in profile mode, its allocation
/// time, set by [`begin`]); in profile mode also its callsite's figures.
#[inline(always)]
pub(crate) fn account_alloc(ts: Option<&mut ThreadState>, meta: &Meta, hot: Hot) {
    let size = meta.size;
    let scope_id = meta.scope;
    let mut ts = ts;
    if hot.profile() {
        profile::on_alloc(ts.as_deref_mut(), meta.stack, size, meta.born);
    }
    match ts {
        Some(ts) => {
            bump(&ts.counters.alloc_bytes, size as u64);
            bump(&ts.counters.allocs, 1);
            thread::note_live_up(ts, size as i64);
        }
        None => {
            ORPHAN.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
            ORPHAN.allocs.fetch_add(1, Ordering::Relaxed);
            thread::note_live_orphan(size as i64);
        }
    }
    if scope_id != 0 {
        scope::on_alloc(scope_id, size);
    }
}

/// How a block was freed, for [`account_free`].
#[derive(Clone, Copy)]
pub(crate) struct Freed {
    /// Its bytes were wiped, `wiped_len` of them.
    pub wiped: bool,
    pub wiped_len: usize,
    /// Remember the free in the thread's ring of recent frees, so that a second free of the
    /// address is named a double free with the block's stack. Not needed where the block's
    /// record outlives the free and says so itself (the own heap's slots).
    pub remember: bool,
}

#[inline(always)]
pub(crate) fn account_free(
    ts: Option<&mut ThreadState>,
    user: usize,
    meta: &Meta,
    how: Freed,
    hot: Hot,
) {
    let Freed {
        wiped,
        wiped_len,
        remember,
    } = how;
    let size = meta.size;
    let mut ts = ts;
    if hot.profile() {
        profile::on_free(ts.as_deref_mut(), user, meta.stack, size, meta.born);
    }
    match ts {
        Some(ts) => {
            bump(&ts.counters.freed_bytes, size as u64);
            bump(&ts.counters.frees, 1);
            if wiped {
                bump(&ts.counters.wiped_bytes, wiped_len as u64);
            }
            if remember {
                thread::remember_free(ts, user, meta.stack, size);
            }
            thread::note_live_down(ts, size as i64);
        }
        None => {
            ORPHAN.freed_bytes.fetch_add(size as u64, Ordering::Relaxed);
            ORPHAN.frees.fetch_add(1, Ordering::Relaxed);
            if wiped {
                ORPHAN
                    .wiped_bytes
                    .fetch_add(wiped_len as u64, Ordering::Relaxed);
            }
            thread::note_live_orphan(-(size as i64));
        }
    }
    if meta.scope != 0 {
        scope::on_free(meta.scope, size);
    }
}

/// Counts an in-place shrink of a block from `old` bytes to `meta.size`; in profile mode
/// also its callsite record, and sets `meta.born` (its lifetime restarts, as dhat-rs's).
/// Call before the new header is written.
pub(crate) fn account_realloc_in_place(
    ts: Option<&mut ThreadState>,
    meta: &mut Meta,
    old: usize,
    wiped: bool,
    tail: usize,
) {
    let new = meta.size;
    let mut ts = ts;
    if RUNTIME.profile() {
        meta.born =
            profile::on_realloc_in_place(ts.as_deref_mut(), meta.stack, old, new, meta.born);
    }
    let delta = new as i64 - old as i64;
    match ts {
        Some(ts) => {
            bump(&ts.counters.alloc_bytes, new as u64);
            bump(&ts.counters.allocs, 1);
            bump(&ts.counters.freed_bytes, old as u64);
            bump(&ts.counters.frees, 1);
            bump(&ts.counters.reallocs, 1);
            if wiped {
                bump(&ts.counters.wiped_bytes, tail as u64);
            }
            thread::note_live(ts, delta);
        }
        None => {
            ORPHAN.alloc_bytes.fetch_add(new as u64, Ordering::Relaxed);
            ORPHAN.allocs.fetch_add(1, Ordering::Relaxed);
            ORPHAN.freed_bytes.fetch_add(old as u64, Ordering::Relaxed);
            ORPHAN.frees.fetch_add(1, Ordering::Relaxed);
            ORPHAN.reallocs.fetch_add(1, Ordering::Relaxed);
            if wiped {
                ORPHAN.wiped_bytes.fetch_add(tail as u64, Ordering::Relaxed);
            }
            thread::note_live_orphan(delta);
        }
    }
    if meta.scope != 0 {
        scope::on_free(meta.scope, old);
        scope::on_alloc(meta.scope, new);
    }
}

// SAFETY: alloc/alloc_zeroed return blocks of at least `layout.size()` bytes aligned to
// `layout.align()` (the user pointer is offset by a multiple of the alignment inside an
// inner block aligned to max(16, align)); dealloc/realloc accept exactly the pointers we
// returned; realloc preserves the first min(old, new) bytes.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SecAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.alloc_block(layout, RUNTIME.zero_on_alloc()) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { self.alloc_block(layout, true) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr.is_null() {
            return;
        }
        self.ready();
        if self.config.own_heap {
            // SAFETY: forwarded contract.
            return unsafe { crate::own::dealloc(ptr, layout) };
        }
        let tracked = thread::enter();
        let ts = thread::for_free(tracked);
        match live::clear_live(ptr as usize, free_marker(ts)) {
            Cleared::WasLive | Cleared::Unindexed => {
                // SAFETY: the block was live: its header and canary are readable, and it is
                // ours to wipe and free now that it left the live set.
                unsafe {
                    if let Some(meta) = self.validate(ptr, layout) {
                        self.release(ptr, meta, ts);
                    }
                }
            }
            Cleared::NotLive => bad_free(ptr, layout),
        }
        if tracked {
            thread::leave();
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.ready();
        if self.config.own_heap {
            // SAFETY: forwarded contract.
            return unsafe { crate::own::realloc(ptr, layout, new_size) };
        }
        if new_size == layout.size() && live::is_live(ptr as usize) {
            if RUNTIME.profile() {
                profile::on_same_size_realloc(ptr, false);
            }
            return ptr;
        }
        if new_size < layout.size()
            && layout.align() <= block::HEADER
            && RUNTIME.inner_shrinks_in_place()
        {
            // SAFETY: forwarded contract: ptr was returned by us with `layout`.
            let p = unsafe { self.realloc_in_place(ptr, layout, new_size) };
            if !p.is_null() {
                return p;
            }
            if !live::is_live(ptr as usize) {
                // Invalid pointer (reported), or the inner allocator refused: nothing moved.
                return ptr::null_mut();
            }
            // Shrink refused by the inner allocator: fall through to a move.
        }
        if live::indexable(ptr as usize) && !live::is_live(ptr as usize) {
            bad_free(ptr, layout);
            return ptr::null_mut();
        }
        // SAFETY: forwarded contract; the closures are this allocator's own alloc and free.
        unsafe {
            realloc_move(
                ptr,
                layout,
                new_size,
                false,
                None,
                // SAFETY: realloc_move passes valid, non-zero-sized layouts.
                |l, z| self.alloc_block(l, z),
                // SAFETY: realloc_move frees the block it was given, once.
                |p, l| self.dealloc(p, l),
            )
        }
    }
}

#[inline(always)]
fn count_moved_realloc() {
    if !thread::guarded() {
        let ts = thread::current_if_any();
        // SAFETY: ts is null or this thread's own state.
        if let Some(ts) = unsafe { ts.as_mut() } {
            bump(&ts.counters.reallocs, 1);
        }
    }
}

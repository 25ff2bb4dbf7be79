//! `SecAlloc`: the `GlobalAlloc` implementation.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;
use core::sync::atomic::Ordering;
use std::alloc::System;

use crate::block::{self, Meta};
use crate::config::{
    Config, OnCorruption, ReportDest, ReportFormat, Wipe, INITIALISING, MAX_STACK_DEPTH, READY,
    RUNTIME, UNINIT,
};
use crate::corruption::{self, Corruption};
use crate::heap::slots::{self, FREED, LEAKED, LIVE};
use crate::heap::tracked::{self, Found};
use crate::live::{self, Cleared};
use crate::stack::{self, INTERNAL, NO_STACK};
use crate::thread::{self, bump, ThreadState, ORPHAN};
use crate::{scope, wipe, SecHeap};

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

    /// Whether an 8-byte canary follows every block (default on; `SECALLOC_CANARY=0|1`).
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

    #[inline(always)]
    fn capture(&self, ts: &mut ThreadState) -> u32 {
        let depth = RUNTIME.stack_depth();
        if depth == 0 {
            return NO_STACK;
        }
        let w = stack::walk(&mut ts.frames[..depth], ts.stack_top);
        // A chain that breaks right after the allocator's own callers means the calling code
        // has no frame pointers (a walk ending in the C runtime's frames is normal).
        if w.bad_frame && w.len < 3 {
            bump(&ts.counters.bad_frames, 1);
        }
        if w.len == 0 {
            return NO_STACK;
        }
        stack::intern(&ts.frames[..w.len], w.hash, &mut ts.cache)
    }

    /// Enters the tracker and describes a block of `layout` about to be allocated:
    /// `(tracked, meta, this thread's state)`. Untracked (the allocator's own) blocks get the
    /// `INTERNAL` stack; a tracked caller must `thread::leave` when done.
    #[inline(always)]
    fn begin(&self, layout: Layout) -> (bool, Meta, *mut ThreadState) {
        let tracked = thread::enter();
        let mut meta = Meta {
            size: layout.size(),
            align_log2: layout.align().trailing_zeros(),
            stack: INTERNAL,
            scope: 0,
            thread: 0,
        };
        let mut ts: *mut ThreadState = ptr::null_mut();
        if tracked {
            ts = thread::current();
            meta.scope = scope::current();
            meta.stack = NO_STACK;
            // SAFETY: `ts` is null or this thread's own state, used only by this thread.
            if let Some(ts) = unsafe { ts.as_mut() } {
                meta.thread = ts.index.min(u32::from(u16::MAX)) as u16;
                meta.stack = self.capture(ts);
            }
        }
        (tracked, meta, ts)
    }

    /// Allocates a block. `zero`: zero the user bytes (otherwise left as the inner allocator
    /// returned them).
    #[inline(always)]
    unsafe fn alloc_block(&self, layout: Layout, zero: bool) -> *mut u8 {
        self.ready();
        if self.config.own_heap {
            // SAFETY: forwarded contract.
            return unsafe { self.own_alloc(layout, zero) };
        }
        let canary = RUNTIME.canaries();
        let Some(il) = block::inner_layout(layout.size(), layout.align(), canary) else {
            return ptr::null_mut();
        };
        let (tracked, meta, ts) = self.begin(layout);
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
        // SAFETY: as above.
        unsafe {
            block::write_header(user, &meta);
            if canary {
                block::write_canary(user, layout.size());
            }
        }
        live::set_live(user as usize);
        if tracked {
            // SAFETY: `ts` is null or this thread's own state.
            account_alloc(unsafe { ts.as_mut() }, layout.size(), meta.scope);
            thread::leave();
        }
        user
    }

    /// Reports a free of an address that is not live, then aborts or (configured) returns.
    #[cold]
    #[inline(never)]
    fn bad_free(&self, user: *mut u8, layout: Layout) {
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
        if meta.size != layout.size() || meta.align() != layout.align() {
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
            return None;
        }
        if RUNTIME.canaries() {
            // SAFETY: the canary lies inside the block's inner allocation.
            let found = unsafe { block::read_canary(user, meta.size) };
            if found != block::canary_value() {
                corruption::report(
                    Corruption::Overflow {
                        alloc_stack: meta.stack,
                        size: meta.size,
                        expected: block::canary_value(),
                        found,
                    },
                    user as usize,
                );
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
                mode != Wipe::Off,
                il.size(),
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
                self.bad_free(user, layout);
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
        // SAFETY: as above.
        unsafe {
            block::write_header(nu, &meta);
            if canary {
                block::write_canary(nu, size);
            }
        }
        live::set_live(nu as usize);
        if meta.stack != INTERNAL && size != old_size {
            // SAFETY: ts is null or this thread's own state.
            let ts = unsafe { ts.as_mut() };
            account_realloc_in_place(ts, &meta, old_size, size, mode != Wipe::Off, tail);
        }
        if nb == base && size == old_size {
            return done(ptr::null_mut());
        }
        done(nu)
    }

    // -----------------------------------------------------------------------------------
    // The own heap (`SecAlloc::new()`): metadata out of line, in the heap's slot records.

    /// Allocates a block from the own heap's tracked classes. A slot comes zeroed when
    /// freed slots are wiped (every wipe ends with zeros, fresh memory is zero); only with
    /// `Wipe::Off` does the heap zero a used slot. With canaries on, the slot's slack after
    /// the block (up to 8 bytes) holds the canary; a block that fills its slot exactly has
    /// none, and is checked instead by the free-slot check: the first word of a slot
    /// handed out again must still be zero, as the wipe left it, or something wrote to it
    /// while it was free (an overflow out of the block before it, or a write after free).
    #[inline(always)]
    unsafe fn own_alloc(&self, layout: Layout, zero: bool) -> *mut u8 {
        let (tracked, meta, ts) = self.begin(layout);
        let wiped = RUNTIME.wipe() != Wipe::Off;
        let canary = RUNTIME.canaries();
        let p = loop {
            let Some(t) = tracked::take(layout.size(), layout.align(), zero && !wiped) else {
                break ptr::null_mut();
            };
            let p = t.addr as *mut u8;
            if canary && wiped {
                if let Some(prev) = t.previous() {
                    // SAFETY: a slot holds at least 16 bytes and is 16-aligned; it is ours
                    // (just taken, not yet handed out).
                    let first = unsafe { p.cast::<u64>().read_volatile() };
                    if first != 0 && prev.state != LEAKED {
                        self.free_slot_written(&t, first, &meta);
                        continue;
                    }
                }
            }
            if !t.publish(&meta) {
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
                account_alloc(unsafe { ts.as_mut() }, layout.size(), meta.scope);
            }
            thread::leave();
        }
        p
    }

    /// Reports a slot written while free (found when handing it out again), and leaks it.
    #[cold]
    #[inline(never)]
    fn free_slot_written(&self, t: &tracked::Taken, found: u64, meta: &Meta) {
        let before = tracked::record_before(t.addr, t.cap);
        t.leak(meta);
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
    fn own_validate(
        &self,
        user: *mut u8,
        layout: Layout,
        d: slots::Decoded,
        cap: usize,
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
                self.bad_free(user, layout);
            }
            return None;
        }
        if meta.size != layout.size() || meta.align() != layout.align() {
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
            return None;
        }
        if RUNTIME.canaries() {
            // SAFETY: the slack lies inside the block's slot.
            let (expected, found) = unsafe { read_slack_canary(user, meta.size, cap) };
            if expected != found {
                corruption::report(
                    Corruption::Overflow {
                        alloc_stack: meta.stack,
                        size: meta.size,
                        expected,
                        found,
                    },
                    user as usize,
                );
                return None;
            }
        }
        Some(meta)
    }

    /// Frees a block of the own heap.
    #[inline(always)]
    unsafe fn own_dealloc(&self, user: *mut u8, layout: Layout) {
        let entered = thread::enter();
        let ts = thread::for_free(entered);
        let addr = user as usize;
        let mode = RUNTIME.wipe();
        match tracked::find(addr) {
            Found::Slot { at, rec, cap } => {
                let d = rec.read();
                let Some(meta) = self.own_validate(user, layout, d, cap) else {
                    if d.state == LIVE {
                        rec.set_stamp(LEAKED, d.gen.wrapping_add(1));
                    }
                    return leave_if(entered);
                };
                // Readers that noted the old generation drop what they read from now on.
                rec.set_stamp(FREED, d.gen.wrapping_add(1));
                // SAFETY: the slot (cap bytes) is ours until given back below: it is out of
                // the live set for every reader, and no other thread frees it (its record
                // said live, and a racing double free is caught by the bitmaps below).
                unsafe { wipe::wipe_on_thread(ts, user, cap, mode) };
                if meta.stack != INTERNAL {
                    // SAFETY: `ts` is null or this thread's own state.
                    account_free(unsafe { ts.as_mut() }, addr, &meta, mode != Wipe::Off, cap);
                }
                // Keep the wipe: read the slot back through a volatile load and let the
                // pointer escape, so no optimiser can treat the stores above as dead.
                // SAFETY: the slot is mapped memory of the heap.
                unsafe { ptr::read_volatile(user) };
                wipe::barrier(user);
                // SAFETY: `at` comes from `find` and the record is marked freed.
                if !unsafe { tracked::give_back_slot(at) } {
                    corruption::report(
                        Corruption::DoubleFree {
                            alloc_stack: meta.stack,
                            size: meta.size,
                        },
                        addr,
                    );
                }
            }
            Found::Large { entry } => {
                let mut d = slots::decode(entry.w0, entry.w1);
                d.meta.size = entry.size;
                let Some(meta) = self.own_validate(user, layout, d, entry.body) else {
                    if d.state == LIVE {
                        tracked::leak_large(addr, &d.meta);
                    }
                    return leave_if(entered);
                };
                if !tracked::remove_large(addr) {
                    self.bad_free(user, layout);
                    return leave_if(entered);
                }
                let len = meta.size + slack_canary_len(meta.size, entry.body);
                // SAFETY: the block is out of the table (no reader holds it) and still mapped
                // until unmap_large; its pages past `len` were never written.
                unsafe { wipe::wipe_on_thread(ts, user, len, mode) };
                if meta.stack != INTERNAL {
                    // SAFETY: `ts` is null or this thread's own state.
                    account_free(unsafe { ts.as_mut() }, addr, &meta, mode != Wipe::Off, len);
                }
                // SAFETY: as above.
                unsafe { ptr::read_volatile(user) };
                wipe::barrier(user);
                tracked::unmap_large(addr);
            }
            Found::NotOurs => self.bad_free(user, layout),
        }
        leave_if(entered)
    }

    /// Reallocates a block of the own heap: in place within its class (or its mapping, for
    /// a large block), otherwise by moving it.
    #[inline(always)]
    unsafe fn own_realloc(&self, user: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let found = tracked::find(user as usize);
        let (cap, large) = match &found {
            Found::Slot { cap, .. } => (*cap, false),
            Found::Large { entry } => (entry.body, true),
            Found::NotOurs => {
                let entered = thread::enter();
                self.bad_free(user, layout);
                leave_if(entered);
                return ptr::null_mut();
            }
        };
        if tracked::fits_in_place(layout.size(), new_size, layout.align(), cap, large) {
            // SAFETY: forwarded contract.
            return unsafe { self.own_realloc_in_place(user, layout, new_size, found) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.realloc_move(user, layout, new_size) }
    }

    /// Resizes a tracked block inside its slot: the bytes given up are wiped, the bytes
    /// gained are zeroed, the canary moves, the record is updated (a new generation: readers
    /// treat it as a new block, as the header path does).
    #[cold]
    #[inline(never)]
    unsafe fn own_realloc_in_place(
        &self,
        user: *mut u8,
        layout: Layout,
        new_size: usize,
        found: Found,
    ) -> *mut u8 {
        let entered = thread::enter();
        let ts = thread::for_free(entered);
        let (d, cap) = match &found {
            Found::Slot { rec, cap, .. } => (rec.read(), *cap),
            Found::Large { entry } => {
                let mut d = slots::decode(entry.w0, entry.w1);
                d.meta.size = entry.size;
                (d, entry.body)
            }
            Found::NotOurs => return leave_if_null(entered),
        };
        let Some(mut meta) = self.own_validate(user, layout, d, cap) else {
            if d.state == LIVE {
                match &found {
                    Found::Slot { rec, .. } => rec.set_stamp(LEAKED, d.gen.wrapping_add(1)),
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
        match &found {
            Found::Slot { rec, .. } => rec.write(&meta, LIVE, d.gen.wrapping_add(1)),
            _ => tracked::update_large(user as usize, &meta),
        }
        if meta.stack != INTERNAL && new_size != old {
            // SAFETY: ts is null or this thread's own state.
            let ts = unsafe { ts.as_mut() };
            account_realloc_in_place(ts, &meta, old, new_size, mode != Wipe::Off, tail);
        }
        leave_if(entered);
        user
    }

    /// Moves a block to a new allocation of `new_size` bytes (alloc, copy, free).
    #[inline(always)]
    unsafe fn realloc_move(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees new_size, rounded to layout.align(), does not overflow.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let keep = layout.size().min(new_size);
        let zero_tail = new_size > keep && RUNTIME.zero_on_alloc();
        // A large grown block comes zeroed from the inner allocator (`alloc_zeroed`: fresh
        // pages from the kernel are not written), so the capacity the program has not used
        // yet stays untouched, as it would without SecAlloc; a small one is zeroed past
        // `keep` below. The own heap hands out zeroed slots for free: it is always asked.
        let large = zero_tail && (new_size > ZERO_INLINE_MAX || self.config.own_heap);
        // SAFETY: new_layout is valid and non-zero-sized (new_size > 0 by contract).
        let new = unsafe { self.alloc_block(new_layout, large) };
        if new.is_null() {
            return new;
        }
        // SAFETY: both blocks hold at least `keep` bytes and are distinct allocations.
        unsafe { ptr::copy_nonoverlapping(ptr, new, keep) };
        if zero_tail && !large {
            // SAFETY: new holds new_size bytes.
            unsafe { ptr::write_bytes(new.add(keep), 0, new_size - keep) };
        }
        // SAFETY: ptr was returned by us with `layout` and is still live.
        unsafe { self.dealloc(ptr, layout) };
        count_moved_realloc();
        new
    }
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
    let n = slack_canary_len(size, cap);
    if n == block::CANARY {
        // SAFETY: guaranteed by the caller.
        unsafe { block::write_canary(user, size) };
    } else if n > 0 {
        let bytes = block::canary_value().to_le_bytes();
        // SAFETY: guaranteed by the caller; n < 8 bytes inside the slot.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), user.add(size), n) };
    }
}

/// The slack canary `(expected, found)`, both with only the bytes the slack holds.
///
/// # Safety
/// `user .. user + cap` is readable memory of the block's slot.
#[inline(always)]
unsafe fn read_slack_canary(user: *const u8, size: usize, cap: usize) -> (u64, u64) {
    let n = slack_canary_len(size, cap);
    if n == block::CANARY {
        // SAFETY: guaranteed by the caller.
        return (block::canary_value(), unsafe {
            block::read_canary(user, size)
        });
    }
    let mut found = [0u8; 8];
    // SAFETY: guaranteed by the caller; n < 8 bytes inside the slot.
    unsafe { ptr::copy_nonoverlapping(user.add(size), found.as_mut_ptr(), n) };
    let mask = if n == 0 { 0 } else { u64::MAX >> (64 - 8 * n) };
    (block::canary_value() & mask, u64::from_le_bytes(found))
}

/// The calling thread's live-set free marker, if it has a state.
#[inline(always)]
fn free_marker<'a>(ts: *mut ThreadState) -> Option<&'a core::sync::atomic::AtomicU64> {
    // SAFETY: `ts` is null or this thread's own state, which is never unmapped.
    unsafe { ts.as_ref() }.map(|t| &t.free_marker)
}

#[inline(always)]
fn account_alloc(ts: Option<&mut ThreadState>, size: usize, scope_id: u16) {
    match ts {
        Some(ts) => {
            bump(&ts.counters.alloc_bytes, size as u64);
            bump(&ts.counters.allocs, 1);
            thread::note_live(ts, size as i64);
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

#[inline(always)]
fn account_free(
    ts: Option<&mut ThreadState>,
    user: usize,
    meta: &Meta,
    wiped: bool,
    wiped_len: usize,
) {
    let size = meta.size;
    match ts {
        Some(ts) => {
            bump(&ts.counters.freed_bytes, size as u64);
            bump(&ts.counters.frees, 1);
            if wiped {
                bump(&ts.counters.wiped_bytes, wiped_len as u64);
            }
            thread::remember_free(ts, user, meta.stack, size);
            thread::note_live(ts, -(size as i64));
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

fn account_realloc_in_place(
    ts: Option<&mut ThreadState>,
    meta: &Meta,
    old: usize,
    new: usize,
    wiped: bool,
    tail: usize,
) {
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
            return unsafe { self.own_dealloc(ptr, layout) };
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
            Cleared::NotLive => self.bad_free(ptr, layout),
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
            return unsafe { self.own_realloc(ptr, layout, new_size) };
        }
        if new_size == layout.size() && live::is_live(ptr as usize) {
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
            self.bad_free(ptr, layout);
            return ptr::null_mut();
        }
        // SAFETY: forwarded contract.
        unsafe { self.realloc_move(ptr, layout, new_size) }
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

//! Scopes: tag allocations with the operation that made them, and count what each
//! operation left live.
//!
//! A [`Scope`] is one invocation of an operation (a request handler, a job). While it is
//! entered on a thread, every allocation that thread makes carries the scope's id in its
//! header; frees of those blocks, on any thread, are counted against it. The record of a
//! scope is recycled once the scope is dropped and none of its blocks is live any more.

use core::cell::Cell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::sys::{map_zeroed, SpinLock};

const MAX_SCOPES: usize = 1 << 16;
const FREE: u8 = 0;
const OPEN: u8 = 1;
const CLOSED: u8 = 2;

#[repr(C, align(64))]
struct Rec {
    alloc_bytes: AtomicU64,
    alloc_blocks: AtomicU64,
    _pad: [u64; 6],
    freed_bytes: AtomicU64,
    freed_blocks: AtomicU64,
    name_ptr: AtomicUsize,
    name_len: AtomicUsize,
    state: AtomicU8,
}

struct Registry {
    recs: *mut Rec,
    free_head: u32,
    next_unused: u32,
}

// SAFETY: `recs` is process-global mmap'd memory; the registry is only used under its lock.
unsafe impl Send for Registry {}

static REGISTRY: SpinLock<Registry> = SpinLock::new(Registry {
    recs: core::ptr::null_mut(),
    free_head: 0,
    next_unused: 1,
});
static RECS: core::sync::atomic::AtomicPtr<Rec> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

thread_local! {
    static CURRENT: Cell<u16> = const { Cell::new(0) };
}

fn rec(id: u16) -> Option<&'static Rec> {
    let base = RECS.load(Ordering::Acquire);
    if id == 0 || base.is_null() {
        return None;
    }
    // SAFETY: the record array has MAX_SCOPES entries and is never unmapped.
    Some(unsafe { &*base.add(id as usize) })
}

/// The innermost scope entered on this thread (0 = none).
#[inline(always)]
pub(crate) fn current() -> u16 {
    CURRENT.with(|c| c.get())
}

/// Counts an allocation of `size` bytes in scope `id`.
#[inline(always)]
pub(crate) fn on_alloc(id: u16, size: usize) {
    if let Some(r) = rec(id) {
        r.alloc_bytes.fetch_add(size as u64, Ordering::Relaxed);
        r.alloc_blocks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts the free of a block of `size` bytes that was allocated in scope `id`.
#[inline(always)]
pub(crate) fn on_free(id: u16, size: usize) {
    if let Some(r) = rec(id) {
        r.freed_bytes.fetch_add(size as u64, Ordering::Relaxed);
        let freed = r.freed_blocks.fetch_add(1, Ordering::SeqCst) + 1;
        if r.state.load(Ordering::SeqCst) == CLOSED
            && freed == r.alloc_blocks.load(Ordering::SeqCst)
        {
            recycle(id, r);
        }
    }
}

fn recycle(id: u16, r: &Rec) {
    if r.state
        .compare_exchange(CLOSED, FREE, Ordering::SeqCst, Ordering::Relaxed)
        .is_ok()
    {
        let mut reg = REGISTRY.lock();
        // The link to the next free record is kept in the (now unused) name_len field.
        r.name_len.store(reg.free_head as usize, Ordering::Relaxed);
        reg.free_head = u32::from(id);
    }
}

fn open(name: &'static str) -> u16 {
    let mut reg = REGISTRY.lock();
    if reg.recs.is_null() {
        let p = map_zeroed(MAX_SCOPES * core::mem::size_of::<Rec>()).cast::<Rec>();
        if p.is_null() {
            return 0;
        }
        reg.recs = p;
        RECS.store(p, Ordering::Release);
    }
    let id = if reg.free_head != 0 {
        let id = reg.free_head as u16;
        let r = rec(id).expect("registry is mapped");
        reg.free_head = r.name_len.load(Ordering::Relaxed) as u32;
        id
    } else if (reg.next_unused as usize) < MAX_SCOPES {
        let id = reg.next_unused as u16;
        reg.next_unused += 1;
        id
    } else {
        // All 65,535 records in use: this scope's allocations go untagged.
        return 0;
    };
    drop(reg);
    let r = rec(id).expect("registry is mapped");
    r.alloc_bytes.store(0, Ordering::Relaxed);
    r.alloc_blocks.store(0, Ordering::Relaxed);
    r.freed_bytes.store(0, Ordering::Relaxed);
    r.freed_blocks.store(0, Ordering::Relaxed);
    r.name_ptr.store(name.as_ptr() as usize, Ordering::Relaxed);
    r.name_len.store(name.len(), Ordering::Relaxed);
    r.state.store(OPEN, Ordering::SeqCst);
    id
}

fn close(id: u16) {
    if let Some(r) = rec(id) {
        r.state.store(CLOSED, Ordering::SeqCst);
        if r.freed_blocks.load(Ordering::SeqCst) == r.alloc_blocks.load(Ordering::SeqCst) {
            recycle(id, r);
        }
    }
}

/// The name of scope `id`, if it is open or still has live blocks.
pub(crate) fn name_of(id: u16) -> Option<&'static str> {
    let r = rec(id)?;
    if r.state.load(Ordering::Acquire) == FREE {
        return None;
    }
    let p = r.name_ptr.load(Ordering::Relaxed) as *const u8;
    let n = r.name_len.load(Ordering::Relaxed);
    if p.is_null() {
        return None;
    }
    // SAFETY: name_ptr/name_len were taken from a `&'static str` when the scope was opened,
    // and the record is not FREE, so they have not been reused as a free-list link.
    Some(unsafe { core::str::from_utf8_unchecked(core::slice::from_raw_parts(p, n)) })
}

fn stats_of(id: u16) -> ScopeStats {
    match rec(id) {
        None => ScopeStats::default(),
        Some(r) => {
            let ab = r.alloc_bytes.load(Ordering::Acquire);
            let an = r.alloc_blocks.load(Ordering::Acquire);
            let fb = r.freed_bytes.load(Ordering::Acquire);
            let fnn = r.freed_blocks.load(Ordering::Acquire);
            ScopeStats {
                live_bytes: ab.saturating_sub(fb),
                live_blocks: an.saturating_sub(fnn),
                allocated_bytes: ab,
                allocated_blocks: an,
            }
        }
    }
}

/// What a scope allocated, and what of it is still live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScopeStats {
    /// Bytes allocated in the scope and not yet freed.
    pub live_bytes: u64,
    /// Blocks allocated in the scope and not yet freed.
    pub live_blocks: u64,
    /// All bytes allocated in the scope (including freed ones; a realloc counts its new size).
    pub allocated_bytes: u64,
    /// All blocks allocated in the scope (including freed ones and reallocations).
    pub allocated_blocks: u64,
}

/// One invocation of a named operation, to which allocations can be attributed.
///
/// Create it once per invocation and [`enter`](Scope::enter) it wherever the operation runs
/// (an async operation enters it on every poll). Nested scopes work: an allocation carries
/// the innermost scope entered on its thread. `Scope` is `Send` and `Sync`.
///
/// ```
/// let op = secalloc::Scope::new("load-config");
/// {
///     let _in = op.enter();
///     // allocations here are attributed to "load-config"
/// }
/// println!("left live: {} bytes", op.live().live_bytes);
/// ```
#[derive(Debug)]
pub struct Scope {
    id: u16,
    name: &'static str,
}

impl Scope {
    /// Opens a scope record named `name`.
    pub fn new(name: &'static str) -> Scope {
        let id = crate::thread::untracked(|| open(name));
        Scope { id, name }
    }

    /// Makes this scope the innermost one on the calling thread until the guard drops.
    pub fn enter(&self) -> ScopeEnter<'_> {
        let prev = CURRENT.with(|c| c.replace(if self.id != 0 { self.id } else { c.get() }));
        ScopeEnter {
            prev,
            _scope: PhantomData,
            _not_send: PhantomData,
        }
    }

    /// The scope's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn id(&self) -> u16 {
        self.id
    }

    /// Live and total figures of the allocations made in this scope so far. All zero when
    /// `SecAlloc` is not the global allocator, or when 65,535 scopes were open at once and
    /// this one got no record.
    pub fn live(&self) -> ScopeStats {
        stats_of(self.id)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.id != 0 {
            crate::thread::untracked(|| close(self.id));
        }
    }
}

/// Returned by [`Scope::enter`]: restores the previous scope when dropped. Not `Send`.
#[must_use = "the scope is left as soon as this guard is dropped"]
#[derive(Debug)]
pub struct ScopeEnter<'a> {
    prev: u16,
    _scope: PhantomData<&'a Scope>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ScopeEnter<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// A scope entered on the current thread for as long as the guard lives (see [`scope`]).
#[must_use = "the scope ends as soon as this guard is dropped"]
#[derive(Debug)]
pub struct ScopeGuard {
    prev: u16,
    scope: Scope,
    _not_send: PhantomData<*const ()>,
}

impl ScopeGuard {
    /// Live and total figures of the allocations made in this scope so far.
    pub fn live(&self) -> ScopeStats {
        self.scope.live()
    }

    /// The scope's name.
    pub fn name(&self) -> &'static str {
        self.scope.name
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// Opens a scope named `name` and enters it on this thread until the guard drops.
///
/// ```
/// let guard = secalloc::scope("parse-request");
/// let v = vec![0u8; 100];
/// // With SecAlloc installed, guard.live().live_bytes is now 100.
/// drop(v);
/// drop(guard);
/// ```
pub fn scope(name: &'static str) -> ScopeGuard {
    let scope = Scope::new(name);
    let prev = CURRENT.with(|c| c.replace(if scope.id != 0 { scope.id } else { c.get() }));
    ScopeGuard {
        prev,
        scope,
        _not_send: PhantomData,
    }
}

/// The name of the innermost scope entered on this thread, if any.
pub fn current_scope() -> Option<&'static str> {
    name_of(current())
}

/// Fork support.
pub(crate) fn lock_for_fork() {
    REGISTRY.raw_lock();
}

/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded.
    unsafe { REGISTRY.raw_unlock() };
}

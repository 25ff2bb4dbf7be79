//! Assertions on the heap effect of a piece of code, for tests.
//!
//! Figures are taken from the calling thread's own counters, so any number of tests can
//! measure at the same time in one test binary without seeing each other's allocations
//! (unlike a process-wide profiler, of which there can be only one at a time).
//!
//! ```
//! # // Needs SecAlloc installed to see anything; without it every figure is zero.
//! let d = secalloc::testing::measure(|| {
//!     let v = vec![0u8; 64];
//!     drop(v);
//! });
//! assert_eq!(d.live_blocks, 0);
//! ```

use core::sync::atomic::Ordering;

use crate::thread;

/// The heap effect of a closure on the calling thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapDelta {
    /// Allocations made (a `realloc` counts as one allocation and one free).
    pub allocations: u64,
    /// Frees made (including frees of blocks allocated before the closure ran).
    pub frees: u64,
    /// Bytes allocated.
    pub allocated_bytes: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// Net change in live blocks made by this thread (negative: it freed older blocks).
    pub live_blocks: i64,
    /// Net change in live bytes made by this thread.
    pub live_bytes: i64,
    /// The most bytes the closure's allocations and frees on this thread had added to the
    /// live bytes at any moment (its peak above the starting point; 0 if it only freed).
    pub peak_bytes: u64,
}

#[derive(Clone, Copy, Default)]
struct Snap {
    allocs: u64,
    frees: u64,
    alloc_bytes: u64,
    freed_bytes: u64,
}

fn snap_of(ts: *mut thread::ThreadState) -> Snap {
    // SAFETY: null, or this thread's own state; counters are read through atomics.
    match unsafe { ts.as_ref() } {
        None => Snap::default(),
        Some(t) => Snap {
            allocs: t.counters.allocs.load(Ordering::Relaxed),
            frees: t.counters.frees.load(Ordering::Relaxed),
            alloc_bytes: t.counters.alloc_bytes.load(Ordering::Relaxed),
            freed_bytes: t.counters.freed_bytes.load(Ordering::Relaxed),
        },
    }
}

/// Runs `f` and returns its result with the heap effect it had on this thread.
pub fn measure_with<R>(f: impl FnOnce() -> R) -> (R, HeapDelta) {
    let ts = thread::untracked(thread::current);
    // The thread's own peak restarts here (kept for an enclosing measurement afterwards).
    // SAFETY: null or this thread's own state; these fields are only used by this thread.
    let (start_live, outer_peak) = match unsafe { ts.as_mut() } {
        Some(t) => {
            let saved = (t.own_live, t.own_peak);
            t.own_peak = t.own_live;
            saved
        }
        None => (0, 0),
    };
    let a = snap_of(ts);
    let r = f();
    let b = snap_of(ts);
    // SAFETY: as above.
    let peak_bytes = match unsafe { ts.as_mut() } {
        Some(t) => {
            let peak = (t.own_peak - start_live).max(0) as u64;
            t.own_peak = t.own_peak.max(outer_peak);
            peak
        }
        None => 0,
    };
    let d = HeapDelta {
        allocations: b.allocs - a.allocs,
        frees: b.frees - a.frees,
        allocated_bytes: b.alloc_bytes - a.alloc_bytes,
        freed_bytes: b.freed_bytes - a.freed_bytes,
        live_blocks: (b.allocs - a.allocs) as i64 - (b.frees - a.frees) as i64,
        live_bytes: (b.alloc_bytes - a.alloc_bytes) as i64 - (b.freed_bytes - a.freed_bytes) as i64,
        peak_bytes,
    };
    (r, d)
}

/// Runs `f` and returns the heap effect it had on this thread.
pub fn measure(f: impl FnOnce()) -> HeapDelta {
    measure_with(f).1
}

/// Runs `f` and panics if anything it allocated on this thread is still live afterwards,
/// listing the callsites that allocated it. Returns `f`'s result otherwise.
///
/// Blocks are recognised by a scope entered around `f`; blocks allocated inside a nested
/// scope that `f` opens belong to that scope and are counted, but not listed.
pub fn assert_no_leaks<R>(f: impl FnOnce() -> R) -> R {
    let scope = crate::Scope::new("secalloc::testing::assert_no_leaks");
    let (r, d) = {
        let _in = scope.enter();
        measure_with(f)
    };
    let own = scope.live();
    if own.live_blocks == 0 && d.live_blocks <= 0 {
        return r;
    }
    let id = scope.id();
    let text = thread::untracked(|| {
        let blocks: Vec<_> = crate::report::snapshot()
            .into_iter()
            .filter(|b| b.scope == id)
            .collect();
        let rep = crate::report::build(&blocks, None, false, crate::report::Listing::ALL);
        let mut out = Vec::new();
        let _ = rep.write_text(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    });
    panic!(
        "secalloc: the closure left {} byte(s) in {} block(s) live ({} net on this thread):\n{}",
        own.live_bytes, own.live_blocks, d.live_bytes, text
    );
}

/// Runs `f` and panics if it made more than `max` allocations on this thread (a `realloc`
/// counts as one), naming the count. Returns `f`'s result otherwise.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
/// # fn main() {
/// let v = secalloc::testing::assert_allocations_at_most(1, || Vec::<u8>::with_capacity(64));
/// assert_eq!(v.capacity(), 64);
/// # }
/// ```
///
/// ```should_panic
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
/// # fn main() {
/// secalloc::testing::assert_allocations_at_most(3, || {
///     let v: Vec<Box<u32>> = (0..4).map(Box::new).collect();
///     v.len()
/// });
/// # }
/// ```
#[track_caller]
pub fn assert_allocations_at_most<R>(max: u64, f: impl FnOnce() -> R) -> R {
    let (r, d) = measure_with(f);
    if d.allocations > max {
        panic!(
            "secalloc: the closure made {} allocation(s), more than the {} allowed ({} byte(s) allocated)",
            d.allocations, max, d.allocated_bytes
        );
    }
    r
}

/// Runs `f` and panics if its allocations on this thread ever held more than `max` bytes
/// live at once (above what was live when it started), naming the peak. Returns `f`'s
/// result otherwise.
///
/// ```should_panic
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
/// # fn main() {
/// // Freed at once, but 1 MiB live at its peak.
/// secalloc::testing::assert_max_bytes_at_most(64 << 10, || drop(vec![0u8; 1 << 20]));
/// # }
/// ```
///
/// ```
/// #[global_allocator]
/// static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();
/// # fn main() {
/// let n = secalloc::testing::assert_max_bytes_at_most(4096, || vec![0u8; 4000].len());
/// assert_eq!(n, 4000);
/// # }
/// ```
#[track_caller]
pub fn assert_max_bytes_at_most<R>(max: u64, f: impl FnOnce() -> R) -> R {
    let (r, d) = measure_with(f);
    if d.peak_bytes > max {
        panic!(
            "secalloc: the closure held up to {} byte(s) live at once, more than the {} allowed",
            d.peak_bytes, max
        );
    }
    r
}

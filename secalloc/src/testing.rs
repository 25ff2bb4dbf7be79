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
}

#[derive(Clone, Copy, Default)]
struct Snap {
    allocs: u64,
    frees: u64,
    alloc_bytes: u64,
    freed_bytes: u64,
}

fn snap() -> Snap {
    // Make sure this thread has its state (creating it allocates, untracked).
    let ts = thread::untracked(thread::current);
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
    let a = snap();
    let r = f();
    let b = snap();
    let d = HeapDelta {
        allocations: b.allocs - a.allocs,
        frees: b.frees - a.frees,
        allocated_bytes: b.alloc_bytes - a.alloc_bytes,
        freed_bytes: b.freed_bytes - a.freed_bytes,
        live_blocks: (b.allocs - a.allocs) as i64 - (b.frees - a.frees) as i64,
        live_bytes: (b.alloc_bytes - a.alloc_bytes) as i64 - (b.freed_bytes - a.freed_bytes) as i64,
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

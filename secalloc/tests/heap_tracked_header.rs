//! The cases of `heap_tracked.rs` over `SecAlloc::with_inner(SecHeap::new())`: the tracker's
//! header layout over the own heap.

mod heap_common;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<secalloc::SecHeap> =
    secalloc::SecAlloc::with_inner(secalloc::SecHeap::new());

include!("heap_tracked_cases/mod.rs");

/// No cases of its own beyond the shared ones.
fn extra_child_case(_: &str) -> bool {
    false
}

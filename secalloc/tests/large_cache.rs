//! The cache of freed directly mapped blocks with `SecHeap` alone as the global allocator
//! (no wipe: the heap zeroes a freed mapping itself): reuse without page faults, zero,
//! guard pages kept, decay (cases in `large_cache_cases/`).

// Only the fault counter and the guard-page case of the shared helpers are used here.
#[allow(dead_code)]
mod heap_common;

#[global_allocator]
static GLOBAL: secalloc::SecHeap = secalloc::SecHeap::new();

include!("large_cache_cases/mod.rs");

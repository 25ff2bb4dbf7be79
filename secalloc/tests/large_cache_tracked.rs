//! The cache of freed directly mapped blocks under the tracker (`SecAlloc::new()`, which
//! wipes a freed block before the heap caches its mapping; with `SECALLOC_WIPE=0` the heap
//! zeroes it): reuse without page faults, zero, guard pages kept, decay (cases in
//! `large_cache_cases/`).

// Only the fault counter and the guard-page case of the shared helpers are used here.
#[allow(dead_code)]
mod heap_common;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

include!("large_cache_cases/mod.rs");

//! Workload binary of the benchmark suite with `SecAlloc` as the global allocator, in the
//! configuration its `SECALLOC_*` environment selects (the driver sets it per run).
//! Run by `cargo bench --bench suite`; see `mod.rs` for the protocol and the checks.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

fn main() {
    let start = std::cell::Cell::new(None);
    workloads::main_with(
        "secalloc",
        || {
            workloads::assert_secalloc_installed();
            start.set(secalloc::profile::HeapStats::try_get());
        },
        || {
            workloads::check_secalloc_config()?;
            // Profile mode: the workload's whole-heap figures, measured from the point where
            // the dhat-rs binary starts its profiler (which sees no earlier block), for the
            // driver's agreement check.
            if let (Some(a), Some(b)) = (start.get(), secalloc::profile::HeapStats::try_get()) {
                println!(
                    "heap {} {} {}",
                    b.total_blocks - a.total_blocks,
                    b.total_bytes - a.total_bytes,
                    b.max_bytes.saturating_sub(a.curr_bytes)
                );
            }
            Ok(())
        },
    );
}

//! Workload binary of the benchmark suite with `SecAlloc` over the system allocator
//! (`SecAlloc::with_inner(System)`: the header layout) as the global allocator, in the
//! configuration its `SECALLOC_*` environment selects (the driver sets it per run). Run by
//! `cargo bench --bench suite`; see `mod.rs` for the protocol and the checks.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<std::alloc::System> =
    secalloc::SecAlloc::with_inner(std::alloc::System);

fn main() {
    workloads::main_with(
        "secalloc-system",
        workloads::assert_secalloc_installed,
        workloads::check_secalloc_config,
    );
}

//! Workload binary of the benchmark suite with the system allocator (the baseline).
//! Run by `cargo bench --bench suite`; see `mod.rs` for the protocol.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    workloads::main_with("system", || {}, || Ok(()));
}

//! Workload binary of the benchmark suite with mimalloc as the global allocator (a peer).
//! Run by `cargo bench --bench suite`; see `mod.rs` for the protocol.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    workloads::main_with("mimalloc", || {}, || Ok(()));
}

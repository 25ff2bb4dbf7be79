//! Workload binary of the benchmark suite with secalloc's own heap (`SecHeap`) alone as the
//! global allocator: no tracking, no wipe. Run by `cargo bench --bench suite`; see `mod.rs`.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: secalloc::SecHeap = secalloc::SecHeap::new();

fn main() {
    workloads::main_with("secheap", || {}, || Ok(()));
}

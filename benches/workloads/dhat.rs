//! Workload binary of the benchmark suite under dhat-rs heap profiling (`dhat::Alloc` as the
//! global allocator, a heap `Profiler` running for the whole workload). The profile goes to
//! the file named by `SUITE_DHAT_FILE` (the driver points it at a temporary file).
//! Run by `cargo bench --bench suite`; see `mod.rs` for the protocol.

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() {
    let file = std::env::var_os("SUITE_DHAT_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::temp_dir().join(format!("suite-dhat-{}.json", std::process::id()))
        });
    let mut profiler = None;
    workloads::main_with(
        "dhat",
        || profiler = Some(dhat::Profiler::builder().file_name(&file).build()),
        || {
            let s = dhat::HeapStats::get();
            if s.total_blocks == 0 {
                return Err("dhat-rs recorded no allocation".into());
            }
            // For the driver's agreement check with secalloc's profile mode.
            println!("heap {} {} {}", s.total_blocks, s.total_bytes, s.max_bytes);
            Ok(())
        },
    );
    // Writes the profile (outside the timed region, inside the peak-RSS figure).
    drop(profiler);
}

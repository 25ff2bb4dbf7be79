//! Workload binary of the benchmark suite with `SecAlloc` as the global allocator, in the
//! configuration its `SECALLOC_*` environment selects (the driver sets it per run).
//! Run by `cargo bench --bench suite`; see `mod.rs` for the protocol.
//!
//! After the workload it checks that the configuration did what it is named for: callsite
//! stacks recorded unless `SECALLOC_STACK_DEPTH=0`, bytes wiped unless `SECALLOC_WIPE=0`.
//! (A build whose frame-pointer check fails silently records no stacks, and "full" would
//! then measure "wipe only".)

#[path = "mod.rs"]
mod workloads;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == value)
}

fn main() {
    workloads::main_with(
        "secalloc",
        || assert!(secalloc::is_installed(), "SecAlloc is the global allocator"),
        || {
            let s = secalloc::stats();
            if !env_is("SECALLOC_STACK_DEPTH", "0") && (!s.frame_pointers || s.unique_stacks == 0) {
                return Err(format!(
                    "callsite stacks are on but none were recorded (frame pointers detected: {}, \
                     unique stacks: {}): this run would not measure stack capture",
                    s.frame_pointers, s.unique_stacks
                ));
            }
            if !env_is("SECALLOC_WIPE", "0") && s.wiped_bytes == 0 {
                return Err("the wipe is on but no byte was wiped".into());
            }
            Ok(())
        },
    );
}

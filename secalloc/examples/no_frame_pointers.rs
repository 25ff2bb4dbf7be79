//! Leaks 1000 + 46 bytes. `tests/no_frame_pointers.rs` builds it without frame pointers
//! (`CARGO_ENCODED_RUSTFLAGS=""`, overriding the workspace's `-C force-frame-pointers=yes`)
//! and checks that every report format says the stacks are missing. `stats` as the first
//! argument prints `secalloc::stats()`'s frame-pointer fields first.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

fn main() {
    // Allocations from the program's own code, so the short-stack rate has something to go by.
    let mut keep = Vec::new();
    for i in 0..32 {
        keep.push(vec![i as u8; 10 + i]);
    }
    drop(keep);
    // black_box: an allocation that is forgotten unseen may be optimised out.
    std::mem::forget(std::hint::black_box(vec![0u8; 1000]));
    std::mem::forget(std::hint::black_box(Box::new([7u8; 46])));
    if std::env::args().nth(1).as_deref() == Some("stats") {
        let s = secalloc::stats();
        println!("frame_pointers={}", s.frame_pointers);
    }
}

//! Proves the wipe survives fat LTO: frees blocks through `SecAlloc` (over its own heap),
//! then reads the freed slots back — they stay mapped, and no other thread allocates — and
//! counts bytes that still hold the old contents. With stores before `free` being dead to
//! the optimiser, a wipe without barriers disappears here. Run with `SECALLOC_WIPE=0` to see
//! the probe find stale bytes (the control).
//!
//! Prints `checked=N reused=M stale=K` (`reused`: slots read back) and exits 0.

use std::hint::black_box;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[inline(never)]
fn fill_and_free(size: usize) -> usize {
    let v = black_box(vec![0xABu8; size]);
    let p = v.as_ptr() as usize;
    drop(v);
    p
}

fn main() {
    let (mut checked, mut reused, mut stale) = (0usize, 0usize, 0usize);
    for size in [24usize, 40, 100, 250, 1000, 4000] {
        for _ in 0..50 {
            let user = fill_and_free(size);
            reused += 1;
            checked += size;
            // SAFETY: the freed slot stays mapped (the own heap never unmaps span memory,
            // and blocks this small live in spans); its bytes are only inspected, and no
            // other thread runs to take the slot meanwhile.
            stale += (0..size)
                .filter(|&i| unsafe { ((user + i) as *const u8).read_volatile() } == 0xAB)
                .count();
        }
    }
    println!("checked={checked} reused={reused} stale={stale}");
}

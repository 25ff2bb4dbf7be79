//! Proves the wipe survives fat LTO: frees blocks through `SecAlloc`, then takes the very
//! same chunks back from glibc with `malloc` (its per-size cache is LIFO) and counts bytes
//! that still hold the old contents. With stores before `free` being dead to the optimiser,
//! a wipe without barriers disappears here. Run with `SECALLOC_WIPE=0` to see the probe
//! find stale bytes (the control).
//!
//! Prints `checked=N reused=M stale=K` and exits 0.

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
            // SecAlloc's inner block: 16-byte header + size + 8-byte canary.
            // SAFETY: plain malloc/free of our own; the bytes read were initialised by the
            // previous owner of the chunk (or are fresh memory) and are only inspected.
            unsafe {
                let q = libc::malloc(16 + size + 8) as *mut u8;
                if q as usize + 16 == user {
                    reused += 1;
                    let bytes = std::slice::from_raw_parts(q.add(16), size);
                    checked += size;
                    stale += bytes.iter().filter(|&&b| b == 0xAB).count();
                }
                libc::free(q as *mut libc::c_void);
            }
        }
    }
    println!("checked={checked} reused={reused} stale={stale}");
}

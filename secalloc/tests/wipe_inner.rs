//! Every byte the inner allocator receives back is zero: a checking inner allocator under
//! multi-thread alloc/realloc/free churn.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Checking;

static RETURNED_BYTES: AtomicU64 = AtomicU64::new(0);
static RETURNED_BLOCKS: AtomicU64 = AtomicU64::new(0);
static NONZERO_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to System; dealloc only reads the block before freeing it.
unsafe impl GlobalAlloc for Checking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block holds layout.size() initialised bytes (SecAlloc wrote all of them).
        let bytes = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
        let nonzero = bytes.iter().filter(|&&b| b != 0).count() as u64;
        NONZERO_BYTES.fetch_add(nonzero, Ordering::Relaxed);
        RETURNED_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        RETURNED_BLOCKS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<Checking> = secalloc::SecAlloc::with_inner(Checking);

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn every_freed_byte_is_wiped_under_churn() {
    let before_blocks = RETURNED_BLOCKS.load(Ordering::Relaxed);
    let before_wiped = secalloc::stats().wiped_bytes;
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15 ^ (t + 1);
                let mut live: Vec<Vec<u8>> = Vec::with_capacity(256);
                for _ in 0..20_000 {
                    let r = xorshift(&mut seed);
                    match r % 4 {
                        0 | 1 => {
                            let size = 1 + (r >> 8) as usize % 3000;
                            let mut v = vec![0u8; size];
                            v.iter_mut().for_each(|b| *b = (r >> 3) as u8 | 1);
                            if live.len() < 256 {
                                live.push(v);
                            }
                        }
                        2 if !live.is_empty() => {
                            let i = (r >> 16) as usize % live.len();
                            let v = &mut live[i];
                            let new = 1 + (r >> 24) as usize % 5000;
                            if new > v.len() {
                                v.resize(new, 0x5A); // grow: moves
                            } else {
                                v.truncate(new);
                                v.shrink_to_fit(); // shrink: realloc
                            }
                        }
                        _ if !live.is_empty() => {
                            let i = (r >> 16) as usize % live.len();
                            live.swap_remove(i);
                        }
                        _ => {}
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let returned = RETURNED_BLOCKS.load(Ordering::Relaxed) - before_blocks;
    assert!(returned > 40_000, "only {returned} blocks came back");
    assert_eq!(
        NONZERO_BYTES.load(Ordering::Relaxed),
        0,
        "the inner allocator received non-zero bytes"
    );
    let wiped = secalloc::stats().wiped_bytes - before_wiped;
    assert!(wiped > 0);
    assert!(
        RETURNED_BYTES.load(Ordering::Relaxed) >= wiped,
        "every wiped byte went back to the inner allocator"
    );
}

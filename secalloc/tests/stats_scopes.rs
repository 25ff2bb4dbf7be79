//! Statistics exactness, scope attribution and realloc accounting, with SecAlloc installed.

use std::hint::black_box;
use std::sync::Mutex;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

/// Tests here read process-wide figures: run them one at a time. Every test takes it, even
/// one that only reads: any test allocates (its own thread, its result), and a test running
/// beside another moves that one's figures.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn installed() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(secalloc::is_installed());
}

/// Compares process-wide counters with a scan of the live set, which must agree to the byte.
/// Another thread may allocate at any moment, whatever lock the tests take (the harness does,
/// whenever a test starts or ends, or when its thread first blocks waiting for results), so a
/// comparison counts only when the counters read before and after the scan are the same:
/// nothing moved in between. The frees of what the threads kept are measured on this thread
/// alone.
#[test]
fn stats_match_a_snapshot_of_live_blocks_after_threaded_churn() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kept: Vec<Vec<Vec<u8>>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..8u64)
            .map(|t| {
                sc.spawn(move || {
                    let mut seed = t * 7919 + 1;
                    let mut live: Vec<Vec<u8>> = Vec::new();
                    for i in 0..5000u64 {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        let size = 1 + (seed >> 40) as usize % 700;
                        if i % 3 == 2 && !live.is_empty() {
                            let j = (seed >> 20) as usize % live.len();
                            live.swap_remove(j);
                        } else if i % 7 == 0 && !live.is_empty() {
                            let j = (seed >> 20) as usize % live.len();
                            live[j].resize(size * 2, 1);
                        } else {
                            live.push(vec![7u8; size]);
                        }
                    }
                    live
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The counters and a scan of the live set agree exactly whenever nothing else allocated
    // during the scan; a retry is needed only when something did.
    let counts = |s: &secalloc::Stats| {
        (
            s.live_bytes,
            s.live_blocks,
            s.total_allocated_bytes,
            s.total_freed_bytes,
        )
    };
    let mut quiet = None;
    for _ in 0..50 {
        let before = secalloc::stats();
        let r = secalloc::report();
        let after = secalloc::stats();
        if counts(&before) == counts(&after) {
            quiet = Some((before, r));
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (s, r) = quiet.expect("some other thread allocated during each of 50 scans");
    assert_eq!(s.live_bytes, r.total_bytes, "stats {s:?}");
    assert_eq!(s.live_blocks, r.total_blocks);
    assert_eq!(s.live_bytes, s.total_allocated_bytes - s.total_freed_bytes);
    assert!(s.peak_live_bytes >= s.live_bytes);
    // Dropping what the threads kept frees exactly its bytes: the byte buffers, each
    // thread's Vec<Vec<u8>>, and the outer Vec.
    let vec_size = std::mem::size_of::<Vec<u8>>();
    let kept_bytes: usize = kept.iter().flatten().map(|v| v.capacity()).sum::<usize>()
        + kept.iter().map(|l| l.capacity() * vec_size).sum::<usize>()
        + kept.capacity() * vec_size;
    let kept_blocks = kept.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
    let d = secalloc::testing::measure(|| drop(kept));
    assert_eq!(d.live_bytes, -(kept_bytes as i64));
    assert_eq!(d.live_blocks, -(kept_blocks as i64));
    assert_eq!((d.frees, d.allocations), (kept_blocks as u64, 0));
}

#[test]
fn allocations_and_frees_are_counted_exactly_on_one_thread() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = secalloc::stats();
    let (v, d) = secalloc::testing::measure_with(|| -> Vec<Box<[u8; 100]>> {
        (0..10).map(|_| Box::new([1u8; 100])).collect()
    });
    assert_eq!(d.live_bytes, 1000 + 10 * 8);
    assert_eq!(d.live_blocks, 11);
    assert_eq!(d.allocations, 11);
    assert_eq!(d.frees, 0);
    let mid = secalloc::stats();
    assert!(mid.peak_live_bytes >= mid.live_bytes);
    let d = secalloc::testing::measure(|| drop(black_box(v)));
    assert_eq!(d.live_bytes, -1080);
    assert_eq!(d.frees, 11);
    let after = secalloc::stats();
    assert!(after.wiped_bytes - before.wiped_bytes >= 1080);
}

#[test]
fn scope_attribution_nested() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let outer = secalloc::scope("outer-op");
    let a = vec![0u8; 100];
    assert_eq!(outer.live().live_bytes, 100);
    assert_eq!(outer.live().live_blocks, 1);
    assert_eq!(secalloc::current_scope(), Some("outer-op"));
    let b = {
        let inner = secalloc::scope("inner-op");
        assert_eq!(secalloc::current_scope(), Some("inner-op"));
        let b = vec![0u8; 50];
        let c = vec![0u8; 30];
        assert_eq!(inner.live().live_bytes, 80);
        drop(c);
        assert_eq!(inner.live().live_bytes, 50);
        assert_eq!(inner.live().allocated_bytes, 80);
        b
    };
    assert_eq!(secalloc::current_scope(), Some("outer-op"));
    assert_eq!(
        outer.live().live_bytes,
        100,
        "inner allocations are the inner scope's"
    );
    // Blocks left by the inner scope still show under its name in a report.
    let r = secalloc::report();
    let inner_total = r
        .scopes
        .iter()
        .find(|s| s.name == "inner-op")
        .expect("inner scope in report");
    assert_eq!(inner_total.bytes, 50);
    drop(b);
    drop(a);
    assert_eq!(outer.live().live_bytes, 0);
    drop(outer);
    assert_eq!(secalloc::current_scope(), None);
}

#[test]
fn scope_entered_from_another_thread_and_freed_elsewhere() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let op = secalloc::Scope::new("cross-thread");
    let v = std::thread::scope(|s| {
        s.spawn(|| {
            let _in = op.enter();
            vec![1u8; 4096]
        })
        .join()
        .unwrap()
    });
    assert_eq!(op.live().live_bytes, 4096);
    std::thread::spawn(move || drop(v)).join().unwrap();
    assert_eq!(op.live().live_bytes, 0);
    assert_eq!(op.live().allocated_bytes, 4096);
}

#[test]
fn realloc_grow_and_shrink() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let g = secalloc::scope("realloc");
    let mut v: Vec<u8> = Vec::with_capacity(100);
    v.extend_from_slice(&[9u8; 100]);
    let before = secalloc::stats();
    let d = secalloc::testing::measure(|| v.reserve_exact(900)); // grow: moves
    assert!(v.capacity() >= 1000);
    assert_eq!(&v[..], &[9u8; 100][..], "contents survive a grow");
    assert_eq!(d.live_bytes, v.capacity() as i64 - 100);
    assert_eq!((d.allocations, d.frees), (1, 1));
    let grown = secalloc::stats();
    assert!(grown.reallocations > before.reallocations);
    assert!(
        grown.wiped_bytes - before.wiped_bytes >= 100,
        "old block wiped"
    );
    let cap = v.capacity() as i64;
    v.truncate(10);
    let d = secalloc::testing::measure(|| v.shrink_to_fit()); // shrink: tail wiped
    let shrunk = secalloc::stats();
    assert_eq!(v.capacity(), 10);
    assert_eq!(&v[..], &[9u8; 10][..]);
    assert_eq!(d.live_bytes, 10 - cap);
    assert!(
        shrunk.wiped_bytes - grown.wiped_bytes >= 990,
        "released tail wiped"
    );
    assert_eq!(g.live().live_bytes, 10);
    drop(v);
    assert_eq!(g.live().live_bytes, 0);
}

#[test]
fn zeroed_on_alloc() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for size in [1usize, 15, 16, 17, 100, 4096, 100_000] {
        // Fill and free a block, then allocate the same size again: never see old bytes.
        let mut v = Vec::<u8>::with_capacity(size);
        v.resize(size, 0xCD);
        drop(black_box(v));
        let v = Vec::<u8>::with_capacity(size);
        // SAFETY: with_capacity allocated `size` bytes; SecAlloc zeroes them, so reading them
        // as u8 is reading initialised memory.
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr(), size) };
        assert!(bytes.iter().all(|&b| b == 0), "size {size}");
    }
}

/// An inner allocator that hands out dirty memory, so zeroing on allocation is seen on its
/// own (recycled blocks are already zero after the wipe's last pass).
struct Dirty;

// SAFETY: forwards to System, then only writes inside the block it returns.
unsafe impl std::alloc::GlobalAlloc for Dirty {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded contract; the block holds layout.size() bytes.
        unsafe {
            let p = std::alloc::System.alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, 0xCD, layout.size());
            }
            p
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[test]
fn zeroed_on_alloc_over_dirty_memory() {
    use std::alloc::GlobalAlloc;
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = secalloc::SecAlloc::with_inner(Dirty);
    let sizes = (1usize..=300).chain([511, 1000, 4096, 65_000, 70_000, 200_000]);
    for size in sizes {
        for align in [1usize, 8, 16, 64] {
            let layout = std::alloc::Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero size; freed below with the same layout.
            unsafe {
                let p = a.alloc(layout);
                assert!(!p.is_null());
                let bytes = std::slice::from_raw_parts(p, size);
                assert!(
                    bytes.iter().all(|&b| b == 0),
                    "size {size} align {align}: not zeroed"
                );
                a.dealloc(p, layout);
            }
        }
    }
}

#[test]
fn grown_blocks_are_zeroed_past_the_kept_bytes() {
    use std::alloc::GlobalAlloc;
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let a = secalloc::SecAlloc::with_inner(Dirty);
    // Small to small, small to large (zeroed by the inner allocator), large to larger.
    for (from, to) in [
        (100usize, 200usize),
        (1000, 100_000),
        (70_000, 300_000),
        (10, 65_536),
    ] {
        let layout = std::alloc::Layout::from_size_align(from, 8).unwrap();
        // SAFETY: non-zero sizes; the block is freed with its final layout.
        unsafe {
            let p = a.alloc(layout);
            std::ptr::write_bytes(p, 0x5A, from);
            let q = a.realloc(p, layout, to);
            assert!(!q.is_null());
            let bytes = std::slice::from_raw_parts(q, to);
            assert!(
                bytes[..from].iter().all(|&b| b == 0x5A),
                "{from} -> {to}: kept bytes"
            );
            assert!(
                bytes[from..].iter().all(|&b| b == 0),
                "{from} -> {to}: tail not zeroed"
            );
            a.dealloc(q, std::alloc::Layout::from_size_align(to, 8).unwrap());
        }
    }
}

#[test]
fn large_alignment() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let p = Box::new(Page([3; 4096]));
    assert_eq!(&*p as *const Page as usize % 4096, 0);
    assert_eq!(p.0[4095], 3);
    drop(p);
    let layout = std::alloc::Layout::from_size_align(100, 64).unwrap();
    // SAFETY: non-zero size; freed with the same layout.
    unsafe {
        let q = std::alloc::alloc(layout);
        assert_eq!(q as usize % 64, 0);
        let q2 = std::alloc::realloc(q, layout, 5000);
        assert_eq!(q2 as usize % 64, 0);
        std::alloc::dealloc(q2, std::alloc::Layout::from_size_align(5000, 64).unwrap());
    }
}

#[inline(never)]
fn level3() -> Vec<u8> {
    black_box(vec![1u8; 7777])
}
#[inline(never)]
fn level2() -> Vec<u8> {
    black_box(level3())
}
#[inline(never)]
fn level1() -> Vec<u8> {
    black_box(level2())
}

#[test]
fn stack_names_the_allocating_functions() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        secalloc::stats().frame_pointers,
        "tests build with frame pointers"
    );
    let v = level1();
    let r = secalloc::report();
    let c = r
        .callsites
        .iter()
        .find(|c| c.largest_block == 7777)
        .expect("callsite of the 7777-byte block");
    let names: Vec<&str> = c
        .frames
        .iter()
        .filter_map(|f| f.function.as_deref())
        .collect();
    assert!(
        names[0].ends_with("level3"),
        "frame 0 is the user's code: {names:?}"
    );
    assert!(names[1].ends_with("level2"), "{names:?}");
    assert!(names[2].ends_with("level1"), "{names:?}");
    assert!(c.frames[0]
        .file
        .as_deref()
        .unwrap()
        .ends_with("stats_scopes.rs"));
    drop(v);
}

#[inline(never)]
fn alloc_leaf(n: usize) -> Vec<u8> {
    black_box(vec![5u8; n])
}
#[inline(never)]
fn via_a(n: usize) -> Vec<u8> {
    black_box(alloc_leaf(black_box(n) ^ black_box(0)))
}
#[inline(never)]
fn via_b(n: usize) -> Vec<u8> {
    black_box(alloc_leaf(black_box(n) | black_box(0)))
}

/// The same allocating call reached through two callers at the same stack depth, one
/// after the other: the allocator's frame, its caller's and the first return address are
/// the same for both, only the deeper frames differ. Each block must keep its own
/// caller's stack (a stack cache keyed by the allocator's frame, or a hash over the first
/// frames only, would give blocks of one caller the other's stack).
#[test]
fn repeated_allocations_keep_each_callers_stack() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const SIZE: usize = 4321;
    const EACH: u64 = 50;
    let mut keep = Vec::new();
    for i in 0..2 * EACH {
        keep.push(if i % 2 == 0 { via_a(SIZE) } else { via_b(SIZE) });
    }
    for i in 0..2 * EACH {
        // Runs of each, too: the second of a run finds the first's walk.
        keep.push(if i < EACH { via_a(SIZE) } else { via_b(SIZE) });
    }
    let r = secalloc::report();
    let sites: Vec<_> = r
        .callsites
        .iter()
        .filter(|c| c.largest_block == SIZE as u64)
        .collect();
    let through = |name: &str| {
        sites
            .iter()
            .filter(|c| {
                c.frames
                    .iter()
                    .filter_map(|f| f.function.as_deref())
                    .any(|f| f.ends_with(name))
            })
            .map(|c| c.blocks)
            .sum::<u64>()
    };
    assert_eq!(through("via_a"), 2 * EACH, "{sites:#?}");
    assert_eq!(through("via_b"), 2 * EACH, "{sites:#?}");
    // Two loops (two return addresses in this function) by two callers.
    assert_eq!(
        sites.len(),
        4,
        "one callsite per loop and caller: {sites:#?}"
    );
    assert!(sites.iter().all(|c| c.blocks == EACH), "{sites:#?}");
    drop(keep);
}

#[test]
fn fork_child_allocates_without_deadlock() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Another thread keeps allocating while we fork.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let t = std::thread::spawn(move || {
        while !st.load(std::sync::atomic::Ordering::Relaxed) {
            black_box(vec![0u8; 64]);
            black_box(secalloc::stats());
        }
    });
    for _ in 0..20 {
        // SAFETY: the child only allocates, reads stats and exits with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
            let ok = secalloc::stats().live_blocks > 0 && v.len() == 100;
            // SAFETY: _exit never returns and runs no handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: pid is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
}

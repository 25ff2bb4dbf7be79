//! `SecHeap` as the global allocator on its own: a randomised multi-thread workout, zeroed
//! allocations of reused slots, pages returned to the kernel, fork, and the corruption it
//! refuses (checked in child processes: this binary re-runs itself with `HEAP_TEST_CHILD`).

mod heap_common;

use std::alloc::{alloc, alloc_zeroed, dealloc, realloc, Layout};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: secalloc::SecHeap = secalloc::SecHeap::new();

#[test]
fn randomised_threads_keep_every_block_intact() {
    for seed in 1..=3 {
        heap_common::workout(seed, 4, 4000);
    }
}

/// Producers allocate, consumers free: every free is remote, racing with the owner folding
/// remote bits back (a first free must never read as a double one).
#[test]
fn producer_consumer_remote_frees() {
    for round in 0..4 {
        producer_consumer_round(round, 2, 1500);
    }
}

fn producer_consumer_round(round: u64, pairs: u64, batches: u64) {
    let handles: Vec<_> = (0..pairs)
        .flat_map(|p| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Vec<u8>>>(16);
            let producer = std::thread::spawn(move || {
                let mut rng = heap_common::Rng::new(round * 100 + p + 1);
                for b in 0..batches {
                    let batch = (0..256)
                        .map(|_| vec![b as u8; 8 + rng.below(249) as usize])
                        .collect();
                    tx.send(batch).unwrap();
                }
            });
            let consumer = std::thread::spawn(move || {
                for batch in rx {
                    for v in batch {
                        assert!(v.iter().all(|&x| x == v[0]));
                    }
                }
            });
            [producer, consumer]
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn zeroed_allocations_of_reused_slots_are_zero() {
    for size in [1usize, 16, 24, 100, 1000, 5000, 70_000, 300_000] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        for _ in 0..3 {
            // SAFETY: non-zero size; each block is freed with its layout.
            unsafe {
                let p = alloc(layout);
                std::ptr::write_bytes(p, 0xAB, size);
                dealloc(p, layout);
                let q = alloc_zeroed(layout);
                let bytes = std::slice::from_raw_parts(q, size);
                assert!(bytes.iter().all(|&b| b == 0), "size {size}");
                dealloc(q, layout);
            }
        }
    }
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn freed_spans_go_back_to_the_kernel_once_unused_for_a_while() {
    // Run alone in a child: other tests' allocations would blur the figures.
    let out = child("rss", &[]);
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    assert!(out.1.contains("returned"), "stdout: {}", out.1);
}

/// Allocates and frees `bytes` of 1000-byte blocks.
fn burst(bytes: usize) {
    let blocks: Vec<Box<[u8; 1000]>> = (0..bytes / 1024).map(|_| Box::new([1u8; 1000])).collect();
    drop(black_box(blocks));
}

fn rss_case() {
    let heap = secalloc::SecHeap::new();
    let before = resident_bytes();
    let blocks: Vec<Box<[u8; 1000]>> = (0..64 * 1024).map(|_| Box::new([1u8; 1000])).collect();
    let full = resident_bytes();
    let returned = heap.returned_to_kernel();
    drop(black_box(blocks));
    let freed = resident_bytes();
    let grown = full - before;
    assert!(
        grown > 60 << 20,
        "64 MiB of blocks grew RSS by {grown} bytes only"
    );
    // At most 16 MiB of empty spans of a size stay mapped right after the burst...
    let held = freed.saturating_sub(before);
    assert!(
        held < 20 << 20,
        "RSS still {held} bytes above the start right after freeing everything"
    );
    assert!(heap.returned_to_kernel().bytes >= returned.bytes + (40 << 20));
    // ... and the decay returns all but a working set of 1 MiB once they stayed unused:
    // a few small allocations every 200 ms for 2 s run its passes (there is no timer).
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        burst(256 << 10);
    }
    let kept = resident_bytes().saturating_sub(before);
    assert!(
        kept < 4 << 20,
        "RSS still {kept} bytes above the start after 2 s with little use"
    );
    println!("returned {} of {} bytes", grown - kept, grown);
}

#[test]
fn churn_reuses_empty_spans_without_returning_them_each_time() {
    let out = child("churn", &[]);
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    assert!(out.1.contains("churn: "), "stdout: {}", out.1);
}

fn churn_case() {
    let heap = secalloc::SecHeap::new();
    burst(8 << 20);
    let before = heap.returned_to_kernel();
    const CYCLES: u64 = 200;
    for _ in 0..CYCLES {
        burst(8 << 20);
    }
    let calls = heap.returned_to_kernel().calls - before.calls;
    // Each cycle empties 128 spans of 64 KiB; keeping only 1 MiB (16 spans) would return
    // 112 of them every cycle.
    assert!(
        calls < CYCLES,
        "{calls} madvise calls in {CYCLES} cycles of 8 MiB"
    );
    println!("churn: {calls} madvise calls in {CYCLES} cycles");
}

#[test]
fn large_blocks_grow_and_shrink_without_a_copy() {
    const MIB: usize = 1 << 20;
    let layout = Layout::from_size_align(32 * MIB, 8).unwrap();
    // SAFETY: a non-zero layout; each realloc passes the block's current layout, and the
    // block is freed with its last one.
    unsafe {
        let p = alloc(layout);
        heap_common::fill_pages(p, 32 * MIB, 7);
        // Growing moves page-table entries: none of the 8192 pages (16 huge pages) is
        // copied, so (next to none) fault in.
        let faults = heap_common::minor_faults_of_this_thread();
        let q = realloc(p, layout, 96 * MIB);
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        assert!(!q.is_null());
        assert!(
            faults < 8,
            "{faults} page faults while growing 32 MiB to 96 MiB"
        );
        heap_common::check_pages(q, 32 * MIB, 7);
        heap_common::fill_pages(q, 96 * MIB, 9);
        // Shrinking keeps the place and unmaps the tail.
        let r = realloc(
            q,
            Layout::from_size_align(96 * MIB, 8).unwrap(),
            40 * MIB + 5,
        );
        assert_eq!(r, q);
        heap_common::check_pages(r, 40 * MIB + 5, 9);
        dealloc(r, Layout::from_size_align(40 * MIB + 5, 8).unwrap());
    }
}

#[test]
fn small_blocks_realloc_in_place_within_their_class() {
    let layout = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: as above.
    unsafe {
        let p = alloc(layout);
        std::ptr::write_bytes(p, 5, 100);
        // 100 bytes live in the 112-byte class.
        let q = realloc(p, layout, 112);
        assert_eq!(q, p);
        let r = realloc(q, Layout::from_size_align(112, 8).unwrap(), 97);
        assert_eq!(r, p);
        assert!(std::slice::from_raw_parts(r, 97).iter().all(|&b| b == 5));
        let s = realloc(r, Layout::from_size_align(97, 8).unwrap(), 113);
        assert_ne!(s, p, "113 bytes need the next class");
        dealloc(s, Layout::from_size_align(113, 8).unwrap());
    }
}

/// Writes one byte past the end of a grown (or shrunk) mapped block: the guard page.
#[inline(never)]
fn large_guard_case(grow: bool) {
    let layout = Layout::from_size_align(1 << 20, 8).unwrap();
    let new_size = if grow { 3 << 20 } else { 600 << 10 };
    // SAFETY: valid allocation and realloc; the write past the end is the fault under test.
    unsafe {
        let p = alloc(layout);
        let q = realloc(p, layout, new_size);
        println!("block {:#x}", q as usize);
        std::ptr::write_volatile(q.add(new_size), 1);
    }
}

#[test]
fn a_resized_large_block_keeps_a_guard_page_after_it() {
    for case in ["large-guard-grow", "large-guard-shrink"] {
        let (code, _, stderr, signal) = child(case, &[]);
        assert_eq!(code, None, "{case}: {stderr}");
        assert_eq!(signal, Some(libc::SIGSEGV), "{case}: {stderr}");
    }
    // A freed mapping reused, shrunk, for a smaller block: the guard page moved with it.
    let (code, stdout, stderr, signal) = child("large-guard-reuse", &[]);
    assert_eq!(code, None, "large-guard-reuse: {stderr}");
    assert_eq!(signal, Some(libc::SIGSEGV), "large-guard-reuse: {stderr}");
    assert!(stdout.contains("reused block"), "stdout: {stdout}");
}

#[test]
fn short_lived_threads_keep_the_working_set_mapped() {
    let out = child("thread-exits", &[]);
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    assert!(out.1.contains("thread exits: "), "stdout: {}", out.1);
}

/// Threads one after the other (each adopting the last one's heap), each using 512 KiB:
/// less than the 1 MiB working set, so no exit has anything to return to the kernel.
fn thread_exits_case() {
    let heap = secalloc::SecHeap::new();
    std::thread::spawn(|| burst(512 << 10)).join().unwrap();
    let before = heap.returned_to_kernel();
    const THREADS: u64 = 50;
    for _ in 0..THREADS {
        std::thread::spawn(|| burst(512 << 10)).join().unwrap();
    }
    let calls = heap.returned_to_kernel().calls - before.calls;
    assert!(
        calls < THREADS,
        "{calls} madvise calls for {THREADS} threads of 512 KiB"
    );
    println!("thread exits: {calls} madvise calls for {THREADS} threads");
}

#[test]
fn fork_while_threads_allocate() {
    let out = child("fork", &[]);
    assert_eq!(out.0, Some(0), "stderr: {}", out.2);
    assert_eq!(out.1.matches("child ok").count(), 20, "stdout: {}", out.1);
}

fn fork_case() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|t| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut rng = heap_common::Rng::new(t + 7);
                let mut v: Vec<Vec<u8>> = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    v.push(vec![1u8; 1 + rng.below(400_000) as usize]);
                    if v.len() > 32 {
                        v.swap_remove(rng.below(32) as usize);
                    }
                }
            })
        })
        .collect();
    for _ in 0..20 {
        // SAFETY: the child only allocates, frees, prints and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v: Vec<Vec<u8>> = (0..1000).map(|i| vec![2u8; i * 37 + 1]).collect();
            let big = vec![3u8; 2 << 20];
            let ok = v.iter().enumerate().all(|(i, b)| b.len() == i * 37 + 1) && big[12345] == 3;
            drop(v);
            drop(big);
            let msg: &[u8] = if ok { b"child ok\n" } else { b"child bad\n" };
            // SAFETY: writing a static buffer to stdout and leaving without running the
            // parent's exit handlers.
            unsafe {
                libc::write(1, msg.as_ptr().cast(), msg.len());
                libc::_exit(0);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}

#[inline(never)]
fn interior_free_case() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: deliberately frees a pointer into the middle of a block.
    unsafe {
        let p = black_box(alloc(layout));
        println!("block {:#x}", p as usize);
        dealloc(p.add(16), layout);
    }
}

#[inline(never)]
fn foreign_free_case() {
    let x = 5u64;
    println!("block {:#x}", &x as *const u64 as usize);
    // SAFETY: deliberately frees a stack address.
    unsafe { dealloc(black_box(&x as *const u64 as *mut u8), Layout::new::<u64>()) };
}

#[test]
fn child_entry() {
    let case = match std::env::var("HEAP_TEST_CHILD") {
        Ok(c) => c,
        Err(_) => return,
    };
    match case.as_str() {
        "rss" => rss_case(),
        "churn" => churn_case(),
        "thread-exits" => thread_exits_case(),
        "large-guard-grow" => large_guard_case(true),
        "large-guard-shrink" => large_guard_case(false),
        "large-guard-reuse" => heap_common::large_guard_after_reuse_case(),
        "fork" => fork_case(),
        "double-free" => heap_common::double_free_case(),
        "remote-double-free" => heap_common::remote_double_free_case(),
        "interior-free" => interior_free_case(),
        "foreign-free" => foreign_free_case(),
        other => panic!("unknown case {other}"),
    }
    std::process::exit(0);
}

fn child(case: &str, env: &[(&str, &str)]) -> heap_common::ChildOutput {
    let mut cmd = heap_common::child_command("HEAP_TEST_CHILD", case);
    cmd.envs(env.iter().copied());
    heap_common::child_output(&mut cmd)
}

fn block_addr(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("block ").map(|(_, a)| a))
        .unwrap_or_else(|| panic!("no block line in {stdout:?}"));
    line.trim().to_string()
}

fn assert_aborts(case: &str, message: impl Fn(&str) -> String) {
    let (code, stdout, stderr, signal) = child(case, &[]);
    assert_eq!(code, None, "{case} must not exit normally: {stderr}");
    assert_eq!(signal, Some(libc::SIGABRT), "{case}: {stderr}");
    let want = message(&block_addr(&stdout));
    assert_eq!(
        stderr.lines().last(),
        Some(want.as_str()),
        "{case}: {stderr}"
    );
}

#[test]
fn double_free_on_the_same_thread_aborts() {
    assert_aborts("double-free", |a| {
        format!("secalloc: heap corruption: double free of {a} (a 48-byte slot)")
    });
}

#[test]
fn double_free_from_another_thread_aborts() {
    assert_aborts("remote-double-free", |a| {
        format!("secalloc: heap corruption: double free of {a} (a 48-byte slot)")
    });
}

#[test]
fn free_of_an_interior_pointer_aborts() {
    assert_aborts("interior-free", |a| {
        let a = usize::from_str_radix(a.trim_start_matches("0x"), 16).unwrap() + 16;
        format!("secalloc: heap corruption: free of {a:#x}, a pointer into the middle of a block")
    });
}

#[test]
fn free_of_a_foreign_address_aborts() {
    assert_aborts("foreign-free", |a| {
        format!("secalloc: heap corruption: invalid free of {a}: not a block this heap handed out")
    });
}
